"""The pretraining loss, kept apart from the backbone, fused for speed.

``BERTPretrainLoss`` wraps a :class:`~gluon_bert.model.BERTModel` and computes
the book's two losses in one hybridized graph, so that the whole training
step (model, both losses, their gradients) runs from statically allocated
memory.  Its MLM head only scores the prediction slots that carry weight:
the book's padded slots have weight 0 and add nothing to the loss or the
gradients, so leaving them out (about 31 % of the slots with max_len 64)
changes no number and saves a third of the most expensive work, the
(slots x vocab_size) output layer and its log-softmax.

:func:`pack_mlm_slots` turns a batch's ``(pred_positions, mlm_weights,
mlm_labels)`` into that compact form on the host.
"""
import numpy as onp
from mxnet import gluon
from mxnet.gluon import nn

__all__ = ['BERTPretrainLoss', 'pack_mlm_slots']


def pack_mlm_slots(pred_positions, mlm_weights, mlm_labels, multiple=128):
    """The weighted MLM slots of a batch, as ``gather_nd`` indices.

    Parameters
    ----------
    pred_positions, mlm_weights, mlm_labels : (batch size, no. of slots)
        NumPy arrays, the book's fields.
    multiple : int
        The number of slots is padded up to a multiple of this (with weight-0
        slots), so that a hybridized graph sees only a few distinct shapes.

    Returns
    -------
    indices : (2, K) int32
        Row and position of each slot.
    weights : (K,) float32
    labels : (K,) int32
    """
    rows, cols = onp.nonzero(mlm_weights)
    k = len(rows)
    size = max(multiple, -(-k // multiple) * multiple)
    indices = onp.zeros((2, size), dtype='int32')
    indices[0, :k], indices[1, :k] = rows, pred_positions[rows, cols]
    weights = onp.zeros(size, dtype='float32')
    weights[:k] = mlm_weights[rows, cols]
    labels = onp.zeros(size, dtype='int32')
    labels[:k] = mlm_labels[rows, cols]
    return indices, weights, labels


class BERTPretrainLoss(nn.HybridBlock):
    """Sums of the book's MLM and NSP losses over a (shard of a) batch.

    Parameters
    ----------
    net : BERTModel
        Its encoder and heads are used (and trained) as they are.
    loss : gluon.loss.SoftmaxCELoss, optional
        The cross-entropy (a new one by default).

    Inputs
    ------
    tokens : (batch size, max_len) int
    segments : (batch size, max_len) int
    valid_lens : (batch size,)
    mlm_indices : (2, K) int, from :func:`pack_mlm_slots`
    mlm_weights : (K,)
    mlm_labels : (K,)
    nsp_labels : (batch size,)

    Outputs
    -------
    mlm_sum : () sum over slots of weight x cross-entropy
    nsp_sum : () sum over examples of cross-entropy

    Divide by the batch's MLM weight sum and its size for the book's losses.
    """

    def __init__(self, net, loss=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.net = net
            self.ce = loss if loss is not None else gluon.loss.SoftmaxCELoss()

    def hybrid_forward(self, F, tokens, segments, valid_lens, mlm_indices,
                       mlm_weights, mlm_labels, nsp_labels):
        net = self.net
        # (batch size, max_len, num_hiddens)
        encoded_X = net.encoder(tokens, segments, valid_lens)
        # (K, num_hiddens) -> (K, vocab_size): only the weighted slots
        mlm_Y_hat = net.mlm.mlp(F.npx.gather_nd(encoded_X, mlm_indices))
        mlm_l = self.ce(mlm_Y_hat, mlm_labels,
                        F.np.expand_dims(mlm_weights, -1))
        nsp_l = self.ce(net.next_sentence_logits(F, encoded_X), nsp_labels)
        return F.np.sum(mlm_l), F.np.sum(nsp_l)

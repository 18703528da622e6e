"""The pretraining loss, apart from the backbone, fused for speed.

``BERTPretrainLoss`` wraps a :class:`~gluon_bert.model.BERTModel` and
computes the book's two losses in one hybridized graph (tested equal to the
book's loss path), skipping work that adds nothing to them: padded tokens
(the valid ones are packed, :func:`~gluon_bert.packing.pack_batch`), padded
MLM slots (weight 0: :func:`~gluon_bert.packing.pack_mlm_slots`), and the
log-softmax's backward pass over (slots x vocab_size) (:class:`MLMSlotLoss`
writes the cross-entropy's gradient out).
"""
from mxnet import gluon
from mxnet.gluon import nn

from .utils import GluonBertError

__all__ = ['BERTPretrainLoss', 'MLMSlotLoss', 'is_softmax_ce']


def is_softmax_ce(loss):
    """Whether ``loss`` is the book's softmax cross-entropy (sparse labels,
    scores in, no weight of its own): the loss whose gradient
    :class:`MLMSlotLoss` writes out.  Another one trains through the book's
    loss path (``train_bert`` with ``fused=False``), which takes any."""
    return (isinstance(loss, gluon.loss.SoftmaxCELoss) and loss._sparse_label
            and not loss._from_logits and loss._weight is None
            and loss._axis == -1)


def _no_grad(F, X):
    # BlockGrad has no NumPy-mode name in MXNet 1.9
    return F.stop_gradient(X.as_nd_ndarray()).as_np_ndarray()


def _chunk(F, X, i):
    # The i-th chunk of X, (num_chunks, K / num_chunks, ...) ->
    # (K / num_chunks, ...)
    return F.npx.reshape(F.npx.slice(X, begin=(i,), end=(i + 1,)), (-3, -4))


def _first_chunk_hits(F, scores, labels, weights, all_weights):
    # Training accuracy from the first chunk's slots only (an argmax over
    # every chunk's scores is a costly pass of its own): their weighted hits,
    # scaled to all the slots' weight; the padded slots are at the end, so
    # this chunk has real ones
    hits = F.np.sum(BERTPretrainLoss._hits(F, scores, labels) * weights)
    return (hits * F.np.sum(all_weights)
            / F.np.maximum(F.np.sum(weights), 1e-8))


class MLMSlotLoss(nn.HybridBlock):
    """The MLM decoder's weighted cross-entropy, its gradient written out.

    A slot's loss is ``w * (logsumexp(s) - s[label])`` for the scores ``s = h
    W^T + b``; its gradient in ``s`` is ``w * (softmax(s) - onehot(label))``.
    The value is computed as the book does (forward only); the gradient comes
    from a surrogate with the same derivatives, ``w * ([h, 1] . (softmax(s)
    [W, b] - [W, b][label]))`` with the softmax held constant: one more matrix
    product instead of a dense (slots x vocab_size) gradient.

    Parameters
    ----------
    decoder : nn.Dense
        The MLM head's output layer, with a bias; its parameters are shared.
    loss : gluon.loss.SoftmaxCELoss
        Computes the value.
    num_chunks : int
        Slots are scored in this many equal chunks (one chunk's scores alive
        at a time).

    Inputs
    ------
    hiddens : (K, num_hiddens) the MLM head's hidden layer at each slot
    labels : (K,) int
    weights : (K,)

    Outputs
    -------
    mlm_sum : () sum over slots of weight x cross-entropy
    mlm_hits : () weighted hits, estimated from the first chunk
    """

    def __init__(self, decoder, loss, num_chunks=8, **kwargs):
        super().__init__(prefix=decoder.prefix, params=decoder.params,
                         **kwargs)
        self.num_chunks = num_chunks
        # (vocab_size, num_hiddens): the Dense's weight, (out, in)
        self.vocab_size, self.num_hiddens = decoder.weight.shape
        self.ce = loss
        with self.name_scope():
            # The decoder's own Parameters (the same objects)
            self.weight = self.params.get('weight')
            self.bias = self.params.get('bias')

    def hybrid_forward(self, F, hiddens, labels, weights, weight=None,
                       bias=None):
        c, v, h = self.num_chunks, self.vocab_size, self.num_hiddens
        # (vocab_size, num_hiddens + 1): [W, b], and [h, 1] for every slot
        wb = F.np.concatenate([weight, F.np.expand_dims(bias, -1)], axis=-1)
        ones = F.np.ones_like(F.npx.slice(hiddens, begin=(None, 0),
                                          end=(None, 1)))
        h1 = F.np.concatenate([hiddens, ones], axis=-1)
        # The label's part of the surrogate, for all K slots at once: (K,)
        target = F.np.sum(h1 * F.npx.embedding(labels, wb, v, h + 1), axis=-1)
        # (num_hiddens + 1, vocab_size), made once for every chunk
        wb_t = F.np.transpose(wb)
        h1 = F.npx.reshape(h1, (-6, c, -1, -2))
        hiddens = F.npx.reshape(_no_grad(F, hiddens), (-6, c, -1, -2))
        chunk_labels = F.npx.reshape(labels, (c, -1))
        chunk_weights = F.npx.reshape(weights, (c, -1))
        weight, bias = _no_grad(F, weight), _no_grad(F, bias)
        total, expected = 0, []
        for i in range(c):
            lab = _chunk(F, chunk_labels, i)
            w = _chunk(F, chunk_weights, i)
            # (K / c, vocab_size), no gradient of its own
            scores = F.npx.fully_connected(_chunk(F, hiddens, i), weight,
                                           bias, num_hidden=v)
            # The book's value: (K / c,)
            total = total + F.np.sum(self.ce(scores, lab,
                                             F.np.expand_dims(w, -1)))
            if i == 0:
                mlm_hits = _first_chunk_hits(F, scores, lab, w, weights)
            # softmax(s) [W, b]: (K / c, num_hiddens + 1)
            probs = _no_grad(F, F.npx.softmax(scores))
            expected.append(F.np.sum(
                _chunk(F, h1, i) * F.npx.fully_connected(
                    probs, wb_t, no_bias=True, num_hidden=h + 1), axis=-1))
        # (K,): value 0, gradient the book's
        surrogate = (F.np.concatenate(expected) - target) * weights
        surrogate = surrogate - _no_grad(F, surrogate)
        return total + F.np.sum(surrogate), mlm_hits


class BERTPretrainLoss(nn.HybridBlock):
    """Sums of the book's MLM and NSP losses over a (shard of a) batch.

    Parameters
    ----------
    net : BERTModel
        Its encoder and heads are used (and trained) as they are.
    loss : gluon.loss.SoftmaxCELoss, optional
    num_chunks : int
        The MLM head runs on this many equal chunks of the K slots (the same
        numbers in less memory).

    Inputs
    ------
    The packed batch of :func:`~gluon_bert.packing.pack_batch`: tokens,
    segments, positions (T,); valid_lens (batch size,); head_index (batch size
    * num_heads, max_len); merge_index (T, num_heads); nsp_rows (batch size,);
    mlm_rows, mlm_weights, mlm_labels (K,); nsp_labels (batch size,).

    Outputs
    -------
    mlm_sum : () sum over slots of weight x cross-entropy
    nsp_sum : () sum over examples of cross-entropy
    mlm_hits : () weighted slots whose highest score is the label, estimated
        from the first chunk (a training indicator; ``evaluate_bert`` counts
        every slot)
    nsp_hits : () examples whose NSP label scores highest
    """

    def __init__(self, net, loss=None, num_chunks=8, **kwargs):
        super().__init__(**kwargs)
        loss = loss if loss is not None else gluon.loss.SoftmaxCELoss()
        if not is_softmax_ce(loss):
            raise GluonBertError(
                f'the fused loss computes the book\'s softmax cross-entropy, '
                f'not {loss.__class__.__name__} with these settings: train '
                'with fused=False (the book\'s loss path) for another loss')
        with self.name_scope():
            self.net = net
            self.ce = loss
            self.mlm_loss = MLMSlotLoss(net.mlm.decoder, loss, num_chunks)

    def hybrid_forward(self, F, tokens, segments, positions, valid_lens,
                       head_index, merge_index, nsp_rows, mlm_rows,
                       mlm_weights, mlm_labels, nsp_labels):
        net = self.net
        # (T, num_hiddens): the valid tokens only
        encoded_X = net.encode_packed(tokens, segments, positions, valid_lens,
                                      head_index, merge_index)
        # (K, num_hiddens)
        hiddens = net.mlm.slot_hiddens(F, encoded_X, mlm_rows)
        mlm_sum, mlm_hits = self.mlm_loss(hiddens, mlm_labels, mlm_weights)
        nsp_Y_hat = net.next_sentence_logits_at(F, encoded_X, nsp_rows)
        nsp_l = self.ce(nsp_Y_hat, nsp_labels)
        nsp_hits = F.np.sum(self._hits(F, nsp_Y_hat, nsp_labels))
        return mlm_sum, F.np.sum(nsp_l), mlm_hits, nsp_hits

    @staticmethod
    def _hits(F, scores, labels):
        # 1.0 where the highest score is the label's, else 0.0
        predicted = F.np.argmax(scores, axis=-1)
        return (predicted.astype('int32') == labels.astype('int32')).astype(
            'float32')

"""Held-out MLM and NSP loss and accuracy of a pretrained model: the library
behind ``python -m gluon_bert.evaluate`` and ``pretrain --eval-every``."""
from mxnet import gluon

from .model import net_device

__all__ = ['evaluate_bert']


def evaluate_bert(net, data_iter, vocab_size):
    """MLM and NSP loss and accuracy of ``net`` over a data iterator.

    Runs in prediction mode (no dropout) on the device ``net`` lives on.

    Returns
    -------
    dict
        ``mlm_loss`` and ``mlm_accuracy`` over weighted slots, ``nsp_loss``
        and ``nsp_accuracy`` over pairs, and the counts ``mlm_slots`` and
        ``pairs``.
    """
    loss = gluon.loss.SoftmaxCELoss()
    device = net_device(net)
    sums = dict(mlm_loss=0.0, mlm_correct=0.0, mlm_slots=0.0, nsp_loss=0.0,
                nsp_correct=0.0, pairs=0)
    for batch in data_iter:
        (tokens, segments, valid_lens, pred_positions, mlm_weights,
         mlm_labels, nsp_labels) = [x.as_in_context(device) for x in batch]
        _, mlm_Y_hat, nsp_Y_hat = net(tokens, segments, valid_lens,
                                      pred_positions)
        mlm_Y_hat = mlm_Y_hat.reshape((-1, vocab_size))
        labels, weights = mlm_labels.reshape(-1), mlm_weights.reshape(-1)
        sums['mlm_loss'] += float((loss(mlm_Y_hat, labels) * weights).sum())
        hits = (mlm_Y_hat.argmax(axis=-1).astype('int32')
                == labels.astype('int32'))
        sums['mlm_correct'] += float((hits.astype('float32') * weights).sum())
        sums['mlm_slots'] += float(weights.sum())
        sums['nsp_loss'] += float(loss(nsp_Y_hat, nsp_labels).sum())
        sums['nsp_correct'] += float(
            (nsp_Y_hat.argmax(axis=-1).astype('int32')
             == nsp_labels.astype('int32')).astype('float32').sum())
        sums['pairs'] += int(tokens.shape[0])
    return {'mlm_loss': sums['mlm_loss'] / sums['mlm_slots'],
            'mlm_accuracy': sums['mlm_correct'] / sums['mlm_slots'],
            'nsp_loss': sums['nsp_loss'] / sums['pairs'],
            'nsp_accuracy': sums['nsp_correct'] / sums['pairs'],
            'mlm_slots': int(sums['mlm_slots']), 'pairs': sums['pairs']}

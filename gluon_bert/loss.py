"""The pretraining loss, kept apart from the backbone, fused for speed.

``BERTPretrainLoss`` wraps a :class:`~gluon_bert.model.BERTModel` and computes
the book's two losses in one hybridized graph, so that the whole training
step (model, both losses, their gradients) runs from statically allocated
memory.  It gives the book's numbers (tested against the book's loss path)
while skipping work that adds nothing to them:

* padded tokens: the batch's valid tokens are packed (:func:`pack_batch`), so
  the per-token layers never see the padding; attention gathers each
  example back (:class:`~gluon_bert.model.MultiHeadAttention`);
* padded MLM slots: they have weight 0, so only the weighted slots are
  scored (:func:`pack_mlm_slots`);
* the log-softmax's backward pass over (slots x vocab_size):
  :class:`MLMSlotLoss` writes the cross-entropy's gradient out.

:func:`pack_shards` makes the packed inputs of every device's shard on the
host.  (What each of these choices measured is in benchmarks/README.md,
"Training, measured".)
"""
import numpy as onp
from mxnet import gluon
from mxnet.gluon import nn

__all__ = ['BERTPretrainLoss', 'MLMSlotLoss', 'pack_batch', 'pack_shards',
           'pack_tokens', 'pack_mlm_slots', 'split_and_pack', 'host_fields']


def host_fields(batch):
    """The seven fields of ``batch`` as NumPy arrays.

    A :class:`~gluon_bert.dataset.Batch` has them already (``.host``); other
    batches (e.g. from a Gluon DataLoader) are copied once.
    """
    host = getattr(batch, 'host', None)
    if host is None:
        host = tuple(x.asnumpy() for x in batch)
    return host


def pack_shards(host, devices, num_heads):
    """The inputs of :class:`BERTPretrainLoss` for every shard, made on the
    host by :func:`pack_batch`, then loaded.

    ``host`` holds the book's seven fields as NumPy arrays
    (:func:`host_fields`).  The batch is cut as
    ``split_and_load(even_split=False)`` cuts it (the first
    ``size % len(devices)`` shards one example longer).

    Returns
    -------
    list of tuples
        One tuple of ``mxnet.np`` arrays per device, on that device, in the
        order of :class:`BERTPretrainLoss`'s inputs.
    """
    return split_and_pack(host, devices,
                          lambda shard: pack_batch(shard, num_heads))


def split_and_pack(arrays, devices, pack):
    """Cut host arrays into one shard per device, as
    ``split_and_load(even_split=False)`` cuts them, pack each shard on the
    host (``pack(shard)``: a sequence of NumPy arrays), then load it.

    Returns
    -------
    list of tuples
        One tuple of ``mxnet.np`` arrays per device, on that device.
    """
    from mxnet import np
    # array_split cuts as split_and_load does: the first shards are longer
    fields = [onp.array_split(a, len(devices)) for a in arrays]
    return [tuple(np.array(a, ctx=device, dtype=a.dtype)
                  for a in pack(shard))
            for device, *shard in zip(devices, *fields)]


def pack_batch(host, num_heads, token_multiple=1024, slot_multiple=128):
    """A batch's valid tokens and weighted MLM slots, packed.

    The book pads every example to ``max_len`` tokens and
    ``max_num_mlm_preds`` slots.  Packed, the valid tokens follow one
    another (so the per-token layers skip the padding; benchmarks/README.md
    says how much of WikiText-2's batches that is), and so do the weighted
    slots
    (:func:`pack_mlm_slots`).  Attention still sees every example padded:
    the two gather indices go there and back.  Padding rows at the end keep
    the number of distinct shapes small; nothing reads them.

    Parameters
    ----------
    host : tuple of 7 NumPy arrays
        The book's fields: tokens, segments, valid_lens, pred_positions,
        mlm_weights, mlm_labels, nsp_labels.
    num_heads : int
        The attention heads of the model.
    token_multiple, slot_multiple : int
        T and K are padded up to multiples of these.

    Returns
    -------
    tuple of NumPy arrays, :class:`BERTPretrainLoss`'s inputs
        tokens (T,), segments (T,), positions (T,), valid_lens (batch size,),
        head_index (batch size * num_heads, max_len), merge_index
        (T, num_heads), nsp_rows (batch size,), mlm_rows (K,), mlm_weights
        (K,), mlm_labels (K,), nsp_labels (batch size,)
    """
    (tokens, segments, valid_lens, pred_positions, mlm_weights, mlm_labels,
     nsp_labels) = host
    packed = pack_tokens(tokens, segments, valid_lens, num_heads,
                         token_multiple)
    row_of = packed.pop()
    indices, weights, labels = pack_mlm_slots(
        pred_positions, mlm_weights, mlm_labels, slot_multiple)
    slot_rows, slot_cols = indices[:, weights > 0]
    if (slot_cols >= valid_lens.reshape(-1)[slot_rows]).any():
        raise ValueError('a weighted MLM slot lies beyond its example\'s '
                         'valid length, where packed tokens have no row; '
                         'the book\'s examples never do this: fix the '
                         'batch, or train with fused=False (the book\'s loss '
                         'path)')
    return tuple(packed) + (
        row_of[:, 0].astype('int32'),
        row_of[indices[0], indices[1]].astype('int32'), weights, labels,
        nsp_labels.astype('int32'))


def pack_tokens(tokens, segments, valid_lens, num_heads,
                token_multiple=1024):
    """A padded batch's valid tokens, packed one after another.

    Parameters
    ----------
    tokens, segments : (batch size, max_len) NumPy int arrays
    valid_lens : (batch size,) NumPy array
    num_heads : int
        The attention heads of the model.
    token_multiple : int
        T, the no. of packed rows, is padded up to a multiple of this.

    Returns
    -------
    list of NumPy arrays
        tokens (T,), segments (T,), positions (T,), valid_lens (batch size,)
        float32, head_index (batch size * num_heads, max_len), merge_index
        (T, num_heads): :class:`~gluon_bert.model.BERTEncoder`'s packed
        inputs; then row_of (batch size, max_len), the packed row of every
        (example, position) (row 0 where the position is padding), so
        ``row_of[:, 0]`` are the rows of ``<cls>``.
    """
    batch_size, max_len = tokens.shape
    h = num_heads
    valid = onp.arange(max_len) < valid_lens.reshape(-1, 1)
    # In row-major order: example by example, position by position
    examples, cols = onp.nonzero(valid)
    n = len(examples)
    size = max(token_multiple, -(-n // token_multiple) * token_multiple)

    def packed(values, dtype='int32'):
        out = onp.zeros(size, dtype=dtype)
        out[:n] = values
        return out
    # The packed row of every (example, position); padded positions read
    # row 0, whose value there is masked (keys), weighted 0 (values) or
    # unused (queries)
    row_of = onp.zeros((batch_size, max_len), dtype='int64')
    row_of[examples, cols] = onp.arange(n)
    head = onp.arange(h).reshape(1, h, 1)
    head_index = (row_of[:, None, :] * h + head).reshape(batch_size * h,
                                                         max_len)
    merge_index = onp.zeros((size, h), dtype='int32')
    merge_index[:n] = ((examples[:, None] * h + onp.arange(h)) * max_len
                       + cols[:, None])
    return [packed(tokens[valid]), packed(segments[valid]), packed(cols),
            valid_lens.reshape(-1).astype('float32'),
            head_index.astype('int32'), merge_index, row_of]


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


def _is_plain_softmax_ce(loss):
    """Whether ``loss`` is a default softmax cross-entropy on sparse labels:
    the loss whose gradient :class:`MLMSlotLoss` writes out."""
    return (type(loss) is gluon.loss.SoftmaxCELoss  # noqa: E721
            and loss._sparse_label and not loss._from_logits
            and loss._axis == -1 and loss._weight is None)


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
    return hits * F.np.sum(all_weights) / F.np.maximum(F.np.sum(weights),
                                                        1e-8)


class MLMSlotLoss(nn.HybridBlock):
    """The MLM decoder's weighted cross-entropy, its gradient written out.

    The book's loss of a slot is ``w * (logsumexp(s) - s[label])`` for the
    decoder's scores ``s = h W^T + b``; its gradient with respect to ``s`` is
    ``w * (softmax(s) - onehot(label))``.  Autograd gets there through the
    log-softmax's backward pass and a dense (slots x vocab_size) gradient.
    Here the value is computed as the book does (``loss``, forward only),
    and the gradient comes from a surrogate with the same derivatives,
    ``w * ([h, 1] . (softmax(s) [W, b] - [W, b][label]))`` with the softmax
    held constant: one more matrix product and no (slots x vocab_size)
    gradient.  Same numbers to float32 rounding (tested against autograd).

    Parameters
    ----------
    decoder : nn.Dense
        The MLM head's output layer (``MaskLM.decoder``), with a bias and
        known ``in_units``; its parameters are shared, not copied.
    loss : gluon.loss.SoftmaxCELoss
        Computes the value.
    num_chunks : int
        The slots are scored in this many equal chunks, so that only one
        chunk's (slots x vocab_size) scores are alive at a time.

    Inputs
    ------
    hiddens : (K, num_hiddens) the MLM head's hidden layer at each slot
    labels : (K,) int
    weights : (K,)
    uniforms : (K,) in [0, 1), optional
        Given, each slot also draws a token from the softmax of its scores
        (inverse CDF: the first token whose cumulative probability exceeds
        the slot's uniform): ELECTRA's generator samples
        (:mod:`gluon_bert.electra`).

    Outputs
    -------
    mlm_sum : () sum over slots of weight x cross-entropy
    mlm_hits : () sum over slots of weight x (highest score is the label),
        estimated from the first chunk (see :class:`BERTPretrainLoss`)
    samples : (K,) int32, only with ``uniforms``: no gradient
    """

    def __init__(self, decoder, loss, num_chunks=8, **kwargs):
        super().__init__(prefix=decoder.prefix, params=decoder.params,
                         **kwargs)
        self.num_chunks = num_chunks
        self.vocab_size, self.num_hiddens = decoder._units, decoder._in_units
        self.ce = loss
        with self.name_scope():
            # The decoder's own Parameters (the same objects)
            self.weight = self.params.get('weight')
            self.bias = self.params.get('bias')

    def hybrid_forward(self, F, hiddens, labels, weights, uniforms=None,
                       weight=None, bias=None):
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
        if uniforms is not None:
            chunk_uniforms = F.npx.reshape(uniforms, (c, -1))
        total, expected, samples = 0, [], []
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
            if uniforms is not None:
                # (K / c,): how many tokens' cumulative probability stays
                # below the slot's uniform is the index of the one drawn
                below = F.np.cumsum(probs, axis=1) < F.np.expand_dims(
                    _chunk(F, chunk_uniforms, i), -1)
                samples.append(F.np.minimum(F.np.sum(below, axis=1), v - 1))
            expected.append(F.np.sum(
                _chunk(F, h1, i) * F.npx.fully_connected(
                    probs, wb_t, no_bias=True, num_hidden=h + 1), axis=-1))
        # (K,): value 0, gradient the book's
        surrogate = (F.np.concatenate(expected) - target) * weights
        surrogate = surrogate - _no_grad(F, surrogate)
        if uniforms is None:
            return total + F.np.sum(surrogate), mlm_hits
        return (total + F.np.sum(surrogate), mlm_hits,
                F.np.concatenate(samples).astype('int32'))


class BERTPretrainLoss(nn.HybridBlock):
    """Sums of the book's MLM and NSP losses over a (shard of a) batch.

    Parameters
    ----------
    net : BERTModel
        Its encoder and heads are used (and trained) as they are.
    loss : gluon.loss.SoftmaxCELoss, optional
        The cross-entropy (a new one by default).
    num_chunks : int
        The MLM head runs on this many equal chunks of the slots (K must be
        divisible by it; :func:`pack_mlm_slots` pads to a multiple of 128):
        the same numbers with less memory, since only one chunk's
        (slots x vocab_size) buffers are alive at a time in the backward
        pass.

    Inputs
    ------
    The packed batch of :func:`pack_batch`:

    tokens, segments, positions : (T,) int
    valid_lens : (batch size,)
    head_index : (batch size * num_heads, max_len) int
    merge_index : (T, num_heads) int
    nsp_rows : (batch size,) int, the packed row of each ``<cls>``
    mlm_rows : (K,) int, the packed row of each slot
    mlm_weights : (K,)
    mlm_labels : (K,)
    nsp_labels : (batch size,)

    Outputs
    -------
    mlm_sum : () sum over slots of weight x cross-entropy
    nsp_sum : () sum over examples of cross-entropy
    mlm_hits : () sum over slots of weight x (highest score is the label),
        estimated from the first of the ``num_chunks`` chunks of slots
        (their hits times all slots' weight over theirs): a training-accuracy
        indicator; ``evaluate_bert`` counts every slot
    nsp_hits : () number of examples whose NSP label scores highest

    Divide by the batch's MLM weight sum and its size for the book's losses.
    """

    def __init__(self, net, loss=None, num_chunks=8, **kwargs):
        super().__init__(**kwargs)
        self.num_chunks = num_chunks
        with self.name_scope():
            self.net = net
            self.ce = loss if loss is not None else gluon.loss.SoftmaxCELoss()
            decoder = net.mlm.decoder
            # The written-out gradient holds for the default softmax
            # cross-entropy only; any other loss goes through autograd
            self.mlm_loss = (MLMSlotLoss(decoder, self.ce, num_chunks)
                             if _is_plain_softmax_ce(self.ce)
                             and decoder.bias is not None
                             and decoder._in_units else None)

    def hybrid_forward(self, F, tokens, segments, positions, valid_lens,
                       head_index, merge_index, nsp_rows, mlm_rows,
                       mlm_weights, mlm_labels, nsp_labels):
        net = self.net
        # (T, num_hiddens): the valid tokens only
        encoded_X = net.encode_packed(tokens, segments, positions, valid_lens,
                                      head_index, merge_index)
        # (K, num_hiddens)
        hiddens = net.mlm.slot_hiddens(F, encoded_X, mlm_rows)
        if self.mlm_loss is not None:
            mlm_sum, mlm_hits = self.mlm_loss(hiddens, mlm_labels,
                                              mlm_weights)
        else:
            mlm_sum, mlm_hits = self._mlm_autograd(F, hiddens, mlm_labels,
                                                   mlm_weights)
        nsp_Y_hat = net.next_sentence_logits_at(F, encoded_X, nsp_rows)
        nsp_l = self.ce(nsp_Y_hat, nsp_labels)
        nsp_hits = F.np.sum(self._hits(F, nsp_Y_hat, nsp_labels))
        return mlm_sum, F.np.sum(nsp_l), mlm_hits, nsp_hits

    def _mlm_autograd(self, F, hiddens, mlm_labels, mlm_weights):
        # Any other loss: the decoder's scores and the loss through
        # autograd, in `num_chunks` chunks of K / num_chunks slots, so that
        # the (K, vocab_size) scores, their log-softmax and gradients live
        # one chunk at a time in the backward pass
        c, decoder = self.num_chunks, self.net.mlm.decoder
        hiddens = F.npx.reshape(hiddens, (-6, c, -1, -2))
        mlm_weights = F.npx.reshape(mlm_weights, (c, -1))
        mlm_labels = F.npx.reshape(mlm_labels, (c, -1))
        mlm_sum = 0
        for i in range(c):
            weights = _chunk(F, mlm_weights, i)
            labels = _chunk(F, mlm_labels, i)
            # (K / num_chunks, vocab_size)
            mlm_Y_hat = decoder(_chunk(F, hiddens, i))
            mlm_l = self.ce(mlm_Y_hat, labels, F.np.expand_dims(weights, -1))
            mlm_sum = mlm_sum + F.np.sum(mlm_l)
            if i == 0:
                mlm_hits = _first_chunk_hits(F, mlm_Y_hat, labels, weights,
                                             mlm_weights)
        return mlm_sum, mlm_hits

    @staticmethod
    def _hits(F, scores, labels):
        # 1.0 where the highest score is the label's, else 0.0
        predicted = F.np.argmax(scores, axis=-1)
        return (predicted.astype('int32') == labels.astype('int32')).astype(
            'float32')

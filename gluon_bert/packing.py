"""Packing on the host: a batch's valid tokens and weighted MLM slots.

The book pads every example to ``max_len`` and every MLM list to
``round(0.15 max_len)`` slots, and the model carries the padding through
every layer.  These functions cut a batch (NumPy arrays, a
:class:`~gluon_bert.dataset.Batch`'s ``.host``) into one shard per device as
``split_and_load`` does, and pack each into its valid tokens and weighted
slots, with the indices the packed model uses to find each example again.
"""
import numpy as onp

__all__ = ['host_fields', 'pack_batch', 'pack_shards', 'pack_cut_batch',
           'pack_tokens', 'pack_mlm_slots', 'split_and_pack']


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
    """:class:`BERTPretrainLoss`'s inputs for every shard: the book's seven
    fields ``host`` (NumPy, :func:`host_fields`) cut as
    ``split_and_load(even_split=False)`` cuts them, packed by
    :func:`pack_batch`, loaded.  Returns one tuple of ``mxnet.np`` arrays per
    device.
    """
    return split_and_pack(host, devices,
                          lambda shard: pack_batch(shard, num_heads))


def split_and_pack(arrays, devices, pack):
    """Cut host arrays into one shard per device as
    ``split_and_load(even_split=False)`` does, pack each (``pack(shard)``) on
    the host, load it: one tuple of ``mxnet.np`` arrays per device.
    """
    # array_split cuts as split_and_load does: the first shards are longer
    fields = [onp.array_split(a, len(devices)) for a in arrays]
    return _load([pack(shard) for shard in zip(*fields)], devices)


def pack_cut_batch(shards, devices, num_heads):
    """:func:`pack_shards` for a batch cut already: ``shards`` holds, field
    by field, one MXNet array per device (``gluon.utils.split_data``'s
    output); each device's shard is packed on the host by :func:`pack_batch`
    and loaded onto it.
    """
    return _load([pack_batch([field[i].asnumpy() for field in shards],
                             num_heads) for i in range(len(devices))],
                 devices)


def _load(packed, devices):
    """Each device's packed NumPy arrays as ``mxnet.np`` arrays on it."""
    from mxnet import np
    return [tuple(np.array(a, ctx=device, dtype=a.dtype) for a in arrays)
            for device, arrays in zip(devices, packed)]


def pack_batch(host, num_heads, token_multiple=1024, slot_multiple=128):
    """A batch's valid tokens and weighted MLM slots, packed.

    Packed, the valid tokens follow one another, so the per-token layers skip
    the padding, and so do the weighted slots (:func:`pack_mlm_slots`);
    attention still sees every example padded, through two gather indices.
    Padding rows at the end keep the number of shapes small.

    Parameters
    ----------
    host : tuple of 7 NumPy arrays
        The book's fields: tokens, segments, valid_lens, pred_positions,
        mlm_weights, mlm_labels, nsp_labels.
    num_heads : int
    token_multiple, slot_multiple : int
        T and K are padded up to multiples of these.

    Returns
    -------
    tuple of NumPy arrays, :class:`BERTPretrainLoss`'s inputs
        tokens, segments, positions (T,), valid_lens (batch size,), head_index
        (batch size * num_heads, max_len), merge_index (T, num_heads),
        nsp_rows (batch size,), mlm_rows, mlm_weights, mlm_labels (K,),
        nsp_labels (batch size,)
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
    valid_lens : (batch size,)
    num_heads : int
    token_multiple : int
        T, the no. of packed rows, is padded up to a multiple of this.

    Returns
    -------
    list of NumPy arrays
        :class:`~gluon_bert.model.BERTEncoder`'s packed inputs: tokens,
        segments, positions (T,), valid_lens (batch size,) float32, head_index
        (batch size * num_heads, max_len), merge_index (T, num_heads); then
        row_of (batch size, max_len), the packed row of every position (0 at
        padding; ``row_of[:, 0]`` are the ``<cls>`` rows).
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

    ``pred_positions``, ``mlm_weights``, ``mlm_labels`` are the book's (batch
    size, no. of slots) fields; the slots are padded (weight 0) to a multiple
    of ``multiple``.  Returns indices (2, K) int32 (row and position of each
    slot), weights (K,) float32 and labels (K,) int32.
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

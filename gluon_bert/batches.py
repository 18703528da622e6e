"""Batches of the examples, as the book's DataLoader makes them:
:class:`DataIter` shuffles the examples into minibatches of the seven
fields on the host, :class:`Batch` makes MXNet arrays only when indexed,
:func:`shard_indices` gives each worker of a distributed job its part.
"""
import collections.abc

import numpy as onp

from .utils import GluonBertError, check_batch_size

__all__ = ['FIELDS', 'Batch', 'DataIter', 'shard_indices']

#: The seven fields of an example, in the book's order.
FIELDS = ('tokens', 'segments', 'valid_lens', 'pred_positions',
          'mlm_weights', 'mlm_labels', 'nsp_labels')


class Batch(collections.abc.Sequence):
    """A batch: the book's seven fields.

    ``host`` holds them as NumPy arrays; indexing or iterating gives
    ``mxnet.np`` arrays (on the CPU), made on first use: what the step cuts
    across devices with ``split_data``.  ``fields``: the MXNet arrays.
    """

    def __init__(self, fields, host):
        self.host = tuple(host)
        self._fields = None if fields is None else tuple(fields)

    @property
    def fields(self):
        """The seven fields as ``mxnet.np`` arrays (made once)."""
        if self._fields is None:
            from mxnet import np
            self._fields = tuple(np.array(a, dtype=a.dtype)
                                 for a in self.host)
        return self._fields

    def __getitem__(self, index):
        return self.fields[index]

    def __len__(self):
        return len(self.host)


class DataIter:
    """Minibatches of a :class:`WikiTextDataset`, like the book's DataLoader.

    Each pass reshuffles with NumPy's global RNG as Gluon's ``RandomSampler``
    does (the book's batch order) and keeps the last, smaller batch; a batch is
    the seven fields sliced in one step each (:class:`Batch`).

    Parameters
    ----------
    dataset : WikiTextDataset
        The examples of epoch 0.
    batch_size : int
    shuffle : bool
    shard : (rank, num_workers), optional
        Only this worker's share of every epoch (:func:`shard_indices`).
    resample : callable, optional
        ``resample(epoch) -> WikiTextDataset`` for epochs 1, 2, ... (e.g.
        :class:`ResampledEpochs`; :meth:`set_epoch` switches); without it every
        epoch reuses ``dataset``, as the book does.
    drop_last : bool
        Leave out the last, smaller batch (resampled epochs differ in size:
        it would give the graph a new shape every epoch).
    """

    def __init__(self, dataset, batch_size, shuffle=True, shard=None,
                 resample=None, drop_last=False):
        check_batch_size(batch_size)
        self.batch_size, self.shuffle = int(batch_size), shuffle
        self.drop_last = drop_last
        self.shard, self.resample = shard, resample
        self._first = dataset
        self.epoch = 0
        self._use(dataset)
        self.vocab = dataset.vocab

    def _use(self, dataset):
        self.dataset = dataset
        # The examples this iterator reads: all, or one worker's share
        self.indices = (onp.arange(len(dataset)) if self.shard is None
                        else shard_indices(len(dataset), *self.shard))

    def set_epoch(self, epoch):
        """Use the examples of ``epoch`` (epoch 0: the dataset given)."""
        if epoch != self.epoch and self.resample is not None:
            self._use(self._first if epoch == 0 else self.resample(epoch))
        self.epoch = epoch

    def __len__(self):
        if self.drop_last:
            return len(self.indices) // self.batch_size
        return -(-len(self.indices) // self.batch_size)

    def batch_order(self):
        """The example order of one pass (drawn from NumPy's RNG if
        shuffling)."""
        order = onp.arange(len(self.indices))
        if self.shuffle:
            onp.random.shuffle(order)
        return self.indices[order]

    def batches(self, order, start=0):
        """Yield the batches of ``order``, starting at batch ``start``.

        Each is a :class:`Batch`: the seven fields as NumPy arrays in
        ``.host``, as ``mxnet.np`` arrays when indexed or iterated.
        """
        arrays = [self.dataset.arrays[name] for name in FIELDS]
        end = (len(order) // self.batch_size * self.batch_size
               if self.drop_last else len(order))
        for i in range(start * self.batch_size, end, self.batch_size):
            idx = order[i:i + self.batch_size]
            host = tuple(a[idx] for a in arrays)
            yield Batch(None, host)

    def __iter__(self):
        return self.batches(self.batch_order())


def shard_indices(num_examples, rank, num_workers):
    """The examples of worker ``rank`` of ``num_workers``: every
    num_workers-th.

    All shards have the same size (the last ``num_examples % num_workers``
    examples are left out), so the workers run in step.
    """
    if not 0 <= rank < num_workers:
        raise GluonBertError(f'rank {rank} is not in [0, {num_workers})')
    usable = num_examples - num_examples % num_workers
    return onp.arange(usable)[rank::num_workers]

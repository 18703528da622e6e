"""Pretraining examples drawn from a prepared corpus as training streams.

The book builds all of WikiText-2's examples at once, as Python lists; a
corpus of any size is instead read from its memory-mapped shards
(:mod:`gluon_bert.corpus`) one batch at a time::

    epoch e: shards in a shuffled order, the pairs of each shard shuffled
        --> global batches of batch_size x workers pairs, worker r taking
            the r-th slice --> NSP pairs + MLM masks drawn for that batch

The draws are the book's: the second sentence is the true next one with
probability 0.5 (``Sampling.next_prob``), else a random sentence of a
random paragraph (of the same shard) that fits ``max_len`` beside the first
(the book drops a pair that does not fit: the same distribution of random
sentences); 15 % of the tokens (at least one) are
predicted, 80 % of them ``<mask>``, 10 % kept, 10 % a random token.  Every
batch is drawn from its own seed ``(seed, epoch, batch, rank)``, so a run
resumed at any batch repeats the uninterrupted one.  What differs from the
book, by design: a first sentence whose true next sentence does not fit
``max_len`` is left out before the draws (the book leaves out any pair too
long, after them), so half the pairs stay true next sentences; in the rare
case none of 8 random sentences fits, the last is cut to fit; the remainder
of an epoch smaller than one global batch is left out.
"""
import numpy as onp

from .batches import Batch
from .utils import GluonBertError

__all__ = ['CorpusStream', 'HELD_OUT_EVERY', 'draw_examples']

#: Without a held-out corpus, every HELD_OUT_EVERY-th paragraph of the
#: corpus (1 %) is held out for evaluation and never trained on.
HELD_OUT_EVERY = 100
#: Random second sentences drawn for a pair, the first that fits taken.
_TRIES = 8


def _ids(vocab):
    return {t: vocab[t] for t in ('<pad>', '<mask>', '<cls>', '<sep>')}


def _word_ranks(token_ids, candidates, keys, continuation):
    """Whole-word masking: the candidates ordered word by word (words in
    the order of ``keys``, the pieces of a word together), with each
    position's word's first and last rank in that order."""
    rows, length = token_ids.shape
    starts = candidates & ~(continuation[token_ids] & onp.roll(
        candidates, 1, axis=1))
    word = onp.cumsum(starts, axis=1) - 1                     # word of a piece
    word_key = onp.take_along_axis(keys, onp.maximum(word, 0), axis=1)
    word_key = onp.where(candidates, word_key, 2.0)
    position = onp.broadcast_to(onp.arange(length), (rows, length))
    order = onp.lexsort((position, word_key), axis=-1)
    word_sorted = onp.take_along_axis(word, order, axis=1)
    new_word = onp.ones_like(starts)
    new_word[:, 1:] = word_sorted[:, 1:] != word_sorted[:, :-1]
    rank = onp.broadcast_to(onp.arange(length), (rows, length))
    first = onp.maximum.accumulate(onp.where(new_word, rank, 0), axis=1)
    sizes = onp.zeros((rows, length + 1), 'int64')
    onp.add.at(sizes, (onp.repeat(onp.arange(rows), length),
                       onp.where(candidates, word, length).ravel()), 1)
    last = first + onp.take_along_axis(sizes, word_sorted.clip(0), 1) - 1
    return order, first, last


def _mlm(token_ids, candidates, valid_lens, rng, ids, vocab_size, sampling,
         continuation, max_preds):
    """Choose and replace the MLM positions of a batch in place; returns
    (positions, weights, labels), each (batch size, max_preds)."""
    rows, length = token_ids.shape
    num_preds = onp.maximum(1, onp.round(valid_lens * sampling.mask_prob))
    num_preds = onp.minimum(num_preds, candidates.sum(1))[:, None]
    keys = rng.random((rows, length))
    rank = onp.arange(length)[None]
    if continuation is None:
        order = onp.argsort(onp.where(candidates, keys, 2.0), axis=1,
                            kind='stable')
        chosen = rank < num_preds
    else:
        order, first, last = _word_ranks(token_ids, candidates, keys,
                                         continuation)
        # whole words while they fit (the first word even if it does not)
        chosen = (rank < num_preds) & ((last < num_preds) | (first == 0))
    positions = onp.sort(onp.where(chosen, order, length), axis=1)
    positions = positions[:, :max_preds]
    taken = positions < length
    positions = onp.where(taken, positions, 0)
    row = onp.arange(rows)[:, None]
    labels = token_ids[row, positions]
    u = rng.random((rows, max_preds))
    randoms = rng.integers(0, vocab_size, (rows, max_preds))
    # 80 % <mask>, 10 % kept, 10 % a random token
    replaced = onp.where(u < 0.8, ids['<mask>'],
                         onp.where(u < 0.9, labels, randoms))
    token_ids[row, positions] = onp.where(taken, replaced, labels)
    return (positions.astype('int32'), taken.astype('float32'),
            onp.where(taken, labels, 0).astype('int32'))


def draw_examples(shard, firsts, negatives, max_len, rng, ids, vocab_size,
                  sampling, continuation=None):
    """The seven fields of the examples whose first sentences are
    ``firsts`` (sentence indices of one shard's arrays ``shard``), drawn
    with the NumPy Generator ``rng``; ``negatives``: the paragraphs a random
    second sentence comes from."""
    tokens, sentences, paragraphs = shard
    n = len(firsts)
    start_a = sentences[firsts]
    len_a = sentences[firsts + 1] - start_a
    is_next = rng.random(n) < sampling.next_prob
    # A random sentence of a random paragraph: the first of _TRIES draws that
    # fits max_len beside the first sentence (the book drops a pair that
    # does not fit, which keeps the same distribution of random sentences)
    paragraph = negatives[rng.integers(0, len(negatives), (n, _TRIES))]
    size = paragraphs[paragraph + 1] - paragraphs[paragraph]
    other = paragraphs[paragraph] + (rng.random((n, _TRIES)) * size).astype(
        'int64')
    fits = sentences[other + 1] - sentences[other] + len_a[:, None] + 3 <= \
        max_len
    other = other[onp.arange(n), onp.argmax(fits, axis=1)]
    seconds = onp.where(is_next, firsts + 1, other)
    start_b = sentences[seconds]
    len_b = onp.minimum(sentences[seconds + 1] - start_b, max_len - 3 - len_a)
    valid_lens = len_a + len_b + 3          # <cls> a <sep> b <sep>
    pos = onp.arange(max_len)[None]
    la, lb = len_a[:, None], len_b[:, None]
    in_a = (pos >= 1) & (pos <= la)
    in_b = (pos >= la + 2) & (pos < la + 2 + lb)
    source = onp.where(in_a, start_a[:, None] + pos - 1,
                       onp.where(in_b, start_b[:, None] + pos - la - 2, 0))
    token_ids = onp.where(in_a | in_b, tokens[source.ravel()].reshape(
        n, max_len), ids['<pad>']).astype('int32')
    row = onp.arange(n)
    token_ids[:, 0] = ids['<cls>']
    token_ids[row, len_a + 1] = ids['<sep>']
    token_ids[row, valid_lens - 1] = ids['<sep>']
    segments = ((pos >= la + 2) & (pos < valid_lens[:, None])).astype('int32')
    # a literal <cls>/<sep> in the text is never predicted
    candidates = (in_a | in_b) & (token_ids != ids['<cls>']) & (
        token_ids != ids['<sep>'])
    positions, weights, labels = _mlm(
        token_ids, candidates, valid_lens, rng, ids, vocab_size, sampling,
        continuation, round(max_len * sampling.mask_prob))
    return (token_ids, segments, valid_lens.astype('float32'), positions,
            weights, labels, is_next.astype('float32'))


class CorpusStream:
    """Batches of a prepared corpus, an epoch at a time, resumable.

    Parameters
    ----------
    corpus : PreparedCorpus
    batch_size, max_len : int
    seed : int
        With the epoch, orders the shards and pairs and draws the examples.
    sampling : Sampling
    shard : (rank, num_workers), optional
        This worker's slice of every global batch.
    part : str
        ``train`` (every paragraph but the held-out ones), ``held_out``
        (only those) or ``all`` (a separate held-out corpus exists).

    Read like :class:`~gluon_bert.batches.DataIter` by ``train_bert``:
    :meth:`set_epoch`, :meth:`batch_order`, :meth:`batches`.
    """

    def __init__(self, corpus, batch_size, max_len, seed=0, sampling=None,
                 shard=None, part='all'):
        from .dataset import BOOK_SAMPLING
        self.corpus, self.vocab = corpus, corpus.vocab
        self.batch_size, self.max_len = int(batch_size), int(max_len)
        self.seed, self.sampling = int(seed), sampling or BOOK_SAMPLING
        self.rank, self.workers = shard or (0, 1)
        self.part, self.epoch = part, 0
        self._ids = _ids(self.vocab)
        continuation = self.vocab.continuation_ids()
        self._continuation = None
        if self.sampling.whole_word and continuation:
            self._continuation = onp.zeros(len(self.vocab), bool)
            self._continuation[continuation] = True
        shards = corpus.manifest['shards']
        # the corpus-wide number of each shard's first paragraph
        self._first_paragraph = onp.cumsum(
            [0] + [s['paragraphs'] for s in shards])
        self._counts = [len(self._firsts(i)) for i in range(len(shards))]
        self.num_pairs = sum(self._counts)
        per_batch = self.batch_size * self.workers
        if part == 'held_out' and not self.num_pairs:
            raise GluonBertError(
                f'the corpus has too few paragraphs to hold out every '
                f'{HELD_OUT_EVERY}th for evaluation: name held-out text with '
                'valid_corpus', ['valid_corpus'])
        if self.num_pairs < per_batch:
            raise GluonBertError(
                f'the corpus makes {self.num_pairs} sentence pairs of '
                f'max_len {self.max_len} ({part}), fewer than one batch of '
                f'{per_batch}: give more text, or lower batch_size',
                ['batch_size', 'max_len'])

    def _shard(self, i):
        return self.corpus.shard_arrays(self.corpus.manifest['shards'][i])

    def _used(self, i, paragraphs):
        """Which paragraphs of shard i this part reads."""
        index = self._first_paragraph[i] + onp.arange(len(paragraphs) - 1)
        held = index % HELD_OUT_EVERY == HELD_OUT_EVERY - 1
        return {'all': onp.ones_like(held), 'train': ~held,
                'held_out': held}[self.part]

    def _firsts(self, i):
        """The first sentences of shard i's pairs: a next sentence in the
        same paragraph, both fitting max_len together."""
        _, sentences, paragraphs = self._shard(i)
        lengths = onp.diff(sentences)
        paragraph = onp.repeat(onp.arange(len(paragraphs) - 1),
                               onp.diff(paragraphs))
        ok = (paragraph[:-1] == paragraph[1:]) & (
            lengths[:-1] + lengths[1:] + 3 <= self.max_len)
        ok &= self._used(i, paragraphs)[paragraph[:-1]]
        return onp.flatnonzero(ok)

    def __len__(self):
        return self.num_pairs // (self.batch_size * self.workers)

    def set_epoch(self, epoch):
        self.epoch = int(epoch)

    def batch_order(self):
        """The epoch's order (drawn from the seed, not NumPy's global RNG)."""
        return self.epoch

    def _pairs(self, epoch, skip):
        """Yield (shard, first sentences) of the epoch's order, from pair
        number ``skip`` on."""
        rng = onp.random.default_rng([self.seed, epoch, 0])
        for i in rng.permutation(len(self._counts)):
            if skip >= self._counts[i]:
                skip -= self._counts[i]
                continue
            firsts = self._firsts(i)
            order = onp.random.default_rng([self.seed, epoch, 1, i]
                                           ).permutation(len(firsts))
            yield i, firsts[order[skip:]]
            skip = 0

    def batches(self, order, start=0):
        """Yield this worker's batches of epoch ``order`` from batch
        ``start`` on, each a :class:`~gluon_bert.batches.Batch`."""
        epoch, per_batch = order, self.batch_size * self.workers
        pieces, held = [], 0
        number = start
        for i, firsts in self._pairs(epoch, start * per_batch):
            while len(firsts):
                take = firsts[:per_batch - held]
                firsts = firsts[len(take):]
                pieces.append((i, take))
                held += len(take)
                if held == per_batch:
                    if number >= len(self):
                        return
                    yield self._batch(epoch, number, pieces)
                    pieces, held, number = [], 0, number + 1

    def _batch(self, epoch, number, pieces):
        """This worker's slice of one global batch, its examples drawn."""
        rng = onp.random.default_rng([self.seed, epoch, 2, number,
                                      self.rank])
        lo, hi = self.rank * self.batch_size, (self.rank + 1) * self.batch_size
        fields, at = [], 0
        for i, firsts in pieces:
            mine = firsts[max(lo - at, 0):max(hi - at, 0)]
            at += len(firsts)
            if len(mine):
                fields.append(self._draw(i, mine, rng))
        return Batch(None, [onp.concatenate(f) for f in zip(*fields)])

    def _draw(self, i, firsts, rng):
        shard = self._shard(i)
        negatives = onp.flatnonzero(self._used(i, shard[2]))
        return draw_examples(shard, firsts, negatives, self.max_len, rng,
                             self._ids, len(self.vocab), self.sampling,
                             self._continuation)

    def __iter__(self):
        return self.batches(self.batch_order())

    def held_out_batches(self, batch_size, limit):
        """Batches of the first ``limit`` pairs of epoch 0 (all of them when
        fewer), the last one smaller: what evaluation reads."""
        rng = onp.random.default_rng([self.seed, 0, 3])
        left = limit
        for i, firsts in self._pairs(0, 0):
            firsts = firsts[:left]
            for k in range(0, len(firsts), batch_size):
                yield Batch(None, self._draw(i, firsts[k:k + batch_size],
                                             rng))
            left -= len(firsts)
            if left <= 0:
                return

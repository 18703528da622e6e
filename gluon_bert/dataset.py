"""WikiText-2 for BERT pretraining: NSP + MLM examples, padding, batches.

The examples are exactly ``d2l._WikiTextDataset``'s (same vocabulary, pairs
and masked positions: Python's ``random`` is consumed in the book's order),
built as plain lists, padded into one NumPy array per field and cached on
disk.  Finding and reading the files is :mod:`gluon_bert.wikitext`'s::

    wiki.<split>.tokens --read_wiki--> paragraphs (lists of sentence strings)
        --WikiTextDataset--> vocab + 7 padded arrays --DataIter--> batches
"""
import dataclasses
import hashlib
import itertools
import logging
import os
import random

import numpy as onp

from .utils import GluonBertError, check_batch_size, file_digest
from .vocab import Vocab, tokenize
# The examples' on-disk cache: gluon_bert.cache
from .cache import cache_key, load_cache, save_cache
# The batches of the examples: gluon_bert.batches
from .batches import FIELDS, Batch, DataIter, shard_indices
# Where the text comes from, and the book's reader: gluon_bert.wikitext
from .wikitext import (default_cache_dir, read_paragraphs, read_wiki,
                       resolve_data_dir, wiki_sentences)

__all__ = ['read_wiki', 'get_tokens_and_segments', 'WikiTextDataset',
           'Sampling', 'BOOK_SAMPLING', 'wiki_sentences',
           'tokenize_paragraphs',
           'DataIter', 'Batch', 'ResampledEpochs', 'load_data_wiki',
           'load_dataset', 'load_heldout', 'EVAL_SEED', 'EVAL_BATCH_SIZE',
           'shard_indices', 'resolve_data_dir', 'default_cache_dir',
           'RESERVED_TOKENS', 'FIELDS']

logger = logging.getLogger(__name__)

#: The special tokens the book reserves in the BERT vocabulary.
RESERVED_TOKENS = ['<pad>', '<mask>', '<cls>', '<sep>']
_DTYPES = ('int32', 'int32', 'float32', 'int32', 'float32', 'int32',
           'float32')


@dataclasses.dataclass(frozen=True)
class Sampling:
    """How the NSP pairs and MLM positions are drawn.

    Parameters
    ----------
    mask_prob : float
        Share of every sequence's tokens predicted (the book: 0.15).
    next_prob : float
        Probability that the second sentence is the true next one (the book:
        0.5; 1.0 with NSP off).
    whole_word : bool
        With a WordPiece vocabulary, mask all pieces of a chosen word.
    """
    mask_prob: float = 0.15
    next_prob: float = 0.5
    whole_word: bool = False

    def key(self):
        """What the example cache is keyed by (the book's: nothing)."""
        return [] if self == BOOK_SAMPLING else dataclasses.astuple(self)


#: The book's draws.
BOOK_SAMPLING = Sampling()


def tokenize_paragraphs(paragraphs, vocab=None):
    """Paragraphs of sentence strings -> paragraphs of token lists: words
    split on whitespace, then cut into the pieces of a WordPiece ``vocab``
    (:meth:`~gluon_bert.vocab.Vocab.split`)."""
    paragraphs = [tokenize(paragraph, token='word')
                  for paragraph in paragraphs]
    if vocab is not None and vocab.kind != 'word':
        paragraphs = [[vocab.split(sentence) for sentence in paragraph]
                      for paragraph in paragraphs]
    return paragraphs


# --------------------------------------------------------------------------
# Examples (the book's functions, consuming `random` in the same order)
# --------------------------------------------------------------------------
def get_tokens_and_segments(tokens_a, tokens_b=None):
    """Tokens of a BERT input sequence and their segment IDs.

    ``['<cls>'] + tokens_a + ['<sep>'] (+ tokens_b + ['<sep>'])`` with
    segment 0 for the first part and 1 for the second.
    """
    tokens = ['<cls>'] + list(tokens_a) + ['<sep>']
    # 0 and 1 are marking segment A and B, respectively
    segments = [0] * (len(tokens_a) + 2)
    if tokens_b is not None:
        tokens += list(tokens_b) + ['<sep>']
        segments += [1] * (len(tokens_b) + 1)
    return tokens, segments


def _get_nsp_data_from_paragraph(paragraph, paragraphs, max_len, rng=random,
                                 next_prob=0.5):
    """NSP pairs of one paragraph: 50 % (``next_prob``) the true next
    sentence, else a random one.

    ``rng`` is Python's ``random`` module (the book's draws) or a
    ``random.Random`` of its own (a re-paired epoch).
    """
    nsp_data = []
    rand, choice = rng.random, rng.choice
    for i in range(len(paragraph) - 1):
        tokens_a, tokens_b = paragraph[i], paragraph[i + 1]
        if rand() < next_prob:
            is_next = True
        else:
            # A random sentence of a random paragraph
            tokens_b = choice(choice(paragraphs))
            is_next = False
        # Consider 1 '<cls>' token and 2 '<sep>' tokens
        if len(tokens_a) + len(tokens_b) + 3 > max_len:
            continue
        nsp_data.append((tokens_a, tokens_b, is_next))
    return nsp_data


_BIT_LENGTHS = [n.bit_length() for n in range(256)]


def _shuffle(x, getrandbits):
    """``random.shuffle(x)``, inlined: the same draws, half the overhead.

    CPython's shuffle draws ``_randbelow(i + 1)`` for i = len(x)-1 .. 1, each
    by rejection sampling on ``getrandbits(bit_length)``; the parity tests
    against d2l check that this stays true.
    """
    for i in range(len(x) - 1, 0, -1):
        n = i + 1
        k = _BIT_LENGTHS[n] if n < 256 else n.bit_length()
        j = getrandbits(k)
        while j >= n:
            j = getrandbits(k)
        x[i], x[j] = x[j], x[i]


def _whole_words(candidates, token_ids, continuation):
    """``candidates`` grouped into words: a position whose token continues
    a word (a ``##`` piece) joins the position before it."""
    words, last = [], None
    for position in candidates:
        if (words and position == last + 1
                and token_ids[position] in continuation):
            words[-1].append(position)
        else:
            words.append([position])
        last = position
    return words


def _choose_whole_words(candidates, token_ids, continuation, num_mlm_preds,
                        getrandbits):
    """Whole words, in random order, up to ``num_mlm_preds`` positions
    (a word that would overshoot is skipped, as BERT's
    ``create_pretraining_data.py`` does)."""
    words = _whole_words(candidates, token_ids, continuation)
    _shuffle(words, getrandbits)
    chosen = []
    for word in words:
        if len(chosen) >= num_mlm_preds:
            break
        if len(chosen) + len(word) <= num_mlm_preds:
            chosen.extend(word)
    return chosen


def _get_mlm_data_from_ids(token_ids, candidate_pred_positions, vocab_size,
                           mask_id, rand, getrandbits, choice,
                           mask_prob=0.15, continuation=None):
    """Choose MLM positions and replacements, as the book does: ``mask_prob``
    of the length (at least 1) among ``candidate_pred_positions``, 80 %
    ``<mask>``, 10 % kept, 10 % a random token (whole words given
    ``continuation``, the ids of ``##`` pieces).  Changes ``token_ids`` in
    place; returns the sorted ``(position, original id)`` pairs.
    """
    num_mlm_preds = max(1, round(len(token_ids) * mask_prob))
    pred_positions_and_labels = []
    if continuation:
        chosen = _choose_whole_words(candidate_pred_positions, token_ids,
                                     continuation, num_mlm_preds,
                                     getrandbits)
    else:
        # Shuffle for getting 15% random tokens for prediction
        _shuffle(candidate_pred_positions, getrandbits)
        chosen = candidate_pred_positions[:num_mlm_preds]
    for position in chosen:
        original = token_ids[position]
        # 80% of the time: replace the word with the '<mask>' token
        if rand() < 0.8:
            token_ids[position] = mask_id
        # 10% of the time: keep the word unchanged
        elif rand() < 0.5:
            pass
        # 10% of the time: replace the word with a random word
        # (`choice(range(n))` draws exactly as `choice(vocab.idx_to_token)`)
        else:
            token_ids[position] = choice(range(vocab_size))
        pred_positions_and_labels.append((position, original))
    pred_positions_and_labels.sort()
    return pred_positions_and_labels


def _to_ids(paragraphs, vocab):
    """Tokenized paragraphs -> the same nesting of vocabulary indices."""
    unk, lookup = vocab.unk, vocab.token_to_idx.get
    # One dictionary of every token seen, so the mapping runs at C speed
    seen = set(itertools.chain.from_iterable(
        itertools.chain.from_iterable(paragraphs)))
    get = {token: lookup(token, unk) for token in seen}.__getitem__
    return [[list(map(get, sentence)) for sentence in paragraph]
            for paragraph in paragraphs]


def _build_examples(paragraphs, max_len, vocab, rng=random,
                    sampling=BOOK_SAMPLING):
    """All examples of tokenized ``paragraphs``: a dict of seven NumPy arrays,
    ``rng`` consumed as the book's code consumes ``random`` (the NSP pairs of
    every paragraph, then the MLM positions of every pair).
    """
    return _build_examples_from_ids(_to_ids(paragraphs, vocab), max_len,
                                    vocab, rng, sampling)


def _build_examples_from_ids(paragraphs, max_len, vocab, rng=random,
                             sampling=BOOK_SAMPLING):
    """:func:`_build_examples` on paragraphs already mapped to token ids."""
    # Get data for the next sentence prediction task
    examples = []
    for paragraph in paragraphs:
        examples.extend(_get_nsp_data_from_paragraph(
            paragraph, paragraphs, max_len, rng, sampling.next_prob))
    if not examples:
        raise GluonBertError(
            f'max_len={max_len} is too small: no sentence pair fits in it '
            'with <cls> and two <sep>; use a larger max_len (the book uses '
            '64)')
    n = len(examples)
    max_num_mlm_preds = round(max_len * sampling.mask_prob)
    arrays = {name: onp.zeros((n, max_len) if name in ('tokens', 'segments')
                              else (n,) if name in ('valid_lens', 'nsp_labels')
                              else (n, max_num_mlm_preds), dtype=dtype)
              for name, dtype in zip(FIELDS, _DTYPES)}
    arrays['tokens'][:] = vocab['<pad>']
    cls, sep, mask = vocab['<cls>'], vocab['<sep>'], vocab['<mask>']
    tokens_out, segments_out = arrays['tokens'], arrays['segments']
    positions_out = arrays['pred_positions']
    weights_out = arrays['mlm_weights']
    labels_out, valid_lens = arrays['mlm_labels'], arrays['valid_lens']
    nsp_out, size = arrays['nsp_labels'], len(vocab)
    rand, getrandbits, choice = rng.random, rng.getrandbits, rng.choice
    specials = {cls, sep}
    continuation = (frozenset(vocab.continuation_ids())
                    if sampling.whole_word else None)
    # Get data for the masked language model task
    for k, (ids_a, ids_b, is_next) in enumerate(examples):
        token_ids = [cls] + ids_a + [sep] + ids_b + [sep]
        length, len_a = len(token_ids), len(ids_a)
        if specials.isdisjoint(ids_a) and specials.isdisjoint(ids_b):
            candidates = [*range(1, len_a + 1), *range(len_a + 2, length - 1)]
        else:  # a literal '<cls>'/'<sep>' in the text is never predicted
            candidates = [i for i, t in enumerate(token_ids)
                          if t != cls and t != sep]
        positions_and_labels = _get_mlm_data_from_ids(
            token_ids, candidates, size, mask, rand, getrandbits, choice,
            sampling.mask_prob, continuation)
        tokens_out[k, :length] = token_ids
        segments_out[k, len_a + 2:length] = 1
        valid_lens[k] = length
        m = len(positions_and_labels)
        if m:
            positions_out[k, :m], labels_out[k, :m] = zip(
                *positions_and_labels)
            weights_out[k, :m] = 1.0
        nsp_out[k] = is_next
    return arrays


# --------------------------------------------------------------------------
# Dataset and batches
# --------------------------------------------------------------------------
class WikiTextDataset:
    """The book's pretraining examples as a Gluon-style dataset.

    Parameters
    ----------
    paragraphs : list of list of str
        Output of :func:`read_wiki`.
    max_len : int
        Length every example is padded to (``<cls>`` and ``<sep>`` included).
    vocab : Vocab, optional
        Built from ``paragraphs`` (``min_freq`` plus the reserved tokens) when
        not given; pass the training vocabulary for held-out splits.
    min_freq : int
    sampling : Sampling

    Each item is the book's seven fields (tokens, segments, valid length,
    prediction positions, MLM weights, MLM labels, NSP label); the whole
    fields are ``self.arrays[name]``.
    """

    def __init__(self, paragraphs, max_len, vocab=None, min_freq=5,
                 sampling=BOOK_SAMPLING):
        if int(max_len) != max_len or max_len < 1:
            raise GluonBertError(f'max_len must be a positive integer, got '
                                 f'{max_len!r}')
        # Input `paragraphs[i]` is a list of sentence strings; output
        # `paragraphs[i]` is a list of sentences, each a list of tokens
        paragraphs = tokenize_paragraphs(paragraphs, vocab)
        if vocab is None:
            sentences = [sentence for paragraph in paragraphs
                         for sentence in paragraph]
            vocab = Vocab(sentences, min_freq=min_freq,
                          reserved_tokens=RESERVED_TOKENS)
        missing = [t for t in RESERVED_TOKENS if t not in vocab]
        if missing:
            raise GluonBertError(f'the vocabulary lacks {missing}: build it '
                                 'with reserved_tokens=RESERVED_TOKENS')
        self.vocab, self.max_len = vocab, int(max_len)
        self.arrays = _build_examples(paragraphs, self.max_len, vocab,
                                      sampling=sampling)

    @classmethod
    def _from_arrays(cls, arrays, vocab, max_len):
        self = cls.__new__(cls)
        self.arrays, self.vocab, self.max_len = arrays, vocab, max_len
        return self

    def __getitem__(self, idx):
        return tuple(self.arrays[name][idx] for name in FIELDS)

    def __len__(self):
        return len(self.arrays['tokens'])


class ResampledEpochs:
    """New NSP pairs and MLM masks for every pass over the text.

    The book draws its examples once, so every epoch repeats the same pairs and
    masked words.  ``ResampledEpochs(...)(epoch)`` runs the book's recipe again
    (shuffle the paragraphs, draw pairs, draw masks) with a ``random.Random``
    seeded from ``(seed, epoch)``: the same distributions, new draws,
    reproducible in any order.  The vocabulary (epoch 0's) is not rebuilt.
    """

    def __init__(self, data_dir, max_len, vocab, seed=0, split='train',
                 sampling=BOOK_SAMPLING):
        paragraphs = tokenize_paragraphs(read_paragraphs(data_dir, split),
                                         vocab)
        self._paragraphs = _to_ids(paragraphs, vocab)
        self.vocab, self.max_len, self.seed = vocab, int(max_len), int(seed)
        self.sampling = sampling

    def rng(self, epoch):
        """The ``random.Random`` that draws epoch ``epoch``'s examples."""
        return random.Random(f'gluon_bert:{self.seed}:{int(epoch)}')

    def __call__(self, epoch):
        """The examples of ``epoch`` as a :class:`WikiTextDataset`."""
        rng = self.rng(epoch)
        paragraphs = list(self._paragraphs)
        rng.shuffle(paragraphs)
        arrays = _build_examples_from_ids(paragraphs, self.max_len,
                                          self.vocab, rng, self.sampling)
        return WikiTextDataset._from_arrays(arrays, self.vocab, self.max_len)


def load_dataset(max_len, data_dir=None, split='train', vocab=None,
                 min_freq=5, cache_dir=None, use_cache=True, download=True,
                 verbose=False, sampling=BOOK_SAMPLING):
    """Build (or load from the cache) the examples of one split.

    The cache is keyed by the file's SHA-1, ``max_len``, the state of Python's
    ``random``, the vocabulary and ``sampling``; after a hit ``random`` is left
    as a cold build leaves it.  Entries live in ``cache_dir`` (default
    :func:`default_cache_dir`); one failing its checksum is rebuilt.
    """
    data_dir = resolve_data_dir(data_dir, split, download, cache_dir)
    file_name = os.path.join(data_dir, f'wiki.{split}.tokens')
    vocab_key = ['min_freq', min_freq]
    if vocab is not None:
        vocab_key = ['vocab', vocab.kind, hashlib.sha1(
            '\n'.join(vocab.idx_to_token).encode()).hexdigest()]
    vocab_key += sampling.key()
    rng_state = random.getstate()
    path = None
    if use_cache:
        key = cache_key(file_digest(file_name), split, max_len, rng_state,
                        vocab_key)
        path = os.path.join(cache_dir or default_cache_dir(), 'examples',
                            f'{split}-{max_len}-{key[:20]}.npz')
        if os.path.exists(path):
            hit = load_cache(path)
            if hit is not None:
                arrays, cached_vocab, rng_after = hit
                random.setstate(rng_after)
                if verbose:
                    logger.info('Loaded %d %s examples from the cache %s',
                                len(arrays['tokens']), split, path)
                return WikiTextDataset._from_arrays(
                    arrays, vocab or cached_vocab, max_len)
    paragraphs = read_wiki(data_dir, split)
    dataset = WikiTextDataset(paragraphs, max_len, vocab=vocab,
                              min_freq=min_freq, sampling=sampling)
    if path is not None:
        try:
            save_cache(path, dataset.arrays, dataset.vocab, random.getstate())
        except OSError as e:  # a read-only cache must not stop training
            logger.warning('could not write the example cache %s: %s', path,
                           e)
    return dataset


#: How held-out examples are drawn and batched for evaluation, by the
#: evaluate command and by pretrain --eval-every alike.
EVAL_SEED, EVAL_BATCH_SIZE = 0, 256


def load_heldout(max_len, vocab, split='valid', data_dir=None,
                 seed=EVAL_SEED, batch_size=EVAL_BATCH_SIZE, cache_dir=None,
                 use_cache=True):
    """Batches of a held-out split for evaluation: the book's examples of
    ``split`` with the training ``vocab``, drawn after ``random.seed(seed)``,
    in order.  Python's ``random`` is left as it was.
    """
    state = random.getstate()
    try:
        random.seed(seed)
        dataset = load_dataset(max_len, data_dir, split, vocab,
                               cache_dir=cache_dir, use_cache=use_cache)
    finally:
        random.setstate(state)
    return DataIter(dataset, batch_size, shuffle=False)


def load_data_wiki(batch_size, max_len, data_dir=None, split='train',
                   vocab=None, cache_dir=None, use_cache=True, download=True,
                   sampling=BOOK_SAMPLING):
    """Load WikiText-2 for BERT pretraining, as the book's ``load_data_wiki``.

    Parameters
    ----------
    batch_size, max_len : int
        The book's: pairs per minibatch, tokens per example (padded).
    data_dir : str, optional
        The WikiText-2 folder (default: found by
        :func:`~gluon_bert.wikitext.resolve_data_dir`: ``GLUON_BERT_DATA``,
        the book's and the README's folders, the cache, a download).
    split : str
        ``train``, ``valid`` or ``test``.
    vocab : Vocab, optional
        Another split's vocabulary (default: built from this split).
    cache_dir, use_cache, download
        Where examples are cached, whether to, whether to download.
    sampling : Sampling
        Masking and next-sentence probabilities (the book's by default).

    Returns
    -------
    (DataIter, Vocab)
        Shuffled minibatches of the seven fields, and the vocabulary.
    """
    check_batch_size(batch_size)  # before the (slow) examples are built
    dataset = load_dataset(max_len, data_dir, split, vocab,
                           cache_dir=cache_dir, use_cache=use_cache,
                           download=download, sampling=sampling)
    train_iter = DataIter(dataset, batch_size, shuffle=True)
    return train_iter, dataset.vocab

"""Tokenization and the vocabulary, with d2l's index order.

``Vocab`` gives every token ``d2l.Vocab``'s index (v1.0.3 sorts the kept
tokens), and saves to and loads from JSON (no pickle).  A WordPiece
vocabulary (:func:`train_wordpiece`, with Hugging Face ``tokenizers``) cuts
words into pieces (``playing`` -> ``play ##ing``) in plain Python
(:meth:`Vocab.split`), so a saved model needs ``tokenizers`` only to learn
its vocabulary.
"""
import collections
import itertools
import json
import os
import re

__all__ = ['tokenize', 'wikitext_tokenize', 'Vocab', 'train_wordpiece',
           'wordpiece_split', 'CONTINUATION', 'VOCAB_KINDS']

_FORMAT = 'gluon_bert.vocab/1'
#: How a WordPiece piece that continues a word starts (BERT's).
CONTINUATION = '##'
#: Longer words are one ``<unk>`` (BERT's and ``tokenizers``' limit).
_MAX_WORD_CHARS = 100
#: The kinds of vocabulary: the book's words, or WordPiece subwords.
VOCAB_KINDS = ('word', 'wordpiece')


def tokenize(lines, token='word'):
    """Split text lines into word (whitespace) or character tokens: a list of
    token lists.
    """
    if token == 'word':
        return [line.split() for line in lines]
    if token == 'char':
        return [list(line) for line in lines]
    raise ValueError(f"unknown token type {token!r}: use 'word' or 'char'")


# Typographic and Penn Treebank spellings -> WikiText-2's
_QUOTES = str.maketrans({'\u2019': "'", '\u2018': "'", '\u201c': '"',
                         '\u201d': '"'})
_PTB = [(re.compile(r"``|''"), '"'), (re.compile(r'-LRB-'), '('),
        (re.compile(r'-RRB-'), ')'),
        (re.compile(r'(?<=\s)--(?=\s)'), '\u2014'),
        # PTB splits "doesn't" as "does n't", "can't" as "ca n't"
        (re.compile(r"(?<=\w) n't\b", re.I), "n't")]
_RULES = [
    # WikiText-2 splits it as "doesn 't", "can 't"
    (re.compile(r"(?<=n)'t\b", re.I), " 't"),
    (re.compile(r"(?<=\w)'(s|re|ve|ll|d|m)\b", re.I), r" '\1"),
    # Inside numbers and words WikiText-2 writes @,@ @.@ @-@
    (re.compile(r'(?<=\d),(?=\d{3}(?!\d))'), ' @,@ '),
    (re.compile(r'(?<=\d)\.(?=\d)'), ' @.@ '),
    (re.compile(r'(?<=\w)-(?=\w)'), ' @-@ '),
    (re.compile(r'(@[-,.]@|\.\.\.|[,;:!?()\[\]{}"$%&/\u2014\u2013\u2026])'),
     r' \1 '),
]
#: Words WikiText-2 keeps with their final period.
_ABBREVIATIONS = frozenset(
    'mr. mrs. ms. dr. st. jr. sr. vs. inc. co. ltd. no. e.g. i.e. a.m. '
    'p.m.'.split())
_CLITICS = frozenset(["'s", "'re", "'ve", "'ll", "'d", "'m", "'t"])


def wikitext_tokenize(text):
    """Lower-cased tokens of raw English text, split as WikiText-2 is.

    WikiText-2 (and so the book's vocabulary) writes ``doesn 't``, ``role @-@
    playing``, ``1 @,@ 000`` and separates punctuation; raw text and Penn
    Treebank text (``does n't``) are rewritten so that their words are found.
    """
    text = text.translate(_QUOTES)
    for pattern, replacement in _PTB + _RULES:
        text = pattern.sub(replacement, text)
    tokens = []
    for token in text.split():
        token, end = token.lower(), []
        if (token.endswith('.') and len(token) > 1
                and token not in _ABBREVIATIONS and '.' not in token[:-1]):
            token, end = token[:-1], ['.']
        if token.startswith("'") and len(token) > 1 and (
                token not in _CLITICS):
            tokens.append("'")
            token = token[1:]
        if token.endswith("'") and len(token) > 1:
            token, end = token[:-1], ["'"] + end
        tokens.append(token)
        tokens.extend(end)
    return tokens


class Vocab:
    """Vocabulary for text: token <-> index.

    Parameters
    ----------
    tokens : list of str or list of list of str
        The corpus (a list of token lists is flattened).
    min_freq : int
        Rarer tokens are left out (they map to ``<unk>``).
    reserved_tokens : list of str
        Always kept (e.g. ``'<pad>'``).

    The kept, ``'<unk>'`` and reserved tokens are sorted as ``d2l.Vocab`` does,
    so indices match the book's.
    """

    def __init__(self, tokens=(), min_freq=0, reserved_tokens=()):
        tokens = list(tokens)
        # Flatten a 2D list if needed
        if tokens and isinstance(tokens[0], (list, tuple)):
            tokens = itertools.chain.from_iterable(tokens)
        self._build(collections.Counter(tokens), min_freq, reserved_tokens)

    @classmethod
    def from_counts(cls, counts, min_freq=0, reserved_tokens=()):
        """The vocabulary ``Vocab(tokens, min_freq, reserved_tokens)`` makes,
        from the tokens' counts (``{token: count}``, as a corpus too large
        for a list of its tokens is counted)."""
        vocab = cls.__new__(cls)
        vocab._build(collections.Counter(counts), min_freq, reserved_tokens)
        return vocab

    def _build(self, counter, min_freq, reserved_tokens):
        # Sorted by frequency, most frequent first (stable, like d2l)
        self.token_freqs = sorted(counter.items(), key=lambda x: x[1],
                                  reverse=True)
        self.idx_to_token = sorted(set(['<unk>'] + list(reserved_tokens) + [
            token for token, freq in self.token_freqs if freq >= min_freq]))
        self.token_to_idx = {token: idx
                             for idx, token in enumerate(self.idx_to_token)}
        self.kind, self._pieces = 'word', {}

    def __len__(self):
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        if not isinstance(tokens, (list, tuple)):
            return self.token_to_idx.get(tokens, self.unk)
        return [self.__getitem__(token) for token in tokens]

    def __contains__(self, token):
        return token in self.token_to_idx

    def to_tokens(self, indices):
        """Map an index, or a sequence of indices, back to tokens."""
        if hasattr(indices, '__len__'):
            return [self.idx_to_token[int(index)] for index in indices]
        return self.idx_to_token[int(indices)]

    def split(self, words):
        """The vocabulary's tokens for a list of words: the words themselves
        for a word vocabulary, their WordPiece pieces for a subword one (a
        word no piece sequence spells is one ``<unk>``)."""
        if self.kind == 'word':
            return list(words)
        cache, out = self._pieces, []
        for word in words:
            pieces = cache.get(word)
            if pieces is None:
                pieces = cache[word] = wordpiece_split(word, self.token_to_idx)
            out.extend(pieces)
        return out

    def count_unknown(self, words):
        """How many of ``words`` the vocabulary cannot spell: they become
        ``<unk>`` (a word ``<unk>`` in the text is not counted)."""
        if self.kind == 'word':
            return sum(word not in self.token_to_idx for word in words)
        return sum(self.split([word]) == ['<unk>'] for word in words
                   if word != '<unk>')

    def continuation_ids(self):
        """Sorted ids of the pieces that continue a word (none for a word
        vocabulary): what whole-word masking keeps with the piece before."""
        if self.kind == 'word':
            return []
        return [i for i, t in enumerate(self.idx_to_token)
                if t.startswith(CONTINUATION) and len(t) > len(CONTINUATION)]

    @property
    def unk(self):
        """Index of the unknown token ``'<unk>'``."""
        return self.token_to_idx['<unk>']

    # -- persistence --------------------------------------------------------
    def to_dict(self):
        data = {'format': _FORMAT, 'idx_to_token': self.idx_to_token,
                'token_freqs': [[t, f] for t, f in self.token_freqs]}
        if self.kind != 'word':
            data['kind'] = self.kind
        return data

    @classmethod
    def from_dict(cls, data, source='<dict>'):
        if not isinstance(data, dict) or data.get('format') != _FORMAT:
            raise ValueError(f'{source}: not a gluon_bert vocabulary '
                             f'(expected format {_FORMAT!r}); save one with '
                             'Vocab.save()')
        idx_to_token = data.get('idx_to_token')
        if (not isinstance(idx_to_token, list) or '<unk>' not in idx_to_token
                or len(set(idx_to_token)) != len(idx_to_token)):
            raise ValueError(f'{source}: idx_to_token must be a list of '
                             "distinct tokens containing '<unk>'")
        vocab = cls.__new__(cls)
        vocab.idx_to_token = [str(t) for t in idx_to_token]
        vocab.token_to_idx = {t: i for i, t in enumerate(vocab.idx_to_token)}
        vocab.token_freqs = [(str(t), int(f))
                             for t, f in data.get('token_freqs', [])]
        vocab.kind, vocab._pieces = data.get('kind', 'word'), {}
        if vocab.kind not in VOCAB_KINDS:
            raise ValueError(f'{source}: unknown vocabulary kind '
                             f'{vocab.kind!r}: this version of gluon_bert '
                             f'reads {" and ".join(VOCAB_KINDS)}')
        return vocab

    @classmethod
    def from_tokens(cls, idx_to_token, source='<list>', kind='word'):
        """A vocabulary with exactly these tokens, in this order.

        d2l's published models ship their vocabulary this way: a JSON list,
        index i being token i (``d2l.Vocab`` then maps unknown words to
        ``'<unk>'``, which the list must hold).
        """
        return cls.from_dict({'format': _FORMAT, 'kind': kind,
                              'idx_to_token': list(idx_to_token)}, source)

    def save(self, path):
        """Write the vocabulary to ``path`` as JSON (atomically)."""
        from .utils import atomic_write
        with atomic_write(path, 'w') as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    def save_tokenizer(self, path):
        """Write a WordPiece vocabulary as a Hugging Face ``tokenizers``
        file (``tokenizer.json``: whitespace pre-tokenizer, WordPiece model),
        which splits words as :meth:`split` does.  Needs ``tokenizers``."""
        if self.kind != 'wordpiece':
            raise ValueError('only a WordPiece vocabulary is a tokenizer')
        from .utils import atomic_write
        tokenizer = _wordpiece_tokenizer(dict(self.token_to_idx))
        with atomic_write(path, 'w') as f:
            f.write(tokenizer.to_str())

    @classmethod
    def load(cls, path):
        """Read a vocabulary written by :meth:`save`."""
        if not os.path.isfile(path):
            raise FileNotFoundError(f'{path}: no vocabulary file there')
        try:
            with open(path, encoding='utf-8') as f:
                data = json.load(f)
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f'{path}: not valid JSON ({e}); the file is '
                             'damaged, save the vocabulary again') from None
        return cls.from_dict(data, source=path)

    def __eq__(self, other):
        return (isinstance(other, Vocab) and self.kind == other.kind
                and self.idx_to_token == other.idx_to_token)

    def __repr__(self):
        kind = '' if self.kind == 'word' else f', kind={self.kind!r}'
        return f'Vocab(size={len(self)}{kind})'


def wordpiece_split(word, token_to_idx, unk='<unk>'):
    """WordPiece pieces of one word, greedy longest match first (BERT's and
    ``tokenizers``' algorithm): the longest prefix of ``word`` in
    ``token_to_idx``, then the longest ``##``-prefixed rests; a word no pieces
    spell (or over 100 characters) is ``[unk]``.
    """
    if word in token_to_idx:
        return [word]
    if len(word) > _MAX_WORD_CHARS:
        return [unk]
    pieces, start = [], 0
    while start < len(word):
        prefix = CONTINUATION if start else ''
        for end in range(len(word), start, -1):
            piece = prefix + word[start:end]
            if piece in token_to_idx:
                break
        else:
            return [unk]
        pieces.append(piece)
        start = end
    return pieces


def _wordpiece_tokenizer(token_to_idx=None):
    """A Hugging Face WordPiece tokenizer as gluon_bert splits words:
    whitespace pre-tokenizer, ``##`` continuations, ``<unk>``; with
    ``token_to_idx`` its vocabulary, else empty (to be trained)."""
    try:
        import tokenizers
        from tokenizers import models, pre_tokenizers
    except ImportError:
        raise ImportError('WordPiece vocabularies are learnt with Hugging '
                          "Face tokenizers: pip install 'gluon_bert[subword]' "
                          '(or pip install tokenizers)') from None
    tokenizer = tokenizers.Tokenizer(models.WordPiece(
        vocab=token_to_idx, unk_token='<unk>',
        continuing_subword_prefix=CONTINUATION,
        max_input_chars_per_word=_MAX_WORD_CHARS))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


def train_wordpiece(sentences, vocab_size, reserved_tokens, min_frequency=2):
    """Train a WordPiece vocabulary on whitespace-tokenized sentences.

    Hugging Face ``tokenizers`` learns the pieces (split on whitespace only);
    ``vocab_size`` counts the ``reserved_tokens`` and ``<unk>``, which come
    first; pieces seen fewer than ``min_frequency`` times are not learnt.
    Returns a ``'wordpiece'`` :class:`Vocab`: the special tokens, then the
    pieces sorted (the same ids for the same text, every run).
    """
    tokenizer = _wordpiece_tokenizer()
    from tokenizers import trainers
    specials = ['<unk>'] + [t for t in reserved_tokens if t != '<unk>']
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency,
        special_tokens=specials, continuing_subword_prefix=CONTINUATION,
        show_progress=False)
    tokenizer.train_from_iterator(sentences, trainer=trainer)
    # tokenizers learns the same pieces every time but numbers them in a
    # hash order that changes from run to run: the special tokens first,
    # then the pieces sorted, so that the same text gives the same ids
    learnt = set(tokenizer.get_vocab()) - set(specials)
    return Vocab.from_tokens(specials + sorted(learnt), kind='wordpiece')

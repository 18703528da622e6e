"""Tokenization and the vocabulary, with d2l's index order.

``Vocab`` gives every token the same index as ``d2l.Vocab`` (v1.0.3 sorts the
set of kept tokens), so a model trained here and one trained with the book's
code agree on what index 42 means.  Unlike the book's class it also saves to
and loads from JSON, so a vocabulary travels with a checkpoint without pickle.
"""
import collections
import itertools
import json
import os
import re

__all__ = ['tokenize', 'wikitext_tokenize', 'Vocab']

_FORMAT = 'gluon_bert.vocab/1'


def tokenize(lines, token='word'):
    """Split text lines into word or character tokens.

    Parameters
    ----------
    lines : list of str
    token : {'word', 'char'}
        ``'word'`` splits on whitespace, ``'char'`` into characters.

    Returns
    -------
    list of list of str
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
        (re.compile(r'-RRB-'), ')'), (re.compile(r'(?<=\s)--(?=\s)'), '\u2014'),
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

    WikiText-2 (and so the book's vocabulary) writes ``doesn 't``,
    ``game 's``, ``role @-@ playing``, ``1 @,@ 000``, ``3 @.@ 5`` and
    separates punctuation; raw text (``doesn't``, ``role-playing``,
    ``1,000``) and Penn Treebank text (``does n't``, ````` ``) are
    rewritten so that their words are found in that vocabulary.

    Parameters
    ----------
    text : str

    Returns
    -------
    list of str
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
        The corpus; a list of token lists is flattened first.
    min_freq : int
        Tokens seen fewer times are left out (they map to ``<unk>``).
    reserved_tokens : list of str
        Always kept, whatever their frequency (e.g. ``'<pad>'``).

    The kept tokens, ``'<unk>'`` and the reserved tokens are sorted, exactly
    as ``d2l.Vocab`` does, so indices match the book's.
    """

    def __init__(self, tokens=(), min_freq=0, reserved_tokens=()):
        tokens = list(tokens)
        # Flatten a 2D list if needed
        if tokens and isinstance(tokens[0], (list, tuple)):
            tokens = itertools.chain.from_iterable(tokens)
        counter = collections.Counter(tokens)
        # Sorted by frequency, most frequent first (stable, like d2l)
        self.token_freqs = sorted(counter.items(), key=lambda x: x[1],
                                  reverse=True)
        self.idx_to_token = sorted(set(['<unk>'] + list(reserved_tokens) + [
            token for token, freq in self.token_freqs if freq >= min_freq]))
        self.token_to_idx = {token: idx
                             for idx, token in enumerate(self.idx_to_token)}

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

    @property
    def unk(self):
        """Index of the unknown token ``'<unk>'``."""
        return self.token_to_idx['<unk>']

    # -- persistence --------------------------------------------------------
    def to_dict(self):
        return {'format': _FORMAT, 'idx_to_token': self.idx_to_token,
                'token_freqs': [[t, f] for t, f in self.token_freqs]}

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
        return vocab

    @classmethod
    def from_tokens(cls, idx_to_token, source='<list>'):
        """A vocabulary with exactly these tokens, in this order.

        d2l's published models ship their vocabulary this way: a JSON list,
        index i being token i (``d2l.Vocab`` then maps unknown words to
        ``'<unk>'``, which the list must hold).
        """
        return cls.from_dict({'format': _FORMAT,
                              'idx_to_token': list(idx_to_token)}, source)

    def save(self, path):
        """Write the vocabulary to ``path`` as JSON (atomically)."""
        from .utils import atomic_write
        with atomic_write(path, 'w') as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

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
        return (isinstance(other, Vocab)
                and self.idx_to_token == other.idx_to_token)

    def __repr__(self):
        return f'Vocab(size={len(self)})'

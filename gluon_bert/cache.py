"""The examples' on-disk cache: the padded arrays of a dataset, keyed by the
text file's SHA-1, the split, ``max_len``, the state of ``random`` and the
vocabulary settings, checked by a digest of the arrays when read back (a
damaged or foreign file is rebuilt, not trusted).
"""
import hashlib
import json

import numpy as onp

from .batches import FIELDS
from .utils import (atomic_write, random_state_from_json,
                    random_state_to_json)
from .vocab import Vocab

__all__ = ['cache_key', 'save_cache', 'load_cache']

_CACHE_FORMAT = 2


def _arrays_digest(arrays):
    h = hashlib.sha1()
    for name in FIELDS:
        a = onp.ascontiguousarray(arrays[name])
        h.update(f'{name}{a.dtype}{a.shape}'.encode())
        h.update(a.tobytes())
    return h.hexdigest()


def cache_key(file_sha1, split, max_len, rng_state, vocab_key):
    h = hashlib.sha1()
    h.update(json.dumps([_CACHE_FORMAT, file_sha1, split, max_len,
                         vocab_key]).encode())
    h.update(repr(rng_state).encode())
    return h.hexdigest()


def save_cache(path, arrays, vocab, rng_state_after):
    meta = {'format': _CACHE_FORMAT, 'digest': _arrays_digest(arrays),
            'vocab': vocab.to_dict(),
            'rng_after': random_state_to_json(rng_state_after)}
    with atomic_write(path, 'wb') as f:
        onp.savez(f, meta=onp.array(json.dumps(meta)), **arrays)


def load_cache(path):
    """Arrays, vocab and `random` state of a cache entry, or None if
    unusable."""
    try:
        with onp.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z['meta']))
            arrays = {name: z[name] for name in FIELDS}
        if (meta.get('format') != _CACHE_FORMAT
                or meta.get('digest') != _arrays_digest(arrays)):
            return None
        return (arrays, Vocab.from_dict(meta['vocab']),
                random_state_from_json(meta['rng_after']))
    except Exception:  # corrupt, truncated, foreign: rebuild, never trust
        return None

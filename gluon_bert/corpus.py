"""Any text as a pretraining corpus, prepared once into shards on disk.

``pretrain --corpus`` reads its text as paragraphs (:mod:`gluon_bert.text`)
and writes their token ids into memory-mapped NumPy shards (the format
chosen by ``benchmarks/bench_shard_format.py``), so that memory does not
grow with the corpus::

    files --chunks--> count words (every core) --> vocabulary
          --chunks--> token ids --> shards: NNNNN.{tokens,sentences,
                                    paragraphs}.npy + manifest.json

The cache entry is keyed by the files' digests and the settings, built in a
temporary folder and renamed into place once complete.
"""
import array
import collections
import hashlib
import json
import os
import shutil

import numpy as onp

from . import text
from .utils import GluonBertError, atomic_write
from .vocab import Vocab, train_wordpiece

__all__ = ['MAX_WORDS', 'SHARD_TOKENS', 'prepare_corpus', 'PreparedCorpus']

#: A word vocabulary larger than this is refused unless capped.
MAX_WORDS = 50_000
_VERSION = 'gluon_bert.corpus/1'
#: Tokens per shard (about).
SHARD_TOKENS = 8 << 20
_RESERVED = ['<pad>', '<mask>', '<cls>', '<sep>']


# --------------------------------------------------------------------------
# The two passes, one byte range each in the process pool
# --------------------------------------------------------------------------
def _count_chunk(task):
    """Pass 1: the word counts of one byte range, and how much was kept."""
    path, start, end, corpus_format = task
    counts, kept, dropped = collections.Counter(), 0, 0
    for paragraph in text.paragraphs(path, start, end, corpus_format):
        if isinstance(paragraph, tuple):
            dropped += paragraph[1]
            continue
        for sentence in paragraph:
            counts.update(sentence)
            kept += len(sentence)
    return counts, kept, dropped


def _write_chunk(task):
    """Pass 2: the token ids of one byte range, written as shards into the
    folder being prepared; returns their names and sizes."""
    path, start, end, corpus_format, vocab, folder, name, shard_tokens = task
    lookup, unk = vocab.token_to_idx.get, vocab.unk
    dtype = onp.uint16 if len(vocab) < 2 ** 16 else onp.int32
    shards, tokens, sentences, paragraphs = [], [], [], []

    def flush():
        base = f'{name}-{len(shards):03d}'
        onp.save(os.path.join(folder, base + '.tokens.npy'),
                 onp.frombuffer(array.array('i', tokens), onp.int32)
                 .astype(dtype))
        for suffix, sizes in (('sentences', sentences),
                              ('paragraphs', paragraphs)):
            onp.save(os.path.join(folder, f'{base}.{suffix}.npy'),
                     onp.concatenate([[0], onp.cumsum(sizes, dtype='int64')]))
        shards.append(dict(name=base, tokens=len(tokens),
                           sentences=len(sentences),
                           paragraphs=len(paragraphs)))
        del tokens[:], sentences[:], paragraphs[:]

    for paragraph in text.paragraphs(path, start, end, corpus_format):
        if isinstance(paragraph, tuple):
            continue
        for words in paragraph:
            ids = [lookup(t, unk) for t in vocab.split(words)]
            tokens.extend(ids)
            sentences.append(len(ids))
        paragraphs.append(len(paragraph))
        if len(tokens) >= shard_tokens:
            flush()
    if paragraphs:
        flush()
    return shards


def _pool_map(function, tasks, processes):
    """``map`` over the tasks with a pool of ``processes`` (in this process
    when there is one task or one process)."""
    if processes <= 1 or len(tasks) <= 1:
        return [function(t) for t in tasks]
    import multiprocessing
    # fork where there is fork: spawn would run the caller's script again in
    # every process unless it guards its code with __name__ == '__main__'
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context(
        'fork' if 'fork' in methods else 'spawn')
    with context.Pool(processes) as pool:
        return pool.map(function, tasks, chunksize=1)


# --------------------------------------------------------------------------
# Preparation and the cache
# --------------------------------------------------------------------------
class PreparedCorpus:
    """A prepared corpus: its folder, ``manifest`` (the files, layout,
    counts and shards) and ``vocab``."""

    def __init__(self, folder):
        self.folder = folder
        with open(os.path.join(folder, 'manifest.json'),
                  encoding='utf-8') as f:
            self.manifest = json.load(f)
        self.vocab = Vocab.load(os.path.join(folder, 'vocab.json'))

    @property
    def key(self):
        return self.manifest['key']

    def shard_arrays(self, shard):
        """(tokens, sentence offsets, paragraph offsets) of one shard,
        memory-mapped."""
        return tuple(onp.load(os.path.join(
            self.folder, f'{shard["name"]}.{part}.npy'), mmap_mode='r')
            for part in ('tokens', 'sentences', 'paragraphs'))

    def describe(self):
        m = self.manifest
        return (f'{len(m["files"])} file(s), {m["tokens"]:,} tokens in '
                f'{m["paragraphs"]:,} paragraphs, {len(m["shards"])} '
                f'shard(s), vocabulary of {len(self.vocab)}')


def _vocab_spec(vocab, kind, min_freq, vocab_size, max_words):
    if vocab is not None:
        return ['given', vocab.kind, hashlib.sha1(
            '\n'.join(vocab.idx_to_token).encode()).hexdigest()]
    if kind == 'wordpiece':
        return ['wordpiece', vocab_size]
    return ['word', min_freq, max_words]


def _make_vocab(counts, kind, min_freq, vocab_size, max_words):
    """The vocabulary of the counted words: the book's word vocabulary
    (``min_freq``, capped at the ``max_words`` most frequent), or WordPiece
    learnt from the counts."""
    if kind == 'wordpiece':
        return train_wordpiece(_repeated(counts), vocab_size, _RESERVED)
    kept = [(w, c) for w, c in counts.items() if c >= min_freq]
    if max_words is None and len(kept) > MAX_WORDS:
        raise GluonBertError(
            f'the corpus has {len(kept):,} words seen {min_freq} times or '
            f'more: a word vocabulary that large makes a huge MLM output '
            'layer; use vocab wordpiece, or cap it with max_words N',
            ['vocab', 'max_words'])
    if max_words is not None:
        kept = sorted(kept, key=lambda wc: -wc[1])[:max_words]
    return Vocab.from_counts(dict(kept), min_freq, _RESERVED)


def _repeated(counts, run=10_000):
    """Each word as often as it was counted, ``run`` at a time: WordPiece
    learnt from the counts is learnt from the text's frequencies."""
    for word, count in counts.items():
        for n in range(count, 0, -run):
            yield ' '.join([word] * min(n, run))


def _check_kept(kept, dropped, files, corpus_format):
    total = kept + dropped
    if kept == 0:
        raise GluonBertError(
            f'the corpus ({files[0]}{" ..." if len(files) > 1 else ""}) has '
            'no paragraph of two sentences: next-sentence prediction needs '
            'them; check corpus_format', ['corpus_format'])
    if kept < 0.5 * total:
        raise GluonBertError(
            f'only {100 * kept / total:.0f} % of the corpus\'s words are in '
            f'paragraphs of two or more sentences as corpus_format '
            f'{corpus_format} reads it: the files are in another layout; '
            'pass corpus_format', ['corpus_format'])
    return 100 * kept / total


def prepare_corpus(paths, corpus_format='auto', vocab=None, kind='word',
                   min_freq=5, vocab_size=10000, max_words=None,
                   cache_dir=None, processes=None, say=print,
                   expect_key=None):
    """Prepare (or find in the cache) the shards of the corpus ``paths``.

    The cache entry is keyed by the files' SHA-1 digests, the layout and the
    vocabulary's settings (or the ``vocab`` given); it is built in a
    temporary folder and renamed into place once complete, so a killed
    preparation leaves nothing a later run takes for done.  ``processes``
    (default: every core) count words and write shards; ``expect_key``,
    the key of the shards a run began with, refuses changed files before
    anything is prepared.  Returns a :class:`PreparedCorpus`.
    """
    from .wikitext import default_cache_dir
    files = text.resolve_files(paths)
    for path in files:
        text.check_text(path)
    formats = ['task' if text.task_source(path) else corpus_format
               if corpus_format != 'auto' else text.detect_format(path)
               for path in files]
    digests = [text.digest(path) for path in files]
    key = hashlib.sha1(json.dumps([
        _VERSION, digests, formats, _vocab_spec(
            vocab, kind, min_freq, vocab_size, max_words)]).encode()
    ).hexdigest()
    if expect_key is not None and key != expect_key:
        raise GluonBertError(
            'the corpus files differ from those the run began with (their '
            'digests or settings changed): restore them to resume, or start '
            'a new run in another save_dir', ['save_dir'])
    root = os.path.join(cache_dir or default_cache_dir(), 'corpora')
    folder = os.path.join(root, key[:20])
    if os.path.isfile(os.path.join(folder, 'manifest.json')):
        return PreparedCorpus(folder)
    os.makedirs(root, exist_ok=True)
    _remove_abandoned(root)
    tmp = f'{folder}.tmp-{os.getpid()}'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        _prepare(files, formats, digests, key, vocab, tmp, processes, say,
                 dict(kind=kind, min_freq=min_freq, vocab_size=vocab_size,
                      max_words=max_words))
        try:
            os.rename(tmp, folder)
        except OSError:  # another process (a worker of the job) was first
            if not os.path.isfile(os.path.join(folder, 'manifest.json')):
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PreparedCorpus(folder)


def _remove_abandoned(root):
    """Folders of preparations whose process is gone."""
    for name in os.listdir(root):
        pid = name.rpartition('.tmp-')[2]
        if '.tmp-' in name and pid.isdigit():
            try:
                os.kill(int(pid), 0)
            except ProcessLookupError:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            except OSError:
                pass


def _prepare(files, formats, digests, key, vocab, folder, processes, say,
             settings):
    """The two passes into ``folder``: counts, vocabulary, shards, then the
    manifest, written last."""
    import time
    start = time.perf_counter()
    processes = processes or os.cpu_count() or 1
    ranges = [(p, s, e, fmt) for path, fmt in zip(files, formats)
              for p, s, e in text.chunks(path, fmt)]
    say(f'Preparing the corpus: {len(files)} file(s) '
        f'({", ".join(sorted(set(formats)))}), {len(ranges)} chunk(s) on '
        f'{min(processes, len(ranges))} process(es) ...', flush=True)
    counts, kept, dropped = collections.Counter(), 0, 0
    for c, k, d in _pool_map(_count_chunk, ranges, processes):
        counts.update(c)
        kept, dropped = kept + k, dropped + d
    share = _check_kept(kept, dropped, files, formats[0])
    if vocab is None:
        vocab = _make_vocab(counts, **settings)
    vocab.save(os.path.join(folder, 'vocab.json'))
    say(f'  counted {kept:,} words ({share:.1f} % of the text; the rest '
        f'in paragraphs of one sentence), vocabulary of {len(vocab):,} in '
        f'{time.perf_counter() - start:.1f} s', flush=True)
    del counts
    tasks = [chunk + (vocab, folder, f'{i:05d}', SHARD_TOKENS)
             for i, chunk in enumerate(ranges)]
    shards = [s for part in _pool_map(_write_chunk, tasks, processes)
              for s in part]
    if [text.digest(path) for path in files] != digests:
        raise GluonBertError('a corpus file changed while it was prepared: '
                             'prepare it again once it is complete')
    manifest = dict(format=_VERSION, key=key, files=files, digests=digests,
                    layouts=formats, vocab=settings, shards=shards,
                    tokens=sum(s['tokens'] for s in shards),
                    sentences=sum(s['sentences'] for s in shards),
                    paragraphs=sum(s['paragraphs'] for s in shards),
                    kept_share=share,
                    seconds=time.perf_counter() - start)
    with atomic_write(os.path.join(folder, 'manifest.json'), 'w') as f:
        json.dump(manifest, f, indent=1)
    say(f'  wrote {len(shards)} shard(s), {manifest["tokens"]:,} tokens, in '
        f'{manifest["seconds"]:.1f} s', flush=True)

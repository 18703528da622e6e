"""Which shard format `pretrain --corpus` builds on: NumPy memmap or Arrow.

The same text, tokenized the same way (lower-cased, sentences cut at ' . ',
words looked up in one word vocabulary), stored two ways:

* memmap: one flat token array (uint16 while the vocabulary fits, else
  int32) with int64 sentence and paragraph offsets, as ``.npy`` files opened
  with ``numpy.load(mmap_mode='r')``;
* arrow: a Hugging Face ``datasets.Dataset`` of one row per sentence (its
  ids and its paragraph), written by ``Dataset.from_generator`` and opened
  with ``load_from_disk`` (memory-mapped Arrow), read in NumPy format.

Each route runs in a process of its own (peak RSS is the process's), on a
corpus generated from WikiText-2's paragraphs drawn with replacement, and
reports: time to write, bytes on disk, time to open, time to read the two
sentences of 100,000 random sentence pairs (what the training stream does),
and the peak RSS.  ``--hf-python`` runs the arrow route with another
interpreter (``datasets`` needs a newer NumPy than MXNet 1.9.1 allows).

    python benchmarks/bench_shard_format.py --times 10 \\
        --hf-python /path/to/venv/bin/python
"""
import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as onp

HERE = os.path.dirname(os.path.abspath(__file__))
PAIRS = 100_000


def generate_corpus(source, out, times, seed=0):
    """A corpus ``times`` the size of the WikiText file ``source``: its
    lines (paragraphs and headings) drawn with replacement, in WikiText's
    layout.  Returns ``out``."""
    with open(source, encoding='utf-8') as f:
        lines = f.readlines()
    rng = random.Random(seed)
    with open(out, 'w', encoding='utf-8') as f:
        for _ in range(times):
            f.writelines(rng.choices(lines, k=len(lines)))
    return out


def _paragraphs(path):
    with open(path, encoding='utf-8') as f:
        for line in f:
            if len(line.split(' . ')) >= 2:
                yield [s.split() for s in line.strip().lower().split(' . ')]


def _vocab(path):
    with open(path, encoding='utf-8') as f:
        return {t: i for i, t in enumerate(json.load(f))}


def _peak_rss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_pairs(n_sent, para_of, get_sentence, rng):
    """Read the two sentences of PAIRS random pairs; returns tokens read."""
    firsts = rng.integers(0, n_sent - 1, PAIRS)
    read = 0
    for i in firsts:
        j = i + 1 if para_of(i) == para_of(i + 1) else i
        read += len(get_sentence(i)) + len(get_sentence(j))
    return read


def route_memmap(corpus, vocab_file, folder):
    vocab = _vocab(vocab_file)
    unk = vocab['<unk>']
    dtype = onp.uint16 if len(vocab) < 2 ** 16 else onp.int32
    start = time.perf_counter()
    chunks, sent_lens, para_sizes = [], [], []
    with open(os.path.join(folder, 'tokens.bin'), 'wb') as f:
        for paragraph in _paragraphs(corpus):
            ids = [[vocab.get(w, unk) for w in s] for s in paragraph]
            sent_lens.extend(map(len, ids))
            para_sizes.append(len(ids))
            chunks.extend(ids)
            if len(chunks) > 50_000:
                onp.fromiter((t for s in chunks for t in s), dtype).tofile(f)
                chunks = []
        onp.fromiter((t for s in chunks for t in s), dtype).tofile(f)
    n = os.path.getsize(os.path.join(folder, 'tokens.bin')) // onp.dtype(
        dtype).itemsize
    onp.save(os.path.join(folder, 'sentences.npy'), onp.concatenate(
        [[0], onp.cumsum(sent_lens, dtype=onp.int64)]))
    onp.save(os.path.join(folder, 'paragraphs.npy'), onp.concatenate(
        [[0], onp.cumsum(para_sizes, dtype=onp.int64)]))
    write = time.perf_counter() - start
    start = time.perf_counter()
    tokens = onp.memmap(os.path.join(folder, 'tokens.bin'), dtype, 'r',
                        shape=(n,))
    offsets = onp.load(os.path.join(folder, 'sentences.npy'), mmap_mode='r')
    paras = onp.load(os.path.join(folder, 'paragraphs.npy'), mmap_mode='r')
    para_of = onp.repeat(onp.arange(len(paras) - 1), onp.diff(paras))
    opened = time.perf_counter() - start
    start = time.perf_counter()
    read = _read_pairs(len(offsets) - 1, para_of.__getitem__,
                       lambda i: tokens[offsets[i]:offsets[i + 1]],
                       onp.random.default_rng(0))
    return dict(write_s=write, open_s=opened,
                read_s=time.perf_counter() - start, tokens_read=read)


def route_arrow(corpus, vocab_file, folder):
    import datasets
    datasets.disable_progress_bars()
    vocab = _vocab(vocab_file)
    unk = vocab['<unk>']

    def rows():
        for p, paragraph in enumerate(_paragraphs(corpus)):
            for s in paragraph:
                yield {'ids': [vocab.get(w, unk) for w in s], 'paragraph': p}
    start = time.perf_counter()
    features = datasets.Features({
        'ids': datasets.Sequence(datasets.Value(
            'uint16' if len(vocab) < 2 ** 16 else 'int32')),
        'paragraph': datasets.Value('int64')})
    ds = datasets.Dataset.from_generator(
        rows, features=features, cache_dir=os.path.join(folder, 'hf'))
    ds.save_to_disk(os.path.join(folder, 'saved'))
    write = time.perf_counter() - start
    del ds
    start = time.perf_counter()
    ds = datasets.load_from_disk(os.path.join(folder, 'saved'))
    ds = ds.with_format('numpy')
    para = ds.data.column('paragraph').to_numpy()
    opened = time.perf_counter() - start
    start = time.perf_counter()
    read = _read_pairs(len(ds), para.__getitem__, lambda i: ds[int(i)]['ids'],
                       onp.random.default_rng(0))
    shutil.rmtree(os.path.join(folder, 'hf'), ignore_errors=True)
    return dict(write_s=write, open_s=opened,
                read_s=time.perf_counter() - start, tokens_read=read)


def _du(folder):
    return sum(os.path.getsize(os.path.join(d, f))
               for d, _, files in os.walk(folder) for f in files)


def _worker(args):
    folder = tempfile.mkdtemp(dir=args.work)
    try:
        out = (route_memmap if args.route == 'memmap' else route_arrow)(
            args.corpus, args.vocab, folder)
        out.update(route=args.route, disk_mb=_du(folder) / 2 ** 20,
                   peak_rss_mb=_peak_rss_mb())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(json.dumps(out))


def format_table(record):
    """The results as the studies page shows them (report.py kind
    ``shard-format``)."""
    lines = ['| format | write | on disk | open | read '
             f'{record["pairs_read"]:,} random pairs | peak RSS |',
             '| --- | ---: | ---: | ---: | ---: | ---: |']
    for r in record['routes']:
        name = {'memmap': 'NumPy memmap (.npy)',
                'arrow': 'Arrow (Hugging Face datasets)'}[r['route']]
        lines.append(f'| {name} | {r["write_s"]:.1f} s | '
                     f'{r["disk_mb"]:.0f} MB | {r["open_s"]:.3f} s | '
                     f'{r["read_s"]:.2f} s | {r["peak_rss_mb"]:.0f} MB |')
    return '\n'.join(lines)


def corpus_parser(doc, out, hf_python=None):
    """The flags of the corpus studies: where WikiText-2 is, the Python with
    Hugging Face's packages, the scratch folder, the results file."""
    p = argparse.ArgumentParser(description=doc.split('\n\n')[0])
    p.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    p.add_argument('--hf-python', default=hf_python,
                   help='a Python with Hugging Face datasets (and '
                        'transformers), which need a newer NumPy than '
                        'MXNet 1.9.1 allows')
    p.add_argument('--work', default=tempfile.gettempdir(),
                   help='where the generated corpora go (deleted after)')
    p.add_argument('--out', default=os.path.join(HERE, 'results', out))
    return p


def main():
    p = corpus_parser(__doc__, 'shard_format.json', sys.executable)
    p.add_argument('--times', type=int, default=10,
                   help="corpus size in WikiText-2's training files")
    p.add_argument('--route', help=argparse.SUPPRESS)
    p.add_argument('--corpus', help=argparse.SUPPRESS)
    p.add_argument('--vocab', help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.route:
        return _worker(args)
    work = tempfile.mkdtemp(dir=args.work)
    try:
        corpus = generate_corpus(
            os.path.join(args.data_dir, 'wiki.train.tokens'),
            os.path.join(work, 'corpus.txt'), args.times)
        # the book's word vocabulary of WikiText-2 (min_freq 5)
        import collections
        counts = collections.Counter(
            w for para in _paragraphs(os.path.join(
                args.data_dir, 'wiki.train.tokens')) for s in para for w in s)
        vocab = sorted({'<unk>', '<pad>', '<mask>', '<cls>', '<sep>'}
                       | {w for w, c in counts.items() if c >= 5})
        with open(os.path.join(work, 'vocab.json'), 'w') as f:
            json.dump(vocab, f)
        results = []
        for route, python in (('memmap', sys.executable),
                              ('arrow', args.hf_python)):
            out = subprocess.run(
                [python, __file__, '--route', route, '--corpus', corpus,
                 '--vocab', os.path.join(work, 'vocab.json'),
                 '--work', work], check=True, capture_output=True,
                text=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1]))
            print(json.dumps(results[-1]), flush=True)
        record = dict(times=args.times, corpus_mb=os.path.getsize(corpus)
                      / 2 ** 20, pairs_read=PAIRS, routes=results,
                      note='corpus generated from WikiText-2 training lines '
                           'drawn with replacement; each route alone, in its '
                           'own process')
        tmp = args.out + '.tmp'
        with open(tmp, 'w') as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()

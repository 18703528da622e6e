"""Data preparation: the d2l book's pipeline against gluon_bert's, side by side.

    python benchmarks/bench_data.py [--data-dir DIR] [--max-len 64] [--seed 0]
        [--out benchmarks/results/bench_data.txt]

Each variant runs in a fresh subprocess (so peak memory is its own) and times
only the preparation, not the imports:

* d2l          ``d2l._read_wiki`` + ``d2l._WikiTextDataset`` (the book's code)
* ours, cold   ``gluon_bert.dataset.load_dataset`` with an empty cache
* ours, cached the same call again, served by the on-disk cache

It also checks that the three produce the same examples.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r'''
import json, random, resource, sys, time, hashlib
import numpy as onp
kind, data_dir, max_len, seed, cache = sys.argv[1:6]
max_len, seed = int(max_len), int(seed)
if kind == 'd2l':
    from d2l import mxnet as d2l
    random.seed(seed)
    t = time.perf_counter()
    ref = d2l._WikiTextDataset(d2l._read_wiki(data_dir), max_len)
    seconds = time.perf_counter() - t
    fields = [onp.stack([a.asnumpy() for a in getattr(ref, f)]).astype(dt)
              for f, dt in zip(('all_token_ids', 'all_segments', 'valid_lens',
                                'all_pred_positions', 'all_mlm_weights',
                                'all_mlm_labels', 'nsp_labels'),
                               ('int32', 'int32', 'float32', 'int32',
                                'float32', 'int32', 'float32'))]
    vocab = ref.vocab
else:
    from gluon_bert import dataset as ds
    random.seed(seed)
    t = time.perf_counter()
    got = ds.load_dataset(max_len, data_dir, cache_dir=cache)
    seconds = time.perf_counter() - t
    fields = [got.arrays[f] for f in ds.FIELDS]
    vocab = got.vocab
h = hashlib.sha1('\n'.join(vocab.idx_to_token).encode())
for a in fields:
    h.update(onp.ascontiguousarray(a).tobytes())
print(json.dumps({'seconds': seconds, 'examples': len(fields[0]),
                  'vocab': len(vocab), 'digest': h.hexdigest(),
                  'peak_mb': resource.getrusage(resource.RUSAGE_SELF)
                  .ru_maxrss / 1024}))
'''


def run(kind, data_dir, max_len, seed, cache):
    out = subprocess.run([sys.executable, '-c', CHILD, kind, data_dir,
                          str(max_len), str(seed), cache],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    parser.add_argument('--max-len', type=int, default=64)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', help='also write the table to this file '
                        '(the README includes results/bench_data.txt)')
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as cache:
        rows = [('d2l (book)', run('d2l', args.data_dir, args.max_len,
                                   args.seed, cache)),
                ('gluon_bert, cold', run('ours', args.data_dir, args.max_len,
                                         args.seed, cache)),
                ('gluon_bert, cached', run('ours', args.data_dir,
                                           args.max_len, args.seed, cache))]
    base = rows[0][1]['seconds']
    from gluon_bert.devices import cpu_name
    lines = [f'$ python benchmarks/bench_data.py --max-len {args.max_len} '
             f'--seed {args.seed}   # {cpu_name()}, {os.cpu_count()} cores',
             f'{"variant":<20}{"seconds":>9}{"speed-up":>10}{"examples":>10}'
             f'{"vocab":>8}{"peak MB":>9}  same examples']
    for name, r in rows:
        lines.append(
            f'{name:<20}{r["seconds"]:>9.2f}{base / r["seconds"]:>9.1f}x'
            f'{r["examples"]:>10}{r["vocab"]:>8}{r["peak_mb"]:>9.0f}  '
            f'{r["digest"] == rows[0][1]["digest"]}')
    print('\n'.join(lines))
    if args.out:
        with open(args.out + '.tmp', 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines) + '\n')
        os.replace(args.out + '.tmp', args.out)


if __name__ == '__main__':
    main()

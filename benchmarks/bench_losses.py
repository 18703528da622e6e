"""Do the speed-ups change the guide's losses?  Per-step losses side by side.

    python benchmarks/bench_losses.py [--data-dir DIR] [--steps 12]

The guide's first ``--steps`` steps (batch 512, max_len 64, the small BERT,
Adam 0.01), on the same batches (drawn once with seed 0, as
``bench_pretrain.py`` draws them) and from the same initial parameters
(MXNet seed 0), each run in its own process:

* the default (fused) path with dropout seeds 0 to 4 (``train_bert``'s
  ``seed``: dropout depends only on (seed, step)): the run-to-run spread
  that dropout alone causes;
* the book's loss path (``fused=False``: the padded model, the book's
  ``get_batch_loss_bert`` and autograd) with dropout seed 0;
* both paths with dropout 0, where only float rounding can tell them apart.

It prints every step's MLM and NSP losses and the largest differences:
between the two paths, against the largest spread between dropout seeds.
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_pretrain import PREPARE, child  # noqa: E402

CHILD = r'''
import json, sys
import gluon_bert
import mxnet as mx
import numpy as onp
from mxnet import gluon, np, npx
from gluon_bert.dataset import Batch
from gluon_bert.model import get_bert_model
from gluon_bert.trainer import TrainOptions, train_bert
path, fused, seed, dropout = sys.argv[1], sys.argv[2] == '1', int(sys.argv[3]), float(sys.argv[4])
npx.set_np()
z = onp.load(path)
vocab_size = int(z['vocab_size'])
hosts = [tuple(z[f'{i}_{j}'] for j in range(7))
         for i in range(sum(1 for k in z.files if k.endswith('_0')))]
batches = [Batch([np.array(x, dtype=x.dtype) for x in h], h) for h in hosts]
mx.random.seed(0)
net = get_bert_model(vocab_size, dropout=dropout)
history = train_bert(batches, net, gluon.loss.SoftmaxCELoss(), vocab_size,
                     [mx.cpu(0)], len(batches), options=TrainOptions(
                         fused=fused, seed=seed, verbose=False))
print(json.dumps({'mlm': history['mlm_step'], 'nsp': history['nsp_step']}))
'''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    parser.add_argument('--steps', type=int, default=12)
    args = parser.parse_args(argv)
    runs = [(f'default, dropout seed {s}', 1, s, 0.2) for s in range(5)]
    runs += [('book loss path, seed 0', 0, 0, 0.2),
            ('default, dropout 0', 1, 0, 0.0),
            ('book loss path, dropout 0', 0, 0, 0.0)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'batches.npz')
        child(PREPARE, args.data_dir, args.steps, path)
        results = {name: child(CHILD, path, fused, seed, dropout)
                   for name, fused, seed, dropout in runs}
    for key in ('mlm', 'nsp'):
        print(f'{key.upper()} loss of each step')
        for name, r in results.items():
            print(f'  {name:<27}' + ' '.join(f'{x:.4f}' for x in r[key]))

    def largest(a, b, key):
        return max(abs(x - y) for x, y in zip(results[a][key],
                                              results[b][key]))
    seeds = [name for name, *_ in runs[:5]]
    for key in ('mlm', 'nsp'):
        spread = max(largest(a, b, key) for a in seeds for b in seeds)
        print(f'{key.upper()}: largest difference between dropout seeds '
              f'{spread:.4f}; default vs book path (seed 0) '
              f'{largest(seeds[0], runs[5][0], key):.4f}; with dropout 0 '
              f'{largest(runs[6][0], runs[7][0], key):.2e}')
    print(json.dumps(results))


if __name__ == '__main__':
    main()

"""Training throughput: the d2l book's MXNet loop against gluon_bert's.

    python benchmarks/bench_pretrain.py [--data-dir DIR] [--steps 8] [--warmup 2]

Side by side in one run, each variant in its own subprocess (so peak memory is
its own), on the same batches (same seed), with the guide's settings (batch
512, max_len 64, the small BERT):

* d2l      ``d2l.BERTModel`` + ``d2l._get_batch_loss_bert`` + Adam, the loop
           of the guide (``devices`` = [cpu(0)], as d2l 1.0.3 would crash
           with its empty ``try_all_gpus()``), with MXNet's default threads
* d2l, 1 thread per core: the same, given gluon_bert's OMP_NUM_THREADS
* book loss  gluon_bert's hybridized model with the book's loss path
* ours     ``gluon_bert.trainer.train_bert`` (hybridized, fused loss)

Ratios are against the first row, the book's code as the book runs it.

Each step is timed on the wall clock up to ``npx.waitall()``, after
``--warmup`` untimed steps.  The book's own timer stops before the
asynchronous backward pass finishes; its figure is printed too.  Then the
guide's whole 50-step command (``python -m gluon_bert.pretrain``) runs once
for its peak memory (``--skip-full`` leaves it out).  GFLOP/s use the model's
~270 MFLOP per sentence pair for training (forward ~90: encoder 38, MLM head
52) and are compared with the peak of one large FullyConnected measured here.
"""
import argparse
import json
import os
import subprocess
import sys

TRAIN_MFLOP_PER_PAIR = 270

CHILD = r'''
import json, os, random, resource, sys, time
kind = sys.argv[1]
if kind == 'd2l':
    import mxnet  # first: MXNet's own thread defaults, as the book runs it
import gluon_bert  # otherwise sets OMP_NUM_THREADS before MXNet loads
import mxnet as mx, numpy as onp
from mxnet import autograd, gluon, init, npx
npx.set_np()
data_dir, steps, warmup = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
from gluon_bert.dataset import DataIter, load_dataset
random.seed(0); onp.random.seed(0); mx.random.seed(0)
dataset = load_dataset(64, data_dir)
vocab = dataset.vocab
batches = []
for b in DataIter(dataset, 512):
    batches.append(b)
    if len(batches) == steps + warmup:
        break
devices = [mx.cpu(0)]
loss = gluon.loss.SoftmaxCELoss()
times, book_times, losses = [], [], []
if kind.startswith('d2l'):
    from d2l import mxnet as d2l
    net = d2l.BERTModel(len(vocab), num_hiddens=128, ffn_num_hiddens=256,
                        num_heads=2, num_blks=2, dropout=0.2)
    net.initialize(init.Xavier(), ctx=devices)
    trainer = gluon.Trainer(net.collect_params(), 'adam', {'learning_rate': 0.01})
    for batch in batches:
        t0 = time.perf_counter()
        shards = [gluon.utils.split_and_load(e, devices, even_split=False) for e in batch]
        t1 = time.perf_counter()
        with autograd.record():
            mlm_ls, nsp_ls, ls = d2l._get_batch_loss_bert(net, loss, len(vocab), *shards)
        for l in ls:
            l.backward()
        trainer.step(1)
        m = sum(float(l) for l in mlm_ls) / len(mlm_ls)
        t2 = time.perf_counter()          # where the book's timer stops
        npx.waitall()
        t3 = time.perf_counter()
        times.append(t3 - t0); book_times.append(t2 - t1); losses.append(m)
else:
    from gluon_bert.model import get_bert_model
    from gluon_bert.trainer import train_bert
    net = get_bert_model(len(vocab))
    history = train_bert(batches, net, loss, len(vocab), devices, len(batches),
                         verbose=False, fused=(kind == 'ours'))
    secs = history['seconds']
    times = [b - a for a, b in zip([0.0] + secs[:-1], secs)]
    losses = history['mlm_step']
timed = times[warmup:]
pairs = 512 * len(timed)
out = {'pairs_per_sec': pairs / sum(timed), 'losses': losses,
       'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
if book_times:
    out['book_timer_pairs_per_sec'] = pairs / sum(book_times[warmup:])
print(json.dumps(out))
'''

GEMM = r'''
import json, time
import gluon_bert
import mxnet as mx
from mxnet import np, npx
npx.set_np()
x = np.random.uniform(size=(4096, 1024))
w = np.random.uniform(size=(4096, 1024))
for _ in range(2):
    npx.fully_connected(x, w, no_bias=True, num_hidden=4096).wait_to_read()
n, t = 10, time.perf_counter()
for _ in range(n):
    y = npx.fully_connected(x, w, no_bias=True, num_hidden=4096)
npx.waitall()
print(json.dumps({'gflops': 2 * 4096 * 1024 * 4096 * n / (time.perf_counter() - t) / 1e9}))
'''


def child(code, *args):
    out = subprocess.run([sys.executable, '-c', code, *map(str, args)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


FULL = r'''
import json, resource, sys, time
from gluon_bert import pretrain
start = time.perf_counter()
code = pretrain.main(['--steps', '50', '--data-dir', sys.argv[1], '--save-dir',
                      sys.argv[2], '--log-every', '0'])
assert code == 0
print(json.dumps({'seconds': time.perf_counter() - start,
                  'peak_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
'''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    parser.add_argument('--steps', type=int, default=8,
                        help='timed steps per variant')
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--skip-full', action='store_true',
                        help='skip the 50-step peak-memory run')
    args = parser.parse_args(argv)
    import tempfile
    gemm = child(GEMM)['gflops']
    rows = [(name, child(CHILD, kind, args.data_dir, args.steps,
                         args.warmup))
            for name, kind in (('d2l MXNet reference', 'd2l'),
                               ('d2l, 1 thread per core', 'd2l-threads'),
                               ('gluon_bert, book loss', 'book'),
                               ('gluon_bert (default)', 'ours'))]
    base = rows[0][1]['pairs_per_sec']
    print(f'GEMM peak here (one 4096x1024x4096 FullyConnected, fp32): '
          f'{gemm:.0f} GFLOP/s')
    print(f'{"variant":<24}{"pairs/s":>9}{"ratio":>8}{"GFLOP/s":>9}'
          f'{"% peak":>8}{"peak MB":>9}  MLM loss of each step')
    for name, r in rows:
        gflops = r['pairs_per_sec'] * TRAIN_MFLOP_PER_PAIR / 1e3
        print(f'{name:<24}{r["pairs_per_sec"]:>9.1f}'
              f'{r["pairs_per_sec"] / base:>7.2f}x{gflops:>9.1f}'
              f'{100 * gflops / gemm:>7.0f}%{r["peak_mb"]:>9.0f}  '
              + ' '.join(f'{x:.3f}' for x in r['losses']))
    print(f'(the d2l loop by the book\'s own timer, which stops before the '
          f'backward pass ends: {rows[0][1]["book_timer_pairs_per_sec"]:.1f} '
          f'pairs/s)')
    if not args.skip_full:
        with tempfile.TemporaryDirectory() as tmp:
            full = child(FULL, args.data_dir, os.path.join(tmp, 'run'))
        print(f'python -m gluon_bert.pretrain --steps 50: peak RSS '
              f'{full["peak_mb"]:.0f} MB, {full["seconds"]:.0f} s from start '
              f'to saved model')


if __name__ == '__main__':
    main()

"""Training throughput: the d2l book's loops (MXNet, PyTorch) against gluon_bert.

    python benchmarks/bench_pretrain.py [--data-dir DIR] [--steps 8] [--warmup 2]

Side by side in one run, each variant in its own subprocess (so peak memory and
MXNet's thread settings are its own), on the same batches (drawn once with
seed 0 and written to a temporary file), with the guide's settings (batch 512, max_len 64, the small BERT):

* d2l MXNet   ``d2l.BERTModel`` + ``d2l._get_batch_loss_bert`` + Adam, the
              loop of the guide (``devices`` = [cpu(0)], as d2l 1.0.3 would
              crash with its empty ``try_all_gpus()``), with MXNet's default
              threads, as the book runs it
* d2l MXNet, 1 thread per core: the same after ``set_cpu_threads()``
* d2l PyTorch  the book's PyTorch code (``d2l.torch``: BERTModel,
              _get_batch_loss_bert, ``nn.CrossEntropyLoss``, Adam) on the same
              batches, when torch is installed; PyTorch's default threads
              (one per core), in a process without MXNet (loaded first,
              MXNet's OpenMP setup leaves PyTorch one thread and half its
              speed).  d2l.torch imports torchvision for its image
              datasets only; without torchvision a stub stands in.
* gluon_bert, book loss: hybridized model, the book's loss path
* gluon_bert: ``train_bert`` defaults (fused loss), once with ``import
              gluon_bert`` first (what ``python -m gluon_bert.pretrain`` does)
              and once with ``from mxnet import gluon`` first (a script)

Ratios are against the first row, the book's code as the book runs it; the
last lines compare gluon_bert with the best d2l MXNet row and with PyTorch.

Each step is timed on the wall clock up to ``npx.waitall()``, after
``--warmup`` untimed steps.  The book's own timer stops before the
asynchronous backward pass finishes; its figure is printed too.  Then the
guide's whole 50-step command (``python -m gluon_bert.pretrain``) runs once
for its peak memory (``--skip-full`` leaves it out).  GFLOP/s use the model's
~270 MFLOP per sentence pair for training (forward ~90: encoder 38, MLM head
52) and are compared with the peak of one large FullyConnected measured here.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys

TRAIN_MFLOP_PER_PAIR = 270

# The batches, written once so that every variant trains on the same ones and
# the PyTorch variant never loads MXNet (whose OpenMP settings would leave
# PyTorch one thread)
PREPARE = r'''
import random, sys
import numpy as onp
import mxnet as mx
from gluon_bert.dataset import DataIter, load_dataset
data_dir, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
random.seed(0); onp.random.seed(0); mx.random.seed(0)
dataset = load_dataset(64, data_dir)
arrays = {'vocab_size': onp.array(len(dataset.vocab))}
for i, batch in enumerate(DataIter(dataset, 512)):
    if i == count:
        break
    for j, field in enumerate(batch.host):
        arrays[f'{i}_{j}'] = field
onp.savez(out, **arrays)
print('{}')
'''

CHILD = r'''
import json, resource, sys, time
kind, path, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3])
if kind in ('d2l', 'd2l-threads', 'ours-mxnet-first'):
    from mxnet import gluon  # first, as the book and most scripts do
import numpy as onp
z = onp.load(path)
vocab_size = int(z['vocab_size'])
hosts = [tuple(z[f'{i}_{j}'] for j in range(7))
         for i in range(sum(1 for k in z.files if k.endswith('_0')))]
times, book_times, losses = [], [], []
if kind.startswith(('torch', 'hf')):
    import contextlib, types
    import torch
    from torch import nn
    if kind.startswith('torch'):
        try:
            import torchvision  # noqa: F401
        except Exception:  # d2l.torch needs it for image datasets only
            tv = types.ModuleType('torchvision')
            tv.transforms = types.ModuleType('torchvision.transforms')
            sys.modules.update({'torchvision': tv,
                                'torchvision.transforms': tv.transforms})
        from d2l import torch as d2l
    torch.manual_seed(0)
    dtypes = (torch.long, torch.long, torch.float32, torch.long,
              torch.float32, torch.long, torch.long)
    batches = [[torch.tensor(x, dtype=t) for x, t in zip(h, dtypes)]
               for h in hosts]
    bf16 = kind.endswith('-bf16')
    autocast = ((lambda: torch.autocast('cpu', dtype=torch.bfloat16))
                if bf16 else contextlib.nullcontext)
    if kind.startswith('hf'):
        # Hugging Face's BERT of the same shape: MLM over the masked slots,
        # NSP on the <cls> vector, as d2l's loss computes them
        from transformers import BertConfig, BertForPreTraining
        net = BertForPreTraining(BertConfig(
            vocab_size=vocab_size, hidden_size=128, num_hidden_layers=2,
            num_attention_heads=2, intermediate_size=256,
            max_position_embeddings=1000, hidden_dropout_prob=0.2,
            attention_probs_dropout_prob=0.2))
        trainer = torch.optim.Adam(net.parameters(), lr=0.01)

        def step(tokens, segments, valid_lens, positions, weights, mlm_y,
                 nsp_y):
            mask = (torch.arange(tokens.shape[1])[None, :]
                    < valid_lens[:, None]).long()
            labels = torch.full_like(tokens, -100)
            rows = torch.arange(tokens.shape[0])[:, None].expand_as(
                positions)
            keep = weights > 0
            labels[rows[keep], positions[keep]] = mlm_y[keep]
            with autocast():
                out = net(input_ids=tokens, token_type_ids=segments,
                          attention_mask=mask, labels=labels,
                          next_sentence_label=nsp_y)
            return out.loss, out.loss  # (HF: MLM + NSP)
    else:
        net = d2l.BERTModel(vocab_size, num_hiddens=128, ffn_num_hiddens=256,
                            num_heads=2, num_blks=2, dropout=0.2)
        loss = nn.CrossEntropyLoss()
        net(*batches[0][:4])  # the book's: initialize the lazy layers
        trainer = torch.optim.Adam(net.parameters(), lr=0.01)
        model = torch.compile(net) if 'compile' in kind else net

        def step(*batch):
            with autocast():
                mlm_l, nsp_l, l = d2l._get_batch_loss_bert(
                    model, loss, vocab_size, *batch)
            return l, mlm_l
    for batch in batches:
        t0 = time.perf_counter()
        trainer.zero_grad()
        l, mlm_l = step(*batch)
        l.backward()
        trainer.step()
        times.append(time.perf_counter() - t0); losses.append(float(mlm_l))
else:
    import gluon_bert
    import mxnet as mx
    from mxnet import autograd, gluon, init, np, npx
    from gluon_bert.dataset import Batch
    npx.set_np()
    mx.random.seed(0)
    batches = [Batch([np.array(x, dtype=x.dtype) for x in h], h)
               for h in hosts]
    devices = [mx.cpu(0)]
    loss = gluon.loss.SoftmaxCELoss()
    if kind == 'd2l-threads':
        from gluon_bert.threads import set_cpu_threads
        set_cpu_threads()
    if kind.startswith('d2l'):
        from d2l import mxnet as d2l
        net = d2l.BERTModel(vocab_size, num_hiddens=128, ffn_num_hiddens=256,
                            num_heads=2, num_blks=2, dropout=0.2)
        net.initialize(init.Xavier(), ctx=devices)
        trainer = gluon.Trainer(net.collect_params(), 'adam',
                                {'learning_rate': 0.01})
        for batch in batches:
            t0 = time.perf_counter()
            shards = [gluon.utils.split_and_load(e, devices, even_split=False)
                      for e in batch]
            t1 = time.perf_counter()
            with autograd.record():
                mlm_ls, nsp_ls, ls = d2l._get_batch_loss_bert(
                    net, loss, vocab_size, *shards)
            for l in ls:
                l.backward()
            trainer.step(1)
            m = sum(float(l) for l in mlm_ls) / len(mlm_ls)
            t2 = time.perf_counter()          # where the book's timer stops
            npx.waitall()
            t3 = time.perf_counter()
            times.append(t3 - t0); book_times.append(t2 - t1)
            losses.append(m)
    else:
        from gluon_bert.model import get_bert_model
        from gluon_bert.trainer import TrainOptions, train_bert
        net = get_bert_model(vocab_size)
        history = train_bert(batches, net, loss, vocab_size, devices,
                             len(batches), options=TrainOptions(
                                 verbose=False, fused=(kind != 'book')))
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
import mxnet as mx
from mxnet import np, npx
from gluon_bert.threads import set_cpu_threads
npx.set_np()
set_cpu_threads()
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


#: glibc's malloc kept from returning memory to the kernel (what PyTorch's
#: CPU tuning guides get with jemalloc or tcmalloc): large buffers freed
#: every step are reused instead of unmapped and faulted in again
TUNED_MALLOC = {'GLIBC_TUNABLES': 'glibc.malloc.mmap_threshold=4294967296:'
                                  'glibc.malloc.trim_threshold=4294967296'}


def child(code, *args, env=None):
    done = subprocess.run([sys.executable, '-c', code, *map(str, args)],
                          capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))
    if done.returncode != 0:
        return {'error': (done.stderr.strip().splitlines() or ['?'])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


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
    parser.add_argument('--no-peers', action='store_true',
                        help='leave the PyTorch rows out')
    parser.add_argument('--gemm-only', action='store_true',
                        help='measure the GEMM peak only (what a time '
                             'budget\'s result is read against: these '
                             'machines differ by 2x)')
    args = parser.parse_args(argv)
    import tempfile
    gemm = child(GEMM)['gflops']
    if args.gemm_only:
        print(f'GEMM peak here (one 4096x1024x4096 FullyConnected, fp32): '
              f'{gemm:.0f} GFLOP/s')
        return
    torch = importlib.util.find_spec('torch') is not None
    hf = importlib.util.find_spec('transformers') is not None
    variants = [('d2l MXNet, as the book', 'd2l', False),
                ('d2l MXNet, thread/core', 'd2l-threads', False)]
    peers = [('d2l PyTorch', 'torch'), ('d2l PyTorch, bf16 autocast',
                                        'torch-bf16'),
             ('d2l PyTorch, compile', 'torch-compile'),
             ('d2l PyTorch, compile+bf16', 'torch-compile-bf16')]
    if hf:
        peers += [('HF BertForPreTraining', 'hf'),
                  ('HF BertForPreTraining, bf16', 'hf-bf16')]
    if torch and not args.no_peers:
        for name, kind in peers:
            variants += [(name, kind, False), (name + ' +malloc', kind, True)]
    elif not torch:
        print('(torch is not installed: no PyTorch rows)')
    if not hf:
        print('(transformers is not installed: no Hugging Face rows)')
    variants += [('gluon_bert, book loss', 'book', False),
                 ('gluon_bert, it first', 'ours', False),
                 ('gluon_bert, mxnet first', 'ours-mxnet-first', False),
                 ('gluon_bert, it first +malloc', 'ours', True)]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'batches.npz')
        child(PREPARE, args.data_dir, args.steps + args.warmup, path)
        rows = [(name, kind, tuned, child(
            CHILD, kind, path, args.warmup,
            env=TUNED_MALLOC if tuned else None))
            for name, kind, tuned in variants]
    base = rows[0][3]['pairs_per_sec']
    print(f'GEMM peak here (one 4096x1024x4096 FullyConnected, fp32): '
          f'{gemm:.0f} GFLOP/s')
    print(f'{"variant":<34}{"pairs/s":>9}{"ratio":>8}{"GFLOP/s":>9}'
          f'{"% peak":>8}{"peak MB":>9}  MLM loss of each step')
    for name, _, _, r in rows:
        if 'error' in r:
            print(f'{name:<34}  failed: {r["error"][:80]}')
            continue
        gflops = r['pairs_per_sec'] * TRAIN_MFLOP_PER_PAIR / 1e3
        print(f'{name:<34}{r["pairs_per_sec"]:>9.1f}'
              f'{r["pairs_per_sec"] / base:>7.2f}x{gflops:>9.1f}'
              f'{100 * gflops / gemm:>7.0f}%{r["peak_mb"]:>9.0f}  '
              + ' '.join(f'{x:.3f}' for x in r['losses']))
    print(f'(the d2l loop by the book\'s own timer, which stops before the '
          f'backward pass ends: {rows[0][3]["book_timer_pairs_per_sec"]:.1f} '
          f'pairs/s)')
    speed = {}
    for name, kind, tuned, r in rows:
        if 'error' not in r:  # each at its better of plain and +malloc
            speed[kind] = max(speed.get(kind, 0), r['pairs_per_sec'])
    plain = {kind: r['pairs_per_sec'] for _, kind, tuned, r in rows
             if not tuned and 'error' not in r}
    best_mxnet = max(speed['d2l'], speed['d2l-threads'])
    peer = max(((speed[k], n) for n, k in peers if k in speed),
               default=None)
    for kind in ('ours', 'ours-mxnet-first'):
        line = (f'{kind}: {plain[kind] / best_mxnet:.2f}x the better d2l '
                f'MXNet row')
        if peer:
            line += (f', {plain[kind] / peer[0]:.2f}x the best PyTorch peer '
                     f'({peer[1]}, at its better of plain and +malloc)')
        print(line)
    print(f'mxnet first / it first: '
          f'{plain["ours-mxnet-first"] / plain["ours"]:.3f}')
    if not args.skip_full:
        with tempfile.TemporaryDirectory() as tmp:
            full = child(FULL, args.data_dir, os.path.join(tmp, 'run'))
        print(f'python -m gluon_bert.pretrain --steps 50: peak RSS '
              f'{full["peak_mb"]:.0f} MB, {full["seconds"]:.0f} s from start '
              f'to saved model')


if __name__ == '__main__':
    main()

"""The d2l book's code and gluon_bert side by side, on the same data.

    python -m gluon_bert.compare --steps 50

Runs the installed d2l package's pretraining (``_WikiTextDataset``,
``BERTModel``, ``_get_batch_loss_bert``, Adam) and gluon_bert's on the same
WikiText-2 folder and seed, on ``[cpu(0)]`` without GPUs, and prints
vocabulary, examples, losses, pairs/s (wall clock to the end of every step)
and preparation time beside the book's published numbers.
"""
import json
import random
import sys
import time

from .utils import (ArgumentParser, GluonBertError, HelpFormatter,
                    atomic_write, max_len_arg, positive_int, run_command)

__all__ = ['main', 'parse_args', 'build_parser', 'BOOK', 'run_d2l',
           'run_gluon_bert']

#: The book's MXNet run (2 GPUs), as published.
BOOK = {'vocab': 20256, 'examples': None, 'mlm': 7.292, 'nsp': 0.822,
        'pairs_per_sec': 2417.3, 'prep_seconds': None,
        'devices': '[gpu(0), gpu(1)]'}


def book_step(net, loss, vocab_size, trainer, batch, devices):
    """One step of the book's ``train_bert`` loop with d2l's own code.

    Shards the batch with ``split_and_load``, computes the per-shard losses
    with ``d2l._get_batch_loss_bert``, runs the backward passes and
    ``trainer.step(1)``.  Returns the per-shard MLM and NSP losses.
    """
    from d2l import mxnet as d2l
    from mxnet import autograd, gluon
    shards = [gluon.utils.split_and_load(x, devices, even_split=False)
              for x in batch]
    with autograd.record():
        mlm_ls, nsp_ls, ls = d2l._get_batch_loss_bert(net, loss, vocab_size,
                                                      *shards)
    for l in ls:
        l.backward()
    trainer.step(1)
    return mlm_ls, nsp_ls


def run_d2l(data_dir, batch_size, max_len, steps, seed):
    """The reference: the book's functions from the installed d2l."""
    import mxnet as mx
    import numpy as onp
    from d2l import mxnet as d2l
    from mxnet import gluon, init, npx

    npx.set_np()  # the book's code runs in MXNet's NumPy mode
    random.seed(seed)
    start = time.perf_counter()
    train_set = d2l._WikiTextDataset(d2l._read_wiki(data_dir), max_len)
    prep = time.perf_counter() - start
    train_iter = gluon.data.DataLoader(train_set, batch_size, shuffle=True)
    vocab = train_set.vocab
    mx.random.seed(seed)
    net = d2l.BERTModel(len(vocab), num_hiddens=128, ffn_num_hiddens=256,
                        num_heads=2, num_blks=2, dropout=0.2)
    devices = d2l.try_all_gpus() or [mx.cpu(0)]
    net.initialize(init.Xavier(), ctx=devices)
    loss = gluon.loss.SoftmaxCELoss()
    trainer = gluon.Trainer(net.collect_params(), 'adam',
                            {'learning_rate': 0.01})
    onp.random.seed(seed)
    sums, step, seconds, pairs = [0.0, 0.0], 0, 0.0, 0
    while step < steps:
        for batch in train_iter:
            t = time.perf_counter()
            mlm_ls, nsp_ls = book_step(net, loss, len(vocab), trainer, batch,
                                       devices)
            sums[0] += sum(float(l) for l in mlm_ls) / len(mlm_ls)
            sums[1] += sum(float(l) for l in nsp_ls) / len(nsp_ls)
            npx.waitall()
            seconds += time.perf_counter() - t
            pairs += batch[0].shape[0]
            step += 1
            if step == steps:
                break
    return {'vocab': len(vocab), 'examples': len(train_set),
            'mlm': sums[0] / steps, 'nsp': sums[1] / steps,
            'pairs_per_sec': pairs / seconds, 'prep_seconds': prep,
            'devices': str(devices)}


def run_gluon_bert(data_dir, batch_size, max_len, steps, seed):
    """gluon_bert with its defaults (hybridized, fused loss)."""
    import mxnet as mx
    import numpy as onp
    from mxnet import gluon

    from .dataset import DataIter, load_dataset
    from .model import get_bert_model
    from .devices import try_all_gpus
    from .trainer import TrainOptions, train_bert

    random.seed(seed)
    start = time.perf_counter()
    dataset = load_dataset(max_len, data_dir, use_cache=False)
    prep = time.perf_counter() - start
    mx.random.seed(seed)
    net = get_bert_model(len(dataset.vocab))
    devices = try_all_gpus()
    onp.random.seed(seed)
    history = train_bert(DataIter(dataset, batch_size), net,
                         gluon.loss.SoftmaxCELoss(), len(dataset.vocab),
                         devices, steps, options=TrainOptions(verbose=False))
    return {'vocab': len(dataset.vocab), 'examples': len(dataset),
            'mlm': history['mlm'][-1], 'nsp': history['nsp'][-1],
            'pairs_per_sec': history['pairs_per_sec'],
            'prep_seconds': prep, 'devices': str(devices)}


def format_table(book, d2l_run, ours, steps):
    """The comparison as aligned text."""
    def cell(value, fmt):
        return '-' if value is None else format(value, fmt)

    rows = [('vocabulary size', 'vocab', 'd'),
            ('examples', 'examples', 'd'),
            (f'MLM loss after {steps} steps', 'mlm', '.3f'),
            (f'NSP loss after {steps} steps', 'nsp', '.3f'),
            ('sentence pairs/sec', 'pairs_per_sec', '.1f'),
            ('data preparation (s)', 'prep_seconds', '.1f'),
            ('devices', 'devices', 's')]
    header = ('', 'book (MXNet, 2 GPUs)', 'd2l reference here',
              'gluon_bert here')
    lines = [header] + [(label, cell(book[k], f), cell(d2l_run[k], f),
                         cell(ours[k], f)) for label, k, f in rows]
    speed = ours['pairs_per_sec'] / d2l_run['pairs_per_sec']
    prep = d2l_run['prep_seconds'] / ours['prep_seconds']
    lines.append(('gluon_bert / d2l here', '', '',
                  f'{speed:.2f}x pairs/sec, {prep:.0f}x faster data'))
    widths = [max(len(line[i]) for line in lines) for i in range(4)]
    return '\n'.join('  '.join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(line, widths)))
                     for line in lines)


def build_parser():
    p = ArgumentParser(
        prog='python -m gluon_bert.compare',
        description='Run the d2l reference and gluon_bert on the same data '
                    'and compare them with the book.',
        formatter_class=HelpFormatter)
    p.add_argument('--steps', type=positive_int, default=50,
                   help="training steps of each loop (the guide's 50)")
    p.add_argument('--data-dir', default=None,
                   help='folder with wiki.train.tokens (default: as pretrain)')
    p.add_argument('--batch-size', type=positive_int, default=512,
                   help='sentence pairs per batch, the same for both loops')
    p.add_argument('--max-len', type=max_len_arg, default=64,
                   help='tokens per example, <cls> and <sep> included')
    p.add_argument('--seed', type=int, default=0,
                   help='seeds the examples, the initialization and '
                        'dropout of both loops')
    p.add_argument('--output', default=None,
                   help='also write the numbers to this JSON file')
    return p


def parse_args(argv=None):
    parser = build_parser()
    return parser.parse_args(argv)


def run(args):
    from .dataset import resolve_data_dir
    data_dir = resolve_data_dir(args.data_dir)
    settings = (data_dir, args.batch_size, args.max_len, args.steps,
                args.seed)
    print(f'd2l reference: {args.steps} steps ...', flush=True)
    d2l_run = run_d2l(*settings)
    print(f'gluon_bert: {args.steps} steps ...', flush=True)
    ours = run_gluon_bert(*settings)
    if (d2l_run['vocab'], d2l_run['examples']) != (ours['vocab'],
                                                   ours['examples']):
        raise GluonBertError('the two pipelines built different data: '
                             f'{d2l_run} against {ours}')
    print(format_table(BOOK, d2l_run, ours, args.steps))
    result = {'book': BOOK, 'd2l': d2l_run, 'gluon_bert': ours,
              'steps': args.steps, 'batch_size': args.batch_size,
              'max_len': args.max_len, 'seed': args.seed}
    if args.output:
        with atomic_write(args.output, 'w') as f:
            json.dump(result, f, indent=2)
    return result


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

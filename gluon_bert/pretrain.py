"""Pretrain BERT on WikiText-2 with the book's settings.

    python -m gluon_bert.pretrain --gpus 0,1 --steps 50

Loads WikiText-2 (see --data-dir), builds the book's small BERT, trains it
for --steps steps on the chosen devices with Adam, prints a progress line
while it runs and the book's two closing lines at the end, then writes the
model directory (--save-dir): model.params, vocab.json, config.json, the
per-step log history.csv and the loss curve loss.png.
"""
import argparse
import json
import os
import random
import sys
import time

from .utils import GluonBertError, atomic_write

__all__ = ['main', 'parse_args', 'build_parser']

#: The guide's settings.
DEFAULTS = dict(steps=50, batch_size=512, max_len=64, num_hiddens=128,
                ffn_num_hiddens=256, num_heads=2, num_blks=2, dropout=0.2,
                lr=0.01, pos_len=1000)


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not an integer')
    if value < 1:
        raise argparse.ArgumentTypeError(f'must be at least 1, got {value}')
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number')
    if not value > 0 or value != value or value == float('inf'):
        raise argparse.ArgumentTypeError(f'must be a positive number, got '
                                         f'{text}')
    return value


def _dropout(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f'{text!r} is not a number')
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f'must be in [0, 1), got {text}')
    return value


def _gpus(text):
    parts = [p.strip() for p in text.split(',')]
    if not all(p.isdigit() for p in parts) or len(set(parts)) != len(parts):
        raise argparse.ArgumentTypeError(
            f'{text!r} is not a list of distinct GPU numbers like 0,1')
    return text


def build_parser():
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog='python -m gluon_bert.pretrain',
        description='Pretrain the d2l book\'s small BERT on WikiText-2 '
                    '(masked language modeling + next sentence prediction).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group('devices')
    g.add_argument('--gpus', type=_gpus, default=None,
                   help='GPUs to shard each batch across, e.g. 0,1; on a '
                        'machine without GPUs training runs on cpu(0) '
                        '(default: all GPUs, else cpu(0))')
    g.add_argument('--cpus', type=_positive_int, default=None,
                   help='shard each batch across N CPU contexts instead')
    g = p.add_argument_group('data')
    g.add_argument('--data-dir', default=None,
                   help='folder with wiki.train.tokens (default: '
                        '$GLUON_BERT_DATA, then ../data/wikitext-2, then a '
                        'download)')
    g.add_argument('--cache-dir', default=None,
                   help='where prepared examples are cached (default: '
                        '$GLUON_BERT_CACHE or ~/.cache/gluon_bert)')
    g.add_argument('--no-cache', action='store_true',
                   help='always rebuild the examples')
    g.add_argument('--batch-size', type=_positive_int, default=d['batch_size'],
                   help='sentence pairs per step, over all devices')
    g.add_argument('--max-len', type=_positive_int, default=d['max_len'],
                   help='tokens per example, <cls> and <sep> included')
    g = p.add_argument_group('model (the book\'s small BERT by default)')
    g.add_argument('--num-hiddens', type=_positive_int,
                   default=d['num_hiddens'])
    g.add_argument('--ffn-num-hiddens', type=_positive_int,
                   default=d['ffn_num_hiddens'])
    g.add_argument('--num-heads', type=_positive_int, default=d['num_heads'])
    g.add_argument('--num-blks', type=_positive_int, default=d['num_blks'],
                   help='Transformer encoder blocks')
    g.add_argument('--dropout', type=_dropout, default=d['dropout'])
    g.add_argument('--pos-len', type=_positive_int, default=d['pos_len'],
                   help='length of the learnable position embedding (the '
                        "book's max_len=1000); --max-len may not exceed it")
    g = p.add_argument_group('training')
    g.add_argument('--steps', type=_positive_int, default=d['steps'],
                   help='optimizer steps')
    g.add_argument('--lr', type=_positive_float, default=d['lr'],
                   help="Adam's learning rate")
    g.add_argument('--seed', type=int, default=0,
                   help='seeds Python, NumPy and MXNet for a reproducible run')
    g.add_argument('--no-hybridize', action='store_true',
                   help='run the model imperatively (slower; for debugging)')
    g.add_argument('--log-every', type=int, default=10,
                   help='progress line every N steps (0: none)')
    g = p.add_argument_group('output')
    g.add_argument('--save-dir', default=os.path.join('runs', 'pretrain'),
                   help='model directory to write: model.params, vocab.json, '
                        'config.json, history.csv, loss.png')
    return p


def parse_args(argv=None):
    """Parse and check the command line; errors exit with code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.gpus is not None and args.cpus is not None:
        parser.error('--gpus and --cpus exclude each other: pick one')
    if args.max_len > args.pos_len:
        parser.error(f'--max-len {args.max_len} is longer than the position '
                     f'embedding (--pos-len {args.pos_len}): raise --pos-len '
                     'or lower --max-len')
    if args.max_len < 5:
        parser.error(f'--max-len {args.max_len} leaves no room for a sentence '
                     'pair with <cls> and two <sep>: use at least 5 (the '
                     'book uses 64)')
    if args.num_hiddens % args.num_heads:
        parser.error(f'--num-hiddens {args.num_hiddens} is not divisible by '
                     f'--num-heads {args.num_heads}')
    n_devices = args.cpus or (len(args.gpus.split(',')) if args.gpus else 1)
    if args.batch_size < n_devices:
        parser.error(f'--batch-size {args.batch_size} is smaller than the '
                     f'{n_devices} devices: each needs at least one example')
    return args


def seed_everything(seed):
    """Seed Python's, NumPy's and MXNet's random number generators."""
    import mxnet as mx
    import numpy as onp
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


def run(args):
    """Everything after argument parsing; returns the training history."""
    from mxnet import gluon

    from . import checkpoint, dataset, model, plot, trainer

    seed_everything(args.seed)
    devices = trainer.parse_devices(args.gpus, args.cpus)
    start = time.perf_counter()
    train_iter, vocab = dataset.load_data_wiki(
        args.batch_size, args.max_len, data_dir=args.data_dir,
        cache_dir=args.cache_dir, use_cache=not args.no_cache)
    print(f'{len(train_iter.dataset)} sentence pairs, vocabulary of '
          f'{len(vocab)}, ready in {time.perf_counter() - start:.1f} s',
          flush=True)
    net = model.get_bert_model(len(vocab), args.num_hiddens,
                               args.ffn_num_hiddens, args.num_heads,
                               args.num_blks, args.dropout, args.pos_len)
    loss = gluon.loss.SoftmaxCELoss()
    history = trainer.train_bert(
        train_iter, net, loss, len(vocab), devices, args.steps, lr=args.lr,
        hybridize=not args.no_hybridize, log_every=args.log_every)
    train_config = {k: getattr(args, k) for k in (
        'steps', 'batch_size', 'max_len', 'lr', 'seed')}
    train_config['devices'] = [str(d) for d in devices]
    save_dir = args.save_dir
    checkpoint.save_model_dir(save_dir, net, vocab, train_config)
    with atomic_write(os.path.join(save_dir, 'history.json'), 'w') as f:
        json.dump(history, f)
    plot.write_history_csv(history, os.path.join(save_dir, 'history.csv'))
    plot.plot_history(history, os.path.join(save_dir, 'loss.png'),
                      title=f'{args.steps} steps, batch {args.batch_size}')
    print(f'Saved the model, history.csv and loss.png to {save_dir}')
    return history


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        run(args)
    except GluonBertError as e:
        print(f'{build_parser().prog}: error: {e}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('Interrupted; nothing was saved.', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    sys.exit(main())

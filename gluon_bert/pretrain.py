"""Pretrain BERT on WikiText-2 with the book's settings, or a recipe that learns.

    python -m gluon_bert.pretrain --gpus 0,1 --steps 50
    python -m gluon_bert.pretrain --recipe bert --max-minutes 30 --eval-every 500

Loads WikiText-2 (see --data-dir), builds the book's small BERT, trains it
for --steps steps (or --max-minutes) on the chosen devices, prints a progress
line while it runs and the book's two closing lines at the end, then writes
the model directory (--save-dir): model.params, vocab.json, config.json, the
per-step log history.csv and the loss curve loss.png.  ``--recipe book`` (the
default) is the guide's training; ``--recipe bert`` adds a warm-up/decay
schedule, AdamW, clipping and new examples every epoch
(:mod:`gluon_bert.recipe`).
"""
import argparse
import json
import os
import random
import sys
import time

from .model import PRESETS, estimate_memory
from .recipe import RECIPE_KEYS, RECIPES, describe_recipe
from .utils import (GluonBertError, HelpFormatter, atomic_write,
                    check_max_len, checked_type as _checked, parse_gpu_ids,
                    positive_int, run_command)

__all__ = ['main', 'parse_args', 'build_parser']

#: The guide's settings (the book recipe adds batch size, dropout, lr...).
DEFAULTS = dict(steps=50, max_len=64, num_hiddens=128, ffn_num_hiddens=256,
                num_heads=2, num_blks=2, pos_len=1000)


_positive_int = positive_int
_non_negative_int = _checked(int, lambda v: v >= 0, '0 or more')
_positive_float = _checked(float, lambda v: 0 < v < float('inf'),
                           'a positive number')
_dropout = _checked(float, lambda v: 0 <= v < 1, 'in [0, 1)')


def _gpus(text):
    try:
        parse_gpu_ids(text)
    except GluonBertError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def _from_recipe(key):
    return (f"(default: from --recipe: book {RECIPES['book'][key]}, bert "
            f"{RECIPES['bert'][key]})")


def build_parser():
    d = DEFAULTS
    p = argparse.ArgumentParser(
        prog='python -m gluon_bert.pretrain',
        description='Pretrain the d2l book\'s small BERT on WikiText-2 '
                    '(masked language modeling + next sentence prediction).',
        formatter_class=HelpFormatter)
    g = p.add_argument_group('devices')
    g.add_argument('--gpus', type=_gpus, default=None,
                   help='GPUs to shard each batch across, e.g. 0,1; on a '
                        'machine without GPUs training runs on cpu(0) '
                        '(default: all GPUs, else cpu(0))')
    g.add_argument('--cpus', type=_positive_int, default=None,
                   help='shard each batch across N CPU contexts instead')
    g.add_argument('--kvstore', default='device',
                   choices=('device', 'local', 'dist_sync',
                            'dist_device_sync'),
                   help='how gradients are summed: across the devices of '
                        'this process (device, local) or across the workers '
                        'of a job started by python -m gluon_bert.launch '
                        '(dist_sync; dist_device_sync for GPUs)')
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
    g.add_argument('--batch-size', type=_positive_int, default=None,
                   help='sentence pairs per batch, over all devices of a '
                        'process (per worker with --kvstore dist_*) '
                        + _from_recipe('batch_size'))
    g.add_argument('--max-len', type=_positive_int, default=d['max_len'],
                   help='tokens per example, <cls> and <sep> included')
    g = p.add_argument_group('model (the book\'s small BERT by default)')
    g.add_argument('--preset', choices=sorted(PRESETS), default=None,
                   help='a named size: small (the guide\'s), d2l-small '
                        '(d2l\'s bert.small), base (BERT_BASE), large '
                        '(BERT_LARGE); the four size flags below override it')
    g.add_argument('--num-hiddens', type=_positive_int,
                   default=d['num_hiddens'],
                   help='size of every token representation')
    g.add_argument('--ffn-num-hiddens', type=_positive_int,
                   default=d['ffn_num_hiddens'],
                   help='hidden size of the position-wise feed-forward '
                        'networks')
    g.add_argument('--num-heads', type=_positive_int, default=d['num_heads'],
                   help='attention heads; must divide --num-hiddens')
    g.add_argument('--num-blks', type=_positive_int, default=d['num_blks'],
                   help='Transformer encoder blocks')
    g.add_argument('--dropout', type=_dropout, default=None,
                   help='dropout in every block ' + _from_recipe('dropout'))
    g.add_argument('--pos-len', type=_positive_int, default=d['pos_len'],
                   help='length of the learnable position embedding (the '
                        "book's max_len=1000); --max-len may not exceed it")
    g = p.add_argument_group(
        'training', 'A recipe sets the flags of this group marked "from '
        '--recipe" (and --batch-size, --dropout); a flag given on the command '
        'line wins.  book: ' + describe_recipe('book') + '.  bert: '
        + describe_recipe('bert') + '.')
    g.add_argument('--recipe', choices=sorted(RECIPES), default='book',
                   help="book: the guide's training, the book's numbers "
                        '(default); bert: warm-up then linear decay of the '
                        'learning rate, AdamW with weight decay except on '
                        'LayerNorm and biases, gradient clipping, new NSP '
                        'pairs and MLM masks every epoch: a model that keeps '
                        'learning')
    g.add_argument('--steps', type=_positive_int, default=None,
                   help='optimizer steps (default: 50; with --max-minutes, '
                        'no limit but the clock)')
    g.add_argument('--max-minutes', type=_positive_float, default=None,
                   help='train for this wall-clock budget (evaluations '
                        'included), then save as at the end of a normal run. '
                        'A decaying schedule ends with the budget: the number '
                        'of steps is estimated from the speed measured so far '
                        '(re-estimated every step, kept in history.csv as '
                        '"total"). With --steps too, whichever comes first')
    g.add_argument('--lr', type=_positive_float, default=None,
                   help='(peak) learning rate ' + _from_recipe('lr'))
    g.add_argument('--optimizer', choices=('adam', 'adamw', 'sgd'),
                   default=None,
                   help="adam (the book's), adamw (Adam with decoupled weight "
                        'decay, none on LayerNorm and biases) or sgd '
                        + _from_recipe('optimizer'))
    g.add_argument('--schedule', choices=('constant', 'linear'), default=None,
                   help='learning rate over the steps: constant (the book), '
                        'or linear warm-up then linear decay to zero '
                        + _from_recipe('schedule'))
    g.add_argument('--warmup', type=_checked(float, lambda v: 0 <= v < 1,
                                             'in [0, 1)'), default=None,
                   help='share of the steps spent warming up, with --schedule '
                        'linear ' + _from_recipe('warmup'))
    g.add_argument('--weight-decay', type=_checked(
        float, lambda v: 0 <= v < float('inf'), '0 or more'), default=None,
        help='weight decay ' + _from_recipe('weight_decay'))
    g.add_argument('--clip-norm', type=_checked(
        float, lambda v: 0 <= v < float('inf'), '0 or more'), default=None,
        help='clip the gradients to this global norm, 0 for no clipping '
             + _from_recipe('clip_norm'))
    g.add_argument('--resample', dest='resample', action='store_const',
                   const=True, default=None,
                   help='draw new NSP pairs and MLM masks for every epoch '
                        '(the book draws them once); the last, smaller batch '
                        'of each epoch is then left out, so that the graph '
                        'sees few input shapes ' + _from_recipe('resample'))
    g.add_argument('--no-resample', dest='resample', action='store_const',
                   const=False, help='draw the examples once, as the book')
    g.add_argument('--init', choices=('xavier', 'normal'), default=None,
                   help="initial weights: xavier (the book's) or normal "
                        "(BERT's N(0, 0.02^2)) " + _from_recipe('init'))
    g.add_argument('--eval-every', type=_non_negative_int, default=0,
                   help='every N steps (and at the end) print MLM/NSP loss '
                        'and accuracy on the valid split (as python -m '
                        'gluon_bert.evaluate --split valid computes them), '
                        'keep them in history.csv and draw them in loss.png '
                        '(0: never)')
    g.add_argument('--accumulate', type=_positive_int, default=1,
                   help='batches per optimizer step (gradient accumulation): '
                        'a step on K x --batch-size pairs in the memory of '
                        'one batch')
    g.add_argument('--no-memory-check', action='store_true',
                   help='train even when the memory estimate says it will '
                        'not fit')
    g.add_argument('--seed', type=int, default=0,
                   help='seeds Python, NumPy and MXNet for a reproducible run')
    g.add_argument('--loss', choices=('fused', 'book'), default='fused',
                   help="fused: model and both losses in one hybridized "
                        "graph that skips padded tokens and MLM slots "
                        "(faster); book: the book's get_batch_loss_bert on "
                        "the model's outputs. The same losses (with --dropout "
                        "0 equal to 1e-4; dropout draws differ)")
    g.add_argument('--no-hybridize', action='store_true',
                   help='run the model imperatively (slower; for debugging)')
    g.add_argument('--log-every', type=_non_negative_int, default=10,
                   help='progress line every N steps (0: none)')
    g = p.add_argument_group('output')
    g.add_argument('--save-dir', default=os.path.join('runs', 'pretrain'),
                   help='model directory to write: model.params, vocab.json, '
                        'config.json, trainer.states, state.json, '
                        'history.csv, loss.png')
    g.add_argument('--checkpoint-every', type=_non_negative_int, default=0,
                   help='also save a checkpoint every N steps (0: only at '
                        'the end and on Ctrl-C)')
    g.add_argument('--resume', action='store_true',
                   help='continue the run saved in --save-dir from its last '
                        'checkpoint, with its settings, up to --steps')
    return p


#: Settings a resumed run takes from the checkpoint's config.json.
RESUMED = ('batch_size', 'max_len', 'num_hiddens', 'ffn_num_hiddens',
           'num_heads', 'num_blks', 'dropout', 'pos_len', 'lr', 'seed',
           'data_dir', 'no_hybridize', 'accumulate', 'optimizer', 'recipe',
           'schedule', 'warmup', 'weight_decay', 'clip_norm', 'resample',
           'max_minutes', 'eval_every', 'init', 'loss')
_SIZES = ('num_hiddens', 'ffn_num_hiddens', 'num_heads', 'num_blks')
#: Resumed settings that a resumed run may change: limits, not the recipe.
_LIMITS = ('max_minutes', 'eval_every')


def parse_args(argv=None):
    """Parse and check the command line; errors exit with code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Which settings were given on the command line (not defaults)
    quiet = build_parser()
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    args.explicit = sorted(vars(quiet.parse_args(argv)))
    if args.preset:
        for key, value in zip(_SIZES, PRESETS[args.preset]):
            if key not in args.explicit:
                setattr(args, key, value)
    _apply_recipe(args)
    if not args.resume:  # a resumed run may bring its own --max-minutes
        _finish_settings(args)
    if args.gpus is not None and args.cpus is not None:
        parser.error('--gpus and --cpus exclude each other: pick one')
    if args.max_len > args.pos_len:
        parser.error(f'--max-len {args.max_len} is longer than the position '
                     f'embedding (--pos-len {args.pos_len}): raise --pos-len '
                     'or lower --max-len')
    try:
        check_max_len(args.max_len)
    except GluonBertError as e:
        parser.error(str(e))
    if args.num_hiddens % args.num_heads:
        parser.error(f'--num-hiddens {args.num_hiddens} is not divisible by '
                     f'--num-heads {args.num_heads}')
    n_devices = args.cpus or (len(parse_gpu_ids(args.gpus)) if args.gpus
                              else 1)
    if args.batch_size < n_devices:
        parser.error(f'--batch-size {args.batch_size} is smaller than the '
                     f'{n_devices} devices: each needs at least one example')
    if args.resume:
        state = os.path.join(args.save_dir, 'state.json')
        if not os.path.isfile(state):
            parser.error(f'--resume: {state} does not exist; train without '
                         '--resume first, or point --save-dir at a run')
    return args


def _apply_recipe(args):
    """Fill the settings not given on the command line from --recipe."""
    for key in RECIPE_KEYS:
        if key not in args.explicit:
            setattr(args, key, RECIPES[args.recipe][key])


def seed_everything(seed):
    """Seed Python's, NumPy's and MXNet's random number generators."""
    import mxnet as mx
    import numpy as onp
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


def _resume_settings(args):
    """Take the settings of the run in --save-dir; conflicts are errors."""
    from .checkpoint import load_config
    saved = load_config(args.save_dir)['train'].get('settings', {})
    for key in RESUMED:
        if key not in saved:
            continue
        if key in args.explicit and key in _LIMITS:
            continue  # a new budget may be given
        if key in args.explicit and getattr(args, key) != saved[key]:
            flag = '--' + key.replace('_', '-')
            raise GluonBertError(
                f'{flag} {getattr(args, key)} differs from the run being '
                f'resumed ({saved[key]}): drop {flag}, or start a new run in '
                'another --save-dir')
        setattr(args, key, saved[key])


def _finish_settings(args):
    """--steps defaults to the guide's 50 unless a time budget is given."""
    if args.steps is None and args.max_minutes is None:
        args.steps = DEFAULTS['steps']


class _StopOnSignal:
    """Turn Ctrl-C into 'stop after this step' while training runs."""

    def __init__(self):
        self.stop = False
        self._old = None

    def __enter__(self):
        import signal
        try:
            self._old = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: Ctrl-C stays as it is
            self._old = None
        return self

    def _handle(self, signum, frame):
        if self.stop:  # a second Ctrl-C: give up at once
            raise KeyboardInterrupt
        self.stop = True
        print('\nInterrupted: finishing this step, then saving a checkpoint '
              '(Ctrl-C again to quit without saving).', file=sys.stderr,
              flush=True)

    def __exit__(self, *exc):
        import signal
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)


def _kvstore(args):
    """(kvstore or None, rank, no. of workers) for --kvstore."""
    if not args.kvstore.startswith('dist'):
        return None, 0, 1
    if 'DMLC_ROLE' not in os.environ:
        raise GluonBertError(
            f'--kvstore {args.kvstore} needs a job of scheduler, servers and '
            'workers: start it with python -m gluon_bert.launch -n WORKERS '
            '-s SERVERS -- python -m gluon_bert.pretrain --kvstore '
            f'{args.kvstore} ...')
    import mxnet as mx
    kvstore = mx.kv.create(args.kvstore)
    if (kvstore.rank == 0
            and os.environ.get('MXNET_ENGINE_TYPE') != 'NaiveEngine'):
        print('warning: with MXNet\'s threaded engine, dist_sync gradients '
              'have differed from run to run; python -m gluon_bert.launch '
              'sets MXNET_ENGINE_TYPE=NaiveEngine', file=sys.stderr)
    return kvstore, kvstore.rank, kvstore.num_workers


def _gb(n):
    return f'{n / 2 ** 30:.2f} GB'


#: Extra room on a GPU for what the estimate leaves out (cuDNN/cuBLAS
#: workspaces, the CUDA context); its constants were fitted on a CPU.
GPU_MARGIN = 1.1
#: On a GPU, only refuse when the estimate exceeds what is free this much.
GPU_REFUSE = 1.5


def _memory_pools(devices):
    """Devices grouped by the memory they draw on: all CPU contexts share
    the machine's RAM, every GPU has its own."""
    pools = {}
    for device in devices:
        key = 'cpu' if device.device_type == 'cpu' else str(device)
        pools.setdefault(key, []).append(device)
    return list(pools.values())


def _check_memory(args, vocab_size, devices, say, free_memory=None):
    """Print the size estimate; a configuration that cannot fit is an error.

    Every device is checked (CPU contexts together: they share RAM).  On a
    CPU the estimate must fit in 90 % of the available memory; on a GPU,
    with a margin for workspaces, a tight fit is only a warning, and the
    run is refused when the estimate clearly exceeds the free memory.
    """
    from .trainer import available_memory
    free_memory = free_memory or available_memory
    est = estimate_memory(vocab_size, args.num_hiddens, args.ffn_num_hiddens,
                          args.num_heads, args.num_blks, args.max_len,
                          args.batch_size, len(devices), args.pos_len)
    need = est['state'] + est['activations']
    pools = [(pool, free_memory(pool[0])) for pool in _memory_pools(devices)]
    free_text = ', '.join(f'{_gb(free)} available on '
                          + ('/'.join(str(d) for d in pool))
                          for pool, free in pools)
    say(f'Model: {est["parameters"] / 1e6:.1f}M parameters; estimated memory '
        f'per device: {_gb(est["state"])} for weights, gradients and Adam, '
        f'{_gb(est["activations"])} of activations for '
        f'{-(-args.batch_size // len(devices))} pairs of {args.max_len} '
        f'tokens; {free_text}', flush=True)
    for pool, free in pools:
        gpu = pool[0].device_type == 'gpu'
        wanted = need * len(pool) * (GPU_MARGIN if gpu else 1.0)
        if wanted <= 0.9 * free or args.no_memory_check:
            continue
        if gpu and wanted <= GPU_REFUSE * free:
            say(f'warning: {pool[0]} may run out of memory: about '
                f'{_gb(wanted)} needed, {_gb(free)} free (the estimate is '
                'rough on GPUs); lower --batch-size if it does', flush=True)
            continue
        budget = 0.9 * free / len(pool) - est['state']
        fits = int(budget // est['per_example']) if budget > 0 else 0
        if fits < 1:
            hint = ('not even one example fits: lower --max-len, use a '
                    'smaller --preset, or a device with more memory')
        else:
            per_batch = fits * len(devices)
            steps = -(-args.batch_size * args.accumulate // per_batch)
            hint = (f'about {per_batch} pairs fit per batch: try --batch-size '
                    f'{per_batch} --accumulate {steps} for the same '
                    f'{per_batch * steps}-pair steps, or lower --max-len')
        where = ('/'.join(str(d) for d in pool) + ' (they share the RAM)'
                 if len(pool) > 1 else str(pool[0]))
        raise GluonBertError(
            f'this configuration needs about {_gb(wanted)} but {where} has '
            f'{_gb(free)} available: {hint} (or pass --no-memory-check to '
            'try anyway)')


def _valid_evaluator(args, vocab):
    """``evaluate(net)`` on the valid split, as ``gluon_bert.evaluate`` does
    with its defaults (:func:`~gluon_bert.dataset.load_heldout`), so the
    last figures equal its output."""
    from . import dataset, trainer
    data_iter = dataset.load_heldout(args.max_len, vocab, 'valid',
                                     args.data_dir, cache_dir=args.cache_dir,
                                     use_cache=not args.no_cache)
    return lambda net: trainer.evaluate_bert(net, data_iter, len(vocab))


def run(args):
    """Everything after argument parsing.

    Returns the training history and whether Ctrl-C stopped it early.
    """
    from mxnet import gluon

    from . import checkpoint, dataset, model, plot, trainer

    resume = None
    if args.resume:
        _resume_settings(args)
    _finish_settings(args)
    kvstore, rank, workers = _kvstore(args)
    chief = rank == 0
    say = print if chief else (lambda *a, **k: None)
    seed_everything(args.seed)
    devices = trainer.parse_devices(args.gpus, args.cpus, log=say)
    start = time.perf_counter()
    train_iter, vocab = dataset.load_data_wiki(
        args.batch_size, args.max_len, data_dir=args.data_dir,
        cache_dir=args.cache_dir, use_cache=not args.no_cache)
    say(f'{len(train_iter.dataset)} sentence pairs, vocabulary of '
        f'{len(vocab)}, ready in {time.perf_counter() - start:.1f} s',
        flush=True)
    # Each worker reads its own share of the examples; with --resample,
    # epochs 1, 2, ... draw new pairs and masks
    resample = dataset.ResampledEpochs(
        dataset.resolve_data_dir(args.data_dir), args.max_len, vocab,
        args.seed) if args.resample else None
    train_iter = dataset.DataIter(
        train_iter.dataset, args.batch_size,
        shard=(rank, workers) if workers > 1 else None, resample=resample,
        drop_last=args.resample)
    if workers > 1:
        say(f'{workers} workers, {len(train_iter.indices)} pairs each; a '
            f'step sees {workers} x {args.batch_size} pairs', flush=True)
    _check_memory(args, len(vocab), devices, say)
    net = model.get_bert_model(len(vocab), args.num_hiddens,
                               args.ffn_num_hiddens, args.num_heads,
                               args.num_blks, args.dropout, args.pos_len)
    trainer.init_bert(net, devices, args.init)
    optimizer = trainer.make_trainer(net, args.lr, kvstore or args.kvstore,
                                     args.optimizer, args.weight_decay)
    evaluate = _valid_evaluator(args, vocab) if args.eval_every else None
    save_dir = args.save_dir
    if args.resume:
        resume = checkpoint.load_checkpoint(save_dir)
        net.load_parameters(resume['files']['model.params']['path'],
                            ctx=devices)
        checkpoint.load_trainer_states(
            optimizer, resume['files']['trainer.states']['path'],
            resume['trainer'])
        checkpoint.restore_random_states(resume)
        if args.steps is not None and resume['step'] >= args.steps:
            raise GluonBertError(f'the run in {save_dir} is at step '
                                 f'{resume["step"]} already: pass a larger '
                                 '--steps to train further')
        wall = (resume['history'].get('wall') or [None])[-1]
        if args.max_minutes and wall and wall >= 60 * args.max_minutes:
            raise GluonBertError(f'the run in {save_dir} has trained '
                                 f'{wall / 60:.1f} minutes already: pass a '
                                 'larger --max-minutes to train further')
        say(f'Resuming from step {resume["step"]} of {save_dir}',
            flush=True)
    train_config = {k: getattr(args, k) for k in (
        'steps', 'batch_size', 'max_len', 'lr', 'seed', 'accumulate',
        'kvstore', 'optimizer', 'recipe', 'max_minutes')}
    train_config['workers'] = workers
    train_config['devices'] = [str(d) for d in devices]
    train_config['settings'] = {k: getattr(args, k) for k in RESUMED}
    last = {}

    def save(history, position):
        if chief:  # one writer in a distributed job
            checkpoint.save_checkpoint(save_dir, net, vocab, optimizer,
                                       train_config, history, position)
        last['step'] = history['step'][-1]

    with _StopOnSignal() as signal_state:
        def on_step(step, history, position):
            last['history'], last['position'] = history, position
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                save(history, position)
            return signal_state.stop

        try:
            history = trainer.train_bert(
                train_iter, net, gluon.loss.SoftmaxCELoss(), len(vocab),
                devices, args.steps, lr=args.lr, trainer=optimizer,
                fused=args.loss == 'fused',
                hybridize=not args.no_hybridize, log_every=args.log_every,
                on_step=on_step, seed=args.seed, resume=resume,
                accumulate=args.accumulate, kvstore=kvstore, verbose=chief,
                schedule=args.schedule, warmup=args.warmup,
                clip_norm=args.clip_norm,
                max_seconds=(60 * args.max_minutes if args.max_minutes
                             else None),
                evaluate=evaluate, eval_every=args.eval_every)
        except trainer.NonFiniteLossError as e:
            kept = (f'the last good checkpoint (step {last["step"]}) is in '
                    f'{save_dir}' if 'step' in last else
                    'no checkpoint was saved (use --checkpoint-every)')
            raise GluonBertError(f'{e}; {kept}') from None
    if last.get('step') != history['step'][-1]:
        save(history, last.get('position'))
    if not chief:
        return history, signal_state.stop
    with atomic_write(os.path.join(save_dir, 'history.json'), 'w') as f:
        json.dump(history, f)
    plot.write_history_csv(history, os.path.join(save_dir, 'history.csv'))
    plot.plot_history(history, os.path.join(save_dir, 'loss.png'),
                      title=f'{history["step"][-1]} steps, batch '
                            f'{args.batch_size}')
    if signal_state.stop:
        print(f'Stopped at step {history["step"][-1]}; the checkpoint is in '
              f'{save_dir}. Resume with: python -m gluon_bert.pretrain '
              f'--save-dir {save_dir} --resume'
              + (f' --steps {args.steps}' if args.steps else ''),
              file=sys.stderr)
    else:
        print(f'Saved the model, history.csv and loss.png to {save_dir}')
    return history, signal_state.stop


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    args = parse_args(argv)
    try:
        code, result = run_command(build_parser().prog, run, args)
    except KeyboardInterrupt:
        print('Interrupted before training began; nothing was saved.',
              file=sys.stderr)
        return 130
    if code:
        return code
    _, stopped = result
    return 130 if stopped else 0


if __name__ == '__main__':
    sys.exit(main())

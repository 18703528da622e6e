"""Pretrain BERT on WikiText-2 with the book's settings, or a recipe that
learns.

    python -m gluon_bert.pretrain --gpus 0,1 --steps 50
    python -m gluon_bert.pretrain --recipe bert-wp --max-minutes 30 \\
        --eval-every 500

Trains the book's small BERT for --steps (or --max-minutes), prints progress
and the book's two closing lines, and writes the model directory
(--save-dir): model.params, vocab.json, config.json, history.csv, loss.png.
"""
import dataclasses
import importlib.util
import json
import logging
import os
import random
import signal
import sys
import time

from . import sources
from .config import RECIPES, PretrainConfig, describe_recipe
from .flags import add_arguments, config_from_flags, resumed_config
from .sizes import PRESETS
from .signals import StopOnSignal, run_stoppable, signal_name
from .utils import (ArgumentParser, GluonBertError, HelpFormatter,
                    atomic_write, count_devices)

__all__ = ['main', 'parse_args', 'parse_flags', 'build_parser',
           'make_config']

logger = logging.getLogger('gluon_bert.pretrain')  # also when run as __main__

#: The configuration's groups of flags, for --help.
GROUPS = {
    'model': ("model (the book's small BERT by default)", None),
    'training': ('training', 'A recipe sets the flags marked "from '
                 '--recipe" (and --batch-size, --dropout, --vocab, '
                 '--whole-word); a flag given on the command line wins.  '
                 + '  '.join(f'{name}: {describe_recipe(name)}.'
                             for name in RECIPES)),
}
_SIZES = ('num_hiddens', 'ffn_num_hiddens', 'num_heads', 'num_blks')


def build_parser():
    p = ArgumentParser(
        prog='python -m gluon_bert.pretrain',
        description='Pretrain the d2l book\'s small BERT on WikiText-2 '
                    '(masked language modeling + next sentence prediction).',
        formatter_class=HelpFormatter)
    return add_arguments(p, PretrainConfig, GROUPS)


def parse_flags(argv=None):
    """The flags given on the command line, as ``{field: value}`` (a size
    ``--preset`` expanded into the size fields not given); usage errors
    exit with code 2."""
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    if given.get('preset'):
        for key, value in zip(_SIZES, PRESETS[given['preset']]):
            given.setdefault(key, value)
    try:
        count_devices(given.get('gpus'), given.get('cpus'))
    except GluonBertError as e:
        parser.error(e.worded())
    if given.get('resume'):
        state = os.path.join(given.get('save_dir', PretrainConfig.save_dir),
                             'state.json')
        if not os.path.isfile(state):
            parser.error(f'--resume: {state} does not exist; train without '
                         '--resume first, or point --save-dir at a run')
    elif not given.get('init_from'):  # checked once the model is read
        _check(config_from_flags(given), parser.error)
    return given


def _check(config, error):
    """The rules that tie settings together; ``error(message)`` exits."""
    if config.max_len > config.pos_len:
        error(f'--max-len {config.max_len} is longer than the position '
              f'embedding (--pos-len {config.pos_len}): raise --pos-len or '
              'lower --max-len')
    if config.num_hiddens % config.num_heads:
        error(f'--num-hiddens {config.num_hiddens} is not divisible by '
              f'--num-heads {config.num_heads}')
    n_devices = count_devices(config.gpus, config.cpus) or 1
    if config.batch_size < n_devices:
        error(f'--batch-size {config.batch_size} is smaller than the '
              f'{n_devices} devices: each needs at least one example')
    if round(config.max_len * config.mask_prob) < 1:
        error(f'--mask-prob {config.mask_prob} of --max-len {config.max_len} '
              'tokens is no MLM slot: raise --mask-prob')
    if config.corpus and config.data_dir:
        error('--corpus and --data-dir exclude each other: --corpus '
              'replaces WikiText-2 (give it the WikiText folder itself)')
    if (config.valid_corpus or config.max_words) and not config.corpus:
        error('--valid-corpus and --max-words go with --corpus')
    if config.max_words and config.vocab != 'word':
        error('--max-words caps a word vocabulary: drop it with --vocab '
              'wordpiece (--vocab-size sets its size)')
    if config.init_step and not config.init_from:
        error('--init-step names a checkpoint of --init-from\'s run: add '
              '--init-from')
    if config.whole_word and config.vocab != 'wordpiece':
        error('--whole-word needs a subword vocabulary: add --vocab '
              'wordpiece')
    if (config.vocab == 'wordpiece' and not config.resume
            and importlib.util.find_spec('tokenizers') is None):
        error("--vocab wordpiece learns its vocabulary with Hugging Face "
              "tokenizers: pip install 'gluon_bert[subword]'")


def _refuse(message):
    raise GluonBertError(message)


def _saved_settings(save_dir):
    """The pretraining settings config.json of ``save_dir`` keeps (None if
    it keeps none)."""
    from .checkpoint import load_config
    return (load_config(save_dir).get('train') or {}).get('config')


def make_config(given):
    """The run's configuration: from the flags, or with --resume the saved
    run's (with --branch-from, that folder's), with the flags that may
    change (a new budget and cooldown, devices, output)."""
    if given.get('branch_from'):
        if not given.get('branch_step') or given.get('resume'):
            raise GluonBertError('branch_from needs branch_step (one of its '
                                 'kept checkpoints), and no resume',
                                 ['branch_from', 'branch_step', 'resume'])
        source, given = given['branch_from'], dict(given, resume=True)
    elif given.get('resume'):
        source = given.get('save_dir', PretrainConfig.save_dir)
    elif given.get('init_from'):
        config = sources.from_model(config_from_flags(given), given)
        _check(config, _refuse)
        return config.with_default_steps()
    else:
        return config_from_flags(given).with_default_steps()
    saved = _saved_settings(source)
    if not saved:
        raise GluonBertError(f'{source} holds no pretraining settings to '
                             'resume: train into another --save-dir')
    return resumed_config(saved, given).with_default_steps()


def parse_args(argv=None):
    """Parse and check the command line into a :class:`~gluon_bert.config.
    PretrainConfig` (a fresh run's; :func:`make_config` resumes)."""
    given = parse_flags(argv)
    return config_from_flags({k: v for k, v in given.items()
                              if k != 'resume'}).with_default_steps()


def seed_everything(seed):
    """Seed Python's, NumPy's and MXNet's random number generators."""
    import mxnet as mx
    import numpy as onp
    random.seed(seed)
    onp.random.seed(seed)
    mx.random.seed(seed)


def _kvstore(config):
    """(kvstore or None, rank, no. of workers) for --kvstore."""
    if not config.kvstore.startswith('dist'):
        return None, 0, 1
    from .distributed import join_job
    kvstore = join_job(config.kvstore)
    return kvstore, kvstore.rank, kvstore.num_workers


def _train_options(config, verbose=True):
    """How :func:`~gluon_bert.trainer.train_bert` trains, from ``config``
    (``verbose``: this process prints, as rank 0 of a job does)."""
    from .trainer import TrainOptions
    # The options named as the flags are taken as they are
    same = {f.name: getattr(config, f.name)
            for f in dataclasses.fields(TrainOptions)
            if hasattr(config, f.name)}
    return TrainOptions(**same, fused=config.loss == 'fused',
                        hybridize=not config.no_hybridize,
                        max_seconds=(60 * config.max_minutes
                                     if config.max_minutes else None),
                        verbose=verbose,
                        nsp_weight=0.0 if config.no_nsp else 1.0)


def _restore(config, net, optimizer, devices, say):
    """Load the checkpoint of --save-dir into ``net`` and ``optimizer``;
    returns it (what ``train_bert`` resumes from)."""
    from . import checkpoint, state
    save_dir = config.save_dir
    resume = checkpoint.load_checkpoint(save_dir)
    net.load_parameters(resume['files']['model.params']['path'], ctx=devices)
    state.load_trainer_states(
        optimizer, resume['files']['trainer.states']['path'],
        resume['trainer'])
    state.restore_random_states(resume)
    if config.steps is not None and resume['step'] >= config.steps:
        raise GluonBertError(f'the run in {save_dir} is at step '
                             f'{resume["step"]} already: pass a larger '
                             '--steps to train further')
    wall = (resume['history'].get('wall') or [None])[-1]
    if config.max_minutes and wall and wall >= 60 * config.max_minutes:
        raise GluonBertError(f'the run in {save_dir} has trained '
                             f'{wall / 60:.1f} minutes already: pass a '
                             'larger --max-minutes to train further')
    say(f'Resuming from step {resume["step"]} of {save_dir}', flush=True)
    return resume


def _write_outputs(config, history, signum):
    """history.json, history.csv and loss.png, and the closing line."""
    from . import history as record
    save_dir = config.save_dir
    with atomic_write(os.path.join(save_dir, 'history.json'), 'w') as f:
        json.dump(history, f)
    record.write_history_csv(history, os.path.join(save_dir, 'history.csv'))
    record.plot_history(history, os.path.join(save_dir, 'loss.png'),
                        title=f'{history["step"][-1]} steps, batch '
                              f'{config.batch_size}')
    if signum is not None:
        print(f'Stopped by {signal_name(signum)} at step '
              f'{history["step"][-1]}; the checkpoint is in {save_dir}. '
              'Resume with: python -m gluon_bert.pretrain '
              f'--save-dir {save_dir} --resume'
              + (f' --steps {config.steps}' if config.steps else ''),
              file=sys.stderr)
    else:
        print(f'Saved the model, history.csv and loss.png to {save_dir}')


def _earlier_run(save_dir):
    """What ``save_dir`` holds, for :func:`~gluon_bert.rundir.make_room_for`:
    None when no run is
    there, else ``(settings, step, holds)``: the pretraining run's settings
    and step, or ``holds`` saying what the folder holds instead (a
    fine-tuned classifier, or a run that cannot be read)."""
    from . import checkpoint
    if not os.path.isfile(os.path.join(save_dir, checkpoint.CONFIG)):
        return None
    try:
        saved = _saved_settings(save_dir)
    except GluonBertError:
        saved = None
    if not saved:
        try:
            fine_tuned = 'classifier' in checkpoint.load_config(save_dir)
        except GluonBertError:
            fine_tuned = False
        return None, None, ('a fine-tuned classifier, not a pretraining run'
                            if fine_tuned else
                            'a run whose config.json cannot be read')
    try:
        step = checkpoint.load_checkpoint(save_dir)['step']
    except GluonBertError:
        step = None
    return saved, step, None


def run(config):
    """Pretrain as ``config`` (a :class:`~gluon_bert.config.PretrainConfig`)
    says: everything after argument parsing.

    Returns the training history and the signal (SIGINT, SIGTERM) that
    stopped it early, or None.
    """
    from .rundir import RunLock
    kvstore, rank, workers = _kvstore(config)
    chief = rank == 0
    # One run at a time in a folder (the chief writes, so it holds it)
    lock = RunLock(config.save_dir) if chief else None
    if lock is None:
        return _run(config, kvstore, rank, workers)
    with lock:
        if config.branch_from:
            _branch(config)
        elif not config.resume:
            from .rundir import make_room_for
            make_room_for(config, _earlier_run(config.save_dir))
        return _run(config, kvstore, rank, workers)


def _branch(config):
    """--branch-from: --save-dir becomes a copy of that run at
    --branch-step (a new or empty folder only)."""
    from .checkpoint import branch_checkpoint
    from .rundir import LOCK
    if [n for n in os.listdir(config.save_dir) if n != LOCK]:
        raise GluonBertError(f'{config.save_dir} is not empty: a branch '
                             'starts in a new save_dir (continue a stopped '
                             'branch there with resume)',
                             ['save_dir', 'resume'])
    saved = branch_checkpoint(config.branch_from, config.branch_step,
                              config.save_dir)
    print(f'Branched from {config.branch_from} at step {saved["step"]}',
          flush=True)


def _build(config, kvstore, rank, workers, say):
    """The devices, data, model and optimizer of a run (restored from the
    checkpoint with --resume), checked to fit before the first step."""
    from . import devices as device_list, model, sizes, state, trainer
    seed_everything(config.seed)
    devices = device_list.parse_devices(config.gpus, config.cpus)
    train_iter, vocab = sources.training_data(config, rank, workers, say)
    sizes.check_memory(config, len(vocab), devices)
    net = model.get_bert_model(len(vocab), config.num_hiddens,
                               config.ffn_num_hiddens, config.num_heads,
                               config.num_blks, config.dropout, config.pos_len,
                               config.tie_output)
    trainer.init_bert(net, devices, config.init)
    if config.init_from and not config.resume:
        from .checkpoint import load_params, pretrained_source
        load_params(net, pretrained_source(config.init_from,
                                           config.init_step)[2],
                    devices, config.init_from)
        say(f'Starting from the weights of {config.init_from}', flush=True)
    if rank == 0:  # before the first step: room for two checkpoints
        state.check_room(config.save_dir, net)
    optimizer = trainer.make_trainer(net, config.lr, kvstore or config.kvstore,
                                     config.optimizer, config.weight_decay)
    resume = (_restore(config, net, optimizer, devices, say) if config.resume
              else None)
    return devices, train_iter, vocab, net, optimizer, resume


def _record(config, workers, devices, train_iter):
    """What config.json keeps of the run: the whole configuration, which
    --resume restores, where it ran and, with --corpus, the shards' key (a
    resumed run must read the same text)."""
    record = dict(config=config.to_dict(), workers=workers,
                  devices=[str(d) for d in devices])
    if config.corpus:
        record['corpus'] = train_iter.corpus.key
    return record


def _run(config, kvstore, rank, workers):
    """:func:`run`, once the folder is this run's."""
    from mxnet import gluon

    from . import checkpoint, trainer
    chief = rank == 0
    say = print if chief else (lambda *a, **k: None)
    library = logging.getLogger('gluon_bert')
    if not chief and library.getEffectiveLevel() == logging.INFO:
        library.setLevel(logging.WARNING)  # the chief reports for the job
    devices, train_iter, vocab, net, optimizer, resume = _build(
        config, kvstore, rank, workers, say)
    evaluate = (sources.valid_evaluator(config, vocab, train_iter)
                if config.eval_every else None)
    record = _record(config, workers, devices, train_iter)
    last = {}

    def save(history, position):
        if chief:  # one writer in a distributed job
            checkpoint.save_checkpoint(config.save_dir, net, vocab, optimizer,
                                       record, history, position,
                                       keep=config.keep_checkpoints or None)
            logger.debug('checkpoint of step %d written to %s',
                         history['step'][-1], config.save_dir)
        last['step'] = history['step'][-1]

    with StopOnSignal(keep=workers > 1) as signal_state:
        def on_step(step, history, position):
            last['history'], last['position'] = history, position
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                save(history, position)
            return signal_state.stop

        callbacks = trainer.Callbacks(evaluate, on_step)
        try:
            history = trainer.train_bert(
                train_iter, net, gluon.loss.SoftmaxCELoss(), len(vocab),
                devices, config.steps, optimizer,
                _train_options(config, chief), callbacks=callbacks,
                resume=resume, kvstore=kvstore)
        except trainer.NonFiniteLossError as e:
            kept = (f'the last good checkpoint (step {last["step"]}) is in '
                    f'{config.save_dir}' if 'step' in last else
                    'no checkpoint was saved (use --checkpoint-every)')
            raise GluonBertError(f'{e.worded()}; {kept}') from None
        # Still under the handler: a second signal waits for the checkpoint
        if last.get('step') != history['step'][-1]:
            save(history, last.get('position'))
        # Stopped with the other workers of a job before this one's own
        # signal came: the launcher's SIGTERM
        signum = signal_state.signum or (
            signal.SIGTERM if history.get('stopped') else None)
        if chief:
            _write_outputs(config, history, signum)
        if kvstore is not None:  # the goodbye, under the signal handler
            from .distributed import leave_job
            leave_job(kvstore)
    return history, signum


def main(argv=None):
    """Command-line entry point; returns the exit code (130 after Ctrl-C,
    143 after SIGTERM)."""
    return run_stoppable(build_parser().prog, lambda g: run(make_config(g)),
                         parse_flags(argv))


if __name__ == '__main__':
    sys.exit(main())

"""Fine-tune a pretrained BERT on a classification task (the book's next step).

    python -m gluon_bert.finetune --model-dir runs/pretrain --task sst2 \\
        --data-dir ../shared/data/sst-2 --save-dir runs/sst2 [--init random]

As d2l's "Natural Language Inference: Fine-Tuning BERT" does it (``--recipe
book``; on the GLUE tasks ``--recipe glue`` by default), hybridized, each
batch's valid tokens packed (``--padded``: the book's batches).  The best
dev model goes to --save-dir (``gluon_bert.predict`` loads it), then the
test split is scored into results.json; ``--init random`` is the control.
The run locks --save-dir; Ctrl-C or SIGTERM saves its state for --resume.
"""
import json
import os
import sys

from .classifier import (evaluate_task, finetune, format_metrics,
                         load_classifier, save_classifier, set_dropout)
from .config import FinetuneConfig, finetune_recipe
from .flags import add_arguments
from .tasks import TASKS
from .utils import (ArgumentParser, GluonBertError, HelpFormatter,
                    atomic_write, count_devices, write_error)

__all__ = ['main', 'parse_args', 'build_parser', 'tokenizer_for']

#: The configuration's groups of flags, for --help.
GROUPS = {'model and data': ('model and data', None),
          'training': ('training', "The book's settings, but for the GLUE "
                       'tasks: see --recipe.'),
          'devices': ('devices', None),
          'output': ('output', 'Ctrl-C or SIGTERM finishes the step, saves '
                     'the state in SAVE_DIR/resume/ and exits 130 or 143; '
                     '--resume continues from there exactly.')}


def build_parser():
    p = ArgumentParser(
        prog='python -m gluon_bert.finetune',
        description='Fine-tune a pretrained BERT (a gluon_bert model '
                    'directory, or d2l:bert.small) on a GLUE task, SNLI or '
                    'a GLUE-style TSV task, as the d2l book fine-tunes on '
                    'SNLI.  The test split is scored when the folder has '
                    'one (GLUE publishes none for RTE and STS-B).',
        formatter_class=HelpFormatter)
    return add_arguments(p, FinetuneConfig, GROUPS)


def parse_args(argv=None):
    """The command line as a :class:`~gluon_bert.config.FinetuneConfig`;
    usage errors exit with code 2."""
    parser = build_parser()
    given = vars(parser.parse_args(argv))
    try:
        recipe = ({} if {'lr', 'batch_size'} <= set(given) else
                  finetune_recipe(given.get('task', FinetuneConfig.task),
                                  given.get('recipe', FinetuneConfig.recipe)))
        count_devices(given.get('gpus'), given.get('cpus'))
    except GluonBertError as e:
        parser.error(e.worded())
    return FinetuneConfig(**{**recipe, **given})


def _load_bert(args, device):
    """The BERT to fine-tune, its vocabulary and its settings."""
    from .checkpoint import MODEL_KEYS, load_pretrained
    from .model import BERTModel
    from .trainer import init_bert
    bert, vocab, config = load_pretrained(args.model_dir, device,
                                          hybridize=False)
    model = {k: config['model'][k] for k in MODEL_KEYS}
    model['dropout'] = args.dropout
    if args.init == 'random':
        # The same architecture and vocabulary, nothing learnt: BERT's own
        # N(0, 0.02) initialization (the bert recipe's)
        bert = init_bert(BERTModel(**model), [device], 'normal')
    else:
        set_dropout(bert, args.dropout)
    return bert, vocab, model


def _read_splits(args):
    """``{split: (a, b, labels, num_classes)}`` of the task's folder."""
    from .tasks import read_task, task_splits
    names = task_splits(args.task, args.data_dir)
    for needed in ('train', 'dev'):
        if os.path.isdir(args.data_dir) and needed not in names:
            raise GluonBertError(
                f'{args.data_dir} has no {needed} split for --task '
                f'{args.task}: it needs '
                f'{TASKS[args.task].files[needed]}')
    splits = {s: read_task(args.task, args.data_dir, s)
              for s in names or ('train',)}
    num_classes = splits['train'][3]
    for split, (*_, n) in splits.items():
        if n > num_classes:
            raise GluonBertError(f'the {split} split has label {n - 1}, the '
                                 'training split only 0 to '
                                 f'{num_classes - 1}')
    return splits


def _label_names(task, num_classes):
    """Class -> the label as the task's files write it (None: a score)."""
    labels = TASKS[task].labels
    if num_classes == 1:
        return None
    if isinstance(labels, dict):
        return sorted(labels, key=labels.get)
    return [str(c) for c in range(num_classes)]


def tokenizer_for(task, choice='auto'):
    """The tokenizer ``--tokenizer choice`` means for ``task``."""
    return TASKS[task].tokenizer if choice == 'auto' else choice


def _datasets(args, splits, vocab, out):
    """ClassificationDatasets of every split; prints the <unk> shares."""
    from .tasks import ClassificationDataset
    tokenizer = tokenizer_for(args.task, args.tokenizer)
    data = {}
    for split, (a, b, labels, _) in splits.items():
        if split == 'train' and args.max_examples:
            a, b, labels = (a[:args.max_examples],
                            b[:args.max_examples] if b else None,
                            labels[:args.max_examples])
        data[split] = ClassificationDataset(a, b, labels, vocab, args.max_len,
                                            tokenizer)
    train = data['train']
    num_classes = splits['train'][3]
    sizes = ', '.join(f'{len(d)} {s}' for s, d in data.items())
    unk = ', '.join(f'{100 * d.unk_share:.1f} % {s}' for s, d in data.items())
    kind = ('a regression (one output)' if num_classes == 1
            else f'{num_classes} classes')
    print(f'{args.task}: {sizes} examples, {kind}; words not in the '
          f'vocabulary of {args.model_dir} (they become <unk>, {tokenizer} '
          f'tokenizer): {unk}; {train.num_cut} training inputs cut to '
          f'{args.max_len} tokens', file=out, flush=True)
    return data


def _earlier_run(save_dir):
    """What ``save_dir`` holds, for :func:`~gluon_bert.rundir.make_room_for`:
    None when no run is there, else ``(settings, None, holds)``: the
    settings of the fine-tuning run in it (its model's config.json, else the
    state of a run stopped before its first epoch ended), or None and what
    it holds instead (a pretrained model, or files that cannot be read)."""
    from .checkpoint import CONFIG, load_config
    from .classifier import PROGRESS
    stopped = os.path.join(save_dir, PROGRESS, 'state.json')
    try:
        if os.path.isfile(os.path.join(save_dir, CONFIG)):
            config = load_config(save_dir)
            if 'classifier' not in config:
                return None, None, 'a pretrained model, not a fine-tuning run'
            return config['classifier']['config'], None, None
        if os.path.isfile(stopped):
            with open(stopped, encoding='utf-8') as f:
                return json.load(f)['config'], None, None
    except (GluonBertError, OSError, ValueError, KeyError, TypeError):
        return None, None, 'a fine-tuning run whose files cannot be read'
    return None


def check_folders(args):
    """Refuse a --save-dir that is, or holds, the --model-dir being
    fine-tuned (an easy slip: the same folder twice): writing there would
    move the pretrained model into previous/.  Raises
    :class:`~gluon_bert.utils.UsageError` before anything is touched."""
    from .checkpoint import D2L_PREFIX
    from .utils import UsageError
    if str(args.model_dir).startswith(D2L_PREFIX):
        return
    model = os.path.realpath(args.model_dir)
    save = os.path.realpath(args.save_dir)
    if model == save:
        where, instead = 'is', args.save_dir.rstrip(os.sep) + '-' + args.task
    elif model.startswith(save + os.sep):
        where = f'holds ({os.path.relpath(model, save)})'
        instead = os.path.join(args.save_dir, args.task)
    else:
        return
    raise UsageError(f'save_dir {args.save_dir} {where} the model_dir being '
                     'fine-tuned: give the fine-tuned model a folder of its '
                     f'own, such as save_dir {instead}',
                     ['save_dir', 'model_dir'])


def _progress(args):
    """The stopped run of --save-dir that --resume continues, checked to
    have this command's settings."""
    from .classifier import load_progress
    from .flags import differing_settings
    state = load_progress(args.save_dir)
    differ = differing_settings(state.get('config'), args)
    if differ:
        raise GluonBertError(
            f'the run stopped in {args.save_dir} has other settings '
            f'({", ".join(differ[:4])}): give its flags again with resume, '
            'or start anew with overwrite', ['resume', 'overwrite'] + differ)
    return state


def run(args, out=None):
    """Fine-tune as ``args`` (a :class:`~gluon_bert.config.FinetuneConfig`)
    says, holding the lock of --save-dir.  Returns ``(results, signal)``:
    the results of a finished run, or None and the signal (SIGINT,
    SIGTERM) that stopped it, its state saved for --resume."""
    from .rundir import RunLock
    out = out or sys.stdout
    check_folders(args)  # before the lock touches --save-dir
    with RunLock(args.save_dir):
        if args.resume:
            state = _progress(args)
        else:
            state = None
            from .rundir import make_room_for
            make_room_for(args, _earlier_run(args.save_dir))
        return _run(args, state, out)


def _build(args, state, devices, out):
    """The classifier (its weights restored from ``state`` when resuming),
    the datasets and the run's description for results.json."""
    import mxnet as mx

    from .model import BERTClassifier
    splits = _read_splits(args)
    num_classes = splits['train'][3]
    mx.random.seed(args.seed)
    bert, vocab, model = _load_bert(args, devices[0])
    data = _datasets(args, splits, vocab, out)
    net = BERTClassifier(bert, num_classes)
    net.output.initialize(mx.init.Xavier(), ctx=devices)
    net.collect_params().reset_ctx(devices)
    if state is not None:
        net.load_parameters(state['model_params'], ctx=devices)
    net.hybridize(static_alloc=True)
    info = dict(task=args.task, num_classes=num_classes, max_len=args.max_len,
                pair=splits['train'][1] is not None,
                label_names=_label_names(args.task, num_classes),
                init=args.init, pretrained=str(args.model_dir),
                tokenizer=tokenizer_for(args.task, args.tokenizer),
                metrics=list(TASKS[args.task].metrics), lr=args.lr,
                batch_size=args.batch_size, epochs=args.epochs,
                padded=args.padded, schedule=args.schedule,
                warmup=args.warmup, weight_decay=args.weight_decay,
                dropout=args.dropout, seed=args.seed,
                config=args.to_dict())
    return net, vocab, model, data, info


def _run(args, state, out):
    """:func:`run`, once the folder is this run's."""
    import shutil

    from mxnet import npx

    from .state import check_room
    from .classifier import PROGRESS, save_progress
    from .devices import parse_devices
    from .signals import StopOnSignal
    devices = parse_devices(args.gpus, args.cpus)
    net, vocab, model, data, info = _build(args, state, devices, out)
    metrics = TASKS[args.task].metrics
    check_room(args.save_dir, net)  # before the first step
    best = dict(state['best']) if state else {'score': -float('inf')}
    if state:
        pos = state['position']
        print(f'Resuming from epoch {pos["epoch"]}, batch {pos["batch"]} '
              f'(step {pos["step"]}) of {args.save_dir}', file=out, flush=True)

    def on_epoch(epoch, history):
        if history['dev_score'][-1] > best['score']:
            best.update(score=history['dev_score'][-1], epoch=epoch,
                        dev=history['dev'][-1])
            save_classifier(args.save_dir, net, vocab, model,
                            dict(info, best_epoch=epoch))
            print(f'  best dev {metrics[0]} so far: saved to '
                  f'{args.save_dir}', file=out, flush=True)

    with StopOnSignal() as signal_state:
        def on_step(history, position, trainer):
            if signal_state.stop:  # the step is done: save where it stopped
                save_progress(args.save_dir, net, trainer, history, position,
                              dict(config=args.to_dict(), best=best))
                stopped.update(position)
            return signal_state.stop
        stopped = {}
        history = finetune(net, data['train'], data['dev'], devices, args,
                           on_epoch, metrics, on_step=on_step, resume=state)
    if stopped:
        _say_stopped(args, stopped, signal_state.signum)
        return None, signal_state.signum
    shutil.rmtree(os.path.join(args.save_dir, PROGRESS), ignore_errors=True)
    test = None
    if 'test' in data:
        best_net, _, _ = load_classifier(args.save_dir, devices[0])
        best_net.collect_params().reset_ctx(devices)
        test = evaluate_task(best_net, data['test'], devices, metrics,
                             args.batch_size, not args.padded)
    npx.waitall()
    return _write_results(args, info, best, test, history, data, out), None


def _say_stopped(args, position, signum):
    """The one line of a run stopped by a signal, and how to go on."""
    from .classifier import PROGRESS
    from .flags import command_line
    from .signals import signal_name
    flags = command_line(args, drop=('resume', 'overwrite'))
    print(f'Stopped by {signal_name(signum)} at epoch {position["epoch"]}, '
          f'batch {position["batch"]} (step {position["step"]}); the state '
          f'is in {os.path.join(args.save_dir, PROGRESS)}. Resume with the '
          f'same flags and --resume: python -m gluon_bert.finetune {flags} '
          '--resume', file=sys.stderr, flush=True)


def _write_results(args, info, best, test, history, data, out):
    """results.json beside the best model, and the closing line."""
    results = dict(info, best_epoch=best['epoch'], dev=best['dev'],
                   test=test, history=history,
                   unk_share=data['train'].unk_share,
                   unk_shares={s: d.unk_share for s, d in data.items()},
                   train_examples=len(data['train']))
    if 'accuracy' in info['metrics']:  # the names earlier results used
        results['dev_acc'] = best['dev']['accuracy']
        results['test_acc'] = test['accuracy'] if test else None
    try:
        with atomic_write(os.path.join(args.save_dir, 'results.json'),
                          'w') as f:
            json.dump(results, f, indent=2)
    except OSError as e:
        raise write_error(e, 'results.json', args.save_dir) from None
    tested = f'; test {format_metrics(test)}' if test else '; no test split'
    print(f'best dev {format_metrics(best["dev"])} (epoch {best["epoch"]})'
          f'{tested}; {history["seconds"][-1]:.0f} s', file=out)
    return results


def main(argv=None):
    """Command-line entry point; returns the exit code (130 after Ctrl-C,
    143 after SIGTERM)."""
    from .signals import run_stoppable
    return run_stoppable(build_parser().prog, run, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())

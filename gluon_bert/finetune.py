"""Fine-tune a pretrained BERT on a classification task (the book's next step).

    python -m gluon_bert.finetune --model-dir runs/pretrain --task sst2 \\
        --data-dir ../shared/data/sst-2 --save-dir runs/sst2
    python -m gluon_bert.finetune --model-dir runs/pretrain --task sst2 \\
        --data-dir ../shared/data/sst-2 --save-dir runs/sst2-control --init random
    python -m gluon_bert.predict --model-dir runs/sst2 "a gripping , funny film"

As d2l's "Natural Language Inference: Fine-Tuning BERT" does it: the
pretrained encoder and ``<cls>`` hidden layer with a new output layer
(``BERTClassifier``), Adam at 1e-4, batch 512, 5 epochs, the book's loop
(``split_and_load`` shards, per-shard loss lists, ``SoftmaxCELoss``,
``npx.waitall()``), hybridized; each batch's valid tokens are packed
(:func:`~gluon_bert.packing.pack_tokens`: the padded batch's scores and
gradients, fewer FLOPs; ``--padded`` feeds the book's padded batches).
``--schedule linear`` and ``--weight-decay`` add BERT's warm-up, linear
decay and AdamW.  After every epoch the dev split is scored
and the best model so far is written to --save-dir (config.json, vocab.json,
model.params), which ``gluon_bert.predict`` loads; at the end the best model
is scored on the test split and results.json is written.  ``--init random``
trains the same classifier from freshly initialized weights: the control
that tells whether pretraining helped.
"""
import argparse
import json
import os
import sys

from .classifier import (evaluate_task, finetune, format_metrics,
                         load_classifier, save_classifier, set_dropout)
from .config import FinetuneConfig, add_arguments
from .tasks import TASKS
from .utils import (GluonBertError, HelpFormatter, atomic_write,
                    run_command)

__all__ = ['main', 'parse_args', 'build_parser', 'tokenizer_for']

#: The configuration's groups of flags, for --help.
GROUPS = {'model and data': ('model and data', None),
          'training': ('training', "The book's settings by default."),
          'devices': ('devices', None)}


def build_parser():
    p = argparse.ArgumentParser(
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
    config = FinetuneConfig(**vars(parser.parse_args(argv)))
    if config.gpus is not None and config.cpus is not None:
        parser.error('--gpus and --cpus exclude each other: pick one')
    return config


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


def run(args, out=None):
    import mxnet as mx
    from mxnet import npx

    from .model import BERTClassifier
    from .devices import parse_devices
    out = out or sys.stdout
    splits = _read_splits(args)
    num_classes = splits['train'][3]
    metrics = TASKS[args.task].metrics
    devices = parse_devices(args.gpus, args.cpus,
                            log=lambda m: print(m, file=sys.stderr))
    mx.random.seed(args.seed)
    bert, vocab, model = _load_bert(args, devices[0])
    data = _datasets(args, splits, vocab, out)
    net = BERTClassifier(bert, num_classes)
    net.output.initialize(mx.init.Xavier(), ctx=devices)
    net.collect_params().reset_ctx(devices)
    net.hybridize(static_alloc=True)
    info = dict(task=args.task, num_classes=num_classes, max_len=args.max_len,
                pair=splits['train'][1] is not None,
                label_names=_label_names(args.task, num_classes),
                init=args.init, pretrained=str(args.model_dir),
                tokenizer=tokenizer_for(args.task, args.tokenizer),
                metrics=list(metrics), lr=args.lr,
                batch_size=args.batch_size, epochs=args.epochs,
                padded=args.padded, schedule=args.schedule,
                warmup=args.warmup, weight_decay=args.weight_decay,
                dropout=args.dropout, seed=args.seed,
                config=args.to_dict())
    best = {'score': -float('inf')}

    def on_epoch(epoch, history):
        if history['dev_score'][-1] > best['score']:
            best.update(score=history['dev_score'][-1], epoch=epoch,
                        dev=history['dev'][-1])
            save_classifier(args.save_dir, net, vocab, model,
                            dict(info, best_epoch=epoch))
            print(f'  best dev {metrics[0]} so far: saved to '
                  f'{args.save_dir}', file=out, flush=True)
    history = finetune(net, data['train'], data['dev'], devices, args,
                       on_epoch, metrics)
    test = None
    if 'test' in data:
        best_net, _, _ = load_classifier(args.save_dir, devices[0])
        best_net.collect_params().reset_ctx(devices)
        test = evaluate_task(best_net, data['test'], devices, metrics,
                             args.batch_size, not args.padded)
    npx.waitall()
    return _write_results(args, info, best, test, history, data, out)


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
    with atomic_write(os.path.join(args.save_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    tested = f'; test {format_metrics(test)}' if test else '; no test split'
    print(f'best dev {format_metrics(best["dev"])} (epoch {best["epoch"]})'
          f'{tested}; {history["seconds"][-1]:.0f} s', file=out)
    return results


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

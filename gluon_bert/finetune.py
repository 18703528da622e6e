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
(:func:`~gluon_bert.loss.pack_tokens`: the padded batch's scores and
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
import time

from .utils import (GluonBertError, HelpFormatter, atomic_write,
                    positive_int, run_command)

__all__ = ['main', 'parse_args', 'build_parser', 'finetune',
           'evaluate_classifier', 'save_classifier', 'load_classifier',
           'predict_texts']

def build_parser():
    p = argparse.ArgumentParser(
        prog='python -m gluon_bert.finetune',
        description='Fine-tune a pretrained BERT (a gluon_bert model '
                    'directory, or d2l:bert.small) on SST-2, SNLI or a '
                    'GLUE-style TSV task, as the d2l book fine-tunes on SNLI.',
        formatter_class=HelpFormatter)
    p.add_argument('--model-dir', required=True,
                   help='the pretrained model: a directory written by '
                        'gluon_bert.pretrain, or d2l:bert.small')
    p.add_argument('--task', choices=('sst2', 'snli', 'tsv'), default='sst2',
                   help='sst2: train/dev/test.tsv with sentence and label '
                        'columns; snli: snli_1.0_{train,dev,test}.txt; tsv: '
                        'GLUE-style train/dev/test.tsv whose header names '
                        'sentence (or sentence1, sentence2) and label')
    p.add_argument('--data-dir', required=True,
                   help="the task's folder")
    p.add_argument('--save-dir', default='runs/finetune',
                   help='where the best-dev model and results.json go')
    p.add_argument('--init', choices=('pretrained', 'random'),
                   default='pretrained',
                   help='random: the same classifier from freshly '
                        'initialized weights (the control)')
    p.add_argument('--epochs', type=positive_int, default=5)
    p.add_argument('--lr', type=float, default=1e-4,
                   help='the (peak) learning rate of Adam')
    p.add_argument('--schedule', choices=('constant', 'linear'),
                   default='constant',
                   help='constant: the book; linear: warm up over --warmup '
                        'of the steps, then decay linearly to zero (BERT)')
    p.add_argument('--warmup', type=float, default=0.1,
                   help='share of the steps to warm up over (with '
                        '--schedule linear)')
    p.add_argument('--weight-decay', type=float, default=0.0,
                   help='> 0: AdamW, decoupled weight decay (none on '
                        'LayerNorm and biases)')
    p.add_argument('--batch-size', type=positive_int, default=512)
    p.add_argument('--max-len', type=int, default=128,
                   help='longest input, <cls> and <sep> included; longer '
                        'ones are cut')
    p.add_argument('--dropout', type=float, default=0.1)
    p.add_argument('--padded', action='store_true',
                   help="feed padded batches, as the book does (slower); by "
                        "default each batch's valid tokens are packed so the "
                        "per-token layers skip the padding: the same "
                        "scores and gradients, other dropout draws")
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--max-examples', type=positive_int, default=None,
                   help='train on the first N training examples only (a '
                        'quick trial)')
    p.add_argument('--log-every', type=int, default=50,
                   help='print a progress line every N batches (0: never)')
    g = p.add_mutually_exclusive_group()
    g.add_argument('--gpus', default=None,
                   help='GPUs to shard each batch across, e.g. 0,1')
    g.add_argument('--cpus', type=positive_int, default=None,
                   help='shard each batch across N CPU contexts')
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.lr > 0:
        parser.error(f'--lr must be positive, got {args.lr}')
    if not 0 <= args.warmup < 1:
        parser.error(f'--warmup must be in [0, 1), got {args.warmup}')
    if args.weight_decay < 0:
        parser.error('--weight-decay must be >= 0, got '
                     f'{args.weight_decay}')
    if not 0 <= args.dropout < 1:
        parser.error(f'--dropout must be in [0, 1), got {args.dropout}')
    from .utils import check_max_len
    try:
        check_max_len(args.max_len)
    except GluonBertError as e:
        parser.error(str(e))
    return args


def _set_dropout(net, rate):
    from mxnet.gluon import nn

    def visit(block):
        if isinstance(block, nn.Dropout):
            block._rate = rate
    net.apply(visit)


def _shards(arrays, devices):
    """The book's ``split_batch_multi_inputs``: per device, its inputs."""
    from mxnet import gluon, np
    return list(zip(*[gluon.utils.split_and_load(
        np.array(a, dtype=a.dtype), devices, even_split=False)
        for a in arrays]))


def _input_shards(inputs, devices, num_heads=None):
    """Per device, the classifier's inputs for its share of a padded batch
    ``(tokens, segments, valid_lens)``: as the book loads them, or packed
    (:func:`~gluon_bert.loss.pack_tokens`) when ``num_heads`` is given.
    Either way the batch is cut as ``split_and_load`` cuts it."""
    if num_heads is None:
        return _shards(inputs, devices)
    from .loss import pack_tokens, split_and_pack

    def pack(shard):
        (tokens, segments, positions, valid_lens, head_index, merge_index,
         row_of) = pack_tokens(*shard, num_heads, token_multiple=512)
        # In the order of BERTClassifier's inputs; row_of[:, 0]: the <cls>
        return (tokens, segments, valid_lens, positions, head_index,
                merge_index, row_of[:, 0].astype('int32'))
    return split_and_pack(inputs, devices, pack)


def evaluate_classifier(net, dataset, devices, batch_size=512, packed=True):
    """Accuracy of ``net`` on a :class:`~gluon_bert.tasks.
    ClassificationDataset` (prediction mode)."""
    import numpy as onp
    heads = net.num_heads if packed else None
    correct = 0
    for start in range(0, len(dataset), batch_size):
        idx = onp.arange(start, min(start + batch_size, len(dataset)))
        *inputs, labels = dataset.batch(idx)
        preds = [net(*x).argmax(axis=-1).asnumpy()
                 for x in _input_shards(inputs, devices, heads)]
        correct += int((onp.concatenate(preds) == labels).sum())
    return correct / len(dataset)


def finetune(net, train_set, dev_set, devices, epochs=5, lr=1e-4,
             batch_size=512, seed=0, log_every=50, on_epoch=None,
             verbose=True, packed=True, schedule='constant', warmup=0.0,
             weight_decay=0.0):
    """Train ``net`` (a :class:`~gluon_bert.model.BERTClassifier`) as the
    book's ``train_ch13`` does; score ``dev_set`` after every epoch.

    The book's Adam at a constant ``lr`` by default; ``schedule='linear'``
    warms up over the first ``warmup`` share of the steps, then decays
    linearly (:func:`~gluon_bert.recipe.learning_rate`), and
    ``weight_decay`` > 0 uses AdamW (none on LayerNorm and biases), as
    BERT's own fine-tuning does.

    ``packed``: each shard's valid tokens are packed
    (:func:`~gluon_bert.loss.pack_tokens`), so the per-token layers skip
    the padding; the scores, losses and gradients are the padded batch's.

    Returns the history: per epoch ``train_loss``, ``train_acc``,
    ``dev_acc`` and ``seconds``.  ``on_epoch(epoch, history)`` is called
    after each epoch.
    """
    import numpy as onp
    from mxnet import autograd, gluon, npx
    from .recipe import exclude_from_weight_decay, learning_rate
    loss = gluon.loss.SoftmaxCELoss()
    if weight_decay > 0:
        exclude_from_weight_decay(net)
        trainer = gluon.Trainer(net.collect_params(), 'adamw',
                                {'learning_rate': lr, 'wd': weight_decay})
    else:
        trainer = gluon.Trainer(net.collect_params(), 'adam',
                                {'learning_rate': lr})
    rng = onp.random.RandomState(seed)
    heads = net.num_heads if packed else None
    history = {'train_loss': [], 'train_acc': [], 'dev_acc': [],
               'seconds': []}
    num_batches = -(-len(train_set) // batch_size)
    start_time = time.perf_counter()
    step = 0
    for epoch in range(1, epochs + 1):
        # Sum of training loss, no. of correct predictions, no. of examples
        metric = [0.0, 0, 0]
        order = rng.permutation(len(train_set))
        for i in range(num_batches):
            step += 1
            trainer.set_learning_rate(learning_rate(
                step, epochs * num_batches, lr, schedule, warmup))
            *inputs, labels = train_set.batch(
                order[i * batch_size:(i + 1) * batch_size])
            X_shards = _input_shards(inputs, devices, heads)
            y_shards = [y for (y,) in _shards([labels], devices)]
            with autograd.record():
                pred_shards = [net(*X) for X in X_shards]
                ls = [loss(pred, y) for pred, y in zip(pred_shards, y_shards)]
            for l in ls:
                l.backward()
            trainer.step(len(labels))
            metric[0] += sum(float(l.sum()) for l in ls)
            metric[1] += sum(int((pred.argmax(axis=-1).astype('int32')
                                  == y).sum())
                             for pred, y in zip(pred_shards, y_shards))
            metric[2] += len(labels)
            npx.waitall()
            if verbose and log_every and (i + 1) % log_every == 0:
                print(f'epoch {epoch} batch {i + 1}/{num_batches}: train '
                      f'loss {metric[0] / metric[2]:.3f}, train acc '
                      f'{metric[1] / metric[2]:.3f}', flush=True)
        dev_acc = evaluate_classifier(net, dev_set, devices, batch_size,
                                      packed)
        history['train_loss'].append(metric[0] / metric[2])
        history['train_acc'].append(metric[1] / metric[2])
        history['dev_acc'].append(dev_acc)
        history['seconds'].append(time.perf_counter() - start_time)
        if verbose:
            print(f'epoch {epoch}/{epochs}: train loss '
                  f'{metric[0] / metric[2]:.3f}, train acc '
                  f'{metric[1] / metric[2]:.3f}, dev acc {dev_acc:.3f} '
                  f'({history["seconds"][-1]:.0f} s)', flush=True)
        if on_epoch is not None:
            on_epoch(epoch, history)
    return history


def save_classifier(model_dir, net, vocab, bert_config, info):
    """Write config.json (the BERT settings and ``classifier``: ``info``),
    vocab.json and model.params, as a pretrained model directory is
    written."""
    from .checkpoint import save_model_dir
    save_model_dir(model_dir, net, vocab, model_config=bert_config,
                   sections={'classifier': dict(info)})


def load_classifier(model_dir, device=None):
    """``(net, vocab, config)`` of a directory written by
    :func:`save_classifier`."""
    import mxnet as mx

    from .checkpoint import (CONFIG, _load_params, bert_from_config,
                             checked_files, load_config)
    from .model import BERTClassifier
    if not os.path.isdir(model_dir):
        raise GluonBertError(f'{model_dir} is not a folder: pass the '
                             'directory written by gluon_bert.finetune')
    config = load_config(model_dir)
    info = config.get('classifier')
    if not isinstance(info, dict) or 'num_classes' not in info:
        raise GluonBertError(f'{model_dir} holds a pretrained BERT, not a '
                             'fine-tuned classifier: run gluon_bert.finetune '
                             'first')
    vocab, params = checked_files(model_dir, config, require_sha1=True)
    net = _load_params(BERTClassifier(bert_from_config(config),
                                      info['num_classes']),
                       params, device or mx.cpu(0), CONFIG)
    net.hybridize(static_alloc=True)
    return net, vocab, config


def predict_texts(net, vocab, texts, max_len, batch_size=256):
    """Class probabilities of texts (a sentence, or a tab-separated pair):
    (no. of texts, num_classes)."""
    import numpy as onp
    from mxnet import npx

    from .encoder import split_text
    from .model import net_device
    from .tasks import ClassificationDataset
    pairs = [split_text(t) for t in texts]
    has_b = [b is not None for _, b in pairs]
    dataset = ClassificationDataset(
        [' '.join(a) for a, _ in pairs],
        [' '.join(b) if b else None for _, b in pairs] if any(has_b)
        else None, [0] * len(pairs), vocab, max_len)
    device = net_device(net)
    out = []
    for start in range(0, len(dataset), batch_size):
        idx = onp.arange(start, min(start + batch_size, len(dataset)))
        *inputs, _ = dataset.batch(idx)
        (x,) = _shards(inputs, [device])
        out.append(npx.softmax(net(*x)).asnumpy())
    return onp.concatenate(out)


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
        _set_dropout(bert, args.dropout)
    return bert, vocab, model


def run(args, out=None):
    import mxnet as mx
    from mxnet import npx

    from .model import BERTClassifier
    from .tasks import ClassificationDataset, read_task
    from .threads import set_cpu_threads_for
    from .trainer import parse_devices
    out = out or sys.stdout
    splits = {s: read_task(args.task, args.data_dir, s)
              for s in ('train', 'dev', 'test')}
    num_classes = splits['train'][3]
    for split in ('dev', 'test'):
        if splits[split][3] > num_classes:
            raise GluonBertError(f'the {split} split has label '
                                 f'{splits[split][3] - 1}, the training '
                                 f'split only 0 to {num_classes - 1}')
    devices = parse_devices(args.gpus, args.cpus,
                            log=lambda m: print(m, file=sys.stderr))
    set_cpu_threads_for(devices)
    mx.random.seed(args.seed)
    bert, vocab, model = _load_bert(args, devices[0])
    data = {}
    for split, (a, b, labels, _) in splits.items():
        if split == 'train' and args.max_examples:
            a, b, labels = (a[:args.max_examples],
                            b[:args.max_examples] if b else None,
                            labels[:args.max_examples])
        data[split] = ClassificationDataset(a, b, labels, vocab, args.max_len)
    train = data['train']
    print(f'{args.task}: {len(train)} train, {len(data["dev"])} dev, '
          f'{len(data["test"])} test examples, {num_classes} classes; '
          f'{100 * train.unk_share:.1f} % of the training words are not in '
          f'the vocabulary of {args.model_dir} (they become <unk>); '
          f'{train.num_cut} training inputs cut to {args.max_len} tokens',
          file=out, flush=True)
    net = BERTClassifier(bert, num_classes)
    net.output.initialize(mx.init.Xavier(), ctx=devices)
    net.collect_params().reset_ctx(devices)
    net.hybridize(static_alloc=True)
    info = dict(task=args.task, num_classes=num_classes, max_len=args.max_len,
                init=args.init, pretrained=str(args.model_dir),
                lr=args.lr, batch_size=args.batch_size, epochs=args.epochs,
                padded=args.padded, schedule=args.schedule,
                warmup=args.warmup, weight_decay=args.weight_decay,
                dropout=args.dropout, seed=args.seed)
    best = {'dev_acc': -1.0}

    def on_epoch(epoch, history):
        if history['dev_acc'][-1] > best['dev_acc']:
            best.update(dev_acc=history['dev_acc'][-1], epoch=epoch)
            save_classifier(args.save_dir, net, vocab, model,
                            dict(info, best_epoch=epoch))
            print(f'  best dev accuracy so far: saved to {args.save_dir}',
                  file=out, flush=True)
    history = finetune(net, train, data['dev'], devices, args.epochs,
                       args.lr, args.batch_size, args.seed, args.log_every,
                       on_epoch, packed=not args.padded,
                       schedule=args.schedule, warmup=args.warmup,
                       weight_decay=args.weight_decay)
    best_net, _, _ = load_classifier(args.save_dir, devices[0])
    best_net.collect_params().reset_ctx(devices)
    test_acc = evaluate_classifier(best_net, data['test'], devices,
                                   args.batch_size, not args.padded)
    npx.waitall()
    results = dict(info, best_epoch=best['epoch'], dev_acc=best['dev_acc'],
                   test_acc=test_acc, history=history,
                   unk_share=train.unk_share, train_examples=len(train))
    with atomic_write(os.path.join(args.save_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=2)
    print(f'best dev accuracy {best["dev_acc"]:.3f} (epoch {best["epoch"]}); '
          f'test accuracy {test_acc:.3f}; {history["seconds"][-1]:.0f} s',
          file=out)
    return results


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

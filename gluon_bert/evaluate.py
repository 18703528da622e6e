"""Held-out evaluation of a pretrained BERT: MLM and NSP loss and accuracy.

    python -m gluon_bert.evaluate --model-dir runs/pretrain --split valid

Builds the book's examples from the valid or test split with the training
vocabulary (masking and NSP pairs drawn with --seed), runs the model without
dropout and reports, over the weighted MLM slots and over all pairs:
MLM loss and accuracy, NSP loss and accuracy.  The book never measures
held-out data; this makes pretraining progress visible.  Results are printed
and written as JSON (--output, default MODEL_DIR/eval-SPLIT.json).
"""
import argparse
import json
import os
import random
import sys

from .utils import GluonBertError, atomic_write, run_command

__all__ = ['main', 'parse_args', 'build_parser', 'evaluate_bert']


def evaluate_bert(net, data_iter, vocab_size):
    """Sums over a data iterator of the book's seven fields.

    Returns
    -------
    dict
        ``mlm_loss`` and ``mlm_accuracy`` over weighted slots, ``nsp_loss``
        and ``nsp_accuracy`` over pairs, and the counts ``mlm_slots`` and
        ``pairs``.
    """
    from mxnet import gluon, npx
    npx.set_np()
    loss = gluon.loss.SoftmaxCELoss()
    device = next(iter(net.collect_params().values())).list_ctx()[0]
    sums = dict(mlm_loss=0.0, mlm_correct=0.0, mlm_slots=0.0, nsp_loss=0.0,
                nsp_correct=0.0, pairs=0)
    for batch in data_iter:
        (tokens, segments, valid_lens, pred_positions, mlm_weights,
         mlm_labels, nsp_labels) = [x.as_in_context(device) for x in batch]
        _, mlm_Y_hat, nsp_Y_hat = net(tokens, segments, valid_lens,
                                      pred_positions)
        mlm_Y_hat = mlm_Y_hat.reshape((-1, vocab_size))
        labels, weights = mlm_labels.reshape(-1), mlm_weights.reshape(-1)
        sums['mlm_loss'] += float((loss(mlm_Y_hat, labels) * weights).sum())
        hits = (mlm_Y_hat.argmax(axis=-1).astype('int32')
                == labels.astype('int32'))
        sums['mlm_correct'] += float((hits.astype('float32') * weights).sum())
        sums['mlm_slots'] += float(weights.sum())
        sums['nsp_loss'] += float(loss(nsp_Y_hat, nsp_labels).sum())
        sums['nsp_correct'] += float(
            (nsp_Y_hat.argmax(axis=-1).astype('int32')
             == nsp_labels.astype('int32')).astype('float32').sum())
        sums['pairs'] += int(tokens.shape[0])
    return {'mlm_loss': sums['mlm_loss'] / sums['mlm_slots'],
            'mlm_accuracy': sums['mlm_correct'] / sums['mlm_slots'],
            'nsp_loss': sums['nsp_loss'] / sums['pairs'],
            'nsp_accuracy': sums['nsp_correct'] / sums['pairs'],
            'mlm_slots': int(sums['mlm_slots']), 'pairs': sums['pairs']}


def build_parser():
    p = argparse.ArgumentParser(
        prog='python -m gluon_bert.evaluate',
        description='MLM and NSP loss and accuracy of a pretrained model on '
                    'a held-out WikiText-2 split.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--model-dir', default=os.path.join('runs', 'pretrain'),
                   help='model directory written by gluon_bert.pretrain')
    p.add_argument('--split', choices=('valid', 'test', 'train'),
                   default='valid')
    p.add_argument('--data-dir', default=None,
                   help='folder with wiki.*.tokens (default: as pretrain)')
    p.add_argument('--max-len', type=int, default=None,
                   help="example length (default: the run's --max-len)")
    p.add_argument('--batch-size', type=int, default=256)
    p.add_argument('--seed', type=int, default=0,
                   help='seeds the random masking and NSP pairs')
    p.add_argument('--output', default=None,
                   help='JSON file to write (default: '
                        'MODEL_DIR/eval-SPLIT.json)')
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1:
        parser.error('--batch-size must be at least 1')
    if args.max_len is not None and args.max_len < 5:
        parser.error('--max-len must be at least 5')
    return args


def run(args):
    import numpy as onp

    from .checkpoint import load_pretrained
    from .dataset import DataIter, load_dataset

    net, vocab, config = load_pretrained(args.model_dir)
    max_len = args.max_len or config['train'].get('max_len', 64)
    if max_len > config['model']['max_len']:
        raise GluonBertError(f'--max-len {max_len} is longer than the '
                             f'model\'s position embedding '
                             f'({config["model"]["max_len"]})')
    random.seed(args.seed)
    onp.random.seed(args.seed)
    dataset = load_dataset(max_len, args.data_dir, split=args.split,
                           vocab=vocab)
    result = evaluate_bert(net, DataIter(dataset, args.batch_size,
                                         shuffle=False), len(vocab))
    result.update(split=args.split, max_len=max_len, seed=args.seed,
                  model_dir=args.model_dir)
    print(f'{args.split}: MLM loss {result["mlm_loss"]:.3f}, MLM accuracy '
          f'{result["mlm_accuracy"]:.3f} ({result["mlm_slots"]} slots); NSP '
          f'loss {result["nsp_loss"]:.3f}, NSP accuracy '
          f'{result["nsp_accuracy"]:.3f} ({result["pairs"]} pairs)')
    output = args.output or os.path.join(args.model_dir,
                                         f'eval-{args.split}.json')
    with atomic_write(output, 'w') as f:
        json.dump(result, f, indent=2)
    print(f'Wrote {output}')
    return result


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

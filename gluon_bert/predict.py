"""Classify sentences with a model fine-tuned by ``gluon_bert.finetune``.

    python -m gluon_bert.predict --model-dir runs/sst2 \\
        "a gripping , funny film"
    python -m gluon_bert.predict --model-dir runs/snli "A man sleeps ." \\
        "A man rests ."
    python -m gluon_bert.predict --model-dir runs/sts-b --input pairs.tsv

One line per input: the class, its probability and the text (STS-B: the
score).  An input is a sentence or a tab-separated pair; for a pair model,
TEXT arguments without a tab are read two at a time.
"""
import sys

from .utils import (ArgumentParser, GluonBertError, HelpFormatter,
                    positive_int, run_command)

__all__ = ['main', 'parse_args', 'build_parser']


def build_parser():
    p = ArgumentParser(
        prog='python -m gluon_bert.predict',
        description='Class predictions of a fine-tuned BERT classifier.',
        formatter_class=HelpFormatter)
    p.add_argument('texts', nargs='*', metavar='TEXT',
                   help='sentences to classify (a tab separates a pair; a '
                        'pair model reads arguments without a tab two at a '
                        'time)')
    p.add_argument('--model-dir', default='runs/finetune',
                   help='directory written by gluon_bert.finetune')
    p.add_argument('--input', default=None, metavar='FILE',
                   help='UTF-8 file with one input per line')
    p.add_argument('--batch-size', type=positive_int, default=256)
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.texts) == (args.input is not None):
        parser.error('give TEXT arguments or --input FILE (one of them)')
    return args


def pair_arguments(texts):
    """TEXT arguments for a pair model: two at a time unless tab-separated."""
    if all('\t' in t for t in texts):
        return list(texts)
    if any('\t' in t for t in texts):
        raise GluonBertError('some arguments are tab-separated pairs and some '
                             'are not: give every pair as two arguments, or '
                             'every pair with a tab')
    if len(texts) % 2:
        raise GluonBertError(f'{len(texts)} arguments for a sentence-pair '
                             'model: give two per pair (premise, then '
                             'hypothesis)')
    return [f'{a}\t{b}' for a, b in zip(texts[::2], texts[1::2])]


def run(args, out=None):
    from .classifier import load_classifier, predict_texts
    from .encoder import read_inputs, split_text
    out = out or sys.stdout
    net, vocab, config = load_classifier(args.model_dir)
    info = config['classifier']
    if args.input is not None:
        texts = read_inputs(args.input)
    else:
        texts = (pair_arguments(args.texts) if info.get('pair')
                 else args.texts)
        for text in texts:
            try:
                split_text(text)
            except GluonBertError as e:
                raise GluonBertError(f'{text!r}: {e}', e.settings) from None
    probs = predict_texts(net, vocab, texts, info['max_len'],
                          args.batch_size, info.get('tokenizer', 'split'))
    if info['num_classes'] == 1:
        for text, value in zip(texts, probs[:, 0]):
            print(f'{value:.3f}\t{text}', file=out)
        return probs[:, 0], probs
    labels = probs.argmax(axis=1)
    names = info.get('label_names') or [str(c) for c in range(probs.shape[1])]
    for text, label, p in zip(texts, labels, probs):
        print(f'{names[label]}\t{p[label]:.3f}\t{text}', file=out)
    return labels, probs


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

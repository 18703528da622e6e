"""Classify sentences with a model fine-tuned by ``gluon_bert.finetune``.

    python -m gluon_bert.predict --model-dir runs/sst2 "a gripping , funny film"
    python -m gluon_bert.predict --model-dir runs/sst2 --input reviews.txt

Prints one line per input: the predicted class, its probability and the
text.  An input is one sentence, or two separated by a tab for a
sentence-pair task; with --input, one per line of a UTF-8 file.  Text is
lower-cased and split on whitespace; unknown words become <unk>.
"""
import argparse
import sys

from .utils import HelpFormatter, run_command

__all__ = ['main', 'parse_args', 'build_parser']


def build_parser():
    p = argparse.ArgumentParser(
        prog='python -m gluon_bert.predict',
        description='Class predictions of a fine-tuned BERT classifier.',
        formatter_class=HelpFormatter)
    p.add_argument('texts', nargs='*', metavar='TEXT',
                   help='sentences to classify (a tab separates a pair)')
    p.add_argument('--model-dir', default='runs/finetune',
                   help='directory written by gluon_bert.finetune')
    p.add_argument('--input', default=None, metavar='FILE',
                   help='UTF-8 file with one input per line')
    p.add_argument('--batch-size', type=int, default=256)
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if bool(args.texts) == (args.input is not None):
        parser.error('give TEXT arguments or --input FILE (one of them)')
    if args.batch_size < 1:
        parser.error('--batch-size must be at least 1')
    return args


def run(args, out=None):
    from .encode import read_lines
    from .encoder import split_text
    from .finetune import load_classifier, predict_texts
    from .utils import GluonBertError
    out = out or sys.stdout
    if args.input is not None:
        texts = read_lines(args.input)
    else:
        texts = args.texts
        for text in texts:
            try:
                split_text(text)
            except GluonBertError as e:
                raise GluonBertError(f'{text!r}: {e}') from None
    net, vocab, config = load_classifier(args.model_dir)
    probs = predict_texts(net, vocab, texts, config['classifier']['max_len'],
                          args.batch_size)
    labels = probs.argmax(axis=1)
    for text, label, p in zip(texts, labels, probs):
        print(f'{label}\t{p[label]:.3f}\t{text}', file=out)
    return labels, probs


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

"""Print BERT representations of one sentence or a sentence pair.

    python -m gluon_bert.encode --model-dir runs/pretrain "a crane is flying"
    python -m gluon_bert.encode --model-dir runs/pretrain \\
        "a crane driver came" "he just left" --token crane

Prints, as the guide does, the shapes of the encoding and of the <cls>
vector, and the first elements of the chosen token's vector (every token's
when --token is not given).  Text is lower-cased and split on whitespace,
like the WikiText-2 training data; unknown words become <unk>.
"""
import argparse
import sys

from .utils import GluonBertError, run_command

__all__ = ['main', 'parse_args', 'build_parser']


def build_parser():
    p = argparse.ArgumentParser(
        prog='python -m gluon_bert.encode',
        description='Contextual BERT representations of a sentence or a '
                    'sentence pair, from a model directory written by '
                    'gluon_bert.pretrain.',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('sentences', nargs='+', metavar='SENTENCE',
                   help='one sentence, or two for a pair')
    p.add_argument('--model-dir', default='runs/pretrain',
                   help='model directory (model.params, vocab.json, '
                        'config.json)')
    p.add_argument('--token', default=None,
                   help='print only this token\'s vector (every token\'s '
                        'when not given)')
    p.add_argument('--num-elements', type=int, default=3,
                   help='how many leading elements of each vector to print')
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if len(args.sentences) > 2:
        parser.error(f'give one sentence or a pair, not '
                     f'{len(args.sentences)}')
    if args.num_elements < 1:
        parser.error('--num-elements must be at least 1')
    return args


def run(args, out=None):
    out = out or sys.stdout
    from .checkpoint import load_pretrained
    from .encoder import get_bert_encoding, prepare_input

    net, vocab, _ = load_pretrained(args.model_dir)
    tokens_a = args.sentences[0].lower().split()
    tokens_b = (args.sentences[1].lower().split()
                if len(args.sentences) == 2 else None)
    tokens, _ = prepare_input(net, tokens_a, tokens_b)
    shown = [t if t in vocab else '<unk>' for t in tokens]
    if args.token is not None and args.token.lower() not in tokens:
        raise GluonBertError(f'--token {args.token!r} is not in the input '
                             f'{" ".join(tokens)}')
    encoded = get_bert_encoding(net, vocab, tokens_a, tokens_b)
    n = args.num_elements
    print('Tokens:', ' '.join(shown), file=out)
    print('Shape of encoded text:', encoded.shape, file=out)
    print('Shape of [CLS] token embedding:', encoded[:, 0, :].shape, file=out)
    for i, token in enumerate(tokens):
        if args.token is None or token == args.token.lower():
            print(f'First {n} elements of "{token}" (position {i}) '
                  f'embedding:', encoded[0, i, :n], file=out)
    return encoded


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

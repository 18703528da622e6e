"""BERT representations: of one sentence or pair, or of a file of them.

    python -m gluon_bert.encode --model-dir runs/pretrain "a crane is flying"
    python -m gluon_bert.encode --model-dir runs/pretrain \\
        --input sentences.txt --output vectors.npy --pool cls

One input: the shapes of the encoding and of the <cls> vector, and the first
elements of a token's vector, as the guide prints them.  With --input, each
line (a sentence, or two separated by a tab) becomes a row of a NumPy array.
"""
import os
import sys
import time

from .utils import (ArgumentParser, GluonBertError, HelpFormatter,
                    positive_int, run_command)

__all__ = ['main', 'parse_args', 'build_parser']


def build_parser():
    p = ArgumentParser(
        prog='python -m gluon_bert.encode',
        description='Contextual BERT representations of a sentence or a '
                    'sentence pair, from a model directory written by '
                    'gluon_bert.pretrain.',
        formatter_class=HelpFormatter)
    p.add_argument('sentences', nargs='*', metavar='SENTENCE',
                   help='one sentence, or two for a pair (or use --input)')
    p.add_argument('--model-dir', default='runs/pretrain',
                   help='model directory (model.params, vocab.json, '
                        "config.json), or one of the book's published "
                        'models: d2l:bert.small, d2l:bert.base (downloaded '
                        'once)')
    p.add_argument('--token', default=None,
                   help='print only this token\'s vector (every token\'s '
                        'when not given)')
    p.add_argument('--num-elements', type=positive_int, default=3,
                   help='how many leading elements of each vector to print')
    g = p.add_argument_group('many inputs')
    g.add_argument('--input', default=None, metavar='FILE',
                   help='UTF-8 text file: one sentence, or a tab-separated '
                        'pair, per line')
    g.add_argument('--output', default=None, metavar='FILE.npy',
                   help='where the vectors go (numpy.save; written whole or '
                        'not at all); needed with --input')
    g.add_argument('--pool', choices=('cls', 'mean', 'none'), default='cls',
                   help='cls: the <cls> vector of each line, (lines, '
                        'hidden); mean: the mean over its tokens; none: '
                        'every token, (lines, longest, hidden), zero-padded')
    g.add_argument('--batch-size', type=positive_int, default=64,
                   help='lines encoded together (grouped by length)')
    g.add_argument('--blank-lines', choices=('skip', 'error'),
                   default='skip',
                   help='skip: leave blank lines out (the rows follow the '
                        'other lines; the count is said); error: refuse a '
                        'file with one')
    g.add_argument('--backend', choices=('mxnet', 'onnxruntime'),
                   default='mxnet',
                   help='onnxruntime: run the ONNX graph of --onnx (made by '
                        'python -m gluon_bert.export --format onnx) instead '
                        "of MXNet; --model-dir still gives the vocabulary")
    g.add_argument('--onnx', default=None, metavar='FILE.onnx',
                   help='the ONNX graph, with --backend onnxruntime')
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.input is not None:
        if args.sentences:
            parser.error('give SENTENCE arguments or --input, not both')
        if args.output is None:
            parser.error('--input needs --output FILE.npy for the vectors')
    elif not args.sentences:
        parser.error('give one sentence, a pair, or --input FILE')
    elif args.output is not None:
        parser.error('--output goes with --input')
    if args.backend == 'onnxruntime':
        if args.onnx is None:
            parser.error('--backend onnxruntime needs --onnx FILE.onnx')
        if not os.path.isfile(args.onnx):
            parser.error(f'--onnx {args.onnx} does not exist: make it with '
                         'python -m gluon_bert.export --format onnx')
    elif args.onnx is not None:
        parser.error('--onnx goes with --backend onnxruntime')
    if len(args.sentences) > 2:
        parser.error(f'give one sentence or a pair, not '
                     f'{len(args.sentences)}')
    return args


class _Progress:
    """A one-line progress bar on stderr for inputs of 1,000 lines or more."""

    def __init__(self, stream, every=0.5):
        self.stream, self.every, self.last = stream, every, 0.0
        self.start = time.perf_counter()

    def __call__(self, done, total):
        now = time.perf_counter()
        if total < 1000 or (now - self.last < self.every and done < total):
            return
        self.last = now
        width = 30
        filled = width * done // total
        rate = done / max(now - self.start, 1e-9)
        print(f'\r[{"#" * filled}{"." * (width - filled)}] {done}/{total} '
              f'lines, {rate:.0f} lines/sec', end='' if done < total else '\n',
              file=self.stream, flush=True)


def _check_output(path, need):
    """Before the encoding: the output's folder (made if missing) must be
    writable and have room for about ``need`` bytes."""
    from .utils import free_bytes, megabytes
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise GluonBertError(f'--output {path}: cannot make {folder} '
                             f'({e.strerror}): write elsewhere') from None
    if not os.access(folder, os.W_OK):
        raise GluonBertError(f'--output {path}: {folder} is not writable: '
                             'write elsewhere')
    free = free_bytes(folder)
    if free is not None and free < need:
        raise GluonBertError(f'--output {path}: {folder} has '
                             f'{megabytes(free)} free, the vectors take about '
                             f'{megabytes(need)}: free some space or write '
                             'elsewhere')


def run_file(args, lines, net, vocab, out):
    import numpy as onp

    from .encoder import encode_texts
    from .utils import atomic_write, write_error

    def warn(message):
        print(f'warning: {message}', file=sys.stderr)
    # (no. of lines, num_hiddens) float32; with --pool none, per token of
    # the longest input (at least its words, <cls> and two <sep>)
    tokens = (max(len(line.split()) for line in lines) + 3
              if args.pool == 'none' and lines else 1)
    need = len(lines) * net.config['num_hiddens'] * 4 * tokens
    _check_output(args.output, need)
    vectors = encode_texts(net, vocab, lines, batch_size=args.batch_size,
                           pool=args.pool, progress=_Progress(sys.stderr),
                           warn=warn)
    try:
        with atomic_write(args.output) as f:
            onp.save(f, vectors)
    except OSError as e:
        raise write_error(e, os.path.basename(args.output),
                          os.path.dirname(os.path.abspath(args.output)),
                          vectors.nbytes, settings=()) from None
    skipped = getattr(lines, 'blank', 0)
    print(f'{len(lines)} lines -> {args.output}: array of shape '
          f'{vectors.shape}, float32'
          + (f' ({skipped} blank lines skipped: the rows follow the other '
             'lines)' if skipped else ''), file=out)
    return vectors


def run(args, out=None):
    out = out or sys.stdout
    from .checkpoint import load_pretrained
    from .encoder import get_bert_encoding, prepare_input, read_inputs

    lines = (read_inputs(args.input, args.blank_lines == 'skip')
             if args.input is not None else None)
    net, vocab, config = load_pretrained(args.model_dir)
    if args.backend == 'onnxruntime':
        from .interop import OnnxEncoder
        net = OnnxEncoder(args.onnx, config['model'])
    if lines is not None:
        return run_file(args, lines, net, vocab, out)
    # A WordPiece model's vocabulary cuts the words into its pieces
    tokens_a = vocab.split(args.sentences[0].lower().split())
    tokens_b = (vocab.split(args.sentences[1].lower().split())
                if len(args.sentences) == 2 else None)
    tokens, _ = prepare_input(net, tokens_a, tokens_b)
    shown = [t if t in vocab else '<unk>' for t in tokens]
    shown_at = _positions(tokens, args.token, vocab)
    if not shown_at:
        raise GluonBertError(f'--token {args.token!r} is not in the input '
                             f'{" ".join(tokens)}')
    if args.backend == 'onnxruntime':
        _, segments = prepare_input(net, tokens_a, tokens_b)
        encoded = net.encode([vocab[tokens]], [segments], [len(tokens)])
    else:
        encoded = get_bert_encoding(net, vocab, tokens_a, tokens_b)
    n = args.num_elements
    print('Tokens:', ' '.join(shown), file=out)
    print('Shape of encoded text:', encoded.shape, file=out)
    print('Shape of [CLS] token embedding:', encoded[:, 0, :].shape, file=out)
    for i in shown_at:
        print(f'First {n} elements of "{tokens[i]}" (position {i}) '
              f'embedding:', encoded[0, i, :n], file=out)
    return encoded


def _positions(tokens, word, vocab):
    """The positions ``--token word`` shows: every one without it; else
    those of the word, or of each of its pieces where a WordPiece
    vocabulary cuts it (``crane`` -> ``cra ##ne``)."""
    if word is None:
        return list(range(len(tokens)))
    pieces = vocab.split([word.lower()])
    return [i + j for i in range(len(tokens) - len(pieces) + 1)
            if tokens[i:i + len(pieces)] == pieces
            for j in range(len(pieces))]


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

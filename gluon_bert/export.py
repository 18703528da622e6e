"""Export a model to the book's PyTorch BERT or to ONNX.

    python -m gluon_bert.export --model-dir runs/bert --format torch \\
        --output bert.pt
    python -m gluon_bert.export --model-dir runs/bert --format onnx \\
        --output bert.onnx

``torch``: a ``state_dict`` that ``d2l.torch.BERTModel`` (a classifier: the
book's PyTorch ``BERTClassifier``) loads with ``strict=True``; ``onnx``: the
encoder with a dynamic batch and length (``encode --backend onnxruntime``).
Beside either, NAME.json holds the settings and vocabulary (shared by the
two formats).  Needs ``gluon_bert[torch]`` (and ``[onnx]``).
"""
import json
import os
import sys
import tempfile

from .utils import (ArgumentParser, GluonBertError, HelpFormatter, atomic_path,
                    run_command)

__all__ = ['main', 'parse_args', 'build_parser', 'run']


def build_parser():
    p = ArgumentParser(
        prog='python -m gluon_bert.export',
        description="Export a gluon_bert model (pretrained or fine-tuned) to "
                    "the d2l book's PyTorch BERT or to ONNX, to keep it "
                    'beyond MXNet.', formatter_class=HelpFormatter)
    p.add_argument('--model-dir', required=True,
                   help='a directory written by gluon_bert.pretrain or '
                        'gluon_bert.finetune')
    p.add_argument('--format', choices=('torch', 'onnx'), default='torch',
                   help="torch: a state_dict for the book's PyTorch model; "
                        'onnx: the encoder as an ONNX graph (pretrained '
                        'models).  Either writes the settings and vocabulary '
                        'to NAME.json beside OUTPUT: bert.pt and bert.onnx of '
                        'one model share one bert.json')
    p.add_argument('--output', required=True,
                   help='the file to write (its folder must exist)')
    p.add_argument('--force', action='store_true',
                   help='replace an existing output file')
    return p


def parse_args(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    folder = os.path.dirname(os.path.abspath(args.output))
    if not os.path.isdir(folder):
        parser.error(f'--output {args.output}: the folder {folder} does not '
                     'exist: create it first')
    if args.output.endswith('.json'):
        parser.error(f'--output {args.output}: the settings go to NAME.json '
                     'beside the output; name it .pt or .onnx')
    if os.path.exists(args.output) and not args.force:
        parser.error(f'{args.output} exists: pass --force to replace it')
    try:  # a real write: permissions do not tell for root, or for /proc
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        parser.error(f'--output {args.output}: the folder {folder} cannot '
                     f'be written ({e.strerror}): pick another --output')
    return args


def _sidecar(output):
    return os.path.splitext(output)[0] + '.json'


def _load(model_dir):
    """(net, vocab, config) of a pretrained or fine-tuned model directory."""
    from .checkpoint import load_config, load_pretrained
    from .classifier import load_classifier
    if not os.path.isdir(model_dir):
        raise GluonBertError(f'--model-dir {model_dir} is not a folder: pass '
                             'a directory written by gluon_bert.pretrain or '
                             'finetune')
    config = load_config(model_dir)
    if 'classifier' in config:
        return load_classifier(model_dir)
    return load_pretrained(model_dir, hybridize=False)


def run(args, out=None):
    from . import interop
    out = out or sys.stdout
    torch = interop.require('torch')
    if args.format == 'onnx':
        interop.require('onnx')
    net, vocab, config = _load(args.model_dir)
    if args.format == 'onnx' and 'classifier' in config:
        raise GluonBertError(f'{args.model_dir} is a fine-tuned classifier; '
                             '--format onnx exports a pretrained encoder: '
                             'use --format torch')
    model = interop.torch_model(net, config)
    meta = {'format': 'gluon_bert.export/1', 'source': str(args.model_dir),
            'model': config['model'], 'classifier': config.get('classifier'),
            'vocab': list(vocab.idx_to_token), 'vocab_kind': vocab.kind}
    side = _sidecar(args.output)
    keep_side = _same_sidecar(side, meta, args.force)
    try:
        with atomic_path(args.output) as tmp:
            if args.format == 'torch':
                torch.save(model.state_dict(), tmp)
            else:
                interop.export_onnx(model, tmp)
            if not keep_side:
                with atomic_path(side) as tmp_side:
                    with open(tmp_side, 'w', encoding='utf-8') as f:
                        json.dump(meta, f)
    except (OSError, RuntimeError) as e:  # torch words a write error so
        reason = getattr(e, 'strerror', None) or str(e).splitlines()[0]
        raise GluonBertError(f'cannot write {args.output} ({reason}): '
                             'nothing was written; pick another --output '
                             'or free some space') from None
    print(f'{args.model_dir} -> {args.output} ({args.format}), settings and '
          f'vocabulary in {_sidecar(args.output)}', file=out)
    return args.output


def _same_sidecar(side, meta, force):
    """True when ``side`` already holds ``meta`` (the other format of the
    same model was exported under this name: it is kept); an existing one
    that describes something else is refused unless ``force``."""
    if not os.path.exists(side):
        return False
    try:
        with open(side, encoding='utf-8') as f:
            same = json.load(f) == json.loads(json.dumps(meta))
    except (OSError, ValueError):
        same = False
    if not same and not force:
        raise GluonBertError(f'{side} exists and describes another model: '
                             'pass --force to replace it, or export under '
                             'another --output name')
    return same


def main(argv=None):
    """Command-line entry point; returns the exit code."""
    return run_command(build_parser().prog, run, parse_args(argv))[0]


if __name__ == '__main__':
    sys.exit(main())

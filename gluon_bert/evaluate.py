"""Held-out evaluation of a pretrained BERT: MLM and NSP loss and accuracy.

    python -m gluon_bert.evaluate --model-dir runs/pretrain --split valid

The book's examples of the valid or test split (the training vocabulary,
draws seeded by --seed), the model without dropout; printed and written
as JSON (--output, default MODEL_DIR/eval-SPLIT.json).
"""
import json
import os
import sys

from .dataset import EVAL_BATCH_SIZE, EVAL_SEED
from .sources import EVAL_PAIRS
from .utils import (ArgumentParser, GluonBertError, HelpFormatter,
                    atomic_write, max_len_arg, positive_int, run_command)

__all__ = ['main', 'parse_args', 'build_parser']


def build_parser():
    p = ArgumentParser(
        prog='python -m gluon_bert.evaluate',
        description='MLM and NSP loss and accuracy of a pretrained model on '
                    'a held-out WikiText-2 split.',
        formatter_class=HelpFormatter)
    p.add_argument('--model-dir', default=os.path.join('runs', 'pretrain'),
                   help='model directory written by gluon_bert.pretrain')
    p.add_argument('--split', choices=('valid', 'test', 'train'),
                   default='valid')
    p.add_argument('--data-dir', default=None,
                   help='folder with wiki.*.tokens (default: as pretrain)')
    p.add_argument('--corpus', nargs='+', default=None,
                   help='score this text instead (files, folders or globs, '
                        "as pretrain --corpus reads them; its first "
                        f'{EVAL_PAIRS:,} pairs). A model pretrained with '
                        '--corpus is scored on its held-out text by default '
                        '(--split valid), as --eval-every scored it')
    p.add_argument('--max-len', type=max_len_arg, default=None,
                   help="example length (default: the run's --max-len)")
    p.add_argument('--batch-size', type=positive_int, default=EVAL_BATCH_SIZE)
    p.add_argument('--seed', type=int, default=EVAL_SEED,
                   help='seeds the random masking and NSP pairs')
    p.add_argument('--output', default=None,
                   help='JSON file to write (default: '
                        'MODEL_DIR/eval-SPLIT.json)')
    return p


def parse_args(argv=None):
    parser = build_parser()
    return parser.parse_args(argv)


def _corpus_batches(args, settings, vocab, max_len):
    """Batches of ``--corpus`` (all of it) or of the held-out text of the
    corpus the model was pretrained on, drawn as pretrain draws them."""
    from .config import PretrainConfig
    from .corpus import prepare_corpus
    from .sources import corpus_streams
    from .stream import CorpusStream
    config = PretrainConfig.from_dict(settings)
    config.max_len = max_len
    if args.corpus:
        prepared = prepare_corpus(args.corpus, config.corpus_format,
                                  vocab=vocab, cache_dir=config.cache_dir)
        held = CorpusStream(prepared, 1, max_len, args.seed, part='all')
    else:
        _, held = corpus_streams(config, say=lambda *a, **k: None,
                                 eval_seed=args.seed)
        if held.vocab != vocab:
            raise GluonBertError(f'{args.model_dir} was trained with another '
                                 'vocabulary than its corpus gives now: the '
                                 'corpus changed; pass --corpus')
    return list(held.held_out_batches(args.batch_size, EVAL_PAIRS))


def run(args):
    from .checkpoint import load_pretrained
    from .dataset import load_heldout
    from .trainer import evaluate_bert

    net, vocab, config = load_pretrained(args.model_dir)
    if 'classifier' in config:
        raise GluonBertError(
            f'{args.model_dir} holds a fine-tuned classifier, which keeps no '
            'MLM and NSP heads to score: evaluate the pretrained model it '
            f'started from ({config["classifier"].get("pretrained")}); '
            'encode takes the classifier\'s encoder')
    train = config['train']
    max_len = args.max_len or train.get('config', train).get('max_len', 64)
    if max_len > config['model']['max_len']:
        raise GluonBertError(f'--max-len {max_len} is longer than the '
                             f'model\'s position embedding '
                             f'({config["model"]["max_len"]})')
    settings = train.get('config', train)
    if args.corpus or (settings.get('corpus') and args.split == 'valid'):
        data_iter = _corpus_batches(args, settings, vocab, max_len)
    else:
        data_iter = load_heldout(max_len, vocab, args.split, args.data_dir,
                                 args.seed, args.batch_size)
    result = evaluate_bert(net, data_iter, len(vocab))
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

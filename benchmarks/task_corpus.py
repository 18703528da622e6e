"""WikiText-2 plus a task's unlabelled training sentences, as a data folder.

    python benchmarks/task_corpus.py --out runs/corpus_wt2_sst2
    python benchmarks/task_corpus.py --out runs/corpus_sst2 --task-only
    python -m gluon_bert.pretrain --recipe bert --max-minutes 30 \\
        --data-dir runs/corpus_wt2_sst2 --save-dir runs/pretrain30_sst2

Task-adaptive pretraining (Gururangan et al., 2020, "Don't Stop
Pretraining"): the pretraining text gains the fine-tuning task's *training*
sentences, without their labels (dev and test are never read).  See
:func:`gluon_bert.tasks.write_task_corpus`: WikiText-2's files unchanged,
the task's sentences appended to ``wiki.train.tokens`` in lines of
``--per-paragraph``.  The vocabulary pretraining builds from this text
(min_freq 5) then covers the task's words, and the fine-tuning control
(``--init random`` with that model directory) gets the same vocabulary.
"""
import argparse
import sys


def main(argv=None):
    from gluon_bert.dataset import resolve_data_dir
    from gluon_bert.tasks import read_task, write_task_corpus
    from gluon_bert.utils import GluonBertError

    parser = argparse.ArgumentParser(
        description='Write a data folder: WikiText-2 plus the unlabelled '
                    'training sentences of a fine-tuning task.')
    parser.add_argument('--out', required=True,
                        help='folder to write (must not exist yet)')
    parser.add_argument('--wikitext', default=None,
                        help='WikiText-2 folder (default: as pretrain finds '
                             'it, $GLUON_BERT_DATA first)')
    parser.add_argument('--task', default='sst2')
    parser.add_argument('--task-dir', default='../shared/data/sst-2')
    parser.add_argument('--per-paragraph', type=int, default=4,
                        help='task sentences per paragraph line (>= 2)')
    parser.add_argument('--task-only', action='store_true',
                        help="leave WikiText-2's training text out: the "
                             "task's sentences alone (self-pretraining; "
                             "WikiText-2's valid and test files are kept)")
    args = parser.parse_args(argv)
    try:
        wiki = resolve_data_dir(args.wikitext, 'train', download=False)
        a, b, _, _ = read_task(args.task, args.task_dir, 'train')
        sentences = a if b is None else [s for ab in zip(a, b) for s in ab]
        wiki_lines, task_lines = write_task_corpus(
            args.out, wiki, sentences, args.per_paragraph,
            with_wikitext=not args.task_only)
    except GluonBertError as e:
        sys.exit(f'error: {e}')
    text = (f'WikiText-2 train ({wiki_lines:,} lines) + '
            if not args.task_only else '')
    print(f'{args.out}: {text}{args.task} train ({len(sentences):,} '
          f'sentences, no labels) in {task_lines:,} lines of '
          f'{args.per_paragraph}; WikiText-2 valid and test')


if __name__ == '__main__':
    main()

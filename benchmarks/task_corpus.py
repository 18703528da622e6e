"""WikiText-2 plus a task's unlabelled training sentences, as a data folder.

    python benchmarks/task_corpus.py --out runs/corpus_wt2_sst2
    python benchmarks/task_corpus.py --out runs/corpus_sst2 --task-only
    python -m gluon_bert.pretrain --recipe bert --max-minutes 30 \\
        --data-dir runs/corpus_wt2_sst2 --save-dir runs/pretrain30_sst2

Task-adaptive pretraining (Gururangan et al., 2020, "Don't Stop
Pretraining"): the pretraining text gains the fine-tuning task's *training*
sentences, without their labels (dev and test are never read).  See
:func:`write_task_corpus` below: WikiText-2's files unchanged,
the task's sentences appended to ``wiki.train.tokens`` in lines of
``--per-paragraph``.  The vocabulary pretraining builds from this text
(min_freq 5) then covers the task's words, and the fine-tuning control
(``--init random`` with that model directory) gets the same vocabulary.
"""
import argparse
import os
import shutil
import sys

from gluon_bert.utils import GluonBertError, read_text_lines


def task_paragraphs(sentences, per_paragraph=4):
    """WikiText-2-style lines of ``per_paragraph`` sentences each.

    The book's reader (:func:`gluon_bert.dataset.read_wiki`) splits a line
    into sentences at ``' . '`` and keeps lines of two or more, so the
    sentences are joined by ``' . '`` after a trailing ``' .'`` of their own
    is dropped (it would make an empty sentence).  The last
    ``len(sentences) % per_paragraph`` sentences are left out.

    Parameters
    ----------
    sentences : list of str
    per_paragraph : int, >= 2

    Returns
    -------
    list of str
        Lines, each ending in ``' . \\n'`` as WikiText-2's do.
    """
    if per_paragraph < 2:
        raise GluonBertError(f'per_paragraph={per_paragraph}: use 2 or more '
                             '(the book keeps only lines of two or more '
                             'sentences)')
    cleaned = []
    for s in sentences:
        s = s.strip()
        if s.endswith(' .') or s == '.':
            s = s[:-1].rstrip()
        if s:
            cleaned.append(s)
    return [' ' + ' . '.join(cleaned[i:i + per_paragraph]) + ' . \n'
            for i in range(0, len(cleaned) - per_paragraph + 1,
                           per_paragraph)]


def write_task_corpus(out, wikitext_dir, sentences, per_paragraph=4,
                      with_wikitext=True):
    """Write a pretraining data folder: WikiText-2 plus task sentences.

    ``out/wiki.train.tokens`` is WikiText-2's training file followed by
    :func:`task_paragraphs` of ``sentences`` (a task's *training* sentences,
    without labels); ``wiki.valid.tokens`` and ``wiki.test.tokens`` are
    WikiText-2's, unchanged, so held-out MLM losses stay comparable.
    ``with_wikitext=False`` leaves WikiText-2's training text out: the task's
    sentences alone (self-pretraining).  The folder is written under a
    temporary name and renamed: it exists whole or not at all.

    Returns
    -------
    (int, int)
        WikiText-2 lines and task lines written.
    """
    out = os.fspath(out)
    if os.path.exists(out):
        raise GluonBertError(f'{out} exists: pass a folder that does not '
                             'exist yet')
    extra = task_paragraphs(sentences, per_paragraph)
    if not extra:
        raise GluonBertError(f'{len(sentences)} task sentences make no '
                             f'paragraph of {per_paragraph}: pass more '
                             'sentences or a smaller per_paragraph')
    for split in ('valid', 'test'):
        path = os.path.join(wikitext_dir, f'wiki.{split}.tokens')
        if not os.path.isfile(path):
            raise GluonBertError(f'{path} does not exist: pass the '
                                 'WikiText-2 folder')
    wiki_lines = len(read_text_lines(
        os.path.join(wikitext_dir, 'wiki.train.tokens'),
        'pass the WikiText-2 folder'))
    tmp = os.path.join(os.path.dirname(os.path.abspath(out)),
                       f'.{os.path.basename(out)}.{os.getpid()}.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        # WikiText-2's bytes unchanged, then the task's lines
        for split in ('train', 'valid', 'test') if with_wikitext else (
                'valid', 'test'):
            shutil.copyfile(os.path.join(wikitext_dir, f'wiki.{split}.tokens'),
                            os.path.join(tmp, f'wiki.{split}.tokens'))
        if not with_wikitext:
            open(os.path.join(tmp, 'wiki.train.tokens'), 'wb').close()
        with open(os.path.join(tmp, 'wiki.train.tokens'), 'rb+') as f:
            f.seek(0, os.SEEK_END)
            if f.tell():
                f.seek(-1, os.SEEK_END)
                if f.read(1) != b'\n':
                    f.write(b'\n')
            f.write(''.join(extra).encode('utf-8'))
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return (wiki_lines if with_wikitext else 0), len(extra)


def main(argv=None):
    from gluon_bert.dataset import resolve_data_dir
    from gluon_bert.tasks import read_task

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

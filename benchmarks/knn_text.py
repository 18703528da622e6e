"""WikiText-2's paragraphs nearest a task's training text, as a corpus file.

    python benchmarks/knn_text.py --task qnli:../shared/data/qnli-small \\
        --k 4 --out runs/knn/4-qnli.txt

The selection of "Don't Stop Pretraining" (Gururangan et al., 2020,
kNN-TAPT, there with VAMPIRE embeddings): for each of the task's training
examples its ``k`` nearest paragraphs of a larger text, here WikiText-2's
training file, by TF-IDF cosine over lower-cased words; their union, in
WikiText-2's order and layout, is a file ``pretrain --corpus`` reads beside
``TASK:FOLDER``.
Only the task's training text is read (no label, no dev or test).
"""
import argparse
import os
import sys

import numpy as onp

from gluon_bert.tasks import task_text
from gluon_bert.utils import GluonBertError, atomic_write

__all__ = ['wiki_paragraphs', 'tfidf', 'nearest', 'write_knn_text']


def wiki_paragraphs(path):
    """The lines of a WikiText file the book keeps (two or more sentences),
    as they are."""
    with open(path, encoding='utf-8') as f:
        return [line for line in f if len(line.split(' . ')) >= 2]


def tfidf(documents, vocab, idf):
    """Rows of (1 + log tf) x idf over ``vocab`` (word -> column), each of
    unit length, as a SciPy CSR matrix; words outside ``vocab`` dropped."""
    from scipy import sparse
    rows, cols, vals = [], [], []
    for i, words in enumerate(documents):
        ids, counts = onp.unique([vocab[w] for w in words if w in vocab],
                                 return_counts=True)
        weight = (1 + onp.log(counts)) * idf[ids]
        rows += [i] * len(ids)
        cols += ids.tolist()
        vals += (weight / max(onp.linalg.norm(weight), 1e-12)).tolist()
    return sparse.csr_matrix((vals, (rows, cols)),
                             shape=(len(documents), len(idf)))


def nearest(queries, paragraphs, k, chunk=512):
    """The indices of ``paragraphs`` (lists of words) among the ``k``
    nearest of some query (a list of words), sorted."""
    vocab, df = {}, []
    for words in paragraphs:
        for w in set(words):
            if w not in vocab:
                vocab[w] = len(df)
                df.append(0)
            df[vocab[w]] += 1
    idf = onp.log(len(paragraphs) / onp.array(df, dtype=onp.float64))
    p = tfidf(paragraphs, vocab, idf).T.tocsc()
    q = tfidf(queries, vocab, idf)
    chosen = set()
    for i in range(0, q.shape[0], chunk):
        scores = (q[i:i + chunk] @ p).toarray()  # (chunk, paragraphs)
        top = onp.argpartition(-scores, k - 1, axis=1)[:, :k]
        chosen.update(top.ravel().tolist())
    return sorted(chosen)


def write_knn_text(tasks, wiki_file, k, out):
    """Write to ``out`` the WikiText-2 lines among the ``k`` nearest of any
    training example of ``tasks`` (``[(task, folder), ...]``); returns how
    many lines of how many."""
    lines = wiki_paragraphs(wiki_file)
    queries = [[w.lower() for s in p for w in s]
               for task, folder in tasks for p in task_text(task, folder)]
    chosen = nearest(queries, [line.lower().split() for line in lines], k)
    with atomic_write(out, 'w') as f:
        f.writelines(lines[i] for i in chosen)
    return len(chosen), len(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--task', nargs='+', required=True, metavar='TASK:FOLDER')
    p.add_argument('--wiki', default='../shared/data/wikitext-2/'
                   'wiki.train.tokens')
    p.add_argument('--k', type=int, default=4)
    p.add_argument('--out', required=True)
    args = p.parse_args(argv)
    tasks = [tuple(t.split(':', 1)) for t in args.task]
    if any(len(t) != 2 for t in tasks) or args.k < 1:
        p.error('give --task as TASK:FOLDER and --k of 1 or more')
    try:
        kept, total = write_knn_text(tasks, args.wiki, args.k, args.out)
    except (GluonBertError, OSError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print(f'{args.out}: {kept:,} of {total:,} paragraphs '
          f'({kept / total:.0%}), the {args.k} nearest of each example')


if __name__ == '__main__':
    sys.exit(main())

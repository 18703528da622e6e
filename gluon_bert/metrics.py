"""How GLUE scores a task: accuracy, F1, Pearson and Spearman correlation.

Each metric takes host arrays of predictions (classes, or scores for a
regression task) and gold labels and returns a float; :func:`score` computes
the ones a task names (:attr:`gluon_bert.tasks.Task.metrics`).
"""
import numpy as onp

__all__ = ['METRICS', 'accuracy', 'f1', 'pearson', 'spearman', 'score']


def accuracy(pred, gold):
    """Share of predictions equal to the gold class."""
    pred, gold = onp.asarray(pred), onp.asarray(gold)
    return float((pred == gold).mean())


def f1(pred, gold, positive=1):
    """F1 of the ``positive`` class (MRPC's: paraphrase = 1); 0 when the
    class is never predicted nor present."""
    pred, gold = onp.asarray(pred) == positive, onp.asarray(gold) == positive
    true_pos = float((pred & gold).sum())
    denominator = float(pred.sum() + gold.sum())
    return 2 * true_pos / denominator if denominator else 0.0


def pearson(pred, gold):
    """Pearson's correlation; 0 where either side is constant (a model that
    predicts one score for everything correlates with nothing)."""
    x = onp.asarray(pred, dtype='float64')
    y = onp.asarray(gold, dtype='float64')
    x, y = x - x.mean(), y - y.mean()
    denominator = onp.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def _ranks(values):
    """Ranks from 1, ties sharing their mean rank (as SciPy's rankdata)."""
    values = onp.asarray(values, dtype='float64')
    order = onp.argsort(values, kind='mergesort')
    ranks = onp.empty(len(values))
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def spearman(pred, gold):
    """Spearman's rank correlation: Pearson's of the (tie-averaged) ranks."""
    return pearson(_ranks(pred), _ranks(gold))


#: Metric name -> function(pred, gold).
METRICS = {'accuracy': accuracy, 'f1': f1, 'pearson': pearson,
           'spearman': spearman}


def score(names, pred, gold):
    """``{name: value}`` for the metrics ``names``."""
    return {name: METRICS[name](pred, gold) for name in names}

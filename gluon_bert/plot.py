"""The loss curve and the per-step log of a pretraining run.

The book draws MLM and NSP running-mean losses against the step with its
``Animator``; here the same curve goes to a PNG (headless, matplotlib's Agg
backend) and every step's numbers to a CSV beside it.  When the run was
evaluated on held-out text (``--eval-every``), the PNG gets a second panel
with training and valid accuracy, and the valid losses are drawn as points.
"""
import csv
import io

from .history import HISTORY_LISTS
from .utils import atomic_write

__all__ = ['plot_history', 'write_history_csv', 'HISTORY_COLUMNS',
           'EVAL_COLUMNS']

#: Columns of the per-step CSV log, from the training history.
HISTORY_COLUMNS = tuple(k for k in HISTORY_LISTS if k != 'pairs')
#: Columns of the held-out results, filled at the steps that were evaluated.
EVAL_COLUMNS = ('valid_mlm', 'valid_mlm_acc', 'valid_nsp', 'valid_nsp_acc')
_EVAL_KEYS = ('mlm_loss', 'mlm_accuracy', 'nsp_loss', 'nsp_accuracy')


def _cell(value):
    if value is None:
        return ''
    if isinstance(value, float):
        return f'{value:.6g}'
    return str(value)


def write_history_csv(history, path):
    """One row per step: losses, accuracy, learning rate, time, evaluation."""
    steps = len(history['step'])
    columns = [c for c in HISTORY_COLUMNS if len(history.get(c, ())) == steps]
    evals = {e['step']: e for e in history.get('eval', [])}
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(columns + list(EVAL_COLUMNS if evals else ()))
    for i, step in enumerate(history['step']):
        row = [_cell(history[c][i]) for c in columns]
        if evals:
            row += [_cell(evals[step][k]) if step in evals else ''
                    for k in _EVAL_KEYS]
        writer.writerow(row)
    with atomic_write(path, 'w') as f:
        f.write(buf.getvalue())


def _smooth(values, window):
    """Trailing means over ``window`` values (None left out)."""
    out, run = [], []
    for v in values:
        run.append(v)
        recent = [x for x in run[-window:] if x is not None]
        out.append(sum(recent) / len(recent) if recent else None)
    return out


def plot_history(history, path, title=None):
    """Draw the losses against the step, as the book does.

    Without held-out results: the running means of MLM and NSP loss, the
    book's figure.  With them: the training losses smoothed over a window
    of 2 % of the steps, the valid losses as points, and a second panel of
    training and valid accuracy.
    """
    # A Figure of its own, without pyplot: no global backend is switched,
    # so this works inside a notebook kernel too
    from matplotlib.figure import Figure
    evals = history.get('eval') or []
    steps = history['step']
    if not evals:
        fig = Figure(figsize=(5, 3.5))
        ax = fig.subplots()
        ax.plot(steps, history['mlm'], label='mlm')
        ax.plot(steps, history['nsp'], 'm--', label='nsp')
        axes = [ax]
    else:
        fig = Figure(figsize=(10, 3.5))
        axes = fig.subplots(1, 2)
        window = max(1, len(steps) // 50)
        ax = axes[0]
        ax.plot(steps, _smooth(history['mlm_step'], window),
                label='train mlm')
        ax.plot(steps, _smooth(history['nsp_step'], window), 'm--',
                label='train nsp')
        at = [e['step'] for e in evals]
        ax.plot(at, [e['mlm_loss'] for e in evals], 'bo', label='valid mlm')
        ax.plot(at, [e['nsp_loss'] for e in evals], 'ms', label='valid nsp')
        acc = axes[1]
        if any(a is not None for a in history.get('mlm_acc_step', [])):
            acc.plot(steps, _smooth(history['mlm_acc_step'], window),
                     label='train mlm')
            acc.plot(steps, _smooth(history['nsp_acc_step'], window), 'm--',
                     label='train nsp')
        acc.plot(at, [e['mlm_accuracy'] for e in evals], 'bo',
                 label='valid mlm')
        acc.plot(at, [e['nsp_accuracy'] for e in evals], 'ms',
                 label='valid nsp')
        acc.set_ylabel('accuracy')
    for ax in axes:
        ax.set_xlabel('step')
        if steps:
            ax.set_xlim(1, max(steps[-1], 2))
        ax.legend()
        ax.grid(True)
    axes[0].set_ylabel('loss')
    if title:
        axes[0].set_title(title)
    fig.tight_layout()
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=100)

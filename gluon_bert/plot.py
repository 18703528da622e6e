"""The loss curve and the per-step log of a pretraining run.

The book draws MLM and NSP running-mean losses against the step with its
``Animator``; here the same curve goes to a PNG (headless, matplotlib's Agg
backend) and every step's numbers to a CSV beside it.
"""
import csv
import io

from .utils import atomic_write

__all__ = ['plot_history', 'write_history_csv', 'HISTORY_COLUMNS']

#: Columns of the per-step CSV log.
HISTORY_COLUMNS = ('step', 'mlm', 'nsp', 'mlm_step', 'nsp_step', 'seconds')


def write_history_csv(history, path):
    """One row per step: running means, the step's own losses, seconds."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(HISTORY_COLUMNS)
    for row in zip(*(history[c] for c in HISTORY_COLUMNS)):
        writer.writerow([row[0]] + [f'{v:.6f}' for v in row[1:]])
    with atomic_write(path, 'w') as f:
        f.write(buf.getvalue())


def plot_history(history, path, title=None):
    """Draw mlm and nsp (running means) against step, as the book does."""
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history['step'], history['mlm'], label='mlm')
    ax.plot(history['step'], history['nsp'], 'm--', label='nsp')
    ax.set_xlabel('step')
    ax.set_ylabel('loss')
    if history['step']:
        ax.set_xlim(1, max(history['step'][-1], 2))
    ax.legend()
    ax.grid(True)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    with atomic_write(path, 'wb') as f:
        fig.savefig(f, format='png', dpi=100)
    plt.close(fig)

"""The history of a pretraining run: one schema for the loop, the files and
the checkpoint.

:class:`History` keeps the lists of :data:`HISTORY_LISTS` step by step
(what ``train_bert`` returns and ``state.json`` saves), the book's running
sums, and prints the progress, evaluation and closing lines;
:class:`Clock` says when a time budget ends.  Where the book draws with its
``Animator``, :func:`plot_history` writes loss.png and
:func:`write_history_csv` history.csv.
"""
import csv
import io
import time

from .utils import atomic_write

__all__ = ['HISTORY_LISTS', 'History', 'Clock', 'UNKNOWN_TOTAL',
           'format_seconds',
           'progress_line', 'eval_line', 'plot_history', 'write_history_csv',
           'HISTORY_COLUMNS', 'EVAL_COLUMNS']

#: A run's number of steps before anything is measured (a time budget):
#: shown as "?".
UNKNOWN_TOTAL = 10 ** 9

#: The per-step lists of a history, in their CSV order (``pairs``: the
#: running count of sentence pairs, kept for resuming, not printed).
HISTORY_LISTS = ('step', 'mlm', 'nsp', 'mlm_step', 'nsp_step',
                 'mlm_acc_step', 'nsp_acc_step', 'lr', 'total', 'grad_norm',
                 'seconds', 'wall', 'pairs')


class History:
    """The run's history, running means and printed lines (bookkeeping).

    ``history`` is what :func:`train_bert` returns and checkpoints keep; a
    resumed run's history is continued.  Per step: ``step``, ``mlm`` and
    ``nsp`` (running means, as the book plots them), the step's losses and
    accuracies, ``lr``, ``total``, ``grad_norm``, ``seconds``, ``wall``,
    ``pairs``; then ``eval``, ``pairs_per_sec`` and ``stopped`` (the step an
    ``on_step`` callback stopped at, or None).
    """

    def __init__(self, devices, resume, options):
        self.options = options
        history = {key: [] for key in HISTORY_LISTS}
        history.update(eval=[], pairs_per_sec=0.0)
        if resume is not None:
            for key, value in resume['history'].items():
                history[key] = list(value) if isinstance(value, list) \
                    else value
            done = len(history['step'])
            for key in HISTORY_LISTS:  # checkpoints of older versions
                if len(history.get(key, [])) != done:
                    history[key] = [None] * done
        history['devices'] = [str(d) for d in devices]
        history['stopped'] = None
        self.history = history
        # The book's accumulator: sums of MLM and NSP losses, no. of
        # sentence pairs, no. of steps
        self.sums = dict(mlm=sum(history['mlm_step']),
                         nsp=sum(history['nsp_step']),
                         pairs=history['pairs'][-1] if history['pairs'] else 0,
                         steps=len(history['step']))
        self.train_seconds = (history['seconds'][-1] if history['seconds']
                              else 0.0)

    @property
    def steps_done(self):
        return len(self.history['step'])

    def record_step(self, step, out, rate, total, seconds):
        h, sums = self.history, self.sums
        sums['mlm'] += out.mlm
        sums['nsp'] += out.nsp
        sums['pairs'] += int(out.pairs)
        sums['steps'] += 1
        self.train_seconds += seconds
        h['step'].append(step)
        h['mlm'].append(sums['mlm'] / sums['steps'])
        h['nsp'].append(sums['nsp'] / sums['steps'])
        h['mlm_step'].append(out.mlm)
        h['nsp_step'].append(out.nsp)
        h['mlm_acc_step'].append(None if out.mlm_hits is None
                                 else out.mlm_hits / max(out.slots, 1e-8))
        h['nsp_acc_step'].append(None if out.nsp_hits is None
                                 else out.nsp_hits / out.pairs)
        h['lr'].append(rate)
        h['total'].append(total)
        h['grad_norm'].append(out.grad_norm)
        h['seconds'].append(self.train_seconds)
        h['pairs'].append(sums['pairs'])
        h['pairs_per_sec'] = sums['pairs'] / self.train_seconds

    def record_eval(self, step, result):
        result['step'] = step
        self.history['eval'].append(result)
        if self.options.verbose:
            print(eval_line(result, step), flush=True)

    def end_step(self, step, total, last, clock):
        self.history['wall'].append(clock.wall())
        every = self.options.log_every
        if self.options.verbose and every and (step % every == 0 or last):
            shown = max(total, step) if total < UNKNOWN_TOTAL else '?'
            left = clock.seconds_left(step, self.train_seconds)
            print(progress_line(self.history, step, shown, every, left),
                  flush=True)

    def close(self, devices):
        """The book's two closing lines."""
        if self.options.verbose:
            sums = self.sums
            print(f'MLM loss {sums["mlm"] / sums["steps"]:.3f}, '
                  f'NSP loss {sums["nsp"] / sums["steps"]:.3f}')
            print(f'{sums["pairs"] / self.train_seconds:.1f} '
                  'sentence pairs/sec '
                  f'on {str(devices)}')


def progress_line(history, step, total, log_every, seconds_left):
    """Means over the last ``log_every`` steps, so long runs show progress."""
    recent = slice(-log_every, None)

    def mean(key):
        values = [v for v in history[key][recent] if v is not None]
        return sum(values) / len(values) if values else None

    parts = [f'step {step:>{len(str(total))}}/{total}',
             f'mlm {mean("mlm_step"):.3f}', f'nsp {mean("nsp_step"):.3f}']
    if mean('mlm_acc_step') is not None:
        parts += [f'mlm acc {mean("mlm_acc_step"):.3f}',
                  f'nsp acc {mean("nsp_acc_step"):.3f}']
    parts += [f'lr {history["lr"][-1]:.2e}',
              f'{history["pairs_per_sec"]:.1f} pairs/sec',
              f'{format_seconds(seconds_left)} left']
    return '  '.join(parts)


def eval_line(result, step):
    return (f'valid at step {step}: MLM loss {result["mlm_loss"]:.3f}, '
            f'MLM accuracy {result["mlm_accuracy"]:.3f}; NSP loss '
            f'{result["nsp_loss"]:.3f}, NSP accuracy '
            f'{result["nsp_accuracy"]:.3f}')


def format_seconds(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
    return f'{seconds // 60}m{seconds % 60:02d}s'


class Clock:
    """Wall-clock time of a run, when to stop, and the steps to plan for.

    The learning-rate schedule needs the number of steps; with a time budget
    (``max_seconds``) it is estimated as the steps done plus the time left
    divided by the mean wall-clock time of the steps this process has run
    (evaluations and checkpoints included), leaving out the first, which
    builds the graph.  Until two steps are measured the estimate is the last
    one of a resumed run, or :attr:`UNKNOWN` (the first steps of warm-up then
    run at almost no learning rate).  Time counts on across resumed runs.
    """

    #: The estimate before anything is measured: a run of unknown length.
    UNKNOWN = UNKNOWN_TOTAL

    def __init__(self, num_steps, max_seconds, history):
        self.num_steps, self.max_seconds = num_steps, max_seconds
        self.fallback = (history['total'][-1] if history['total']
                         else None) or self.UNKNOWN
        walls = [w for w in history['wall'] if w is not None]
        self._before = walls[-1] if walls else (
            history['seconds'][-1] if history['seconds'] else 0.0)
        self._start = time.perf_counter()
        self._first = None  # (step, wall) after this process's first step

    def wall(self):
        return self._before + time.perf_counter() - self._start

    def finished(self, step):
        return ((self.num_steps is not None and step >= self.num_steps)
                or (self.max_seconds is not None
                    and self.wall() >= self.max_seconds))

    def total(self, step):
        """The number of steps the schedule plans for, before ``step + 1``."""
        if self.max_seconds is None:
            return self.num_steps
        if self._first is None or step - self._first[0] < 2:
            total = self.fallback
        else:
            per_step = (self.wall() - self._first[1]) / (step - self._first[0])
            total = step + max(0, int((self.max_seconds - self.wall())
                                      / per_step))
        return total if self.num_steps is None else min(total, self.num_steps)

    def observe(self, step):
        if self._first is None:
            self._first = (step, self.wall())

    def seconds_left(self, step, train_seconds):
        if self.max_seconds is not None:
            return max(0.0, self.max_seconds - self.wall())
        return train_seconds / step * (self.num_steps - step)


# --------------------------------------------------------------------------
# history.csv and loss.png
# --------------------------------------------------------------------------
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

"""Does pretraining pay? Fine-tuning from each pretrained start against the
same classifier from random init, on the GLUE sentence-pair tasks.

    python benchmarks/bench_transfer.py --model bert=runs/bert30 [--model name=DIR ...]
        [--tasks snli-small qnli sts-b mrpc rte] [--seeds 0 1 2] [--lrs 1e-4 3e-4 1e-3]

Every run is ``python -m gluon_bert.finetune`` in its own process (batch
--batch-size, --epochs epochs, the best dev epoch kept, then scored on the
test split where the task has one).  For each start (``random``: the
control, ``--init random`` on the first model's directory, so the same
vocabulary and architecture; then every ``--model``) and each task:

1. the grid: every learning rate of ``--lrs`` with the first seed;
2. the start's best learning rate by dev score (accuracy; STS-B: Pearson),
   then the other seeds at that rate.

So the control is tuned on the same grid as every pretrained start.  Every
finished run is added to ``--results`` (JSON) at once: an interrupted
benchmark keeps what it measured and a second call skips what is there.
Prints one table (mean ± standard deviation over the seeds at each start's
best rate, and the gain over the control) beside the published anchors, and
draws the gains in ``--figure``.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

#: Task -> (folder under --data-root, the score that picks the best point).
TASKS = {'snli-small': ('snli-small', 'accuracy'),
         'qnli': ('qnli-small', 'accuracy'),
         'sts-b': ('sts-b', 'pearson'),
         'mrpc': ('mrpc', 'accuracy'),
         'rte': ('rte', 'accuracy')}
#: Published figures to read the table against (see the README).
ANCHORS = {
    'snli-small': "d2l's bert.small on all 550k SNLI pairs: test 77.9",
    'qnli': 'BERT-Tiny (our shape, ~3.3B words) QNLI 81.5 (GLUE test); '
            'random-init BERT-base 50.0',
    'sts-b': 'BERT-Tiny 74.3 Pearson (GLUE test); random-init BERT-base '
             '17.8',
    'mrpc': 'BERT-Tiny accuracy 71.1, F1 81.1; majority class 68.4 (dev)',
    'rte': 'BERT-Tiny 57.2; majority class 52.7 (dev)',
}


def finetune(args, start, model_dir, task, seed, lr, epochs):
    """One fine-tuning run; returns its record (what results.json says)."""
    folder, _ = TASKS[task]
    save = os.path.join(args.out, f'{task}-{start}-seed{seed}-lr{lr:g}'
                        + (f'-ep{epochs}' if epochs != 5 else ''))
    cmd = [sys.executable, '-m', 'gluon_bert.finetune', '--task', task,
           '--data-dir', os.path.join(args.data_root, folder),
           '--model-dir', model_dir, '--save-dir', save, '--seed', str(seed),
           '--lr', str(lr), '--epochs', str(epochs), '--batch-size',
           str(args.batch_size), '--log-every', '0']
    control = getattr(args, 'control', 'random')
    if start == control:
        cmd += ['--init', 'random']
    print('$', ' '.join(cmd), flush=True)
    begin = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    minutes = (time.perf_counter() - begin) / 60
    with open(os.path.join(save, 'results.json')) as f:
        r = json.load(f)
    return dict(task=task, start=start, control=control, model=model_dir,
                seed=seed, lr=lr,
                epochs=epochs, batch_size=args.batch_size,
                minutes=minutes, dev=r['dev'], test=r['test'],
                best_epoch=r['best_epoch'], unk_shares=r['unk_shares'],
                dev_by_epoch=r['history']['dev_score'])


def _save(results, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + '.tmp', 'w') as f:
        json.dump(results, f, indent=2)
    os.replace(path + '.tmp', path)


def _key(r):
    return r.get('task'), r.get('start'), r.get('seed'), r.get('lr'), \
        r.get('epochs', 5)


def best_point(results, task, start, seed, lrs, epochs=(5,)):
    """The (rate, epochs) of the grid with the best dev score at ``seed``."""
    metric = TASKS[task][1]
    rows = [r for r in results if r.get('task') == task
            and r['start'] == start and r['seed'] == seed and r['lr'] in lrs
            and r.get('epochs', 5) in epochs]
    if not rows:
        return None
    best = max(rows, key=lambda r: r['dev'][metric])
    return best['lr'], best.get('epochs', 5)


def run_all(args, starts, results):
    done = {_key(r) for r in results}

    def ensure(start, task, seed, lr, epochs):
        if (task, start, seed, lr, epochs) in done:
            return
        r = finetune(args, start, starts[start], task, seed, lr, epochs)
        results.append(r)
        done.add(_key(r))
        _save(results, args.results)
        print(f'{task} {start} seed {seed} lr {lr:g} epochs {epochs}: dev '
              f'{r["dev"]}, test {r["test"]} (epoch {r["best_epoch"]}), '
              f'{r["minutes"]:.1f} min', flush=True)
    first, others = args.seeds[0], args.seeds[1:]
    for task in args.tasks:
        for start in starts:
            for epochs in args.epochs:
                for lr in args.lrs:
                    ensure(start, task, first, lr, epochs)
            point = best_point(results, task, start, first, args.lrs,
                               args.epochs)
            for seed in others:
                ensure(start, task, seed, *point)


def _stat(values):
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return mean, spread


def summary(results, starts, args):
    """Per task and start: the best rate's rows, mean and spread (x100)."""
    table = {}
    for task in args.tasks:
        metric = TASKS[task][1]
        for start in starts:
            point = best_point(results, task, start, args.seeds[0],
                               args.lrs, args.epochs)
            rows = [r for r in results if r.get('task') == task
                    and r['start'] == start and r['seed'] in args.seeds
                    and (r['lr'], r.get('epochs', 5)) == point]
            if not rows:
                continue
            entry = dict(lr=point[0], epochs=point[1], seeds=len(rows),
                         metric=metric,
                         minutes=statistics.mean(r['minutes'] for r in rows),
                         control=rows[0].get('control', 'random'))
            for split in ('dev', 'test'):
                for name in rows[0][split] or {}:
                    entry[f'{split} {name}'] = _stat(
                        [100 * r[split][name] for r in rows])
            table[task, start] = entry
    return table


def format_table(table, starts, tasks):
    """A Markdown table: mean ± spread x100 at each start's best rate, and
    the anchors."""
    lines = ['| task | start | lr | seeds | dev | test | gain over the control '
             '| min/run |', '| --- | --- | ---: | ---: | --- | --- | --- | ---: |']
    for task in tasks:
        for start in starts:
            e = table.get((task, start))
            if e is None:
                continue
            control = table.get((task, e['control']))

            def cells(split):
                return ', '.join(
                    f'{k.split()[1]} {v[0]:.1f} ± {v[1]:.1f}'
                    for k, v in e.items() if k.startswith(split + ' ')) or '-'
            gain = ''
            if control and start != e['control']:
                gain = ', '.join(
                    f'{split} {e[key][0] - control[key][0]:+.1f}'
                    for split in ('dev', 'test')
                    for key in [f'{split} {e["metric"]}']
                    if key in e and key in control)
            lines.append(f'| {task} | {start} | {e["lr"]:g} | {e["seeds"]} | '
                         f'{cells("dev")} | {cells("test")} | {gain} | '
                         f'{e["minutes"]:.1f} |')
    lines.append('')
    lines += [f'- {task}: {ANCHORS[task]}' for task in tasks]
    return '\n'.join(lines)


def settings_of(results):
    """(starts, tasks, seeds, lrs) that ``results`` were run with, in the
    benchmark's order (for a report of a results file alone)."""
    starts = {'random': None}
    for r in results:
        starts.setdefault(r.get('control', 'random'), None)
        starts.setdefault(r['start'], r['model'])
    tasks = [t for t in TASKS if any(r.get('task') == t for r in results)]
    seeds = sorted({r['seed'] for r in results})
    lrs = sorted({r['lr'] for r in results})
    epochs = sorted({r.get('epochs', 5) for r in results})
    return starts, tasks, seeds, lrs, epochs


def table_of(results):
    """``(table, starts, tasks)`` of a results file alone, with the
    settings it was run with (:func:`settings_of`)."""
    starts, tasks, seeds, lrs, epochs = settings_of(results)
    args = argparse.Namespace(tasks=tasks, seeds=seeds, lrs=lrs,
                              epochs=epochs)
    return summary(results, starts, args), starts, tasks


def plot_gains(table, starts, args):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    controls = {e['control'] for e in table.values()}
    names = [s for s in starts if s not in controls]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    width = 0.8 / max(len(names), 1)
    for i, start in enumerate(names):
        gains, errors = [], []
        for task in args.tasks:
            e = table.get((task, start))
            c = table.get((task, e['control'])) if e else None
            main = f'dev {TASKS[task][1]}'
            ok = e is not None and c is not None
            gains.append(e[main][0] - c[main][0] if ok else 0.0)
            errors.append(e[main][1] if ok else 0.0)
        xs = [j + i * width for j in range(len(args.tasks))]
        ax.bar(xs, gains, width, yerr=errors, label=start, capsize=3)
    ax.axhline(0, color='black', linewidth=0.8)
    ax.set_xticks([j + width * (len(names) - 1) / 2
                   for j in range(len(args.tasks))])
    ax.set_xticklabels([f'{t}\n({TASKS[t][1]})' for t in args.tasks])
    ax.set_ylabel('dev score - control (points)')
    save_figure(fig, ax, 'Gain of pretraining over the random-init control',
                args.figure)


def save_figure(fig, ax, title, path):
    """Title, legend, tight layout, and the PNG at ``path``."""
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--model', action='append', required=True,
                        metavar='NAME=DIR',
                        help='a pretrained start (repeatable); the control '
                             "uses the first one's vocabulary")
    parser.add_argument('--tasks', nargs='+', default=list(TASKS),
                        choices=list(TASKS), help='the tasks to fine-tune on')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='the first seed tries every rate; the others '
                             "run at each start's best one")
    parser.add_argument('--lrs', type=float, nargs='+',
                        default=[1e-4, 3e-4, 1e-3],
                        help='the learning-rate grid, the same for every '
                             'start')
    parser.add_argument('--epochs', type=int, nargs='+', default=[5],
                        help='epochs per run, a grid like --lrs (the best '
                             'dev epoch of each run is kept)')
    parser.add_argument('--batch-size', type=int, default=64,
                        help='examples per batch')
    parser.add_argument('--data-root', default='../shared/data',
                        help="the folder holding each task's folder")
    parser.add_argument('--out', default='runs/bench_transfer',
                        help="where each run's model directory goes")
    parser.add_argument('--results',
                        default='benchmarks/results/transfer.json',
                        help='every finished run is added here at once '
                             '(runs already in it are not run again)')
    parser.add_argument('--figure',
                        default='benchmarks/results/transfer.png',
                        help='the figure of the gains over the control')
    parser.add_argument('--control', default='random',
                        help='the name of the random-init start (on the first '
                             "model's vocabulary); give another name for a "
                             'start of another vocabulary, so that each is '
                             'compared with its own control')
    parser.add_argument('--report-only', action='store_true',
                        help='print the table of --results, run nothing')
    args = parser.parse_args(argv)
    starts = {args.control: args.model[0].split('=', 1)[1]}
    for spec in args.model:
        name, _, path = spec.partition('=')
        if not path or name == args.control:
            parser.error(f'--model {spec!r}: give NAME=DIR, NAME not random')
        starts[name] = path
    results = []
    if os.path.isfile(args.results):
        with open(args.results) as f:
            results = json.load(f)
    begin = time.perf_counter()
    if not args.report_only:
        run_all(args, starts, results)
        print(f'benchmark: {(time.perf_counter() - begin) / 60:.1f} min',
              flush=True)
    table = summary(results, starts, args)
    print('\n' + format_table(table, starts, args.tasks))
    plot_gains(table, starts, args)


if __name__ == '__main__':
    main()

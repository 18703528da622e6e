"""Transfer as pretraining grows: one long warm-up-stable-decay run, a
cooldown branch for every budget, each fine-tuned against the control.

    # the long run (resumable with --resume; keep every checkpoint)
    python -m gluon_bert.pretrain --recipe bert-wp --schedule wsd \\
        --warmup-steps 227 --cooldown 0 --steps 18176 --checkpoint-every 909 \\
        --keep-checkpoints 0 --eval-every 909 --save-dir runs/wsd-main
    python benchmarks/bench_scaling.py --main runs/wsd-main \\
        [--budgets 4544 1136 2272 9088 18176 568] [--seeds 0 1 2]

For each budget B (optimizer steps, batch 128: B x 128 sentence pairs seen),
in the order given: a branch of ``--main`` at its kept checkpoint nearest to
(1 - ``--cooldown``) x B, trained on to step B with the rate falling
linearly to zero over the remaining steps (``pretrain --branch-from
--branch-step --cooldown``; a point the long run passed without keeping it
is trained from scratch with the same schedule, ``--direct-flags``); then
:mod:`bench_transfer`'s protocol on snli-small, QNLI-small and STS-B: the
grid of ``--lrs`` x ``--epochs`` with the first seed, the other seeds at the
best point, the control (``--init random``, same vocabulary and shape)
tuned on the same grid.  Budgets whose checkpoint the long run has not
reached yet are skipped (say so, run again later).  Every run is added to
``--results`` at once; a second call skips what is there.  Prints the table
(valid MLM accuracy, and each task's mean +- spread and gain at each
budget), where each target (+5 / +8 / +10) is met: measured, or fitted as
gain = a + b log10(pairs) over the three largest budgets (the curve is
concave over the whole range), and draws the gains against the pairs seen
in ``--figure``.
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_transfer  # noqa: E402

from gluon_bert import checkpoint, state  # noqa: E402

CONTROL = 'random-wp'
TARGETS = {'snli-small': ('test accuracy', 5.0), 'qnli': ('dev accuracy', 8.0),
           'sts-b': ('dev pearson', 10.0)}


def branch_step(main_dir, budget, cooldown):
    """The kept checkpoint of the long run nearest to (1 - cooldown) x
    budget, or None when the run has not reached it."""
    want = (1 - cooldown) * budget
    steps = [s for s in state.saved_steps(main_dir, checkpoint.CKPT_DIR)
             if 0 < s < budget]
    if not steps:
        return None
    best = min(steps, key=lambda s: abs(s - want))
    return best if abs(best - want) <= 0.05 * budget else None


def ensure_branch(args, budget):
    """The folder of budget ``budget``'s finished branch, or None."""
    folder = os.path.join(args.out, f'wsd-{budget}')
    if state.state_step(folder) == budget and os.path.isfile(
            os.path.join(folder, 'history.json')):
        return folder
    step = branch_step(args.main, budget, args.cooldown)
    want = round((1 - args.cooldown) * budget)
    direct = step is None and (state.state_step(args.main) or 0) > want
    if step is None and not direct:
        print(f'budget {budget}: {args.main} has no checkpoint near step '
              f'{want} yet; skipped', flush=True)
        return None
    cooldown = args.cooldown if direct else (budget - step) / budget
    cmd = [sys.executable, '-m', 'gluon_bert.pretrain', '--save-dir', folder,
           '--steps', str(budget), '--cooldown', repr(cooldown),
           '--eval-every', str(budget), '--checkpoint-every', '500',
           '--keep-checkpoints', '1', '--log-every', '0']  # one evaluation
    if os.path.isfile(os.path.join(folder, 'state.json')):
        cmd += ['--resume']  # an interrupted branch goes on where it stopped
    elif direct:  # the long run passed this point unkept: the same schedule
        cmd += args.direct_flags.split()
    else:
        cmd += ['--branch-from', args.main, '--branch-step', str(step)]
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return folder


def valid_mlm(folder):
    with open(os.path.join(folder, 'history.json')) as f:
        evals = json.load(f)['eval']
    return evals[-1]['mlm_accuracy'] if evals else None


def batch_size(folder):
    return checkpoint.load_config(folder)['train']['config']['batch_size']


def budgets_table(results, budgets, args):
    """{budget: {task: (mean, spread, gain)}} from the results file."""
    starts = {CONTROL: None}
    starts.update({f'wsd-{b}': None for b in budgets})
    table = bench_transfer.summary(results, starts, args)
    rows = {}
    for b in budgets:
        row = {}
        for task in args.tasks:
            key = TARGETS[task][0]
            e, c = table.get((task, f'wsd-{b}')), table.get((task, CONTROL))
            if e and key in e:
                gain = e[key][0] - c[key][0] if c and key in c else None
                row[task] = (e[key][0], e[key][1], gain, e['seeds'])
        rows[b] = row
    return rows, table


def _pairs(results):
    return {r['budget']: r['pairs'] for r in results
            if r.get('kind') == 'pretrain'}


def _measured(rows, task):
    """``[(budget, gain)]`` of the budgets whose gain on ``task`` was
    measured with 3 seeds or more, smallest budget first."""
    return sorted((b, r[task][2]) for b, r in rows.items()
                  if r.get(task) and r[task][2] is not None
                  and r[task][3] >= 3)


def fit(rows, task, pairs, last=3):
    """gain = a + b log10(pairs) by least squares over the ``last`` largest
    budgets measured with 3 seeds; returns (a, b) or None when there are
    fewer.  The largest budgets alone, because over the whole range the
    gains are concave in log(pairs) (steep at first, then flatter): one line
    through all of them would meet a target too early."""
    pts = [(math.log10(pairs[b]), g) for b, g in _measured(rows, task)]
    pts = pts[-last:]
    if len(pts) < 3:  # two points always fit a line
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    sxx = sum((x - mx) ** 2 for x, _ in pts)
    if sxx == 0:
        return None
    b = sum((x - mx) * (y - my) for x, y in pts) / sxx
    return my - b * mx, b


def format_scaling(results, budgets, args):
    """A Markdown table: per budget, valid MLM accuracy and each task's
    mean +- spread (gain over the control, seeds); the control's row; the
    fitted budget of each target."""
    rows, table = budgets_table(results, budgets, args)
    mlm = {r['budget']: r['valid_mlm_accuracy'] for r in results
           if r.get('kind') == 'pretrain'}
    pairs = _pairs(results)
    head = ['| steps | pairs seen | valid MLM acc |'] + [
        f' {t} ({TARGETS[t][0]}) |' for t in args.tasks]
    lines = [''.join(head), '| ---: | ---: | ---: |' + ' --- |' * len(
        args.tasks)]
    for b in sorted(budgets):
        cells = []
        for task in args.tasks:
            v = rows[b].get(task)
            cells.append(f' {v[0]:.1f} ± {v[1]:.1f} ({v[2]:+.1f}, {v[3]} '
                         f'seeds) |' if v and v[2] is not None else ' - |')
        acc = f'{mlm[b]:.3f}' if b in mlm and mlm[b] is not None else '-'
        lines.append(f'| {b:,} | {pairs[b]:,} | {acc} |' + ''.join(cells))
    cells = []
    for task in args.tasks:
        c = table.get((task, CONTROL), {}).get(TARGETS[task][0])
        seeds = table.get((task, CONTROL), {}).get('seeds')
        cells.append(f' {c[0]:.1f} ± {c[1]:.1f} ({seeds} seeds) |' if c
                     else ' - |')
    lines.insert(2, '| 0 (control) | 0 | - |' + ''.join(cells))
    lines.append('')
    batch = pairs[budgets[0]] // budgets[0] if budgets else None
    for task in args.tasks:
        f = fit(rows, task, pairs)
        fitted = (f'fitted over the 3 largest budgets, gain = {f[0]:.1f} '
                  f'{f[1]:+.1f} log10(pairs); ' if f else '')
        lines.append(f'- {task}: {fitted}+{TARGETS[task][1]:g} '
                     + where_met(rows, task, f, batch))
    return '\n'.join(lines)


def where_met(rows, task, line, batch):
    """Where ``task``'s target is met: the smallest budget whose mean gain
    over 3 seeds or more reaches it as printed (measured), else the budget
    at which ``line``, :func:`fit`'s (a, b) or None, reaches it (fitted)."""
    target = TARGETS[task][1]
    hit = [b for b, gain in _measured(rows, task)
           if round(gain, 1) >= target]  # as printed
    if hit:
        return f'met at {hit[0]:,} steps, measured'
    if line is None:
        return 'not met; too few budgets with 3 seeds to fit'
    if line[1] <= 0:
        return 'not met, and the fit does not rise'
    need = 10 ** ((target - line[0]) / line[1])
    return (f'at about {_rounded(need / batch):,} steps = '
            f'{_rounded(need):,} pairs, fitted')


def _rounded(n, digits=2):
    """``n`` to ``digits`` significant digits, as an int (a fit's
    budget is no more precise than that)."""
    return int(round(n, digits - 1 - int(math.floor(math.log10(n)))))


def headline(results):
    """One sentence for the front page: each task's gain at the smallest and
    the largest budget, and where its target is met (:func:`where_met`);
    the fit's form is named when some target is fitted."""
    budgets, args = settings(results)
    rows, _ = budgets_table(results, budgets, args)
    pairs = _pairs(results)
    batch = pairs[budgets[0]] // budgets[0]
    lo, hi = budgets[0], budgets[-1]
    seeds = min(v[3] for r in rows.values() for v in r.values())
    parts, fitted = [], False
    for task in args.tasks:
        ends = [rows[b].get(task) for b in (lo, hi)]
        if all(e and e[2] is not None for e in ends):
            where = where_met(rows, task, fit(rows, task, pairs), batch)
            fitted = fitted or where.endswith(', fitted')
            parts.append(f'{task} {ends[0][2]:+.1f} to {ends[1][2]:+.1f} '
                         f'(+{TARGETS[task][1]:g} {where})')
    return (f'From {lo:,} to {hi:,} steps of {batch} pairs ({hi / lo:g}x, '
            f'{len(budgets)} budgets, {seeds} seeds or more each) the gains '
            'over the control go ' + ', '.join(parts) + (
                '; fitted as gain = a + b log10(pairs) over the 3 largest '
                'budgets.' if fitted else '.'))


def settings(results):
    """(budgets, argparse.Namespace of the grid) a results file was run
    with, for a report of the file alone."""
    _, tasks, seeds, lrs, epochs = bench_transfer.settings_of(
        [r for r in results if r.get('task')])
    budgets = sorted({r['budget'] for r in results
                      if r.get('kind') == 'pretrain'})
    return budgets, argparse.Namespace(
        tasks=[t for t in TARGETS if t in tasks], seeds=seeds, lrs=lrs,
        epochs=epochs)


def plot(results, budgets, args):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    rows, _ = budgets_table(results, budgets, args)
    pairs = _pairs(results)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for task in args.tasks:
        pts = sorted((pairs[b], r[task][2], r[task][1])
                     for b, r in rows.items()
                     if task in r and r[task][2] is not None)
        if pts:
            xs, ys, es = zip(*pts)
            ax.errorbar(xs, ys, yerr=es, marker='o', capsize=3,
                        label=f'{task} ({TARGETS[task][0]})')
            ax.axhline(TARGETS[task][1], linestyle=':', linewidth=0.8,
                       color=ax.lines[-1].get_color())
    ax.set_xscale('log')
    ax.axhline(0, color='black', linewidth=0.8)
    ax.set_xlabel('sentence pairs seen in pretraining (batch x steps)')
    ax.set_ylabel('gain over the control (points)')
    bench_transfer.save_figure(
        fig, ax, 'Transfer as pretraining grows (bert-wp, wsd branches)',
        args.figure)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--main', default='runs/wsd-main',
                        help='the long wsd run, every checkpoint kept')
    parser.add_argument('--budgets', type=int, nargs='+',
                        default=[4544, 1136, 2272, 9088, 18176, 568],
                        help='pretraining budgets in optimizer steps, run in '
                             'this order')
    parser.add_argument('--cooldown', type=float, default=0.2,
                        help="share of each budget's steps over which its "
                             'branch decays the rate to zero')
    parser.add_argument('--direct-flags', default='--recipe bert-wp '
                        '--schedule wsd --warmup-steps 227',
                        help="a budget whose branch point the long run passed "
                        'without keeping it is trained from scratch with '
                        "these flags (the long run's) and its cooldown")
    parser.add_argument('--tasks', nargs='+', default=list(TARGETS),
                        choices=list(TARGETS))
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--lrs', type=float, nargs='+',
                        default=[1e-4, 3e-4, 1e-3])
    parser.add_argument('--epochs', type=int, nargs='+', default=[5, 10])
    parser.add_argument('--batch-size', type=int, default=64,
                        help='fine-tuning batch')
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--out', default='runs/scaling',
                        help='where branches and fine-tuned models go')
    parser.add_argument('--results', default=os.path.join(
        HERE, 'results', 'scaling.json'))
    parser.add_argument('--figure', default=os.path.join(
        HERE, 'results', 'scaling.png'))
    parser.add_argument('--skip-control', action='store_true',
                        help='fine-tune the pretrained starts only (another '
                             'process runs the control into its own '
                             '--results; --merge joins the files)')
    parser.add_argument('--merge', nargs='+', default=[],
                        help='results files of other processes, added to '
                             '--results (runs already there are kept)')
    parser.add_argument('--report-only', action='store_true')
    args = parser.parse_args(argv)
    args.control = CONTROL
    results = []
    if os.path.isfile(args.results):
        with open(args.results) as f:
            results = json.load(f)
    for path in args.merge:
        with open(path) as f:
            seen = {json.dumps(r, sort_keys=True) for r in results}
            results += [r for r in json.load(f)
                        if json.dumps(r, sort_keys=True) not in seen]
    if args.merge:
        bench_transfer._save(results, args.results)
    begin = time.perf_counter()
    if not args.report_only:
        done = {r['budget'] for r in results if r.get('kind') == 'pretrain'}
        if not args.skip_control:  # first: it needs only the vocabulary
            bench_transfer.run_all(args, {CONTROL: args.main}, results)
        for budget in args.budgets:
            folder = ensure_branch(args, budget)
            if folder is None:
                continue
            if budget not in done:
                results.append(dict(kind='pretrain', budget=budget,
                                    pairs=budget * batch_size(folder),
                                    folder=folder,
                                    valid_mlm_accuracy=valid_mlm(folder)))
                bench_transfer._save(results, args.results)
            starts = {f'wsd-{budget}': folder}
            if not args.skip_control:
                starts = {CONTROL: folder, **starts}
            bench_transfer.run_all(args, starts, results)
        print(f'benchmark: {(time.perf_counter() - begin) / 60:.1f} min',
              flush=True)
    budgets = sorted({r['budget'] for r in results
                      if r.get('kind') == 'pretrain'})
    print(format_scaling(results, budgets, args))
    if budgets:
        plot(results, budgets, args)


if __name__ == '__main__':
    main()

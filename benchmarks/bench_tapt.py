"""Pretraining that pays within the 30-minute budget in steps: WikiText-2,
then the task's own text (task-adaptive pretraining, Gururangan et al.,
"Don't Stop Pretraining", 2020).

    python benchmarks/bench_tapt.py [--splits 3636 2727] \\
        [--tasks snli-small qnli sts-b] [--joint] [--mix | --knn K] \\
        [--long 18176]

The budget is the scaling study's 30-minute one, 4,544 steps of 128 pairs,
with its recipe (``--recipe bert-wp``, warm-up-stable-decay):

1. WikiText-2 (``OUT/wt2``): warm-up 227 steps, then the peak rate, no
   cooldown, up to the largest split, every 909th checkpoint kept;
2. for each split S and task T (``OUT/tapt-S-T``): ``--init-from OUT/wt2
   --init-step S --corpus T:FOLDER``, the task's *training* text (labels,
   dev and test never read), for 4,544 - S steps, the rate warmed up again
   over 45 steps (the optimizer starts afresh) then decayed to zero; with
   ``--joint``, one model on the three tasks' texts together
   (``OUT/tapt-S-joint``), fine-tuned on each; with ``--no-nsp`` the task
   phase trains MLM alone (``OUT/tapt-S-T-nonsp``: whether a pair as a
   two-sentence document helps); with ``--mix`` it reads WikiText-2 beside
   the task's text, one corpus (``OUT/tapt-S-T-mix``: whether a small text
   read over and over is the limit); with ``--knn K`` beside WikiText-2's
   paragraphs nearest the task's text (``OUT/tapt-S-T-knnK``, kNN-TAPT:
   :mod:`knn_text`);
3. with ``--long B``, beyond the budget: ``OUT/wt2`` goes on to 0.8 x B
   steps and the scaling study's branch of it decays the rate to zero by
   step B (``OUT/wsd-B``, as the scaling study made its budgets), then each
   task's text for ``--long-task-steps`` more (``OUT/tapt-B+N-T``), read
   against the scaling study's ``wsd-B`` fine-tunes;
4. each model fine-tuned on its task as the scaling study fine-tunes
   (``bench_transfer``: seed 0 at 1e-4, 3e-4 and 1e-3, 10 epochs keeping
   the best dev epoch, seeds 1 and 2 at the best rate).

The control (``random-wp``: the same classifier from random init, on the
same WordPiece vocabulary) and 4,544 steps of WikiText-2 alone
(``wsd-4544``) were fine-tuned on that grid by the scaling study; their
runs are copied from ``results/scaling.json`` into ``--results`` so that
every start is read against the same control.  For a task the scaling
study did not fine-tune (``mrpc``, ``rte``) both are fine-tuned here, the
WikiText-2-alone model made as the scaling study makes its budgets: a
branch of ``OUT/wt2`` at step 3,636 decaying the rate to zero by 4,544
(``OUT/wsd-4544``).  Every pretraining run
resumes where it stopped and every finished fine-tuning run is saved at
once, so an interrupted study continues where it was.
"""
import argparse
import functools
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_transfer  # noqa: E402

BUDGET, WARMUP, KEEP_EVERY = 4544, 227, 909
#: The scaling study's starts this study is read against.
REFERENCE = ('random-wp', 'wsd-4544')
TASK_FOLDERS = {task: folder for task, (folder, _) in
                bench_transfer.TASKS.items()}


def _step(folder):
    """The step a run's folder reached (0: none yet)."""
    try:
        with open(os.path.join(folder, 'state.json')) as f:
            return json.load(f)['step']
    except (OSError, ValueError, KeyError):
        return 0


def pretrain(save_dir, steps, flags):
    """Run (or resume, or skip) one pretraining run to ``steps``."""
    done = _step(save_dir)
    if done >= steps:
        return
    cmd = [sys.executable, '-m', 'gluon_bert.pretrain', '--save-dir',
           save_dir, '--steps', str(steps), '--log-every', '100']
    cmd += ['--resume'] if done else flags
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True)


def task_folders(args, tasks):
    """``[(task, its data folder), ...]``."""
    return [(task, os.path.join(args.data_root, TASK_FOLDERS[task]))
            for task in tasks]


def corpus_of(args, tasks):
    """The ``--corpus`` sources of ``tasks``' training text."""
    return [f'{task}:{folder}' for task, folder in task_folders(args, tasks)]


def pretrain_wt2(args, steps):
    """The WikiText-2 run every split starts from, run to ``steps``."""
    wt2 = os.path.join(args.out, 'wt2')
    pretrain(wt2, steps, [
        '--recipe', 'bert-wp', '--schedule', 'wsd', '--warmup-steps',
        str(WARMUP), '--cooldown', '0', '--checkpoint-every',
        str(KEEP_EVERY), '--keep-checkpoints', '0', '--data-dir',
        os.path.join(args.data_root, 'wikitext-2')])
    return wt2


def pretrain_split(args, wt2, split):
    """One split's task runs: {name: (folder, tasks)}."""
    models = {}
    groups = [[task] for task in args.tasks] + (
        [args.tasks] if args.joint else [])
    # the same for every group: the options' name suffixes and flags
    suffix = ('-nonsp' if args.no_nsp else '') + ('-mix' if args.mix else '')
    suffix += f'-knn{args.knn}' if args.knn else ''
    mix = [os.path.join(args.data_root, 'wikitext-2')] if args.mix else []
    nsp = ['--no-nsp'] if args.no_nsp else []
    for tasks in groups:
        group = tasks[0] if len(tasks) == 1 else 'joint'
        name = f'tapt-{split}-{group}{suffix}'
        folder = os.path.join(args.out, name)
        near = [knn_file(args, group, tasks)] if args.knn else []
        pretrain(folder, BUDGET - split, [
            '--recipe', 'bert-wp', '--init-from', wt2, '--init-step',
            str(split), '--corpus', *corpus_of(args, tasks), *mix, *near,
            '--schedule', 'linear', '--warmup-steps', '45'] + nsp)
        models[name] = (folder, tasks)
    return models


def knn_file(args, group, tasks):
    """``OUT/knn/K-GROUP.txt``: WikiText-2's paragraphs among the ``--knn``
    nearest of some training example of ``tasks`` (made once)."""
    import knn_text
    out = os.path.join(args.out, 'knn', f'{args.knn}-{group}.txt')
    if not os.path.isfile(out):
        os.makedirs(os.path.dirname(out), exist_ok=True)
        kept, total = knn_text.write_knn_text(
            task_folders(args, tasks),
            os.path.join(args.data_root, 'wikitext-2', 'wiki.train.tokens'),
            args.knn, out)
        print(f'{out}: {kept:,} of {total:,} WikiText-2 paragraphs',
              flush=True)
    return out


def branch(args, wt2, budget):
    """``OUT/wsd-BUDGET``: ``wt2`` branched as the scaling study makes its
    budgets (the rate decayed to zero over the last 20 %)."""
    import bench_scaling
    return bench_scaling.ensure_branch(argparse.Namespace(
        out=args.out, main=wt2, cooldown=0.2, direct_flags=''), budget)


def ensure_alone(args, wt2, results):
    """``OUT/wsd-4544`` when some task has no WikiText-2-alone rows in
    ``results`` yet, else None."""
    done = {r['task'] for r in results if r.get('start') == REFERENCE[1]}
    return None if set(args.tasks) <= done else branch(args, wt2, BUDGET)


def pretrain_long(args, wt2):
    """``--long B``: ``wt2`` run on to 0.8 x B, its branch to B, and each
    task's run from that, {name: (folder, tasks)} (each resumes where an
    interrupted one stopped)."""
    pretrain_wt2(args, round(0.8 * args.long / KEEP_EVERY) * KEEP_EVERY)
    base = branch(args, wt2, args.long)
    models = {}
    for task in args.tasks:
        name = f'tapt-{args.long}+{args.long_task_steps}-{task}'
        folder = os.path.join(args.out, name)
        pretrain(folder, args.long_task_steps, [
            '--recipe', 'bert-wp', '--init-from', base, '--corpus',
            *corpus_of(args, [task]), '--schedule', 'linear',
            '--warmup-steps', '45'])
        models[name] = (folder, [task])
    return models


def reference_rows(args, starts=REFERENCE):
    """The scaling study's fine-tuning runs of ``starts`` (the control's
    and wsd-4544's)."""
    with open(args.scaling) as f:
        return [r for r in json.load(f) if r.get('start') in starts
                and r.get('task') in args.tasks]


def alone_of(start):
    """The WikiText-2-alone start a start is read against: ``wsd-B`` for
    ``tapt-B+N-T`` (the long model's task runs, past the budget), else
    ``wsd-4544``."""
    first, then = phases(start)
    return f'wsd-{first}' if then and first + then > BUDGET \
        else REFERENCE[1]


def score_of(task, table):
    """``(key, target)``: the score the scaling study's target is set on,
    or for a task without one (MRPC, RTE) its test score where the task
    has a labelled test split, else its dev score (as the front page's
    transfer figures read), target None."""
    from bench_scaling import TARGETS
    if task in TARGETS:
        return TARGETS[task]
    metric = bench_transfer.TASKS[task][1]
    tested = any(f'test {metric}' in e for (t, _), e in table.items()
                 if t == task)
    return f'{"test" if tested else "dev"} {metric}', None


def phases(start):
    """``(WikiText-2 steps, task-text steps)`` of a start (0, 0: the
    control)."""
    if start == REFERENCE[0]:
        return 0, 0
    if start.startswith('wsd-'):
        return int(start[4:]), 0
    split = start.split('-')[1]
    first, then = (split.split('+') if '+' in split
                   else (split, BUDGET - int(split)))
    return int(first), int(then)


def describe(start):
    """A start in words: how many steps of which text."""
    first, then = phases(start)
    if not first:
        return 'random init (the control)'
    if not then:
        return f'{first:,} steps of WikiText-2 alone'
    text = ("the three tasks' text" if '-joint' in start
            else "the task's own text")
    text += ' with WikiText-2' if '-mix' in start else ''
    text += (" with WikiText-2's paragraphs nearest it" if '-knn' in start
             else '')
    return (f'{first:,} steps of WikiText-2, then {then:,} of {text}'
            + (' (MLM alone)' if '-nonsp' in start else ''))


def format_routes(results):
    """Markdown: for each task the start to take, the best mean score
    among the finished grids within the 4,544-step budget, and beyond it
    where the long model's runs are finished, with its gains."""
    table, starts, tasks = bench_transfer.table_of(results)
    lines = ['| task (score) | take | steps | score | over the control | '
             'over WikiText-2 alone |', '| --- | --- | ---: | ---: | ---: '
             '| ---: |']
    for task in tasks:
        key, _ = score_of(task, table)
        control = table.get((task, REFERENCE[0]))
        done = {s: table[(task, s)][key][0] for s in starts
                if s != REFERENCE[0] and (task, s) in table
                and key in table[(task, s)]
                and table[(task, s)]['seeds'] >= 3}
        steps = {s: sum(phases(s)) for s in done}
        for within in (True, False):
            pool = [s for s in done if (steps[s] <= BUDGET) == within]
            if not pool or control is None:
                continue
            best = max(pool, key=done.get)
            alone = table.get((task, alone_of(best)))
            over = (f'{done[best] - alone[key][0]:+.1f}'
                    if alone and phases(best)[1] else '')
            spread = table[(task, best)][key][1]
            lines.append(f'| {task} ({key}) | {describe(best)} | '
                         f'{steps[best]:,} | {done[best]:.1f} ± '
                         f'{spread:.1f} | {done[best] - control[key][0]:+.1f} '
                         f'| {over} |')
    return '\n'.join(lines)


def format_table(results):
    """Markdown: per task, every start whose grid is finished at its best
    rate on seed 0 (mean ± spread over its 3 seeds, x100) on the score the
    targets are set on (:func:`score_of`), its gain over the control and
    over WikiText-2 alone (:func:`alone_of`).  The runs shared the CPU
    with each other, so no minutes are shown."""
    table, starts, tasks = bench_transfer.table_of(results)
    lines = ['| task (score, target) | start | lr | seeds | score | over the '
             'control | over WikiText-2 alone |',
             '| --- | --- | ---: | ---: | ---: | ---: | ---: |']
    for task in tasks:
        key, target = score_of(task, table)
        label = f'{task} ({key}' + (f', +{target:g})' if target else ')')
        control = table.get((task, REFERENCE[0]))
        for start in starts:
            e = table.get((task, start))
            if e is None or key not in e or e['seeds'] < 3:
                continue  # its grid is not finished
            mean, spread = e[key]
            alone = table.get((task, alone_of(start)))
            gains = [f'{mean - ref[key][0]:+.1f}' if ref and start not in (
                REFERENCE[0], name) else '' for ref, name in
                ((control, REFERENCE[0]), (alone, alone_of(start)))]
            lines.append(f'| {label} | {start} | {e["lr"]:g} | {e["seeds"]} '
                         f'| {mean:.1f} ± {spread:.1f} | {gains[0]} | '
                         f'{gains[1]} |')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--splits', type=int, nargs='*', default=[3636, 2727],
                   help='WikiText-2 steps before the task text (multiples '
                        f'of {KEEP_EVERY})')
    p.add_argument('--tasks', nargs='+', default=['snli-small', 'qnli',
                                                  'sts-b'],
                   choices=list(TASK_FOLDERS))
    p.add_argument('--joint', action='store_true',
                   help="also one model on the tasks' texts together")
    p.add_argument('--no-nsp', action='store_true',
                   help="the task phase without NSP (MLM alone): the "
                        "runs are named tapt-S-TASK-nonsp")
    p.add_argument('--mix', action='store_true',
                   help="the task phase reads WikiText-2's training text "
                        "beside the task's, as one corpus: the runs are "
                        "named tapt-S-TASK-mix")
    p.add_argument('--knn', type=int, metavar='K',
                   help="the task phase also reads WikiText-2's paragraphs "
                   "among the K nearest of each training example "
                   "(kNN-TAPT; benchmarks/knn_text.py)")
    p.add_argument('--long', type=int, metavar='B',
                   help='also the B-step WikiText-2 model (a multiple of '
                        f'{KEEP_EVERY * 5 // 4}, e.g. 18176) continued on '
                        "each task's text")
    p.add_argument('--long-task-steps', type=int, default=1817,
                   help="steps on the task's text after --long's model")
    p.add_argument('--data-root', default='../shared/data')
    p.add_argument('--out', default='runs/tapt')
    p.add_argument('--scaling', default=os.path.join(HERE, 'results',
                                                     'scaling.json'))
    p.add_argument('--results', default=os.path.join(HERE, 'results',
                                                     'tapt.json'))
    p.add_argument('--pretrain-only', action='store_true')
    p.add_argument('--report-only', action='store_true')
    args = p.parse_args(argv)
    bad = [s for s in args.splits if s % KEEP_EVERY or not 0 < s < BUDGET]
    if bad:
        p.error(f'--splits {bad}: multiples of {KEEP_EVERY} below {BUDGET}')
    if args.long is not None and args.long % (KEEP_EVERY * 5 // 4):
        p.error(f'--long {args.long}: a multiple of {KEEP_EVERY * 5 // 4} '
                '(its branch point, 0.8 x B, a kept checkpoint)')
    ft = argparse.Namespace(
        seeds=[0, 1, 2], lrs=[1e-4, 3e-4, 1e-3], epochs=[10], batch_size=64,
        data_root=args.data_root, out=os.path.join(args.out, 'finetune'),
        results=args.results, control=REFERENCE[0], tasks=args.tasks)
    results = []
    if os.path.isfile(args.results):
        with open(args.results) as f:
            results = json.load(f)
    else:
        results = reference_rows(args)
    wt2 = None if args.report_only else pretrain_wt2(
        args, max(args.splits, default=KEEP_EVERY))
    alone = None if args.report_only else ensure_alone(args, wt2, results)
    if args.long and not any(r['start'] == f'wsd-{args.long}'
                             for r in results):
        results += reference_rows(args, [f'wsd-{args.long}'])
    stages = [functools.partial(pretrain_split, args, wt2, split)
              for split in args.splits]
    if args.long:
        stages.append(functools.partial(pretrain_long, args, wt2))
    for stage in ([] if args.report_only else stages):
        models = stage()
        for name, (folder, tasks) in models.items():
            if args.pretrain_only:
                continue
            # the reference starts are in results already: not run again
            starts = {REFERENCE[0]: folder, name: folder}
            if alone:  # the tasks the scaling study did not fine-tune
                starts[REFERENCE[1]] = alone
            bench_transfer.run_all(argparse.Namespace(**dict(
                vars(ft), tasks=tasks)), starts, results)
    starts = list(REFERENCE) + sorted({r['start'] for r in results}
                                      - set(REFERENCE))
    table = bench_transfer.summary(results, starts, ft)
    print(bench_transfer.format_table(table, starts, args.tasks))


if __name__ == '__main__':
    main()

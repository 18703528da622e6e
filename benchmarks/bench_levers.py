"""Which pretraining lever pays?  Each lever on top of ``--recipe bert``, the
same short pretraining, then fine-tuned on the three target tasks.

    python benchmarks/bench_levers.py [--minutes 10] [--levers bert nonsp ...]
        [--tasks snli-small qnli sts-b] [--lr 1e-3] [--seed 0]
        [--out runs/levers] [--results benchmarks/results/levers.json]

1. ``bert``: ``python -m gluon_bert.pretrain --recipe bert --max-minutes
   --minutes``; the steps it reaches set the budget of the others.
2. Every other lever at that many steps (``--steps``), so a busy CPU
   changes its wall-clock time but not its model -- except ``len128``, whose
   steps cost about twice as much: it gets the same minutes instead.
3. Each model's valid MLM/NSP loss and accuracy (``python -m
   gluon_bert.evaluate --max-len 64``; a WordPiece model's MLM loss is over
   pieces, not words, so compare it with care).
4. Each model and a random-init control per vocabulary (word or WordPiece:
   the control of each lever is the same classifier from random init, with
   that lever's vocabulary) fine-tuned once per task at one learning rate
   and seed (``bench_transfer.finetune``: batch 64, 5 epochs, best dev
   epoch, then test).

A screen, not the benchmark: one seed at one rate, a short pretraining.  The
winner goes to ``bench_transfer.py`` (3 seeds, a grid, 30 minutes).  Every
finished piece is kept in ``--results`` at once; a second call skips what
is there.
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_transfer  # noqa: E402

#: Lever -> flags added to --recipe bert.
LEVERS = {
    'bert': [],
    'len128': ['--max-len', '128'],
    'nonsp': ['--no-nsp'],
    'mask30': ['--mask-prob', '0.3'],
    'wpww': ['--vocab', 'wordpiece', '--whole-word'],
}
#: Levers that get the baseline's minutes rather than its steps.
BY_TIME = ('bert', 'len128')


def pretrain(args, lever, steps):
    """Pretrain one lever (unless done); returns its record."""
    save = os.path.join(args.out, lever)
    cmd = [sys.executable, '-m', 'gluon_bert.pretrain', '--recipe', 'bert',
           '--data-dir', args.data_dir, '--save-dir', save, '--log-every',
           '200'] + LEVERS[lever]
    cmd += (['--max-minutes', str(args.minutes)] if lever in BY_TIME
            else ['--steps', str(steps)])
    if not os.path.isfile(os.path.join(save, 'history.json')):
        print('$', ' '.join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(save, 'history.json')) as f:
        history = json.load(f)
    out = os.path.join(save, 'eval-valid-64.json')
    if not os.path.isfile(out):
        subprocess.run([sys.executable, '-m', 'gluon_bert.evaluate',
                        '--model-dir', save, '--data-dir', args.data_dir,
                        '--max-len', '64', '--output', out], check=True,
                        stdout=subprocess.DEVNULL)
    with open(out) as f:
        valid = json.load(f)
    with open(os.path.join(save, 'vocab.json')) as f:
        kind = json.load(f).get('kind', 'word')
    return dict(lever=lever, flags=LEVERS[lever], model=save,
                steps=history['step'][-1],
                minutes=history['seconds'][-1] / 60,
                pairs_per_sec=history['pairs_per_sec'], vocab=kind,
                valid=valid)


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--minutes', type=float, default=10.0)
    parser.add_argument('--levers', nargs='+', default=list(LEVERS),
                        choices=list(LEVERS))
    parser.add_argument('--tasks', nargs='+',
                        default=['snli-small', 'qnli', 'sts-b'],
                        choices=list(bench_transfer.TASKS))
    parser.add_argument('--lr', type=float, default=1e-3)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--epochs', type=int, default=5)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    parser.add_argument('--data-root', default='../shared/data')
    parser.add_argument('--out', default='runs/levers')
    parser.add_argument('--results',
                        default='benchmarks/results/levers.json')
    args = parser.parse_args(argv)
    results = {'pretrain': {}, 'finetune': []}
    if os.path.isfile(args.results):
        with open(args.results) as f:
            results = json.load(f)
    begin = time.perf_counter()
    levers = ['bert'] + [lv for lv in args.levers if lv != 'bert']
    for lever in levers:
        if lever not in results['pretrain']:
            steps = results['pretrain'].get('bert', {}).get('steps')
            results['pretrain'][lever] = pretrain(args, lever, steps)
            bench_transfer._save(results, args.results)
    ft_args = argparse.Namespace(out=os.path.join(args.out, 'finetune'),
                                 data_root=args.data_root, epochs=args.epochs,
                                 batch_size=args.batch_size)
    done = {(r['task'], r['start']) for r in results['finetune']}
    controls = {}
    for lever in levers:
        record = results['pretrain'][lever]
        controls.setdefault(record['vocab'], record['model'])
        starts = [(f'random-{record["vocab"]}', controls[record['vocab']]),
                  (lever, record['model'])]
        for task in args.tasks:
            for start, model in starts:
                if (task, start) in done:
                    continue
                # each vocabulary's control in a folder of its own
                # (random-word, random-wordpiece), trained with --init random
                ft_args.control = (start if start.startswith('random')
                                   else None)
                r = bench_transfer.finetune(ft_args, start, model, task,
                                            args.seed, args.lr)
                r['start'] = start
                results['finetune'].append(r)
                done.add((task, start))
                bench_transfer._save(results, args.results)
                print(f'{task} {start}: dev {r["dev"]} test {r["test"]} '
                      f'({r["minutes"]:.1f} min)', flush=True)
    print(f'benchmark: {(time.perf_counter() - begin) / 60:.1f} min')
    print(format_table(results, args.tasks))


def format_table(results, tasks):
    """Markdown: per lever, its pretraining and each task's dev (test)
    score x100 and the gain over its vocabulary's control."""
    scores = {(r['task'], r['start']): r for r in results['finetune']}
    head = ['lever', 'steps', 'wall min', 'valid MLM', 'valid MLM acc',
            'valid NSP acc']
    lines = ['| ' + ' | '.join(head + [
        f'{t} {bench_transfer.TASKS[t][1]}' for t in tasks]) + ' |',
        '| --- |' + ' ---: |' * (len(head) - 1 + len(tasks))]
    for lever, p in results['pretrain'].items():
        cells = [lever + (f' ({p["vocab"]})' if p['vocab'] != 'word' else ''),
                 str(p['steps']), f'{p["minutes"]:.1f}',
                 f'{p["valid"]["mlm_loss"]:.2f}',
                 f'{p["valid"]["mlm_accuracy"]:.3f}',
                 f'{p["valid"]["nsp_accuracy"]:.2f}']
        for task in tasks:
            metric = bench_transfer.TASKS[task][1]
            r = scores.get((task, lever))
            c = scores.get((task, f'random-{p["vocab"]}'))
            if r is None:
                cells.append('-')
                continue
            split = 'test' if r['test'] else 'dev'
            value = 100 * r[split][metric]
            gain = (f' ({value - 100 * c[split][metric]:+.1f})' if c
                    else '')
            cells.append(f'{split} {value:.1f}{gain}')
        lines.append('| ' + ' | '.join(cells) + ' |')
    for vocab in sorted({p['vocab'] for p in results['pretrain'].values()}):
        cells = [f'control ({vocab} vocabulary)'] + ['-'] * (len(head) - 1)
        for task in tasks:
            c = scores.get((task, f'random-{vocab}'))
            metric = bench_transfer.TASKS[task][1]
            split = 'test' if c and c['test'] else 'dev'
            cells.append(f'{split} {100 * c[split][metric]:.1f}' if c
                         else '-')
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()

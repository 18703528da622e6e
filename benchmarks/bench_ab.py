"""The guide's training step, before and after a change: pairs/s of two
checkouts, interleaved in one run.

    python benchmarks/bench_ab.py BEFORE_DIR [AFTER_DIR] [--rounds 4]

Each checkout (a folder holding ``gluon_bert/``, e.g. ``git worktree add
/tmp/before main``) trains ``train_bert``'s defaults on the same batches as
``bench_pretrain.py`` (batch 512, max_len 64, the small BERT), each variant in
its own process, in both import orders (``import gluon_bert`` first, as the
commands do, and ``from mxnet import gluon`` first, as a script does).
Rounds alternate the order of the two checkouts so that a drift of the
machine falls on both; the medians are compared.  Run it alone: the brief's
rule is that no change costs over 2 %.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_pretrain  # noqa: E402

ORDERS = ('ours', 'ours-mxnet-first')


def pairs_per_sec(tree, kind, batches, warmup):
    env = dict(os.environ, PYTHONPATH=tree)
    done = subprocess.run([sys.executable, '-c', bench_pretrain.CHILD, kind,
                           batches, str(warmup)], capture_output=True,
                          text=True, env=env, cwd=tree)
    if done.returncode:
        raise SystemExit(f'{tree}: {done.stderr.strip().splitlines()[-1]}')
    import json
    return json.loads(done.stdout.strip().splitlines()[-1])['pairs_per_sec']


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('before')
    p.add_argument('after', nargs='?', default=os.path.dirname(HERE))
    p.add_argument('--rounds', type=int, default=4)
    p.add_argument('--steps', type=int, default=16)
    p.add_argument('--warmup', type=int, default=3)
    p.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    args = p.parse_args(argv)
    trees = {'before': os.path.abspath(args.before),
             'after': os.path.abspath(args.after)}
    speeds = {(name, kind): [] for name in trees for kind in ORDERS}
    with tempfile.TemporaryDirectory() as tmp:
        batches = os.path.join(tmp, 'batches.npz')
        bench_pretrain.child(bench_pretrain.PREPARE, args.data_dir,
                             args.steps + args.warmup, batches)
        for round_ in range(args.rounds):
            names = list(trees) if round_ % 2 == 0 else list(trees)[::-1]
            for kind in ORDERS:
                for name in names:
                    speed = pairs_per_sec(trees[name], kind, batches,
                                          args.warmup)
                    speeds[name, kind].append(speed)
                    print(f'round {round_ + 1} {name:<6} {kind:<17} '
                          f'{speed:7.1f} pairs/s', flush=True)
    for kind in ORDERS:
        before = statistics.median(speeds['before', kind])
        after = statistics.median(speeds['after', kind])
        print(f'{kind:<17} median before {before:6.1f}, after {after:6.1f}'
              f' pairs/s: {100 * (after / before - 1):+.1f} %')


if __name__ == '__main__':
    main()

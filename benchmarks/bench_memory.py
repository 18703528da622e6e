"""Memory over a long run: does the resident set grow?

    python benchmarks/bench_memory.py [--steps 1000] [--data-dir DIR] [-- FLAGS]

Runs ``train_bert`` as ``python -m gluon_bert.pretrain`` would (the bert
recipe by default: batch 128, new examples every epoch, so every epoch ends
with a last batch of a different size) and samples the process's resident
set size (VmRSS) after every step.  It prints the RSS every 100 steps, the
number of distinct input shapes the hybridized graph saw, and the growth
between the first and the last tenth of the run.
"""
import argparse
import os
import sys


def rss_mb():
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) / 1024
    return float('nan')


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--steps', type=int, default=1000)
    p.add_argument('--data-dir', default=None)
    p.add_argument('flags', nargs='*', help='more pretrain flags, after --')
    args = p.parse_args(argv)
    from gluon_bert import pretrain, trainer
    from gluon_bert.packing import pack_cut_batch
    shapes, samples = set(), []

    def spy_pack(cut, devices, num_heads):
        shards = pack_cut_batch(cut, devices, num_heads)
        # (batch size, packed tokens T, MLM slots K) of the first shard
        shapes.add((sum(x.shape[0] for x in cut[0]), len(shards[0][0]),
                    len(shards[0][7])))
        return shards
    trainer.pack_cut_batch = spy_pack
    original = trainer.train_bert

    def train_bert(*a, callbacks=None, **k):
        on_step = callbacks.on_step if callbacks else None

        def step(s, history, position):
            samples.append((s, rss_mb()))
            return on_step(s, history, position) if on_step else False
        return original(*a, callbacks=trainer.Callbacks(
            callbacks.evaluate if callbacks else None, step), **k)
    trainer.train_bert = train_bert
    argv = ['--recipe', 'bert', '--steps', str(args.steps), '--log-every',
            '0', '--save-dir', os.path.join('runs', 'bench_memory')]
    if args.data_dir:
        argv += ['--data-dir', args.data_dir]
    code = pretrain.main(argv + args.flags)
    if code:
        sys.exit(code)
    print('| step | RSS (MB) |\n| ---: | ---: |')
    for s, mb in samples:
        if s % 100 == 0 or s == 1:
            print(f'| {s} | {mb:.0f} |')
    tenth = max(1, len(samples) // 10)
    first = sum(mb for _, mb in samples[:tenth]) / tenth
    last = sum(mb for _, mb in samples[-tenth:]) / tenth
    print(f'\n{len(shapes)} distinct (batch, tokens, MLM slots) shapes: '
          f'{sorted(shapes)}')
    print(f'mean RSS, first tenth of the steps {first:.0f} MB, last tenth '
          f'{last:.0f} MB ({last - first:+.0f} MB); peak '
          f'{max(mb for _, mb in samples):.0f} MB')


if __name__ == '__main__':
    main()

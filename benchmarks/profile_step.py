"""Where the time of one training step goes, by MXNet's own profiler.

    python benchmarks/profile_step.py [--data-dir DIR] [--steps 4] [--top 15]

The guide's settings (batch 512, max_len 64, the small BERT, the fused
loss, hybridized, one OpenMP thread per core), a few warm-up steps, then
``--steps`` steps under ``mx.profiler`` with aggregated statistics: each
operator's share of the summed operator time, its calls and mean time, and
beside the largest the rate it reaches against the GEMM peak measured here
(the FLOPs of the products are known from the shapes).  Operators run one
by one (MXNet's bulk execution off), so the step is a little slower than in
training.  Run it alone on the CPU.
"""
import argparse
import os

# One profiler row per operator: MXNet otherwise runs (and reports) a
# hybridized graph's operators in bulk segments
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_TRAIN', '0')
os.environ.setdefault('MXNET_EXEC_BULK_EXEC_INFERENCE', '0')
import random
import re
import time


def gemm_peak():
    """GFLOP/s of one 4096 x 1024 x 4096 FullyConnected, fp32."""
    import mxnet as mx  # noqa: F401
    from mxnet import np, npx
    x = np.random.uniform(size=(4096, 1024))
    w = np.random.uniform(size=(4096, 1024))
    for _ in range(2):
        npx.fully_connected(x, w, no_bias=True, num_hidden=4096)
    npx.waitall()
    n, start = 10, time.perf_counter()
    for _ in range(n):
        npx.fully_connected(x, w, no_bias=True, num_hidden=4096)
    npx.waitall()
    return 2 * 4096 * 1024 * 4096 * n / (time.perf_counter() - start) / 1e9


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    parser.add_argument('--steps', type=int, default=4)
    parser.add_argument('--top', type=int, default=15)
    args = parser.parse_args(argv)
    import gluon_bert  # noqa: F401 -- one OpenMP thread per core
    import mxnet as mx
    import numpy as onp
    from mxnet import gluon, npx

    from gluon_bert.dataset import DataIter, load_dataset
    from gluon_bert.model import get_bert_model
    from gluon_bert.trainer import TrainOptions, train_bert
    npx.set_np()
    random.seed(0)
    onp.random.seed(0)
    mx.random.seed(0)
    dataset = load_dataset(64, args.data_dir)
    batches = [b for b, _ in zip(DataIter(dataset, 512), range(args.steps + 2))]
    net = get_bert_model(len(dataset.vocab))
    devices = [mx.cpu(0)]
    loss = gluon.loss.SoftmaxCELoss()
    options = TrainOptions(verbose=False, lr=0.01)
    # warm-up: graph building and first allocations
    from gluon_bert.trainer import init_bert, make_trainer
    init_bert(net, devices)
    trainer = make_trainer(net, options.lr)
    train_bert(batches[:2], net, loss, len(dataset.vocab), devices, 2,
               trainer, options)
    # (never os.devnull: MXNet writes its trace to a new file and renames
    # it over the name, which replaced /dev/null with a regular file here)
    import tempfile
    trace = os.path.join(tempfile.mkdtemp(), 'profile.json')
    mx.profiler.set_config(profile_all=True, aggregate_stats=True,
                           filename=trace)
    mx.profiler.set_state('run')
    start = time.perf_counter()
    train_bert(batches[2:], net, loss, len(dataset.vocab), devices,
               args.steps, trainer, options)
    npx.waitall()
    wall = time.perf_counter() - start
    mx.profiler.set_state('stop')
    table = mx.profiler.dumps(reset=True, format='table', sort_by='total',
                              ascending=False)
    peak = gemm_peak()
    print(f'{args.steps} steps, batch 512, max_len 64: {wall / args.steps:.3f}'
          f' s a step ({512 * args.steps / wall:.1f} pairs/s); GEMM peak '
          f'here {peak:.0f} GFLOP/s')
    rows = []
    for line in table.splitlines():
        m = re.match(r'\s*(\S+)\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+'
                     r'([\d.]+)\s*$', line)
        if m and not m[1].startswith(('Name', '=')):
            rows.append((m[1], int(m[2]), float(m[3])))
    seen = {}
    for name, calls, total in rows:  # one row per operator; no C API waits
        if name.startswith('MX'):
            continue
        if name not in seen or total > seen[name][1]:
            seen[name] = (calls, total)
    summed = sum(total for _, total in seen.values())
    print(f'{"operator":<44}{"calls":>7}{"ms":>10}{"share":>8}'
          f'{"ms/call":>9}')
    for name, (calls, total) in sorted(seen.items(), key=lambda kv: -kv[1][1])[
            :args.top]:
        print(f'{name:<44}{calls:>7}{total:>10.1f}{100 * total / summed:>7.1f}%'
              f'{total / calls:>9.2f}')
    print(f'(operator time summed: {summed / args.steps:.0f} ms a step; the '
          f'wall clock: {1000 * wall / args.steps:.0f} ms)')


if __name__ == '__main__':
    main()

"""Is LayerNorm faster as matrix products?  MXNet's kernel against
``model.LayerNorm``'s matrix form, by width, side by side in one process.

    python benchmarks/bench_layernorm.py [--tokens 16384] [--widths 128 256 ...]
        [--repeats 20] [--out benchmarks/results/layernorm.json]

For each width n: forward and backward (hybridized, static_alloc) of one
LayerNorm over (tokens, n) float32 on cpu(0), the two forms interleaved
repeat by repeat, median milliseconds of each.  ``model.MATRIX_LAYERNORM_WIDTHS``
(the widths that use the matrix form) is read off this file's results.
"""
import argparse
import json
import os
import statistics
import sys
import time

import mxnet as mx
from mxnet import autograd, gluon, np, npx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..'))
from gluon_bert import layers, model  # noqa: E402
from gluon_bert.devices import cpu_name  # noqa: E402
from gluon_bert.threads import set_cpu_threads  # noqa: E402


def _block(matrix, n):
    block = model.LayerNorm(n) if matrix else gluon.nn.LayerNorm(
        in_channels=n)
    block.initialize(ctx=mx.cpu())
    block.hybridize(static_alloc=True)
    return block


_by_width = layers.use_matrix_layernorm


def _time(block, x, force):
    layers.use_matrix_layernorm = lambda width: force
    with autograd.record():
        y = block(x)
    y.backward()
    npx.waitall()
    start = time.perf_counter()
    with autograd.record():
        y = block(x)
    y.backward()
    npx.waitall()
    return 1000 * (time.perf_counter() - start)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tokens', type=int, default=16384)
    parser.add_argument('--widths', type=int, nargs='+',
                        default=[64, 128, 256, 512, 768, 1024])
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--out', default='benchmarks/results/layernorm.json')
    parser.add_argument('--note', default='',
                        help='kept in the results (e.g. what else ran)')
    args = parser.parse_args(argv)
    npx.set_np()
    set_cpu_threads()
    rows = []
    for n in args.widths:
        x = np.random.normal(size=(args.tokens, n))
        x.attach_grad()
        blocks = {'mxnet': _block(False, n), 'matrix': _block(True, n)}
        times = {name: [] for name in blocks}
        for _ in range(args.repeats):
            for name, block in blocks.items():
                times[name].append(_time(block, x, name == 'matrix'))
        row = dict(width=n, tokens=args.tokens,
                   **{f'{k}_ms': statistics.median(v)
                      for k, v in times.items()})
        row['speedup'] = row['mxnet_ms'] / row['matrix_ms']
        rows.append(row)
        print(f'width {n:5d}: MXNet {row["mxnet_ms"]:7.2f} ms, matrix form '
              f'{row["matrix_ms"]:7.2f} ms, speed-up {row["speedup"]:.2f}x',
              flush=True)
    layers.use_matrix_layernorm = _by_width
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + '.tmp', 'w') as f:
        json.dump({'cpu': cpu_name(), 'note': args.note, 'rows': rows}, f,
                  indent=2)
    os.replace(args.out + '.tmp', args.out)


if __name__ == '__main__':
    main()

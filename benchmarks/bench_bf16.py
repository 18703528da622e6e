"""Is bfloat16 worth it for the MLM output layer on this CPU?

    python benchmarks/bench_bf16.py

Times one chunk of the fused MLM head's most expensive part, forward and
backward, as gluon_bert runs it (448 slots x 128 -> 20256 words, then a
log-softmax in float32), once in float32 and once with the FullyConnected in
bfloat16 (``amp_cast`` of input and weight, oneDNN's bf16 kernel), and prints
both times and the relative difference of the result.
"""
import time

from mxnet import autograd, nd, np, npx
from mxnet.contrib.amp.amp import bfloat16

from gluon_bert.threads import set_cpu_threads

npx.set_np()
set_cpu_threads()  # one OpenMP thread per core, as train_bert has
K, H, V = 448, 128, 20256


def run(x, w, dtype, repeats=8, warmup=2):
    times = []
    for i in range(repeats + warmup):
        start = time.perf_counter()
        with autograd.record():
            if dtype == 'bfloat16':
                xb = nd.amp_cast(x.as_nd_ndarray(), dtype=bfloat16)
                wb = nd.amp_cast(w.as_nd_ndarray(), dtype=bfloat16)
                y = nd.FullyConnected(xb, wb, no_bias=True, num_hidden=V)
                y = nd.amp_cast(y, dtype='float32').as_np_ndarray()
            else:
                y = npx.fully_connected(x, w, no_bias=True, num_hidden=V)
            loss = -npx.log_softmax(y)[:, 0].sum()
        loss.backward()
        npx.waitall()
        times.append(time.perf_counter() - start)
    return sum(times[warmup:]) / repeats, float(loss)


def main():
    x = np.random.normal(size=(K, H)) * 0.5
    w = np.random.normal(size=(V, H)) * 0.05
    x.attach_grad()
    w.attach_grad()
    fp32, loss32 = run(x, w, 'float32')
    bf16, loss16 = run(x, w, 'bfloat16')
    print(f'float32  {fp32 * 1e3:7.1f} ms  loss {loss32:.4f}')
    print(f'bfloat16 {bf16 * 1e3:7.1f} ms  loss {loss16:.4f}  '
          f'speed-up {fp32 / bf16:.2f}x  relative loss difference '
          f'{abs(loss16 - loss32) / abs(loss32):.1e}')


if __name__ == '__main__':
    main()

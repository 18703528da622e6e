"""Does a whole training step gain from bfloat16 in MXNet 1.9.1 on this CPU?

    python benchmarks/bench_bf16_step.py [--steps 8]

What MXNet's own AMP does for bfloat16 (``contrib.amp``: its bf16 list is
FullyConnected and Convolution only), applied to gluon_bert's step with the
guide's settings (batch 512, max_len 64, the 2 x 128 model): every
``fully_connected`` (the encoder's Dense layers and the fused MLM decoder)
casts its input and weight to bfloat16 with ``amp_cast`` and its result back
to float32, so the master weights, softmax, LayerNorm and the losses stay
float32.  Each variant runs in its own process, one after the other in one
run; the script prints pairs/s of each and their ratio, and the first step's
losses of both (the same batch and initial weights).
"""
import argparse
import os
import subprocess
import sys

CHILD = r'''
import json, random, sys, time
import gluon_bert  # one OpenMP thread per core, as the commands
import mxnet as mx
import numpy as onp
from mxnet import gluon, npx
from gluon_bert.dataset import DataIter, load_dataset
from gluon_bert.model import get_bert_model
from gluon_bert.trainer import TrainOptions, train_bert

dtype, steps, data_dir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if dtype == 'bfloat16':
    from mxnet.contrib.amp.amp import bfloat16
    nd_fc = mx.ndarray.numpy_extension.fully_connected
    sym_fc = mx.symbol.numpy_extension.fully_connected

    def wrap(module, fc):
        def bf16_fc(x, weight, bias=None, **kwargs):
            cast = module.amp_cast
            xb = cast(x.as_nd_ndarray(), dtype=bfloat16).as_np_ndarray()
            wb = cast(weight.as_nd_ndarray(), dtype=bfloat16).as_np_ndarray()
            if bias is not None:
                bias = cast(bias.as_nd_ndarray(), dtype=bfloat16).as_np_ndarray()
            y = fc(xb, wb, bias, **kwargs)
            return cast(y.as_nd_ndarray(), dtype='float32').as_np_ndarray()
        return bf16_fc
    mx.ndarray.numpy_extension.fully_connected = wrap(mx.nd, nd_fc)
    mx.symbol.numpy_extension.fully_connected = wrap(mx.sym, sym_fc)
npx.set_np()
random.seed(0); onp.random.seed(0); mx.random.seed(0)
dataset = load_dataset(64, data_dir)
batches = [b for b, _ in zip(DataIter(dataset, 512), range(steps + 2))]
net = get_bert_model(len(dataset.vocab))
history = train_bert(batches, net, gluon.loss.SoftmaxCELoss(),
                     len(dataset.vocab), [mx.cpu(0)], len(batches),
                     options=TrainOptions(verbose=False))
secs = history['seconds'][1:]  # from the end of the 2nd step: 2 warm-up steps
print(json.dumps({'pairs_s': 512 * (len(secs) - 1) / (secs[-1] - secs[0]),
                  'first': [history['mlm_step'][0], history['nsp_step'][0]]}))
'''


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    parser.add_argument('--steps', type=int, default=8,
                        help='timed steps per variant (default: 8)')
    args = parser.parse_args(argv)
    import json
    rows = {}
    for dtype in ('float32', 'bfloat16'):
        out = subprocess.run([sys.executable, '-c', CHILD, dtype,
                              str(args.steps), args.data_dir],
                             capture_output=True, text=True, check=True)
        rows[dtype] = json.loads(out.stdout.strip().splitlines()[-1])
    for dtype, row in rows.items():
        print(f'{dtype:<9} {row["pairs_s"]:7.1f} pairs/s  first step '
              f'MLM {row["first"][0]:.4f} NSP {row["first"][1]:.4f}')
    print(f'bfloat16 / float32: '
          f'{rows["bfloat16"]["pairs_s"] / rows["float32"]["pairs_s"]:.2f}x')


if __name__ == '__main__':
    main()

"""What needs two GPUs: run with `pytest -m gpu` on such a machine.

Skipped (with the reason) everywhere else; the same properties are tested on
CPU contexts in test_trainer.py, test_loss.py and test_recipe.py, and
test_resume.py has the SIGKILL-and-resume case on two GPUs.
"""
import random

import mxnet as mx
import numpy as onp
import pytest
from mxnet import npx

from gluon_bert import dataset as ds
from test_trainer import _train

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(
    npx.num_gpus() < 2, reason=f'needs 2 GPUs, this machine has '
                               f'{npx.num_gpus()}')]


@pytest.mark.parametrize('recipe', [{}, dict(schedule='linear', warmup=0.25,
                                             clip_norm=0.5)])
def test_two_gpus_train_like_one(corpus_dir, recipe):
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    one, h1 = _train(dataset.vocab, dataset, [mx.gpu(0)], 3, **recipe)
    two, h2 = _train(dataset.vocab, dataset, [mx.gpu(0), mx.gpu(1)], 3,
                     **recipe)
    onp.testing.assert_allclose(h2['mlm_step'], h1['mlm_step'], rtol=1e-4)
    onp.testing.assert_allclose(h2['nsp_step'], h1['nsp_step'], rtol=1e-4)
    # Adam divides by the root of tiny second moments, so parameters whose
    # gradients are ~0 magnify float rounding: compare loosely
    for p, q in zip(one.collect_params().values(),
                    two.collect_params().values()):
        onp.testing.assert_allclose(q.data(mx.gpu(0)).asnumpy(),
                                    p.data(mx.gpu(0)).asnumpy(), atol=1e-3)


def test_fused_loss_equals_the_books_on_gpu(corpus_dir):
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    devices = [mx.gpu(0), mx.gpu(1)]
    _, fused = _train(dataset.vocab, dataset, devices, 3, fused=True)
    _, book = _train(dataset.vocab, dataset, devices, 3, fused=False)
    onp.testing.assert_allclose(fused['mlm_step'], book['mlm_step'],
                                rtol=1e-4)
    onp.testing.assert_allclose(fused['nsp_step'], book['nsp_step'],
                                rtol=1e-4)

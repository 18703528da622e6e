"""The fused pretraining loss gives the book's numbers and gradients."""
import random

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, init, npx

from gluon_bert import dataset as ds
from gluon_bert import trainer as T
from gluon_bert.loss import (BERTPretrainLoss, pack_mlm_shards,
                             pack_mlm_slots)
from gluon_bert.model import BERTModel

npx.set_np()


def test_pack_mlm_slots():
    positions = onp.array([[1, 4, 0], [2, 0, 0]], dtype='int32')
    weights = onp.array([[1, 1, 0], [1, 0, 0]], dtype='float32')
    labels = onp.array([[7, 8, 0], [9, 0, 0]], dtype='int32')
    idx, w, lab = pack_mlm_slots(positions, weights, labels, multiple=4)
    assert idx.tolist() == [[0, 0, 1, 0], [1, 4, 2, 0]]
    assert w.tolist() == [1, 1, 1, 0]
    assert lab.tolist() == [7, 8, 9, 0]
    idx, w, lab = pack_mlm_slots(positions, weights, labels, multiple=2)
    assert idx.shape == (2, 4) and w.tolist() == [1, 1, 1, 0]
    idx, w, _ = pack_mlm_slots(positions, weights, labels, multiple=3)
    assert idx.shape == (2, 3)


@pytest.fixture
def setup(corpus_dir):
    random.seed(0)
    onp.random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    batch = next(iter(ds.DataIter(dataset, 16)))
    mx.random.seed(0)
    net = BERTModel(len(dataset.vocab), 16, 32, 2, 2, 0.0, max_len=32)
    net.initialize(init.Xavier())
    return dataset.vocab, batch, net


def _grads(net):
    return [p.grad().asnumpy().copy() for p in net.collect_params().values()]


@pytest.mark.parametrize('num_devices', [1, 2])
@pytest.mark.parametrize('hybridize', [False, True])
def test_fused_equals_the_books_loss_and_gradients(setup, num_devices,
                                                   hybridize):
    vocab, batch, net = setup
    devices = [mx.cpu(i) for i in range(num_devices)]
    net.collect_params().reset_ctx(devices)
    loss = gluon.loss.SoftmaxCELoss()
    shards = [gluon.utils.split_and_load(x, devices, even_split=False)
              for x in batch]
    totals = dict(num_mlm_slots=float(batch[4].sum()),
                  num_pairs=len(batch[0]))
    results = []
    for fused in (False, True):
        if fused:
            fn = BERTPretrainLoss(net, loss)
            if hybridize:
                fn.hybridize(static_alloc=True, static_shape=True)
        with autograd.record():
            if fused:
                host = [x.asnumpy() for x in batch]
                out = T.get_batch_loss_bert_fused(
                    fn, shards[0], shards[1], shards[2],
                    pack_mlm_shards(host[3], host[4], host[5], devices),
                    shards[6], **totals)
            else:
                out = T.get_batch_loss_bert(net, loss, len(vocab), *shards,
                                            **totals)
        for l in out[2]:
            l.backward()
        grads = [sum(g.asnumpy() for g in p.list_grad())
                 for p in net.collect_params().values()]
        results.append(([float(x) for x in out[0]],
                        [float(x) for x in out[1]], grads))
    book, fused = results
    onp.testing.assert_allclose(fused[0], book[0], rtol=1e-5)
    onp.testing.assert_allclose(fused[1], book[1], rtol=1e-5)
    for a, b in zip(fused[2], book[2]):
        onp.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-4)


def test_fused_training_equals_the_books(corpus_dir):
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    histories, params = [], []
    for fused in (True, False):
        mx.random.seed(0)
        onp.random.seed(0)
        net = BERTModel(len(dataset.vocab), 16, 32, 2, 2, 0.0, max_len=32)
        net.initialize(init.Xavier())
        # SGD: the update is linear in the gradient, so parameters show
        # gradient differences as they are (Adam amplifies ~0 gradients)
        sgd = gluon.Trainer(net.collect_params(), 'sgd',
                            {'learning_rate': 0.5})
        histories.append(T.train_bert(
            ds.DataIter(dataset, 16), net, gluon.loss.SoftmaxCELoss(),
            len(dataset.vocab), [mx.cpu(0)], 4, fused=fused, trainer=sgd,
            verbose=False))
        params.append([p.data().asnumpy() for p in
                       net.collect_params().values()])
    onp.testing.assert_allclose(histories[0]['mlm_step'],
                                histories[1]['mlm_step'], rtol=1e-5)
    onp.testing.assert_allclose(histories[0]['nsp_step'],
                                histories[1]['nsp_step'], rtol=1e-5)
    for a, b in zip(*params):
        onp.testing.assert_allclose(a, b, atol=1e-5)


def test_pack_mlm_shards_cuts_as_split_and_load_does():
    rng = onp.random.RandomState(0)
    positions = rng.randint(0, 20, (7, 3)).astype('int32')
    weights = (rng.rand(7, 3) > 0.3).astype('float32')
    labels = rng.randint(0, 50, (7, 3)).astype('int32')
    devices = [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    loaded = gluon.utils.split_and_load(mx.np.array(weights), devices,
                                        even_split=False)
    shards = pack_mlm_shards(positions, weights, labels, devices)
    for (indices, w, lab), part, device in zip(shards, loaded, devices):
        expected = part.asnumpy()
        assert indices.ctx == device
        # the shard's own weighted slots, rows counted within the shard
        assert float(w.sum()) == expected.sum()
        rows = indices.asnumpy()[0][w.asnumpy() > 0]
        assert rows.max() < len(expected)


@pytest.mark.parametrize('num_chunks', [1, 4])
def test_hits_count_the_slots_whose_top_score_is_the_label(setup,
                                                           num_chunks):
    vocab, batch, net = setup
    host = [x.asnumpy() for x in batch]
    indices, weights, labels = pack_mlm_slots(host[3], host[4], host[5])
    _, mlm_Y_hat, nsp_Y_hat = net(*batch[:4])
    # The book's scores of every weighted slot, in packing order
    scores = mlm_Y_hat.asnumpy()[host[4] > 0]
    hit = (scores.argmax(-1) == host[5][host[4] > 0]).astype('float32')
    # Hits are counted on the first chunk's slots, scaled to all slots
    first = len(weights) // num_chunks
    real = int(weights[:first].sum())
    expected = hit[:real].sum() * weights.sum() / weights[:first].sum()
    fn = BERTPretrainLoss(net, gluon.loss.SoftmaxCELoss(), num_chunks)
    out = fn(batch[0], batch[1], batch[2], *[mx.np.array(a, dtype=a.dtype)
                                             for a in (indices, weights,
                                                       labels)], batch[6])
    assert float(out[2]) == pytest.approx(expected, rel=1e-6)
    nsp_hits = (nsp_Y_hat.asnumpy().argmax(-1) == host[6]).sum()
    assert float(out[3]) == nsp_hits

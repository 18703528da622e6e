"""The fused pretraining loss gives the book's numbers and gradients."""
import random

import mxnet as mx
import numpy as onp
import pytest
from mxnet import autograd, gluon, init, npx

from gluon_bert import dataset as ds
from gluon_bert import trainer as T
from gluon_bert.loss import BERTPretrainLoss
from gluon_bert.packing import pack_batch, pack_mlm_slots, pack_shards
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
                    fn, pack_shards(host, devices, 2), **totals)
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
            len(dataset.vocab), [mx.cpu(0)], 4, sgd,
            T.TrainOptions(fused=fused, verbose=False)))
        params.append([p.data().asnumpy() for p in
                       net.collect_params().values()])
    onp.testing.assert_allclose(histories[0]['mlm_step'],
                                histories[1]['mlm_step'], rtol=1e-5)
    onp.testing.assert_allclose(histories[0]['nsp_step'],
                                histories[1]['nsp_step'], rtol=1e-5)
    for a, b in zip(*params):
        onp.testing.assert_allclose(a, b, atol=1e-5)


def test_pack_shards_cuts_as_split_and_load_does():
    rng = onp.random.RandomState(0)
    tokens = rng.randint(5, 50, (7, 6)).astype('float32')
    valid_lens = rng.randint(2, 7, 7).astype('float32')
    positions = (rng.rand(7, 3) * valid_lens[:, None]).astype('int32')
    weights = (rng.rand(7, 3) > 0.3).astype('float32')
    labels = rng.randint(0, 50, (7, 3)).astype('int32')
    nsp = rng.randint(0, 2, 7).astype('float32')
    host = (tokens, tokens % 2, valid_lens, positions, weights, labels, nsp)
    devices = [mx.cpu(0), mx.cpu(1), mx.cpu(2)]
    loaded = [gluon.utils.split_and_load(mx.np.array(a), devices,
                                         even_split=False)
              for a in (weights, valid_lens, nsp)]
    shards = pack_shards(host, devices, 2)
    for shard, w_part, lens_part, nsp_part, device in zip(shards, *loaded,
                                                         devices):
        assert all(a.ctx == device for a in shard)
        # the shard's own examples, tokens and weighted slots
        assert shard[3].tolist() == lens_part.tolist()
        assert shard[10].tolist() == nsp_part.tolist()
        assert float(shard[8].sum()) == float(w_part.sum())
        assert int((shard[0] > 0).sum()) == int(lens_part.sum())


def test_pack_batch_indices_address_the_tokens():
    rng = onp.random.RandomState(1)
    batch_size, max_len, h = 5, 7, 2
    tokens = rng.randint(1, 99, (batch_size, max_len)).astype('int32')
    valid_lens = onp.array([7, 3, 5, 1, 6], dtype='float32')
    positions = onp.array([[1, 2], [0, 2], [4, 0], [0, 0], [5, 3]])
    weights = onp.array([[1, 1], [1, 0], [1, 0], [0, 0], [1, 1]], 'float32')
    labels = rng.randint(0, 9, (batch_size, 2))
    (p_tokens, p_segments, p_positions, p_lens, head_index, merge_index,
     nsp_rows, mlm_rows, mlm_weights, mlm_labels, _) = pack_batch(
        (tokens, tokens % 2, valid_lens, positions, weights, labels,
         onp.zeros(batch_size)), h, token_multiple=8, slot_multiple=4)
    n = int(valid_lens.sum())
    assert len(p_tokens) == 24 and (p_tokens[n:] == 0).all()
    valid = onp.arange(max_len) < valid_lens[:, None]
    assert p_tokens[:n].tolist() == tokens[valid].tolist()
    assert p_positions[:n].tolist() == onp.nonzero(valid)[1].tolist()
    # Each example's <cls> and each weighted slot's token
    assert p_tokens[nsp_rows].tolist() == tokens[:, 0].tolist()
    k = int(weights.sum())
    assert len(mlm_rows) == 8 and mlm_weights[k:].sum() == 0
    expected = tokens[onp.nonzero(weights)[0], positions[weights > 0]]
    assert p_tokens[mlm_rows[:k]].tolist() == expected.tolist()
    # Heads: packed row * h + head for every valid (example, position)
    rows = head_index.reshape(batch_size, h, max_len)
    for b in range(batch_size):
        for j in range(h):
            got = p_tokens[rows[b, j, :int(valid_lens[b])] // h]
            assert got.tolist() == tokens[b, :int(valid_lens[b])].tolist()
            assert (rows[b, j] % h == j).all()
    # and back: the head outputs of (example, head, position) of each token
    flat = onp.arange(batch_size * h * max_len).reshape(batch_size, h,
                                                        max_len)
    for r in range(n):
        b, pos = onp.nonzero(valid)[0][r], onp.nonzero(valid)[1][r]
        assert merge_index[r].tolist() == flat[b, :, pos].tolist()


def test_pack_batch_refuses_slots_beyond_the_valid_length():
    tokens = onp.ones((2, 5), dtype='int32')
    host = (tokens, tokens, onp.array([5., 3.]), onp.array([[1], [3]]),
            onp.ones((2, 1), 'float32'), onp.ones((2, 1)), onp.zeros(2))
    with pytest.raises(ValueError, match='beyond its example'):
        pack_batch(host, 2)
    # a padded slot (weight 0) may point anywhere
    pack_batch(host[:4] + (onp.array([[1.], [0.]]),) + host[5:], 2)


@pytest.mark.parametrize('num_heads', [1, 2, 4])
def test_packed_encoder_equals_the_padded_one(setup, num_heads):
    vocab, batch, _ = setup
    mx.random.seed(0)
    net = BERTModel(len(vocab), 16, 32, num_heads, 2, 0.0, max_len=32)
    net.initialize(init.Xavier())
    host = [x.asnumpy() for x in batch]
    packed = [mx.np.array(a, dtype=a.dtype)
              for a in pack_batch(host, num_heads, token_multiple=64)]
    padded = net.encode(*batch[:3]).asnumpy()
    got = net.encode_packed(*packed[:6]).asnumpy()
    valid = onp.arange(host[0].shape[1]) < host[2][:, None]
    n = int(valid.sum())
    onp.testing.assert_allclose(got[:n], padded[valid], rtol=1e-5,
                                atol=1e-6)
    # Without the lengths the gathered padding would be attended to
    tokens, segments, positions, _, head_index, merge_index = packed[:6]
    with pytest.raises(ValueError, match='needs valid_lens'):
        net.encoder(tokens, segments, None, positions, head_index,
                    merge_index)


@pytest.mark.parametrize('num_chunks', [1, 4])
def test_hits_count_the_slots_whose_top_score_is_the_label(setup,
                                                           num_chunks):
    vocab, batch, net = setup
    host = [x.asnumpy() for x in batch]
    packed = pack_batch(host, 2)
    weights = packed[8]
    _, mlm_Y_hat, nsp_Y_hat = net(*batch[:4])
    # The book's scores of every weighted slot, in packing order
    scores = mlm_Y_hat.asnumpy()[host[4] > 0]
    hit = (scores.argmax(-1) == host[5][host[4] > 0]).astype('float32')
    # Hits are counted on the first chunk's slots, scaled to all slots
    first = len(weights) // num_chunks
    real = int(weights[:first].sum())
    expected = hit[:real].sum() * weights.sum() / weights[:first].sum()
    fn = BERTPretrainLoss(net, gluon.loss.SoftmaxCELoss(), num_chunks)
    out = fn(*[mx.np.array(a, dtype=a.dtype) for a in packed])
    assert float(out[2]) == pytest.approx(expected, rel=1e-6)
    nsp_hits = (nsp_Y_hat.asnumpy().argmax(-1) == host[6]).sum()
    assert float(out[3]) == nsp_hits


def test_the_written_out_gradient_only_for_the_plain_cross_entropy(
        corpus_dir):
    """MLMSlotLoss writes the softmax cross-entropy's gradient out, so the
    fused loss takes only that loss; train_bert trains any other through
    the book's loss path (a weight of 2: twice the plain loss)."""
    import mxnet as mx
    from mxnet import gluon
    from gluon_bert import dataset as ds, trainer as T
    from gluon_bert.model import get_bert_model
    from gluon_bert.utils import GluonBertError
    net = get_bert_model(30, 16, 32, 2, 1, 0.0, 24)
    L = gluon.loss
    assert BERTPretrainLoss(net).mlm_loss is not None
    assert BERTPretrainLoss(net, L.SoftmaxCELoss()).mlm_loss is not None
    for other in (L.SoftmaxCELoss(from_logits=True), L.SoftmaxCELoss(
            weight=2.0), L.SoftmaxCELoss(sparse_label=False), L.L2Loss()):
        with pytest.raises(GluonBertError, match='fused=False'):
            BERTPretrainLoss(net, other)
    batch = next(iter(ds.DataIter(ds.load_dataset(24, corpus_dir), 16)))
    first = []
    for loss, fused in ((L.SoftmaxCELoss(), False),
                        (L.SoftmaxCELoss(weight=2.0), True)):
        mx.random.seed(1)
        net = get_bert_model(len(ds.load_dataset(24, corpus_dir).vocab), 16,
                             32, 2, 1, 0.0, 24)
        history = T.train_bert([batch], net, loss, net.config['vocab_size'],
                               [mx.cpu()], 1, options=T.TrainOptions(
                                   verbose=False, fused=fused))
        first.append(history['mlm_step'][0])
    assert abs(first[1] - 2 * first[0]) < 1e-4 * first[0]


def test_a_loss_hybridized_by_an_earlier_run_still_gets_the_fast_path(setup):
    """train_bert twice with one SoftmaxCELoss (a notebook training in
    stages, benchmarks/profile_step.py): the first run hybridized the loss
    for its own shapes, and the second must still write the gradient out
    instead of falling back to autograd (it once did, silently)."""
    vocab, batch, net = setup
    loss = gluon.loss.SoftmaxCELoss()
    first = BERTPretrainLoss(net, loss)
    first.hybridize(static_alloc=True, static_shape=True)
    shard = pack_shards([x.asnumpy() for x in batch], [mx.cpu()], 2)
    first(*shard[0])
    assert BERTPretrainLoss(net, loss).mlm_loss is not None

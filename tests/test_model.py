"""The HybridBlocks: d2l parity, hybridized == imperative, shapes."""
import warnings

import mxnet as mx
import numpy as onp
import pytest
from d2l import mxnet as d2l
from mxnet import autograd, init, np, npx

from book_reference import copy_d2l_parameters
from gluon_bert import layers
from gluon_bert import model as M

npx.set_np()

V, H, FFN, HEADS, BLKS, POS = 50, 16, 32, 2, 2, 40


def inputs(batch=3, length=12, seed=0):
    rng = onp.random.RandomState(seed)
    tokens = np.array(rng.randint(0, V, (batch, length)), dtype='int32')
    segments = np.array(rng.randint(0, 2, (batch, length)), dtype='int32')
    valid_lens = np.array(rng.randint(3, length + 1, batch), dtype='float32')
    pred_positions = np.array(rng.randint(0, length, (batch, 4)),
                              dtype='int32')
    return tokens, segments, valid_lens, pred_positions


def d2l_and_ours(dropout=0.0):
    args = (V, H, FFN, HEADS, BLKS, dropout)
    ref = d2l.BERTModel(*args, max_len=POS)
    ref.initialize(init.Xavier())
    ref(*inputs())
    ours = M.BERTModel(*args, max_len=POS)
    ours.initialize(init.Xavier())
    ours(*inputs())
    return ref, copy_d2l_parameters(ref, ours)


@pytest.mark.parametrize('hybridize', [False, True])
@pytest.mark.parametrize('with_valid_lens', [False, True])
def test_parity_with_d2l(hybridize, with_valid_lens):
    ref, ours = d2l_and_ours(dropout=0.2)
    assert M.count_parameters(ours) == M.count_parameters(ref)
    if hybridize:
        ours.hybridize(static_alloc=True, static_shape=True)
    tokens, segments, valid_lens, pred_positions = inputs(seed=1)
    vl = valid_lens if with_valid_lens else None
    for r, o in zip(ref(tokens, segments, vl, pred_positions),
                    ours(tokens, segments, vl, pred_positions)):
        assert r.shape == o.shape
        onp.testing.assert_allclose(o.asnumpy(), r.asnumpy(), atol=1e-5,
                                    rtol=1e-5)


def test_parity_gradients_with_d2l():
    ref, ours = d2l_and_ours()
    ours.hybridize()
    tokens, segments, valid_lens, pred_positions = inputs(seed=2)
    for net in (ref, ours):
        with autograd.record():
            _, mlm, nsp = net(tokens, segments, valid_lens, pred_positions)
            (mlm.sum() + nsp.sum()).backward()
    for p, q in zip(ref.collect_params().values(),
                    ours.collect_params().values()):
        onp.testing.assert_allclose(q.grad().asnumpy(), p.grad().asnumpy(),
                                    atol=1e-4, rtol=1e-4)


def test_padding_does_not_leak_into_valid_positions():
    _, ours = d2l_and_ours()
    tokens, segments, _, _ = inputs(batch=2, length=10)
    valid_lens = np.array([6, 10], dtype='float32')
    enc, _, _ = ours(tokens, segments, valid_lens)
    changed = tokens.copy()
    changed[0, 6:] = 1
    enc2, _, _ = ours(changed, segments, valid_lens)
    onp.testing.assert_allclose(enc[0, :6].asnumpy(), enc2[0, :6].asnumpy(),
                                atol=1e-6)
    # ... while a change inside the valid part does change them
    changed[1, 0] = (int(changed[1, 0]) + 1) % V
    enc3, _, _ = ours(changed, segments, valid_lens)
    assert not onp.allclose(enc[1, 1:].asnumpy(), enc3[1, 1:].asnumpy())


def _blocks():
    X = np.random.normal(size=(2, 5, H))
    vl = np.array([3, 5], dtype='float32')
    enc_in = inputs(batch=2, length=5)
    return [
        (M.MultiHeadAttention(H, HEADS, 0.0), (X, vl), (2, 5, H)),
        (M.MultiHeadAttention(H, HEADS, 0.0, use_bias=True), (X,), (2, 5, H)),
        (M.PositionWiseFFN(FFN, H), (X,), (2, 5, H)),
        (M.AddNorm(0.0), (X, X * 2), (2, 5, H)),
        (M.TransformerEncoderBlock(H, FFN, HEADS, 0.0), (X, vl), (2, 5, H)),
        (M.BERTEncoder(V, H, FFN, HEADS, BLKS, 0.0, POS), enc_in[:3],
         (2, 5, H)),
        (M.MaskLM(V, H), (X, enc_in[3]), (2, 4, V)),
        (M.NextSentencePred(), (X[:, 0, :],), (2, 2)),
    ]


@pytest.mark.parametrize('index', range(8))
def test_every_block_hybridized_equals_imperative(index):
    block, args, shape = _blocks()[index]
    block.initialize(init.Xavier())
    expected = block(*args)
    assert expected.shape == shape
    block.hybridize(static_alloc=True, static_shape=True)
    for _ in range(2):  # the first call traces, the second replays
        got = block(*args)
        onp.testing.assert_allclose(got.asnumpy(), expected.asnumpy(),
                                    atol=1e-6, rtol=1e-6)


def test_optional_inputs_switch_when_hybridized():
    # The book trains with pred_positions and encodes without them; a
    # hybridized Gluon 1.x Block refuses a second argument structure, so the
    # model settles the optional inputs itself: no trace is ever rebuilt and
    # no "Parameter is not used" warning appears
    _, ours = d2l_and_ours()
    tokens, segments, valid_lens, pred_positions = inputs()
    expected, traces = {}, []
    for hybrid in (False, True, True):
        if hybrid and not ours._active:
            ours.hybridize(static_alloc=True, static_shape=True)
        for args in [(valid_lens, pred_positions), (valid_lens,), (),
                     (None, pred_positions), (valid_lens, pred_positions)]:
            with warnings.catch_warnings():
                warnings.simplefilter('error')
                enc, mlm, nsp = ours(tokens, segments, *args)
            assert (mlm is None) == (len(args) < 2)
            key = tuple(a is None for a in args) + (len(args),)
            if hybrid:
                onp.testing.assert_allclose(enc.asnumpy(), expected[key],
                                            atol=1e-6)
                traces.append((ours._cached_op, ours.encoder._cached_op))
            else:
                expected[key] = enc.asnumpy()
            assert nsp.shape == (3, 2)
    # (the first call is before the encoder's own trace exists)
    assert len({(id(a), id(b)) for a, b in traces}) == 2


def test_mask_lm_gather_matches_fancy_indexing():
    X = np.random.normal(size=(3, 7, 4))
    pos = np.array([[0, 6, 2], [1, 1, 1], [5, 4, 3]], dtype='int32')
    got = M.MaskLM.gather(mx.ndarray, X, pos)
    batch_idx = onp.repeat(onp.arange(3), 3)
    expected = X.asnumpy()[batch_idx, pos.asnumpy().reshape(-1)].reshape(
        3, 3, 4)
    onp.testing.assert_array_equal(got.asnumpy(), expected)


def test_bad_settings():
    with pytest.raises(ValueError, match='not divisible by num_heads=3'):
        M.MultiHeadAttention(16, 3, 0.0)
    ref = d2l.BERTModel(V, H, FFN, HEADS, BLKS, 0.0, max_len=POS)
    ref.initialize()
    ref(*inputs())
    other = M.BERTModel(V, H, FFN, HEADS, 1, 0.0, max_len=POS)
    other.initialize()
    other(*inputs())
    with pytest.raises(ValueError, match='build both with the same settings'):
        copy_d2l_parameters(ref, other)


def test_the_books_small_bert_size():
    net = M.get_bert_model(20256)
    net.initialize(init.Xavier())
    net(*[a for a in inputs()])
    ref = d2l.BERTModel(20256, 128, 256, 2, 2, 0.2)
    ref.initialize(init.Xavier())
    ref(*inputs())
    assert M.count_parameters(net) == M.count_parameters(ref)


@pytest.mark.parametrize('tie', [False, True])
def test_parameter_count_without_building_matches_the_model(tie):
    """sizes.parameter_count (what pretraining logs and its memory check
    uses) counts a tied output weight once, as the built model has it."""
    net = M.BERTModel(V, H, FFN, HEADS, 2, 0.0, max_len=POS, tie_output=tie)
    net.initialize()
    net(*inputs())
    assert M.count_parameters(net) == M.parameter_count(
        V, H, FFN, HEADS, 2, POS, tie_output=tie)


def test_dropout_in_training_mode_is_the_books():
    """With autograd recording, dropout zeroes ~p of the units and scales
    the rest by 1 / (1 - p), in d2l's model and in ours alike."""
    p = 0.2
    for net in d2l_and_ours(dropout=p):
        dropout = net.encoder.blks[0].addnorm1.dropout
        x = np.ones((200, 500))
        mx.random.seed(0)
        with autograd.record():
            y = dropout(x).asnumpy()
        kept = y != 0
        assert abs(1 - kept.mean() - p) < 0.005
        onp.testing.assert_allclose(y[kept], 1 / (1 - p), rtol=1e-6)
        # and outside training, nothing is dropped
        onp.testing.assert_array_equal(dropout(x).asnumpy(), x.asnumpy())
    # the whole model: training-mode outputs vary with the seed, the
    # prediction-mode ones do not
    _, ours = d2l_and_ours(dropout=p)
    batch = inputs(seed=3)
    runs = []
    for seed in (1, 2):
        mx.random.seed(seed)
        with autograd.record():
            runs.append(ours(*batch)[0].asnumpy())
    assert not onp.allclose(runs[0], runs[1])
    onp.testing.assert_allclose(ours(*batch)[0].asnumpy(),
                                ours(*batch)[0].asnumpy())


def test_mlm_scores_of_packed_slots_equal_the_forward_pass():
    # The fused loss scores the packed slots of a packed encoding with the
    # MLM head's hidden layer (slot_hiddens) and its decoder
    from gluon_bert.packing import pack_batch
    _, ours = d2l_and_ours()
    tokens, segments, valid_lens, pred_positions = inputs(seed=4)
    # Predictions are made at valid tokens (packing leaves out the others)
    pred_positions = pred_positions % valid_lens.astype('int32').reshape(
        -1, 1)
    _, mlm_Y_hat, _ = ours(tokens, segments, valid_lens, pred_positions)
    weights = onp.ones(pred_positions.shape, dtype='float32')
    weights[0, 2:] = 0  # padded slots are left out
    host = (tokens.asnumpy(), segments.asnumpy(), valid_lens.asnumpy(),
            pred_positions.asnumpy(), weights,
            onp.zeros(pred_positions.shape, 'int32'), onp.zeros(len(tokens)))
    packed = [np.array(a, dtype=a.dtype)
              for a in pack_batch(host, ours.config['num_heads'],
                                  token_multiple=1, slot_multiple=1)]
    encoded_X = ours.encode_packed(*packed[:6])
    scores = ours.mlm.decoder(ours.mlm.slot_hiddens(mx.nd, encoded_X,
                                                    packed[7]))
    expected = mlm_Y_hat.asnumpy()[weights > 0]
    assert scores.shape == expected.shape
    onp.testing.assert_allclose(scores.asnumpy(), expected, atol=1e-5)

@pytest.mark.parametrize('width', [16, 300])
def test_layernorm_matrix_form_equals_mxnets_kernel(width, monkeypatch):
    """Both forms give the same outputs and gradients (data, gamma, beta);
    which one runs follows MATRIX_LAYERNORM_WIDTHS."""
    assert M.use_matrix_layernorm(width) == (width in
                                             M.MATRIX_LAYERNORM_WIDTHS)
    rng = onp.random.RandomState(0)
    x = np.array(rng.normal(size=(5, 7, width)).astype('float32'))
    head = np.array(rng.normal(size=(5, 7, width)).astype('float32'))
    gamma = np.array(rng.uniform(0.5, 1.5, width).astype('float32'))
    beta = np.array(rng.normal(size=width).astype('float32'))
    results = []
    for force in (True, False):
        monkeypatch.setattr(layers, 'use_matrix_layernorm', lambda width: force)
        ln = M.LayerNorm(width)
        ln.initialize(ctx=mx.cpu())
        ln.gamma.set_data(gamma)
        ln.beta.set_data(beta)
        ln.hybridize()
        data = x.copy()
        data.attach_grad()
        with autograd.record():
            y = ln(data)
        y.backward(head)
        results.append([a.asnumpy() for a in (
            y, data.grad, ln.gamma.grad(), ln.beta.grad())])
    for matrix, kernel in zip(*results):
        onp.testing.assert_allclose(matrix, kernel, rtol=1e-4, atol=1e-4)


def test_a_tied_output_layer_learns_from_both_of_its_uses():
    """With tie_output the MLM decoder's weight is the token embedding's:
    its gradient is the sum of what the embedding lookup and the decoder
    give the book's untied model with the same weights; it is saved and
    loaded as one matrix."""
    tokens, segments, valid_lens, positions = inputs()
    grads = {}
    for tie in (False, True):
        mx.random.seed(0)
        net = M.BERTModel(V, 16, 32, 2, 1, 0.0, max_len=20, tie_output=tie)
        net.initialize(init.Normal(0.3))
        if tie:  # the untied model's weights, the decoder's = embedding's
            net.mlm.decoder.bias.set_data(untied.mlm.decoder.bias.data())
            for name in ('encoder', 'hidden', 'nsp'):
                for a, b in zip(getattr(net, name).collect_params().values(),
                                getattr(untied, name).collect_params()
                                .values()):
                    a.set_data(b.data())
            for a, b in zip(list(net.mlm.collect_params().values())[:-2],
                            list(untied.mlm.collect_params().values())[:-2]):
                a.set_data(b.data())
        else:
            untied = net
            net.mlm.decoder.weight.set_data(
                net.encoder.token_embedding.weight.data())
        with autograd.record():
            _, mlm_Y_hat, nsp_Y_hat = net(tokens, segments, valid_lens,
                                          positions)
            loss = (mlm_Y_hat ** 2).sum() + nsp_Y_hat.sum()
        loss.backward()
        grads[tie] = (net.encoder.token_embedding.weight.grad().asnumpy(),
                      net.mlm.decoder.weight.grad().asnumpy(),
                      float(loss))
    (embed, decoder, loss_untied), (tied, tied_dec, loss_tied) = (
        grads[False], grads[True])
    assert abs(loss_tied - loss_untied) < 1e-4 * abs(loss_untied)
    onp.testing.assert_allclose(tied, embed + decoder, rtol=1e-4, atol=1e-5)
    onp.testing.assert_array_equal(tied, tied_dec)  # one matrix
    assert net.config['tie_output'] is True
    assert 'tie_output' not in untied.config  # the book's config unchanged
    names = [p.name for p in net.collect_params().values()]
    assert len(names) == len(set(names)) == len(
        list(untied.collect_params().keys())) - 1

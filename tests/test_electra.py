"""ELECTRA's replaced-token detection (benchmarks/electra.py, a study): the
generator's draws, the discriminator's targets, and the objective's graph."""
import os
import sys

import mxnet as mx
import numpy as onp
from mxnet import autograd, init, np, npx

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir,
                                'benchmarks'))
from electra import (ElectraPretrainLoss, electra_extras,  # noqa: E402
                     make_generator, pack_electra_shards, replaced_targets,
                     softmax_draws, unigram_cdf, unigram_draws)
from gluon_bert.model import BERTModel

npx.set_np()

VOCAB_SIZE = 30


def _host_batch(seed=0):
    """The book's seven fields for 3 examples of lengths 7, 5 and 9."""
    rng = onp.random.RandomState(seed)
    lens = [7, 5, 9]
    tokens = onp.zeros((3, 10), dtype='float32')
    segments = onp.zeros((3, 10), dtype='float32')
    positions = onp.zeros((3, 3), dtype='float32')
    weights = onp.zeros((3, 3), dtype='float32')
    labels = onp.zeros((3, 3), dtype='float32')
    for i, n in enumerate(lens):
        tokens[i, :n] = rng.randint(5, VOCAB_SIZE, n)
        segments[i, n // 2:n] = 1
        k = 2 if n < 9 else 3  # the first two examples pad one slot
        positions[i, :k] = rng.choice(onp.arange(1, n - 1), k, replace=False)
        weights[i, :k] = 1
        labels[i, :k] = rng.randint(5, VOCAB_SIZE, k)
    return (tokens, segments, onp.array(lens, dtype='float32'), positions,
            weights, labels, onp.array([0, 1, 1], dtype='float32'))


def test_extras_mark_the_weighted_slots_rows_only():
    rows = onp.array([4, 9, 0, 0])
    weights = onp.array([1.0, 1.0, 0.0, 0.0])  # two padded slots at row 0
    slot_of_row, slot_mask, row_weights = electra_extras(rows, weights, 12,
                                                         10)
    assert slot_of_row[4] == 0 and slot_of_row[9] == 1
    assert (onp.delete(slot_of_row, [4, 9]) == 4).all()  # the dummy K
    assert slot_mask.tolist() == [float(i in (4, 9)) for i in range(12)]
    assert row_weights.tolist() == [1.0] * 10 + [0.0] * 2


def test_targets_are_the_draws_that_changed_a_token():
    tokens = np.array([2, 4, 4, 7, 8, 3, 0, 0], dtype='int32')
    # Slot 0 at row 2 (original 9, drawn 9), slot 1 at row 4 (original 8,
    # drawn 11); slot 2 is padding
    samples = np.array([9, 11, 5], dtype='int32')
    labels = np.array([9, 8, 0], dtype='float32')
    slot_of_row, slot_mask, _ = electra_extras(
        onp.array([2, 4, 0]), onp.array([1.0, 1.0, 0.0]), 8, 6)
    disc_tokens, replaced = replaced_targets(
        mx.nd, tokens, samples, labels, np.array(slot_of_row),
        np.array(slot_mask))
    assert disc_tokens.asnumpy().tolist() == [2, 4, 9, 7, 11, 3, 0, 0]
    # A draw equal to the original counts as original
    assert replaced.asnumpy().tolist() == [0, 0, 0, 0, 1, 0, 0, 0]


def test_the_generator_draws_from_its_softmax():
    mx.random.seed(0)
    scores = np.random.normal(size=(8, VOCAB_SIZE))
    uniforms = np.array(onp.linspace(0.01, 0.99, 8), dtype='float32')
    samples = softmax_draws(mx.nd, scores, uniforms, VOCAB_SIZE)
    # Inverse CDF: the first token whose cumulative probability passes u
    probs = npx.softmax(scores).asnumpy()
    expected = (onp.cumsum(probs, axis=1) < uniforms.asnumpy()[:, None]).sum(1)
    assert samples.asnumpy().tolist() == expected.tolist()
    assert len(set(expected.tolist())) > 1  # the draws differ


def _objective(dropout=0.0):
    mx.random.seed(0)
    net = BERTModel(VOCAB_SIZE, 16, 32, 2, 2, dropout, max_len=16)
    gen = make_generator(net, num_blks=1)
    objective = ElectraPretrainLoss(net, gen, num_chunks=1)
    objective.initialize(init.Normal(0.1))
    return net, gen, objective


def test_the_embedding_is_shared_and_both_losses_train_it():
    net, gen, objective = _objective()
    assert (gen.encoder.token_embedding.weight
            is net.encoder.token_embedding.weight)
    (shard,) = pack_electra_shards(_host_batch(), [mx.cpu()], 2,
                                   onp.random.RandomState(0))
    for part in (0, 1):  # the generator's MLM loss, then the detection's
        objective.collect_params().zero_grad()
        with autograd.record():
            out = objective(*shard)
        out[part].backward()
        grad = net.encoder.token_embedding.weight.grad()
        assert float(np.abs(grad).sum()) > 0
        gen_grad = gen.encoder.blks[0].ffn.dense1.weight.grad()
        # The draws are not differentiated: the detection loss does not
        # reach the generator's blocks
        assert (float(np.abs(gen_grad).sum()) > 0) == (part == 0)


def test_a_certain_generator_replaces_exactly_the_slots_it_gets_wrong():
    host = _host_batch()
    net, gen, objective = _objective()
    # The generator always draws token 6
    decoder = gen.mlm.decoder
    decoder.weight.set_data(np.zeros(decoder.weight.shape))
    bias = onp.full(VOCAB_SIZE, -50.0, dtype='float32')
    bias[6] = 50.0
    decoder.bias.set_data(np.array(bias))
    (shard,) = pack_electra_shards(host, [mx.cpu()], 2,
                                   onp.random.RandomState(0))
    labels, weights = host[5], host[4]
    expected = int(((labels != 6) & (weights > 0)).sum())
    results = []
    for hybridize in (False, True):
        objective.hybridize(hybridize, static_alloc=True)
        out = [float(x) for x in objective(*shard)]
        assert out[6] == expected  # replaced rows
        # Detection hits count only valid rows
        assert 0 <= out[5] <= host[2].sum()
        results.append(out)
    onp.testing.assert_allclose(results[0], results[1], rtol=1e-5)


def test_unigram_draws_follow_the_text_and_set_the_targets():
    """The diagnostic without a generator: every slot's replacement is a
    draw from the training text's unigram distribution (special tokens
    left out), and the discriminator's targets are the draws that changed
    a token."""
    cdf = unigram_cdf([5, 5, 5, 7, 0, 0, 2], 10, exclude=[0, 2])
    onp.testing.assert_allclose(cdf[[4, 5, 6, 7, 9]], [0, .75, .75, 1, 1])
    draws = unigram_draws(onp.array([0.0, 0.1, 0.74, 0.76, 0.999]), cdf)
    assert draws.dtype == onp.int32 and draws.tolist() == [5, 5, 5, 7, 7]
    # Many draws: the text's frequencies
    many = unigram_draws(onp.random.RandomState(0).random_sample(20000), cdf)
    assert abs((many == 5).mean() - 0.75) < 0.01 and set(many) == {5, 7}
    # Through the objective: all mass on token 6, so exactly the weighted
    # slots whose label is not 6 are replaced, and no generator runs
    host = _host_batch()
    mx.random.seed(0)
    net = BERTModel(VOCAB_SIZE, 16, 32, 2, 2, 0.0, max_len=16)
    objective = ElectraPretrainLoss(net, None, num_chunks=1)
    objective.initialize(init.Normal(0.1))
    only6 = unigram_cdf([6], VOCAB_SIZE)
    (shard,) = pack_electra_shards(host, [mx.cpu()], 2,
                                   onp.random.RandomState(0), only6)
    assert set(shard[-1].asnumpy().tolist()) == {6}
    labels, weights = host[5], host[4]
    out = [float(x) for x in objective(*shard)]
    assert out[0] == 0 and out[3] == 0  # no generator MLM
    assert out[6] == int(((labels != 6) & (weights > 0)).sum())

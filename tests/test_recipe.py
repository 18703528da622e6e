"""The bert recipe: schedule, AdamW, clipping, resampled epochs, budgets."""
import json
import random

import mxnet as mx
import numpy as onp
import pytest
from d2l import mxnet as d2l
from mxnet import gluon, init, np, npx

from gluon_bert import dataset as ds
from gluon_bert import config as C
from gluon_bert import pretrain, recipe
from gluon_bert import trainer as T
from gluon_bert.checkpoint import load_pretrained
from gluon_bert.model import BERTModel

from conftest import make_corpus
from test_dataset import assert_same_as_d2l, check_masking_statistics

npx.set_np()

TINY = ['--num-hiddens', '16', '--ffn-num-hiddens', '32', '--batch-size',
        '16', '--max-len', '24', '--log-every', '0']


# -- the learning-rate schedule -------------------------------------------
def test_linear_schedule_at_chosen_steps():
    lr = recipe.learning_rate
    # 100 steps, 10 % warm-up: 10 steps up to the peak, then down
    assert lr(1, 100, 1.0, 'linear', 0.1) == pytest.approx(0.1)
    assert lr(5, 100, 1.0, 'linear', 0.1) == pytest.approx(0.5)
    assert lr(10, 100, 1.0, 'linear', 0.1) == pytest.approx(1.0)
    assert lr(11, 100, 1.0, 'linear', 0.1) == pytest.approx(1.0)
    assert lr(12, 100, 1.0, 'linear', 0.1) == pytest.approx(89 / 90)
    assert lr(55, 100, 1.0, 'linear', 0.1) == pytest.approx(46 / 90)
    assert lr(100, 100, 1.0, 'linear', 0.1) == pytest.approx(1 / 90)
    assert lr(150, 100, 1.0, 'linear', 0.1) == pytest.approx(1 / 90)
    # no warm-up: decay from the first step
    assert lr(1, 4, 2.0, 'linear', 0.0) == pytest.approx(2.0)
    assert lr(2, 4, 2.0, 'linear', 0.0) == pytest.approx(1.5)
    assert lr(4, 4, 2.0, 'linear', 0.0) == pytest.approx(0.5)
    # a tiny share still warms up for one step
    assert lr(1, 10, 1.0, 'linear', 0.01) == pytest.approx(1.0)
    # the book's: constant
    assert {lr(s, 50, 0.01) for s in (1, 25, 50, 99)} == {0.01}
    with pytest.raises(ValueError, match='unknown schedule'):
        lr(1, 10, 1.0, 'cosine')


def test_training_follows_the_schedule(corpus_dir):
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    net = BERTModel(len(dataset.vocab), 16, 32, 2, 2, 0.0, max_len=32)
    history = T.train_bert(ds.DataIter(dataset, 16), net,
                           gluon.loss.SoftmaxCELoss(), len(dataset.vocab),
                           [mx.cpu(0)], 20, options=T.TrainOptions(
                               lr=0.004, schedule='linear', warmup=0.25,
                               verbose=False))
    expected = [recipe.learning_rate(s, 20, 0.004, 'linear', 0.25)
                for s in range(1, 21)]
    onp.testing.assert_allclose(history['lr'], expected)
    assert history['total'] == [20] * 20


# -- AdamW and weight decay ------------------------------------------------
def _net_and_trainer(optimizer, wd, lr=0.1):
    mx.random.seed(0)
    net = BERTModel(50, 16, 32, 2, 2, 0.0, max_len=32)
    net.initialize(init.Xavier())
    return net, T.make_trainer(net, lr, optimizer=optimizer,
                               weight_decay=wd)


def _set_grads(net, grads=None):
    """Gradients as a backward pass would leave them (0 unless given)."""
    for name, param in net.collect_params().items():
        param.grad()[:] = 0
        if grads and name in grads:
            param.grad()[:] = np.array(grads[name])
        param.data()._fresh_grad = True


def test_no_weight_decay_on_layernorm_and_biases_exactly():
    net, trainer = _net_and_trainer('adamw', 0.01)
    decayed, exempt = set(), set()
    # the Trainer numbers the parameters in its own (sorted) order
    for i, param in enumerate(trainer._params):
        wd = trainer._optimizer._get_wd(i)
        (decayed if wd else exempt).add(param.name)
        assert wd in (0.0, 0.01)
    expected_exempt = {n for n in net.collect_params()
                       if n.endswith(('_gamma', '_beta', '_bias'))}
    assert exempt == expected_exempt
    # LayerNorms: 2 per block + the MLM head's; biases of every Dense
    assert sum(n.endswith('_gamma') for n in exempt) == 2 * 2 + 1
    assert any('pos_embedding' in n for n in decayed)
    assert any(n.endswith('embedding0_weight') for n in decayed)


def test_adamw_decay_is_decoupled_and_skips_exempt_parameters():
    """With a zero gradient Adam's step is 0: only the decay moves weights."""
    net, trainer = _net_and_trainer('adamw', 0.5, lr=0.1)
    before = {n: p.data().asnumpy().copy()
              for n, p in net.collect_params().items()}
    _set_grads(net)
    trainer.step(1)
    for name, param in net.collect_params().items():
        after = param.data().asnumpy()
        if name.endswith(('_gamma', '_beta', '_bias')):
            onp.testing.assert_array_equal(after, before[name])
        else:  # w - lr * wd * w
            onp.testing.assert_allclose(after, before[name] * (1 - 0.05),
                                        rtol=1e-6)


def test_adamw_step_matches_the_formula():
    # a large decay, so that a coupled (L2) one would be far off
    net, trainer = _net_and_trainer('adamw', 0.5, lr=0.1)
    param = net.encoder.token_embedding.weight
    w0 = param.data().asnumpy().copy()
    rng = onp.random.RandomState(0)
    grads = [rng.randn(*w0.shape).astype('float32') for _ in range(2)]
    m = v = onp.zeros_like(w0)
    w = w0
    for t, g in enumerate(grads, 1):
        _set_grads(net, {param.name: g})
        trainer.step(1)
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        c = onp.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        w = w - 0.1 * (c * m / (onp.sqrt(v) + 1e-6) + 0.5 * w)
    onp.testing.assert_allclose(param.data().asnumpy(), w, atol=5e-6)


def test_classic_adam_keeps_l2_decay_on_everything():
    net, trainer = _net_and_trainer('adam', 0.01)
    assert {trainer._optimizer._get_wd(i)
            for i in range(len(trainer._params))} == {0.01}


# -- clipping --------------------------------------------------------------
def test_clip_global_norm():
    a, b = np.array([3.0, 0.0]), np.array([[4.0]])
    norm = recipe.clip_global_norm([a, b], 1.0)
    assert float(norm) == pytest.approx(5.0)
    onp.testing.assert_allclose(a.asnumpy(), [0.6, 0.0], rtol=1e-5)
    onp.testing.assert_allclose(b.asnumpy(), [[0.8]], rtol=1e-5)
    small = np.array([0.3, 0.4])
    assert float(recipe.clip_global_norm([small], 1.0)) == pytest.approx(0.5)
    onp.testing.assert_allclose(small.asnumpy(), [0.3, 0.4], rtol=1e-6)


def test_clipped_training_on_two_devices_equals_one(corpus_dir):
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    results = []
    for devices in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]):
        mx.random.seed(0)
        onp.random.seed(0)
        net = BERTModel(len(dataset.vocab), 16, 32, 2, 2, 0.0, max_len=32)
        net.initialize(init.Xavier(), ctx=devices)
        trainer = T.make_trainer(net, 0.01, optimizer='adamw',
                                 weight_decay=0.01)
        history = T.train_bert(
            ds.DataIter(dataset, 16), net, gluon.loss.SoftmaxCELoss(),
            len(dataset.vocab), devices, 4, trainer, T.TrainOptions(
                verbose=False, schedule='linear', warmup=0.25, clip_norm=0.5))
        results.append((history, [p.data(devices[0]).asnumpy()
                                  for p in net.collect_params().values()]))
    (h1, p1), (h2, p2) = results
    # the norm is measured before clipping, and it is above the limit
    assert min(h1['grad_norm']) > 0.5
    onp.testing.assert_allclose(h2['grad_norm'], h1['grad_norm'], rtol=1e-4)
    onp.testing.assert_allclose(h2['mlm_step'], h1['mlm_step'], rtol=1e-5)
    for a, b in zip(p1, p2):
        onp.testing.assert_allclose(a, b, atol=1e-5)


# -- new examples every epoch ----------------------------------------------
def test_resampled_epoch_is_the_books_recipe_with_its_own_rng(
        corpus_dir, monkeypatch):
    """Epoch e = d2l's _read_wiki + _WikiTextDataset run on rng(e)'s draws."""
    random.seed(0)
    first = ds.load_dataset(24, corpus_dir)
    epochs = ds.ResampledEpochs(corpus_dir, 24, first.vocab, seed=5)
    # d2l builds its vocabulary from the text; the epochs keep epoch 0's
    monkeypatch.setattr(d2l, 'Vocab', lambda *a, **k: first.vocab)
    for epoch in (1, 2):
        random.setstate(epochs.rng(epoch).getstate())
        ref = d2l._WikiTextDataset(d2l._read_wiki(corpus_dir), 24)
        assert_same_as_d2l(epochs(epoch), ref)


def test_resampled_epochs_differ_and_repeat(corpus_dir):
    random.seed(0)
    first = ds.load_dataset(24, corpus_dir)
    epochs = ds.ResampledEpochs(corpus_dir, 24, first.vocab, seed=5)
    one, two = epochs(1), epochs(2)
    for other in (first, two):
        assert (len(other) != len(one) or not onp.array_equal(
            other.arrays['tokens'], one.arrays['tokens']))
    again = ds.ResampledEpochs(corpus_dir, 24, first.vocab, seed=5)(1)
    for name in ds.FIELDS:
        onp.testing.assert_array_equal(again.arrays[name], one.arrays[name])
    other_seed = ds.ResampledEpochs(corpus_dir, 24, first.vocab, seed=6)(1)
    assert not onp.array_equal(other_seed.arrays['tokens'][:5],
                               one.arrays['tokens'][:5])


def test_resampled_epochs_are_distributed_like_the_books(tmp_path):
    folder = make_corpus(tmp_path / 'big', num_paragraphs=1500, seed=3,
                         splits=('train',))
    random.seed(0)
    first = ds.WikiTextDataset(ds.read_wiki(folder), 32, min_freq=1)
    epochs = ds.ResampledEpochs(folder, 32, first.vocab, seed=0)
    for epoch in (1, 7):
        check_masking_statistics(epochs(epoch).arrays, first.vocab)


def test_training_reads_epoch_zero_then_resampled_epochs(corpus_dir):
    random.seed(0)
    first = ds.load_dataset(24, corpus_dir)
    epochs = ds.ResampledEpochs(corpus_dir, 24, first.vocab, seed=1)
    data = ds.DataIter(first, 16, resample=epochs)
    onp.random.seed(0)
    stream = T._batches(data, None)
    seen = {}
    for _ in range(3 * len(ds.DataIter(first, 16)) + 3):
        batch, position = next(stream)
        seen.setdefault(position['epoch'], []).append(batch[0].asnumpy())
    assert sorted(seen) == [0, 1, 2, 3]

    def rows(dataset):
        return {tuple(r) for r in dataset.arrays['tokens']}
    # epoch 0 is the book's dataset, epochs 1 and 2 the resampled ones
    for epoch, dataset in ((0, first), (1, epochs(1)), (2, epochs(2))):
        got = {tuple(r) for b in seen[epoch] for r in b}
        assert got == rows(dataset)


# -- the pretrain command: recipe, budget, evaluation ----------------------
def test_recipe_fills_unset_flags_only():
    book = pretrain.parse_args([])
    assert (book.lr, book.batch_size, book.optimizer, book.schedule,
            book.resample) == (0.01, 512, 'adam', 'constant', False)
    bert = pretrain.parse_args(['--recipe', 'bert', '--lr', '0.003',
                                '--no-resample'])
    assert bert.lr == 0.003 and bert.resample is False
    assert (bert.optimizer, bert.schedule, bert.clip_norm,
            bert.weight_decay) == ('adamw', 'linear', 1.0, 0.01)
    assert bert.batch_size == C.RECIPES['bert']['batch_size']


def test_max_minutes_stops_saves_and_ends_the_schedule(corpus_dir, tmp_path,
                                                      capsys):
    save = tmp_path / 'run'
    assert pretrain.main(['--recipe', 'bert', '--max-minutes', '0.1',
                          '--data-dir', corpus_dir, '--save-dir', str(save),
                          *TINY]) == 0
    out = capsys.readouterr().out
    assert 'Saved the model' in out
    history = json.loads((save / 'history.json').read_text())
    steps = history['step'][-1]
    assert steps > 50  # not the guide's 50: the clock decides
    assert 6 <= history['wall'][-1] < 6 + 5
    assert history['wall'][-2] < 6
    # the schedule ran to (nearly) zero with the budget; its warm-up ends
    # at 5 % of a total re-estimated every step from the pace, so the step
    # nearest that moving end can stop a few per cent short of the peak
    peak = C.RECIPES['bert']['lr']
    assert 0.9 * peak <= max(history['lr']) <= peak * (1 + 1e-6)
    assert history['lr'][-1] < 0.1 * peak
    assert abs(history['total'][-1] - steps) <= 0.1 * steps
    assert json.loads((save / 'state.json').read_text())['step'] == steps
    load_pretrained(str(save))


def test_eval_every_matches_the_evaluate_command(corpus_dir, tmp_path,
                                                capsys):
    from gluon_bert import evaluate
    save = tmp_path / 'run'
    assert pretrain.main(['--recipe', 'bert', '--steps', '7', '--eval-every',
                          '3', '--data-dir', corpus_dir, '--save-dir',
                          str(save), *TINY]) == 0
    out = capsys.readouterr().out
    history = json.loads((save / 'history.json').read_text())
    assert [e['step'] for e in history['eval']] == [3, 6, 7]
    assert out.count('valid at step') == 3
    assert evaluate.main(['--model-dir', str(save), '--data-dir', corpus_dir,
                          '--output', str(tmp_path / 'e.json')]) == 0
    final = json.loads((tmp_path / 'e.json').read_text())
    for key in ('mlm_loss', 'mlm_accuracy', 'nsp_loss', 'nsp_accuracy'):
        assert history['eval'][-1][key] == pytest.approx(final[key],
                                                         rel=1e-5)
    header, *rows = (save / 'history.csv').read_text().splitlines()
    columns = header.split(',')
    assert columns[-4:] == ['valid_mlm', 'valid_mlm_acc', 'valid_nsp',
                            'valid_nsp_acc']
    assert 'lr' in columns and 'mlm_acc_step' in columns
    filled = [r.split(',')[0] for r in rows if r.split(',')[-1]]
    assert filled == ['3', '6', '7']
    assert (save / 'loss.png').stat().st_size > 0


def test_drop_last_leaves_out_the_smaller_batch(corpus_dir):
    random.seed(0)
    first = ds.load_dataset(24, corpus_dir)
    keep, drop = ds.DataIter(first, 16), ds.DataIter(first, 16,
                                                     drop_last=True)
    assert len(first) % 16  # this corpus has a smaller last batch
    assert len(drop) == len(keep) - 1 == len(first) // 16
    onp.random.seed(0)
    sizes = [b[0].shape[0] for b in drop]
    assert sizes == [16] * len(drop)


def test_the_wsd_schedule_at_known_steps():
    """Warm-up over 10 steps, stable, then a linear decay over the last 20
    of 100 steps, computed by hand; with no cooldown it stays at the peak
    (a long run that branches end)."""
    def rate(step, cooldown=0.2, total=100):
        return recipe.learning_rate(step, total, 1.0, 'wsd',
                                    warmup_steps=10, cooldown=cooldown)
    assert [rate(s) for s in (1, 5, 10, 11, 50, 80)] == [
        0.1, 0.5, 1.0, 1.0, 1.0, 1.0]
    assert [rate(s) for s in (81, 90, 100)] == [1.0, 11 / 20, 1 / 20]
    assert rate(100, cooldown=0) == rate(1000, cooldown=0, total=1000) == 1.0
    # a branch of 125 steps cooling from step 100: the same warm-up and
    # plateau as the long run up to there
    assert [rate(s, 0.2, 125) for s in (10, 100, 101, 125)] == [
        1.0, 1.0, 1.0, 1 / 25]
    with pytest.raises(ValueError, match='unknown schedule'):
        recipe.learning_rate(1, 10, 1.0, 'cosine')

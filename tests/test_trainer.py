"""Devices, the two losses (parity with d2l) and the training loop."""
import random
import re

import mxnet as mx
import numpy as onp
import pytest
from d2l import mxnet as d2l
from mxnet import gluon, init, npx

from gluon_bert import dataset as ds
from book_reference import book_step
from gluon_bert import devices as D
from gluon_bert import trainer as T
from gluon_bert.distributed import Allreduce
from book_reference import copy_d2l_parameters
from gluon_bert.model import BERTModel
from gluon_bert.utils import GluonBertError

npx.set_np()


NO_GPU = pytest.mark.skipif(npx.num_gpus() > 0,
                            reason='for machines without GPUs')


@NO_GPU
def test_try_all_gpus_falls_back_to_cpu():
    assert d2l.try_all_gpus() == []  # the book's code, on this machine
    assert D.try_all_gpus() == [mx.cpu(0)]
    assert D.try_gpu(3) == mx.cpu()


@NO_GPU
def test_parse_devices_without_gpus(library_log):
    assert D.parse_devices(gpus='0,1') == [mx.cpu(0)]
    assert [r.getMessage() for r in library_log.records] == [
        D.no_gpu_reason() + ' (asked for --gpus 0,1); training on cpu(0).']
    assert D.parse_devices() == [mx.cpu(0)]


def test_no_gpu_reason_names_the_cause_and_the_fix():
    cpu_build = D.no_gpu_reason(cuda=False)
    assert 'CPU build without CUDA' in cpu_build
    assert 'mxnet-cu112' in cpu_build and "'.[cu117]'" in cpu_build
    assert 'sees no GPU' in D.no_gpu_reason(cuda=True)
    assert 'nvidia-smi' in D.no_gpu_reason(cuda=True)
    # this machine's MXNet decides which one is said
    cuda = mx.runtime.Features().is_enabled('CUDA')
    assert D.no_gpu_reason() == D.no_gpu_reason(cuda=cuda)


def test_parse_devices():
    assert D.parse_devices(cpus=2) == [mx.cpu(0), mx.cpu(1)]
    for bad in ('x', '0,0', '-1', ''):
        with pytest.raises(GluonBertError, match='^gpus takes') as e:
            D.parse_devices(gpus=bad)
        assert e.value.worded().startswith('--gpus takes')
    with pytest.raises(GluonBertError, match='exclude each other') as e:
        D.parse_devices(gpus='0', cpus=2)
    assert e.value.worded() == '--gpus and --cpus exclude each other: pick one'
    with pytest.raises(GluonBertError, match='^cpus must be a positive'):
        D.parse_devices(cpus=0)


@pytest.fixture
def tiny(corpus_dir):
    random.seed(0)
    onp.random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    batch = next(iter(ds.DataIter(dataset, 16)))
    return dataset.vocab, batch


def tiny_net(vocab, dropout=0.0, seed=0):
    mx.random.seed(seed)
    net = BERTModel(len(vocab), 16, 32, 2, 2, dropout, max_len=32)
    net.initialize(init.Xavier())
    return net


def test_batch_loss_matches_d2l(tiny):
    vocab, batch = tiny
    ref = d2l.BERTModel(len(vocab), 16, 32, 2, 2, 0.0, max_len=32)
    ref.initialize(init.Xavier())
    ref(*batch[:4])
    net = tiny_net(vocab)
    net(*batch[:4])
    copy_d2l_parameters(ref, net)
    net.hybridize()
    loss = gluon.loss.SoftmaxCELoss()
    devices = [mx.cpu(0), mx.cpu(1)]
    ref.collect_params().reset_ctx(devices)
    net.collect_params().reset_ctx(devices)
    shards = [gluon.utils.split_and_load(x, devices, even_split=False)
              for x in batch]
    expected = d2l._get_batch_loss_bert(ref, loss, len(vocab), *shards)
    got = T.get_batch_loss_bert(net, loss, len(vocab), *shards)
    for a, b in zip(expected, got):
        assert len(a) == len(b) == 2
        onp.testing.assert_allclose([float(x) for x in b],
                                    [float(x) for x in a], rtol=1e-5)


def test_batch_loss_is_the_weighted_mean(tiny):
    """MLM: sum of weighted CE / sum of weights; NSP: mean CE."""
    vocab, batch = tiny
    net = tiny_net(vocab)
    loss = gluon.loss.SoftmaxCELoss()
    shards = [[x] for x in batch]
    mlm_ls, nsp_ls, ls = T.get_batch_loss_bert(net, loss, len(vocab),
                                               *shards)
    _, mlm_hat, nsp_hat = net(batch[0], batch[1], batch[2], batch[3])
    logp = npx.log_softmax(mlm_hat).asnumpy().reshape(-1, len(vocab))
    labels = batch[5].asnumpy().reshape(-1).astype(int)
    w = batch[4].asnumpy().reshape(-1)
    ce = -logp[onp.arange(len(labels)), labels]
    assert abs(float(mlm_ls[0]) - (ce * w).sum() / (w.sum() + 1e-8)) < 1e-5
    nlogp = npx.log_softmax(nsp_hat).asnumpy()
    y = batch[6].asnumpy().astype(int)
    assert abs(float(nsp_ls[0]) + nlogp[onp.arange(len(y)), y].mean()) < 1e-5
    assert abs(float(ls[0]) - float(mlm_ls[0]) - float(nsp_ls[0])) < 1e-6


def test_two_cpu_contexts_give_the_same_loss_as_one(tiny):
    vocab, batch = tiny
    net = tiny_net(vocab)
    loss = gluon.loss.SoftmaxCELoss()
    results = []
    for devices in ([mx.cpu(0)], [mx.cpu(0), mx.cpu(1)]):
        net.collect_params().reset_ctx(devices)
        shards = [gluon.utils.split_and_load(x, devices, even_split=False)
                  for x in batch]
        mlm_ls, nsp_ls, _ = T.get_batch_loss_bert(
            net, loss, len(vocab), *shards,
            num_mlm_slots=float(batch[4].sum()), num_pairs=len(batch[0]))
        assert len(mlm_ls) == len(devices)
        results.append((sum(float(l) for l in mlm_ls),
                        sum(float(l) for l in nsp_ls)))
    onp.testing.assert_allclose(results[1], results[0], rtol=1e-5)
    # and on one device the whole-batch normalization is the book's
    book = T.get_batch_loss_bert(net, loss, len(vocab),
                                 *[[x.as_in_context(mx.cpu(0))]
                                   for x in batch])
    net.collect_params().reset_ctx([mx.cpu(0)])
    onp.testing.assert_allclose(results[0], (float(book[0][0]),
                                             float(book[1][0])), rtol=1e-5)


def _train(vocab, dataset, devices, steps, hybridize=True, seed=0,
           on_step=None, **kw):
    onp.random.seed(seed)
    net = tiny_net(vocab, seed=seed)
    net(*next(iter(ds.DataIter(dataset, 4, shuffle=False)))[:4])
    net.collect_params().reset_ctx(devices)
    onp.random.seed(seed)
    history = T.train_bert(ds.DataIter(dataset, 16), net,
                           gluon.loss.SoftmaxCELoss(), len(vocab), devices,
                           steps, options=T.TrainOptions(
                               hybridize=hybridize, verbose=False, **kw),
                           callbacks=T.Callbacks(on_step=on_step))
    return net, history


def test_train_bert_history_and_printed_lines(corpus_dir, capsys):
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    onp.random.seed(0)
    net = tiny_net(dataset.vocab)
    steps = len(ds.DataIter(dataset, 16)) + 2  # runs into a second epoch
    calls = []
    history = T.train_bert(ds.DataIter(dataset, 16), net,
                           gluon.loss.SoftmaxCELoss(), len(dataset.vocab),
                           [mx.cpu(0)], steps,
                           options=T.TrainOptions(log_every=2),
                           callbacks=T.Callbacks(
                               on_step=lambda s, h, p: calls.append(s)))
    out = capsys.readouterr().out.strip().splitlines()
    assert calls == list(range(1, steps + 1))
    assert history['step'] == calls
    assert onp.allclose(history['mlm'], onp.cumsum(history['mlm_step'])
                        / onp.arange(1, steps + 1))
    assert out[-2] == (f'MLM loss {history["mlm"][-1]:.3f}, '
                       f'NSP loss {history["nsp"][-1]:.3f}')
    assert out[-1] == f'{history["pairs_per_sec"]:.1f} sentence pairs/sec ' \
                      'on [cpu(0)]'
    # Progress lines show the means of the steps since the previous line
    line = re.fullmatch(
        rf'step +4/{steps}  mlm (\d\.\d{{3}})  nsp (\d\.\d{{3}})  '
        r'mlm acc (\d\.\d{3})  nsp acc (\d\.\d{3})  lr 1\.00e-02  '
        r'\d+\.\d pairs/sec  \dm\d\ds left', out[1])
    assert line, out[1]
    for value, key in zip(line.groups(), ('mlm_step', 'nsp_step',
                                          'mlm_acc_step', 'nsp_acc_step')):
        assert value == f'{onp.mean(history[key][2:4]):.3f}'
    assert all(0 <= a <= 1 for a in history['mlm_acc_step'])
    assert history['mlm'][-1] < onp.log(len(dataset.vocab)) + 1


def test_hybridized_training_equals_imperative(corpus_dir):
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    vocab = dataset.vocab
    a, ha = _train(vocab, dataset, [mx.cpu(0)], 3, hybridize=True)
    b, hb = _train(vocab, dataset, [mx.cpu(0)], 3, hybridize=False)
    onp.testing.assert_allclose(ha['mlm_step'], hb['mlm_step'], rtol=1e-5)
    for p, q in zip(a.collect_params().values(), b.collect_params().values()):
        onp.testing.assert_allclose(p.data().asnumpy(), q.data().asnumpy(),
                                    atol=1e-5)


def test_non_finite_loss_stops_with_the_step(corpus_dir):
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    with pytest.raises(T.NonFiniteLossError, match='not finite at step'):
        _train(dataset.vocab, dataset, [mx.cpu(0)], 20, lr=1e30)


@pytest.mark.parametrize('accumulate', [1, 2])
def test_fused_step_copies_nothing_back_before_the_backward_pass(
        corpus_dir, monkeypatch, accumulate):
    """Two devices: once the first backward pass is queued, every shard's is
    queued before anything is copied or waited for (the batch is cut and
    packed before any work is queued)."""
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    one = _train(dataset.vocab, dataset, [mx.cpu(0)], 3,
                 accumulate=accumulate)[1]
    events = []
    for name in ('asnumpy', 'backward', 'wait_to_read'):
        original = getattr(mx.np.ndarray, name)

        def spy(self, *args, _name=name, _original=original, **kwargs):
            events.append(_name)
            return _original(self, *args, **kwargs)
        monkeypatch.setattr(mx.np.ndarray, name, spy)
    monkeypatch.setattr(T.npx, 'waitall',
                        lambda _w=T.npx.waitall: (events.append('waitall'),
                                                  _w())[1])
    # setup (hybridizing, checking the loss) may copy; the steps may not
    monkeypatch.setattr(T, '_prepare', lambda *a, _p=T._prepare, **k: (
        _p(*a, **k), events.append('prepared'))[0])
    two = _train(dataset.vocab, dataset, [mx.cpu(0), mx.cpu(1)], 3,
                 accumulate=accumulate,
                 on_step=lambda *a: events.append('step'))[1]
    steps = ' '.join(events).split('prepared')[1].split('step')[:3]
    assert len(steps) == 3
    for step in steps:
        words = step.split()
        backward = [i for i, w in enumerate(words) if w == 'backward']
        # one backward per shard and batch, none with a copy or wait between
        assert len(backward) == 2 * accumulate
        first = backward[0]
        assert all(w == 'backward'
                   for w in words[first:first + len(backward)]), words
        assert words.count('waitall') == 1
    onp.testing.assert_allclose(two['mlm_step'], one['mlm_step'], rtol=1e-5)
    onp.testing.assert_allclose(two['nsp_step'], one['nsp_step'], rtol=1e-5)


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('hybridize', [True, False])
def test_train_bert_equals_the_books_loop(corpus_dir, fused, hybridize):
    """The whole loop against d2l's: same batches, dropout 0, Adam 0.01."""
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    vocab = dataset.vocab
    onp.random.seed(0)
    batches = list(ds.DataIter(dataset, 16))[:4]
    devices = [mx.cpu(0)]
    ref = d2l.BERTModel(len(vocab), 16, 32, 2, 2, 0.0, max_len=32)
    ref.initialize(init.Xavier(), ctx=devices)
    ref(*batches[0][:4])
    net = tiny_net(vocab)
    net(*batches[0][:4])
    copy_d2l_parameters(ref, net)
    # The book's train_bert, without its Animator: Adam 0.01, per-shard
    # losses, backward, trainer.step(1)
    loss = gluon.loss.SoftmaxCELoss()
    trainer = gluon.Trainer(ref.collect_params(), 'adam',
                            {'learning_rate': 0.01})
    book = []
    for batch in batches:
        mlm_ls, nsp_ls = book_step(ref, loss, len(vocab), trainer, batch,
                                   devices)
        book.append((float(mlm_ls[0]), float(nsp_ls[0])))
    history = T.train_bert(batches, net, gluon.loss.SoftmaxCELoss(),
                           len(vocab), devices, len(batches),
                           options=T.TrainOptions(hybridize=hybridize,
                                                  fused=fused, verbose=False))
    onp.testing.assert_allclose(history['mlm_step'], [m for m, _ in book],
                                rtol=1e-5)
    onp.testing.assert_allclose(history['nsp_step'], [n for _, n in book],
                                rtol=1e-5)
    for p, (name, q) in zip(ref.collect_params().values(),
                            net.collect_params().items()):
        # The key projection's bias shifts every score of a query alike, so
        # a softmax ignores it: its gradient is 0 up to float noise, which
        # Adam's division by the root of the second moment turns into steps
        # of up to lr.  Every other parameter agrees far within one step.
        key_bias = name.endswith('multiheadattention0_dense1_bias')
        onp.testing.assert_allclose(q.data().asnumpy(), p.data().asnumpy(),
                                    atol=0.01 * len(batches) if key_bias
                                    else 1e-4, err_msg=name)


@pytest.mark.parametrize('fused', [True, False])
def test_nsp_weight_zero_trains_mlm_alone(corpus_dir, fused):
    """--no-nsp: the NSP head learns nothing, the rest as before; the NSP
    loss is still measured."""
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    vocab = dataset.vocab
    runs = {}
    for weight in (1.0, 0.0):
        net = tiny_net(vocab)
        net(*next(iter(ds.DataIter(dataset, 4, shuffle=False)))[:4])
        before = {k: p.data().asnumpy().copy()
                  for k, p in net.collect_params().items()}
        onp.random.seed(0)
        history = T.train_bert(
            ds.DataIter(dataset, 16), net, gluon.loss.SoftmaxCELoss(),
            len(vocab), [mx.cpu()], 2, options=T.TrainOptions(
                verbose=False, fused=fused, nsp_weight=weight))
        # parameter names without the net's own prefix (bertmodelN_)
        moved = {k[len(net.prefix):] for k, p in net.collect_params().items()
                 if not onp.array_equal(p.data().asnumpy(), before[k])}
        runs[weight] = moved, history
    nsp_head = {k[len(net.prefix):] for k in (
        *net.hidden.collect_params(), *net.nsp.collect_params())}
    assert nsp_head <= runs[1.0][0], 'the NSP head learns with the book loss'
    assert not runs[0.0][0] & nsp_head
    assert runs[0.0][0] == runs[1.0][0] - nsp_head
    assert runs[0.0][1]['nsp_step'][0] == pytest.approx(
        runs[1.0][1]['nsp_step'][0])


class _OtherWorker:
    """A stand-in for a dist_sync kvstore of two workers in which the
    other worker contributes nothing to the sums but asks to stop (the
    stop slot) at step ``stop_at``."""
    num_workers = 2

    def __init__(self, stop_at):
        self.stop_at, self.values, self.stop_calls = stop_at, {}, 0

    def init(self, key, value):
        self.values[key] = value

    def push(self, key, value):
        if key == Allreduce.KEY + 3:  # the stop flags, one per step
            self.stop_calls += 1
            value = value + float(self.stop_calls == self.stop_at)
        self.values[key] = value

    def pull(self, key, out):
        self.values[key].copyto(out)


def test_a_distributed_job_stops_where_any_worker_asks(corpus_dir):
    """The workers of a job agree on the stop step: this one never asks,
    the other asks after step 3, and both stop there."""
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    onp.random.seed(0)
    net = tiny_net(dataset.vocab)
    other = _OtherWorker(stop_at=3)
    callbacks = T.Callbacks(on_step=lambda s, h, p: False)
    history = T.train_bert(ds.DataIter(dataset, 16), net,
                           gluon.loss.SoftmaxCELoss(), len(dataset.vocab),
                           [mx.cpu(0)], 10,
                           options=T.TrainOptions(verbose=False),
                           callbacks=callbacks, kvstore=other)
    assert history['step'] == [1, 2, 3] and history['stopped'] == 3


def test_the_default_step_cuts_with_mxnets_split_into_per_shard_losses(
        corpus_dir, monkeypatch):
    """The fused (default) step cuts each field with MXNet's split_data, as
    split_and_load does, and keeps one loss per shard, computed on that cut:
    a cut of 1 and 15 pairs gives a first shard with a sixteenth of the NSP
    loss, and the same total (each shard is divided by the whole batch)."""
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    devices = [mx.cpu(0), mx.cpu(1)]
    plain = _train(dataset.vocab, dataset, devices, 1)[1]
    cuts, losses = [], []

    def one_and_the_rest(data, num_slice, *args, **kwargs):
        cuts.append(num_slice)
        return [data[:1], data[1:]]
    fused = T.get_batch_loss_bert_fused
    monkeypatch.setattr(gluon.utils, 'split_data', one_and_the_rest)
    monkeypatch.setattr(T, 'get_batch_loss_bert_fused', lambda *a, **k: (
        losses.append(fused(*a, **k)), losses[-1])[1])
    odd = _train(dataset.vocab, dataset, devices, 1)[1]
    assert cuts == [2] * 7  # every field
    (mlm_ls, nsp_ls, ls), = losses
    assert len(mlm_ls) == len(nsp_ls) == len(ls) == 2
    assert float(nsp_ls[0]) < float(nsp_ls[1]) / 5
    assert odd['mlm_step'][0] == pytest.approx(plain['mlm_step'][0],
                                               rel=1e-4)
    assert odd['nsp_step'][0] == pytest.approx(plain['nsp_step'][0],
                                               rel=1e-4)


def test_train_bert_and_its_step_fit_on_one_screen():
    """The book's loop is about 40 lines; ours, with its step, at most 80
    (docstrings aside)."""
    import ast
    import inspect
    lines = 0
    for function in (T.train_bert, T.train_step):
        source = inspect.getsource(function)
        doc = ast.parse(source).body[0].body[0]
        lines += len(source.splitlines()) - (doc.end_lineno - doc.lineno + 1)
    assert lines <= 80

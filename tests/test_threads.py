"""MXNet's CPU operator threads, set after MXNet has loaded (issue: speed)."""
import json
import os
import subprocess
import sys
import warnings

import mxnet as mx
import pytest

from gluon_bert import threads
from gluon_bert import trainer as T
from gluon_bert.trainer import evaluate_bert

# Runs in a fresh interpreter: MXNet fixes its threads when it loads
CHILD = r'''
import json, sys
order, n = sys.argv[1], int(sys.argv[2])
if order == 'mxnet first':
    import mxnet
    import gluon_bert
else:
    import gluon_bert
    import mxnet
from gluon_bert import threads
before = threads.cpu_thread_counts(2)
result = threads.set_cpu_threads(n, num_cpu_devices=2)
print(json.dumps({'before': before, 'result': result,
                  'after': threads.cpu_thread_counts(2)}))
'''


def _child(order, n, **env):
    environ = {k: v for k, v in os.environ.items()
               if k not in ('OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS')}
    environ.update(env)
    out = subprocess.run([sys.executable, '-c', CHILD, order, str(n)],
                         env=environ, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_every_engine_worker_gets_the_threads_when_mxnet_came_first():
    # cpu(0)'s and cpu(1)'s workers and the 4 threads of the prioritized
    # pool; 3 threads is neither MXNet's default nor the core count here
    got = _child('mxnet first', 3)
    assert got['result'] == 3
    assert len(got['before']) == 6 and 3 not in got['before']
    assert got['after'] == [3] * 6


def test_importing_gluon_bert_first_gives_every_worker_the_cores():
    """OMP_NUM_THREADS is set before MXNet loads: nothing to adjust."""
    got = _child('gluon_bert first', 3)
    assert got['before'] == got['after'] == [threads.usable_cores()] * 6
    assert got['result'] is None  # the environment decides now


def test_one_thread_count_for_the_naive_engine():
    got = _child('mxnet first', 3, MXNET_ENGINE_TYPE='NaiveEngine')
    assert got['after'] == [3] and got['result'] == 3


def test_the_users_omp_num_threads_is_kept():
    got = _child('mxnet first', 3, OMP_NUM_THREADS='1')
    assert got['result'] is None
    assert got['after'] == got['before'] == [1] * 6


def test_a_build_it_does_not_fit_gets_one_warning(monkeypatch):
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.delenv('MXNET_OMP_MAX_THREADS', raising=False)
    monkeypatch.setattr(threads, '_state', {'done': None, 'warned': False})

    def missing():
        raise AttributeError('undefined symbol: _ZN5mxnet6engine6OpenMP3GetEv')
    monkeypatch.setattr(threads, '_openmp', missing)
    with pytest.warns(RuntimeWarning, match='OMP_NUM_THREADS=3'):
        assert threads.set_cpu_threads(3) is None
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # the second time: silent
        assert threads.set_cpu_threads(3) is None


@pytest.mark.parametrize('mxnet_first', [False, True])
def test_training_evaluation_and_encoding_set_the_threads_only_when_needed(
        monkeypatch, corpus_dir, mxnet_first):
    """Imported after gluon_bert, MXNet has one thread per core already:
    the library changes nothing.  Imported before it (a script's usual
    order), training, fine-tuning and encoding give their devices one
    thread per core, so a script runs at the commands' speed."""
    import random
    from gluon_bert import dataset as ds
    from gluon_bert.encoder import encode_texts
    from gluon_bert.model import get_bert_model
    calls = []
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.delenv('MXNET_OMP_MAX_THREADS', raising=False)
    monkeypatch.setitem(threads._state, 'mxnet_first', mxnet_first)
    monkeypatch.setattr(threads, 'set_cpu_threads',
                        lambda *a, **k: calls.append(k))
    monkeypatch.setattr(threads, '_run_on_workers',
                        lambda *a, **k: calls.append(a))
    random.seed(0)
    dataset = ds.load_dataset(24, corpus_dir)
    net = get_bert_model(len(dataset.vocab), 16, 32, 2, 1, 0.0, 24)
    T.train_bert(ds.DataIter(dataset, 8), net, mx.gluon.loss.SoftmaxCELoss(),
                 len(dataset.vocab), [mx.cpu(0), mx.cpu(1)], 1,
                 options=T.TrainOptions(verbose=False))
    evaluate_bert(net, ds.DataIter(dataset, 8), len(dataset.vocab))
    net.collect_params().reset_ctx(mx.cpu(0))
    encode_texts(net, dataset.vocab, ['w1 w2'])
    if mxnet_first:  # train_bert's two CPU contexts, then encoding's one
        assert calls == [{'num_cpu_devices': 2}, {'num_cpu_devices': 1}]
    else:
        assert calls == []


SCRIPT = r'''
import json, sys
import mxnet as mx            # first, as a script usually does
from mxnet import gluon
import gluon_bert
from gluon_bert import threads, trainer as T
from gluon_bert import dataset as ds
from gluon_bert.model import get_bert_model
before = threads.cpu_thread_counts(1)
dataset = ds.load_dataset(24, sys.argv[1])
net = get_bert_model(len(dataset.vocab), 16, 32, 2, 1, 0.0, 24)
T.train_bert(ds.DataIter(dataset, 8), net, gluon.loss.SoftmaxCELoss(),
             len(dataset.vocab), [mx.cpu(0)], 1,
             options=T.TrainOptions(verbose=False))
print(json.dumps({'before': before, 'after': threads.cpu_thread_counts(1)}))
'''


def test_a_script_that_imports_mxnet_first_trains_with_a_thread_per_core(
        corpus_dir):
    environ = {k: v for k, v in os.environ.items()
               if k not in ('OMP_NUM_THREADS', 'MXNET_OMP_MAX_THREADS')}
    out = subprocess.run([sys.executable, '-c', SCRIPT, corpus_dir],
                         env=environ, capture_output=True, text=True,
                         check=True).stdout
    got = json.loads(out.strip().splitlines()[-1])
    cores = threads.usable_cores()
    assert got['after'] == [cores] * 5
    if cores > 1:  # MXNet's own default: half the processors
        assert got['before'] != got['after']


def test_a_layout_that_does_not_check_out_is_never_written(monkeypatch):
    """The read-only check runs before any write: a recommendation that
    disagrees with the fields read leaves every byte as it was."""
    import ctypes
    fake = (ctypes.c_ubyte * 16)()
    fake[0] = 1  # enabled_
    ctypes.c_int.from_buffer(fake, 4).value = 1  # omp_thread_max_
    snapshot = bytes(fake)
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.delenv('MXNET_OMP_MAX_THREADS', raising=False)
    monkeypatch.setattr(threads, '_state', {'done': None, 'warned': False})
    monkeypatch.setattr(threads, '_openmp', lambda: (
        ctypes.addressof(fake), lambda address, exclude: 7))
    with pytest.warns(RuntimeWarning, match='does not hold the values read'):
        assert threads.set_cpu_threads(3) is None
    assert bytes(fake) == snapshot

"""Scaling out: several devices, and a dist_sync job on loopback."""
import json
import os
import random
import re
import signal
import subprocess
import sys
import time

import mxnet as mx
import numpy as onp
import pytest
from mxnet import gluon, np

from gluon_bert import launch
from gluon_bert import trainer as T
from gluon_bert.checkpoint import load_pretrained
from gluon_bert.dataset import DataIter, load_dataset, shard_indices
from gluon_bert.model import get_bert_model

TINY = ['--num-hiddens', '16', '--ffn-num-hiddens', '32', '--max-len', '24',
        '--dropout', '0', '--log-every', '1']


def _train(dataset, devices, steps, optimizer='sgd', batches=None,
           accumulate=1):
    mx.random.seed(0)
    net = get_bert_model(len(dataset.vocab), 16, 32, 2, 2, 0.0, 32)
    T.init_bert(net, devices)
    # SGD: the update is linear in the gradient, so equal gradients give
    # equal parameters (Adam turns float noise in gradients that are zero in
    # exact arithmetic, like the key projection's bias, into lr-sized steps)
    trainer = gluon.Trainer(net.collect_params(), optimizer,
                            {'learning_rate': 0.5 if optimizer == 'sgd'
                             else 0.01}, update_on_kvstore=False)
    onp.random.seed(0)
    history = T.train_bert(batches or DataIter(dataset, 16), net,
                           gluon.loss.SoftmaxCELoss(), len(dataset.vocab),
                           devices, steps, trainer, T.TrainOptions(
                               verbose=False, accumulate=accumulate))
    return [p.data().asnumpy() for p in net.collect_params().values()], \
        history


def test_two_cpu_contexts_train_like_one(corpus_dir):
    random.seed(0)
    dataset = load_dataset(24, corpus_dir)
    one, h1 = _train(dataset, [mx.cpu(0)], 3)
    two, h2 = _train(dataset, [mx.cpu(0), mx.cpu(1)], 3)
    for a, b in zip(one, two):
        onp.testing.assert_allclose(a, b, atol=1e-5)
    onp.testing.assert_allclose(h1['mlm_step'], h2['mlm_step'], rtol=1e-5)
    # and with the book's Adam, the same losses step by step
    _, a1 = _train(dataset, [mx.cpu(0)], 3, 'adam')
    _, a2 = _train(dataset, [mx.cpu(0), mx.cpu(1)], 3, 'adam')
    onp.testing.assert_allclose(a1['mlm_step'], a2['mlm_step'], rtol=1e-5)
    onp.testing.assert_allclose(a1['nsp_step'], a2['nsp_step'], rtol=1e-5)


def test_cpus_flag_shards_the_batch(corpus_dir, tmp_path, capsys):
    from gluon_bert import pretrain
    assert pretrain.main(['--data-dir', corpus_dir, '--save-dir',
                          str(tmp_path / 'two'), '--steps', '1',
                          '--batch-size', '16', '--cpus', '2',
                          '--kvstore', 'local'] + TINY) == 0
    assert 'sentence pairs/sec on [cpu(0), cpu(1)]' in capsys.readouterr().out


def test_accumulating_two_batches_is_one_step_on_both(corpus_dir):
    random.seed(0)
    dataset = load_dataset(24, corpus_dir)
    halves = [dataset[onp.arange(i * 8, i * 8 + 8)] for i in range(2)]
    big = [tuple(np.array(onp.concatenate([a, b]))
                 for a, b in zip(*halves))]
    small = [tuple(np.array(x) for x in half) for half in halves]
    whole, h1 = _train(dataset, [mx.cpu(0)], 1, batches=big)
    accumulated, h2 = _train(dataset, [mx.cpu(0)], 1, batches=small,
                             accumulate=2)
    for a, b in zip(whole, accumulated):
        onp.testing.assert_allclose(a, b, atol=1e-5)
    onp.testing.assert_allclose(h1['mlm_step'], h2['mlm_step'], rtol=1e-5)
    assert h2['pairs'] == [16]


def test_shard_indices():
    shards = [shard_indices(11, r, 3) for r in range(3)]
    assert [len(s) for s in shards] == [3, 3, 3]
    assert sorted(onp.concatenate(shards).tolist()) == list(range(9))
    with pytest.raises(Exception, match='rank 3 is not in'):
        shard_indices(11, 3, 3)


def test_plan_job_environment():
    plan = launch.plan_job(2, 1, ['python', 'train.py'], port=9999)
    names = [name for name, _, _ in plan]
    assert names == ['scheduler', 'server 0', 'worker 0', 'worker 1']
    for name, argv, env in plan:
        assert env['DMLC_PS_ROOT_URI'] == '127.0.0.1'
        assert env['DMLC_PS_ROOT_PORT'] == '9999'
        assert env['DMLC_NUM_WORKER'] == '2' and env['DMLC_NUM_SERVER'] == '1'
        assert env['DMLC_ROLE'] == name.split()[0]
        assert env['MXNET_ENGINE_TYPE'] == os.environ.get(
            'MXNET_ENGINE_TYPE', 'NaiveEngine')
    assert plan[-1][1] == ['python', 'train.py']
    remote = launch.plan_job(2, 2, ['python', 'train.py'], hosts=['a', 'b'],
                             port=9, cwd='/w d', ssh='ssh -i k',
                             environ={'GLUON_BERT_DATA': '/d', 'HOME': '/h',
                                      'DMLC_ROLE': 'x'})
    assert [n for n, _, _ in remote] == [
        'scheduler@a', 'server 0@a', 'server 1@b', 'worker 0@a',
        'worker 1@b']
    argv = remote[-1][1]
    # -tt: the remote process is hung up when the local ssh is stopped
    assert argv[:4] == ['ssh', '-i', 'k', '-tt'] and argv[-2] == 'b'
    # the remote pid first, then the command in its place (exec)
    assert argv[-1].startswith(f"cd '/w d' && echo {launch.PID_MARKER}$$ && "
                               'exec env GLUON_BERT_DATA=/d '
                               'DMLC_PS_ROOT_URI=a ')
    assert 'HOME' not in argv[-1] and 'DMLC_ROLE=x' not in argv[-1]
    assert 'DMLC_ROLE=worker' in argv[-1] and argv[-1].endswith(
        'python train.py')


def test_launch_usage_errors(tmp_path, capsys):
    for argv, message in ((['-n', '2'], 'give the worker command'),
                          (['-n', '0', '--', 'x'], 'must be at least 1'),
                          (['-n', '1', '-H', str(tmp_path / 'none'), '--',
                            'x'], 'No such file')):
        with pytest.raises(SystemExit) as e:
            launch.parse_args(argv)
        assert e.value.code == 2
        assert message in capsys.readouterr().err


def _launch(argv, **kw):
    return subprocess.Popen([sys.executable, '-m', 'gluon_bert.launch']
                            + argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _global_batches(dataset, workers, batch_size, steps, seed=0):
    """What a dist_sync job's workers see together, step by step."""
    onp.random.seed(seed)
    shards = [shard_indices(len(dataset), r, workers) for r in range(workers)]
    out = []
    while len(out) < steps:
        order = onp.arange(len(shards[0]))
        onp.random.shuffle(order)
        for i in range(0, len(order), batch_size):
            parts = [dataset[s[order[i:i + batch_size]]] for s in shards]
            out.append(tuple(np.array(onp.concatenate(f)) for f in
                             zip(*parts)))
            if len(out) == steps:
                break
    return out


def one_process_run(corpus_dir, save, steps):
    """What a 2-worker dist_sync job (batch 8 each, SGD 0.5, seed 0) saved
    in ``save`` should equal: ``(net, history)`` of one process on the same
    global batches, and the job's saved model."""
    random.seed(0)
    onp.random.seed(0)
    mx.random.seed(0)
    dataset = load_dataset(24, corpus_dir)
    net = get_bert_model(len(dataset.vocab), 16, 32, 2, 2, 0.0, 1000)
    T.init_bert(net, [mx.cpu(0)])
    batches = _global_batches(dataset, 2, 8, steps)
    history = T.train_bert(batches, net,
                           gluon.loss.SoftmaxCELoss(), len(dataset.vocab),
                           [mx.cpu(0)], steps,
                           T.make_trainer(net, 0.5, optimizer='sgd'),
                           T.TrainOptions(verbose=False, seed=0))
    dist_net, _, _ = load_pretrained(str(save))
    return net, history, dist_net


def assert_equals_one_process(corpus_dir, save, steps):
    """The job's parameters (1e-4) and per-step MLM losses equal one
    process's; returns both histories."""
    net, history, dist_net = one_process_run(corpus_dir, save, steps)
    for p, q in zip(net.collect_params().values(),
                    dist_net.collect_params().values()):
        onp.testing.assert_allclose(q.data().asnumpy(), p.data().asnumpy(),
                                    atol=1e-4)
    dist_history = json.loads((save / 'history.json').read_text())
    onp.testing.assert_allclose(dist_history['mlm_step'],
                                history['mlm_step'], rtol=1e-4)
    return history, dist_history


def test_a_killed_worker_fails_the_job_fast(corpus_dir, tmp_path):
    proc = _launch(['-n', '2', '-s', '1', '--timeout', '240', '--',
                    sys.executable, '-m', 'gluon_bert.pretrain',
                    '--kvstore', 'dist_sync', '--data-dir', corpus_dir,
                    '--save-dir', str(tmp_path / 'run'), '--steps', '100000',
                    '--batch-size', '8'] + TINY)
    pids, lines = {}, []
    for line in proc.stdout:
        lines.append(line)
        m = re.match(r'\[launch\] (worker \d): pid (\d+)', line)
        if m:
            pids[m.group(1)] = int(m.group(2))
        if re.match(r'\[worker \d\] step +3/', line):
            break
    victim = pids['worker 1']
    os.kill(victim, signal.SIGKILL)
    start = time.time()
    rest, _ = proc.communicate(timeout=60)
    assert time.time() - start < 30
    assert proc.returncode == 1
    assert (f'[launch] worker 1 (pid {victim}) was killed by signal 9; '
            'stopping the others') in rest
    # nothing is left running
    time.sleep(0.5)
    for pid in pids.values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_dist_without_launcher_is_a_clear_error(tmp_path, capsys):
    from gluon_bert import pretrain
    assert pretrain.main(['--kvstore', 'dist_sync', '--save-dir',
                          str(tmp_path / 'x')]) == 1
    assert 'python -m gluon_bert.launch -n WORKERS' in capsys.readouterr().err


def test_presets_and_memory_check(corpus_dir, tmp_path, capsys):
    from gluon_bert import pretrain
    args = pretrain.parse_args(['--preset', 'large'])
    assert (args.num_hiddens, args.ffn_num_hiddens, args.num_heads,
            args.num_blks) == (1024, 4096, 16, 24)
    args = pretrain.parse_args(['--preset', 'base', '--num-blks', '3'])
    assert (args.num_hiddens, args.num_blks) == (768, 3)
    code = pretrain.main(['--data-dir', corpus_dir, '--preset', 'large',
                          '--max-len', '512', '--pos-len', '512',
                          '--save-dir', str(tmp_path / 'large')])
    assert code == 1
    captured = capsys.readouterr()
    assert 'Model: ' in captured.out
    err = captured.err.strip()
    assert '\n' not in err
    assert re.search(r'needs about [\d.]+ GB but cpu\(0\) has '
                     r'[\d.]+ GB available: about \d+ pairs fit per batch: '
                     r'try --batch-size \d+ --accumulate \d+', err)
    assert not (tmp_path / 'large').exists()


def _dist_argv(corpus_dir, save, *extra):
    return ['-n', '2', '-s', '1', '--timeout', '240', '--grace', '60', '--',
            sys.executable, '-m', 'gluon_bert.pretrain', '--kvstore',
            'dist_sync', '--data-dir', corpus_dir, '--save-dir', str(save),
            '--batch-size', '8', '--optimizer', 'sgd', '--lr', '0.5',
            *extra] + TINY


def _timed_lines(proc):
    """(seconds since the call, line) of each line the job prints, to the
    end."""
    start = time.time()
    return [(time.time() - start, line) for line in proc.stdout]


def sigterm_then_resume(launch, corpus_dir, save, step_pattern):
    """SIGTERM to the launcher of a running job (``launch(argv)`` starts
    it) once ``step_pattern`` is printed: the workers finish a step, agree
    on it, rank 0 saves, the launcher checks the checkpoint and exits 143
    within 10 s of rank 0's checkpoint line; the job relaunched with
    --resume for 6 more steps (10 or more in all, more than an epoch of
    each worker's shard) equals one process trained for as many steps.
    Returns the resumed job's output, the steps and both histories."""
    proc = launch(_dist_argv(corpus_dir, save, '--steps', '100000'))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(step_pattern, line):
            proc.send_signal(signal.SIGTERM)
            break
    rest = _timed_lines(proc)
    proc.wait(timeout=120)
    out = ''.join(lines) + ''.join(line for _, line in rest)
    assert proc.returncode == 143, out
    assert '[launch] SIGTERM: asking the workers to save and stop' in out
    stopped = json.loads((save / 'state.json').read_text())['step']
    saved_at = [t for t, line in rest if re.search(
        rf'\] Stopped by SIGTERM at step {stopped}; the checkpoint is in',
        line)]
    assert saved_at, out
    assert rest[-1][0] - saved_at[0] < 10, out  # nobody waits on anybody
    assert (f"[launch] rank 0's checkpoint of step {stopped} in {save} is "
            'complete (state.json and checksums verified)') in out, out
    assert 'did not stop within' not in out
    steps = stopped + 6
    proc = launch(_dist_argv(corpus_dir, save, '--steps', str(steps),
                             '--resume'))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    assert f'Resuming from step {stopped}' in out
    return (out, steps) + assert_equals_one_process(corpus_dir, save, steps)


def test_sigterm_to_the_launcher_saves_and_resume_continues(corpus_dir,
                                                             tmp_path):
    out, steps, history, dist_history = sigterm_then_resume(
        _launch, corpus_dir, tmp_path / 'dist',
        r'\[worker \d\] step +4/')  # rank 0 prints
    # what a dist_sync job says, the resumed one run to its end
    assert '[launch] all workers finished' in out
    assert re.search(r'\[worker \d\] 2 workers, \d+ pairs each; a step sees '
                     r'2 x 8 pairs', out)
    # only rank 0 prints the closing lines
    assert len(re.findall(r'MLM loss \d', out)) == 1
    # the whole job's pairs (each shard's last batch of an epoch is smaller)
    assert dist_history['pairs'][-1] == history['pairs'][-1] < 16 * steps


def test_a_late_sigterm_during_the_parameter_server_goodbye_is_ignored(
        corpus_dir, tmp_path):
    """What made a preempted job hang: a worker stopped by the others'
    agreement says the parameter server's goodbye (a barrier of every
    process of the job); a SIGTERM that reaches it while it waits there must
    not kill it, or the others wait for it for ever.  Here rank 0 alone gets
    SIGTERM, is frozen (SIGSTOP) once the other worker has agreed to stop,
    so that the other waits in the goodbye, which then gets its SIGTERM;
    thawed, rank 0 saves and the job ends 143 with a complete checkpoint.
    (Left to the end of the process, the goodbye ran after Python had put
    SIGTERM back to its default action, and the signal killed the worker.)
    """
    save = tmp_path / 'dist'
    proc = _launch(_dist_argv(corpus_dir, save, '--steps', '100000', '-v'))
    pids, lines, chief = {}, [], None
    try:
        for line in proc.stdout:
            lines.append(line)
            m = re.match(r'\[launch\] (worker \d): pid (\d+)', line)
            if m:
                pids[m[1]] = int(m[2])
            m = re.match(r'\[(worker \d)\] step +4/', line)
            if m and chief is None:  # rank 0 prints the progress
                chief = m[1]
                os.kill(pids[chief], signal.SIGTERM)
            m = re.match(r'\[(worker \d)\] .*the workers agreed to stop',
                         line)
            if m and m[1] != chief:
                os.kill(pids[chief], signal.SIGSTOP)
                break
        other = pids[next(name for name in pids if name != chief)]
        time.sleep(3)  # the other worker is in the goodbye, waiting
        assert proc.poll() is None and _alive(other), ''.join(lines)
        os.kill(other, signal.SIGTERM)
        time.sleep(1)
        os.kill(pids[chief], signal.SIGCONT)
        out, _ = proc.communicate(timeout=120)
    finally:
        for pid in pids.values():
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass
        if proc.poll() is None:
            proc.kill()
    out = ''.join(lines) + out
    assert proc.returncode == 143, out
    assert "rank 0's checkpoint of step" in out and 'is complete' in out


def test_a_worker_stopped_by_its_own_signal_stops_the_job_cleanly(
        corpus_dir, tmp_path):
    """SIGTERM straight to a worker (a cluster preempting it before the
    launcher hears of it): the job stops as one, the launcher says the
    checkpoint is complete and exits 143."""
    save = tmp_path / 'dist'
    proc = _launch(_dist_argv(corpus_dir, save, '--steps', '100000'))
    pids, lines = {}, []
    for line in proc.stdout:
        lines.append(line)
        m = re.match(r'\[launch\] (worker \d): pid (\d+)', line)
        if m:
            pids[m[1]] = int(m[2])
        if re.match(r'\[worker \d\] step +4/', line):
            os.kill(pids['worker 1'], signal.SIGTERM)
            break
    out, _ = proc.communicate(timeout=120)
    out = ''.join(lines) + out
    assert proc.returncode == 143, out
    assert re.search(r'\[launch\] worker \d stopped by SIGTERM', out), out
    stopped = json.loads((save / 'state.json').read_text())['step']
    assert f"rank 0's checkpoint of step {stopped} in {save} is complete" \
        in out, out


def _alive(pid):
    """Running, not a zombie."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def test_dist_sync_job_on_a_corpus(tmp_path):
    """Both workers prepare the same shards at once (one keeps them), and
    each reads its half of every global batch."""
    from test_corpus import write_documents
    text = write_documents(tmp_path / 'docs.txt', 200)
    save = tmp_path / 'dist'
    proc = _launch(['-n', '2', '-s', '1', '--timeout', '240', '--',
                    sys.executable, '-m', 'gluon_bert.pretrain',
                    '--kvstore', 'dist_sync', '--corpus', text,
                    '--save-dir', str(save), '--steps', '6',
                    '--batch-size', '8'] + TINY,
                   env=dict(os.environ, GLUON_BERT_CACHE=str(tmp_path / 'c')))
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    # rank 0 reports: the scheduler's rank, not the launcher's numbering
    assert re.search(r'\[worker \d\] 2 workers, \d+ batches each a pass; a '
                     r'step sees 2 x 8 pairs', out), out
    history = json.loads((save / 'history.json').read_text())
    assert history['pairs'][-1] == 6 * 16
    assert len(os.listdir(tmp_path / 'c' / 'corpora')) == 1

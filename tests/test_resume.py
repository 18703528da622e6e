"""Crash-proof checkpoints: SIGKILL and resume, Ctrl-C, NaN, no pickle."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as onp
import pytest
from mxnet import npx

from gluon_bert import pretrain, state
from gluon_bert.checkpoint import load_checkpoint, load_pretrained

TINY = ['--num-hiddens', '16', '--ffn-num-hiddens', '32', '--batch-size',
        '16', '--max-len', '24', '--log-every', '0', '--seed', '3']


def _command(corpus_dir, save, steps, *extra):
    return [sys.executable, '-m', 'gluon_bert.pretrain', '--data-dir',
            corpus_dir, '--save-dir', str(save), '--steps', str(steps),
            *TINY, *extra]


def _wait_for_step(save, step, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            with open(save / 'state.json') as f:
                if json.load(f)['step'] >= step:
                    return
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    raise AssertionError('no checkpoint in time')


def _history(save):
    return json.loads((save / 'history.json').read_text())


@pytest.mark.parametrize('recipe', [
    [],
    # schedule, AdamW, clipping, new examples every epoch, evaluation
    ['--recipe', 'bert', '--eval-every', '12'],
    pytest.param(['--gpus', '0,1'], marks=[pytest.mark.gpu, pytest.mark.skipif(
        npx.num_gpus() < 2, reason='needs 2 GPUs')])])
def test_sigkill_then_resume_repeats_the_uninterrupted_run(
        corpus_dir, tmp_path, recipe, request):
    steps = 60  # 7.5 epochs of the tiny corpus, with dropout
    # the uninterrupted run beside the one to kill, one OpenMP thread each
    # (two spinning thread pools on two cores slow both several-fold)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    reference = tmp_path / 'reference'
    uninterrupted = subprocess.Popen(
        _command(corpus_dir, reference, steps, *recipe), env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    request.addfinalizer(uninterrupted.kill)
    killed = tmp_path / 'killed'
    proc = subprocess.Popen(_command(corpus_dir, killed, steps, *recipe,
                                     '--checkpoint-every', '5'), env=env,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _wait_for_step(killed, 10, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved_step = load_checkpoint(str(killed))['step']
    # every 5 steps: never at the end of an epoch of 7 or 8 batches before
    # step 35, so the run resumes within an epoch
    assert 10 <= saved_step < steps and saved_step % 5 == 0
    # the settings of the run (its recipe too) come from the checkpoint
    done = subprocess.run(_command(corpus_dir, killed, steps, '--resume'),
                          env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert f'Resuming from step {saved_step}' in done.stdout
    _, err = uninterrupted.communicate(timeout=300)
    assert uninterrupted.returncode == 0, err
    a, b = _history(reference), _history(killed)
    assert b['step'] == list(range(1, steps + 1))
    onp.testing.assert_allclose(b['mlm_step'][saved_step:],
                                a['mlm_step'][saved_step:], rtol=1e-6)
    onp.testing.assert_allclose(b['nsp_step'][saved_step:],
                                a['nsp_step'][saved_step:], rtol=1e-6)
    onp.testing.assert_allclose(b['mlm'], a['mlm'], rtol=1e-6)
    assert b['lr'][saved_step:] == a['lr'][saved_step:]
    assert [e['step'] for e in b['eval']] == [e['step'] for e in a['eval']]
    for x, y in zip(a['eval'], b['eval']):
        assert y['mlm_loss'] == pytest.approx(x['mlm_loss'], rel=1e-5)
        assert y['nsp_accuracy'] == pytest.approx(x['nsp_accuracy'],
                                                  abs=1e-6)
    if recipe:
        assert len(set(b['lr'])) > 50  # the schedule did run
        assert len(b['eval']) == 5
    net_a, _, _ = load_pretrained(str(reference))
    net_b, _, _ = load_pretrained(str(killed))
    for p, q in zip(net_a.collect_params().values(),
                    net_b.collect_params().values()):
        onp.testing.assert_allclose(q.data().asnumpy(), p.data().asnumpy(),
                                    atol=1e-6)


def test_ctrl_c_saves_and_says_how_to_resume(corpus_dir, tmp_path):
    save = tmp_path / 'run'
    proc = subprocess.Popen(_command(corpus_dir, save, 100000,
                                     '--checkpoint-every', '5'),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    _wait_for_step(save, 5, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert 'Resume with: python -m gluon_bert.pretrain' in err
    assert 'Traceback' not in err
    state = load_checkpoint(str(save))
    assert state['step'] == _history(save)['step'][-1] >= 5
    # and the run goes on from there
    code = pretrain.main(['--data-dir', corpus_dir, '--save-dir', str(save),
                          '--steps', str(state['step'] + 2), '--resume',
                          '--log-every', '0'])
    assert code == 0
    assert _history(save)['step'][-1] == state['step'] + 2


def test_non_finite_loss_keeps_the_last_good_checkpoint(corpus_dir, tmp_path,
                                                        capsys):
    save = tmp_path / 'run'
    code = pretrain.main(['--data-dir', corpus_dir, '--save-dir', str(save),
                          '--steps', '20', '--lr', '1e30',
                          '--checkpoint-every', '1'] + TINY)
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert '\n' not in err
    assert 'loss is not finite at step' in err
    bad_step = int(err.split('at step ')[1].split()[0])
    assert f'the last good checkpoint (step {bad_step - 1})' in err
    state = load_checkpoint(str(save))
    assert state['step'] == bad_step - 1
    assert all(onp.isfinite(state['history']['mlm_step']))
    load_pretrained(str(save))  # loadable


def test_nothing_is_pickled(corpus_dir, tmp_path):
    save = tmp_path / 'run'
    assert pretrain.main(['--data-dir', corpus_dir, '--save-dir', str(save),
                          '--steps', '2'] + TINY) == 0
    for root, _, files in os.walk(save):
        for name in files:
            head = open(os.path.join(root, name), 'rb').read(2)
            assert head[:1] != b'\x80', f'{name} looks pickled'
    json.loads((save / 'state.json').read_text())


def test_trainer_states_round_trip(corpus_dir, tmp_path):
    from mxnet import autograd, init, np

    from gluon_bert import checkpoint, trainer
    from gluon_bert.model import BERTModel
    net = BERTModel(30, 8, 16, 2, 1, 0.0, max_len=16)
    net.initialize(init.Xavier())
    opt = trainer.make_trainer(net)
    tokens = np.ones((2, 5), dtype='int32')
    for _ in range(2):
        with autograd.record():
            out = net(tokens, tokens * 0, np.array([5.0, 3.0]),
                      np.zeros((2, 1), dtype='int32'))
            loss = out[1].sum() + out[2].sum()
        loss.backward()
        opt.step(2)
    meta = state.save_trainer_states(opt, str(tmp_path / 't.states'))
    json.dumps(meta)
    fresh = trainer.make_trainer(net)
    state.load_trainer_states(fresh, str(tmp_path / 't.states'), meta)
    a, b = opt._updaters[0].states, fresh._updaters[0].states
    assert sorted(a) == sorted(b)
    for k in a:
        for x, y in zip(a[k], b[k]):
            onp.testing.assert_array_equal(x.asnumpy(), y.asnumpy())
    assert fresh._optimizer._index_update_count == \
        opt._optimizer._index_update_count


def test_resume_refuses_changed_settings(corpus_dir, tmp_path, capsys):
    save = tmp_path / 'run'
    assert pretrain.main(['--data-dir', corpus_dir, '--save-dir', str(save),
                          '--steps', '2'] + TINY) == 0
    capsys.readouterr()
    code = pretrain.main(['--data-dir', corpus_dir, '--save-dir', str(save),
                          '--steps', '4', '--resume', '--batch-size', '8'])
    assert code == 1
    assert ('--batch-size 8 differs from the run being resumed (16)'
            in capsys.readouterr().err)
    code = pretrain.main(['--save-dir', str(save), '--steps', '2',
                          '--resume'])
    assert code == 1
    assert 'is at step 2 already' in capsys.readouterr().err


def test_resume_without_a_run_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        pretrain.main(['--save-dir', str(tmp_path / 'none'), '--resume'])
    assert e.value.code == 2
    assert 'state.json does not exist' in capsys.readouterr().err


def _terminate_at_step(command, step):
    """Start ``command``, SIGTERM it once its progress line for ``step`` is
    printed; returns (return code, stderr)."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith('step ') and int(
                line.split()[1].split('/')[0]) >= step:
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


def test_sigterm_saves_and_resume_repeats_the_uninterrupted_run(corpus_dir,
                                                                tmp_path):
    """SIGTERM (timeout, docker stop, Slurm) at a random step: the step
    ends, a checkpoint is saved as at the end of a run, one line says so,
    exit 143; --resume then gives the uninterrupted run's losses, with or
    without periodic checkpoints."""
    import random
    steps = 40
    reference = tmp_path / 'reference'
    assert pretrain.main(_command(corpus_dir, reference, steps)[3:]) == 0
    a = _history(reference)
    rng = random.Random(0)
    for every in ('0', '7'):
        save = tmp_path / f'every{every}'
        command = _command(corpus_dir, save, steps, '--checkpoint-every',
                           every)
        command[command.index('--log-every') + 1] = '1'
        code, err = _terminate_at_step(command, rng.randint(3, 20))
        assert code == 143, err
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith('Stopped by SIGTERM '
                                                       'at step '), err
        stopped = load_checkpoint(str(save))['step']
        assert f'at step {stopped};' in lines[0] and stopped < steps
        assert pretrain.main(_command(corpus_dir, save, steps,
                                      '--resume')[3:]) == 0
        b = _history(save)
        assert b['step'] == list(range(1, steps + 1))
        onp.testing.assert_allclose(b['mlm_step'], a['mlm_step'], rtol=1e-5)
        onp.testing.assert_allclose(b['nsp_step'], a['nsp_step'], rtol=1e-5)


def _lock(save, pid, host=None):
    import socket
    save.mkdir(parents=True, exist_ok=True)
    (save / '.lock').write_text(json.dumps({
        'pid': pid, 'host': host or socket.gethostname(),
        'started': 'earlier'}))


def test_one_run_per_folder_and_stale_locks_are_taken_over(corpus_dir,
                                                            tmp_path, capsys):
    save = tmp_path / 'run'
    argv = _command(corpus_dir, save, 2)[3:]
    holder = subprocess.Popen([sys.executable, '-c',
                               'import time; time.sleep(60)'])
    try:
        _lock(save, holder.pid)
        assert pretrain.main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert err.count('\n') == 0 and f'pid {holder.pid}' in err
        assert 'in use by another run' in err
        assert sorted(os.listdir(save)) == ['.lock']  # nothing written
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, and taken over
    assert pretrain.main(argv) == 0
    assert not (save / '.lock').exists()  # released at the end
    assert load_checkpoint(str(save))['step'] == 2


def test_a_new_run_never_silently_replaces_an_earlier_one(corpus_dir,
                                                          tmp_path, capsys):
    save = tmp_path / 'run'

    def run(steps, *extra):
        return pretrain.main(_command(corpus_dir, save, steps, *extra)[3:])
    assert run(4) == 0
    first = (save / 'model.params').read_bytes()
    # the same command again: trains, the first model kept in previous/
    assert run(4) == 0
    assert (save / 'previous' / 'model.params').read_bytes() == first
    assert load_checkpoint(str(save / 'previous'))['step'] == 4
    capsys.readouterr()
    # fewer steps, or other settings: refused, in one line, nothing moved
    for extra in ([], ['--lr', '0.1']):
        steps = 2 if not extra else 4
        assert run(steps, *extra) == 1
        err = capsys.readouterr().err.strip()
        assert err.count('\n') == 0 and '--resume' in err
        assert '--overwrite' in err
        assert load_checkpoint(str(save))['step'] == 4
    # --overwrite replaces it, keeping it as previous/
    second = (save / 'model.params').read_bytes()
    assert run(2, '--overwrite') == 0
    assert load_checkpoint(str(save))['step'] == 2
    assert (save / 'previous' / 'model.params').read_bytes() == second
    # a folder whose config.json cannot be read, or that holds a fine-tuned
    # classifier: said so, in one line, and nothing moved
    config = json.loads((save / 'config.json').read_text())
    for holds, text in (('a run whose config.json cannot be read', '{'),
                        ('a fine-tuned classifier, not a pretraining run',
                         json.dumps(dict(config, train={},
                                         classifier={'config': {}})))):
        (save / 'config.json').write_text(text)
        assert run(2) == 1
        err = capsys.readouterr().err.strip()
        assert err.count('\n') == 0 and holds in err, err
        assert 'unreadable' not in err and '--overwrite' in err
        assert (save / 'model.params').exists()


@pytest.mark.parametrize('fail_at', [1, 2])
def test_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(
        corpus_dir, tmp_path, capsys, monkeypatch, fail_at):
    """ENOSPC while writing the first or a later checkpoint: one line, no
    traceback, the unfinished checkpoint's files removed, the earlier one
    resumes exactly."""
    import mxnet as mx
    steps = 8
    reference = tmp_path / 'reference'
    assert pretrain.main(_command(corpus_dir, reference, steps)[3:]) == 0
    save = tmp_path / 'run'
    calls, real = [], mx.nd.save

    def full_disk(fname, data):  # the optimizer state's write fails
        calls.append(fname)
        if len(calls) == fail_at:
            with open(fname, 'wb') as f:
                f.write(b'\0' * 100)  # what got out before the disk filled
            raise mx.MXNetError('[00:00:00] src/io/local_filesys.cc:166: '
                                'Check failed: FileStream.Write incomplete')
        return real(fname, data)
    monkeypatch.setattr(mx.nd, 'save', full_disk)
    capsys.readouterr()
    code = pretrain.main(_command(corpus_dir, save, steps,
                                  '--checkpoint-every', '3')[3:])
    monkeypatch.undo()
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'Traceback' not in err
    assert f'could not write the checkpoint of step {3 * fail_at}' in err
    assert 'MB free, about' in err
    left = sorted(os.listdir(save / 'checkpoints'))
    if fail_at == 1:
        assert left == [] and 'no checkpoint was completed' in err
        return
    assert 'the last complete checkpoint (step 3) is kept' in err
    assert left == ['model-00000003.params', 'state-00000003.json',
                    'trainer-00000003.states']
    assert not [n for n in os.listdir(save) if n.endswith('.tmp')]
    assert pretrain.main(_command(corpus_dir, save, steps, '--resume')[3:]) == 0
    onp.testing.assert_allclose(_history(save)['mlm_step'],
                                _history(reference)['mlm_step'], rtol=1e-5)


def test_no_room_for_two_checkpoints_refuses_before_training(
        corpus_dir, tmp_path, capsys, monkeypatch):
    import collections
    import shutil
    usage = collections.namedtuple('usage', 'total used free')
    monkeypatch.setattr(shutil, 'disk_usage', lambda p: usage(10, 10, 1000))
    save = tmp_path / 'run'
    assert pretrain.main(_command(corpus_dir, save, 2)[3:]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and '2 checkpoints of this model' in err
    assert not (save / 'state.json').exists()


def test_a_cooldown_branch_continues_a_wsd_run_exactly(corpus_dir, tmp_path,
                                                       capsys):
    """A long --schedule wsd run (no cooldown, every checkpoint kept) and a
    branch from its step 6 that cools down over steps 7-12 give the same
    run, step by step, as one run of 12 steps with that cooldown; the long
    run is not touched."""
    wsd = ['--recipe', 'bert', '--schedule', 'wsd', '--warmup-steps', '2',
           '--log-every', '0']
    direct, main, branch = (tmp_path / n for n in ('direct', 'main', 'b'))
    assert pretrain.main(_command(corpus_dir, direct, 12, *wsd, '--cooldown',
                                  '0.5')[3:]) == 0
    assert pretrain.main(_command(corpus_dir, main, 16, *wsd,
                                  '--checkpoint-every', '3',
                                  '--keep-checkpoints', '0')[3:]) == 0
    kept = sorted(os.listdir(main / 'checkpoints'))
    assert 'state-00000006.json' in kept and 'model-00000003.params' in kept
    before = (main / 'state.json').read_bytes()
    capsys.readouterr()
    assert pretrain.main(['--save-dir', str(branch), '--branch-from',
                          str(main), '--branch-step', '6', '--steps', '12',
                          '--cooldown', '0.5', '--log-every', '0']) == 0
    assert 'Branched from' in capsys.readouterr().out
    a, b = _history(direct), _history(branch)
    assert b['step'] == a['step'] == list(range(1, 13))
    onp.testing.assert_allclose(b['lr'], a['lr'], rtol=1e-6)
    onp.testing.assert_allclose(b['mlm_step'], a['mlm_step'], rtol=1e-5)
    assert len(set(a['lr'][1:6])) == 1  # warmed up by step 2, stable to 6
    assert a['lr'][-1] < a['lr'][7] < a['lr'][5]  # then cooling down
    assert (main / 'state.json').read_bytes() == before
    # a step the long run did not keep: one line naming the kept ones
    assert pretrain.main(['--save-dir', str(tmp_path / 'c'), '--branch-from',
                          str(main), '--branch-step', '5', '--steps',
                          '10']) == 1
    err = capsys.readouterr().err.strip()
    assert 'keeps no checkpoint of step 5' in err and '3, 6' in err
    assert '--keep-checkpoints' in err
    # a folder that holds no pretraining run: one line, as --resume says it
    (tmp_path / 'empty').mkdir()
    assert pretrain.main(['--save-dir', str(tmp_path / 'd'), '--branch-from',
                          str(tmp_path / 'empty'), '--branch-step', '3']) == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'is missing' in err, err
    # --resume keeps the run's checkpoint settings (every 3rd step, all
    # kept) unless given again
    assert pretrain.main(['--save-dir', str(main), '--resume', '--steps',
                          '19']) == 0
    kept = set(os.listdir(main / 'checkpoints'))
    assert {'state-00000003.json', 'state-00000018.json'} <= kept, kept

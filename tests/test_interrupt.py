"""Ctrl-C stops the test suite, also inside a command run in-process."""
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

SUITE = '''
import sys
sys.path.insert(0, {here!r})
from conftest import _stop_on_ctrl_c, _isolated_cache, make_corpus  # noqa
from gluon_bert import pretrain


def test_a_long_command(tmp_path):
    corpus = make_corpus(tmp_path / 'wiki')
    pretrain.main(['--data-dir', corpus, '--steps', '100000',
                   '--num-hiddens', '16', '--ffn-num-hiddens', '32',
                   '--batch-size', '8', '--max-len', '24', '--log-every',
                   '1', '--save-dir', {save!r}])


def test_after_it():
    open({marker!r}, 'w').close()
'''


def test_ctrl_c_in_an_in_process_command_ends_the_session(tmp_path):
    marker = str(tmp_path / 'ran')
    (tmp_path / 'test_suite.py').write_text(SUITE.format(
        here=HERE, marker=marker, save=str(tmp_path / 'run')))
    proc = subprocess.Popen(
        [sys.executable, '-m', 'pytest', '-q', '-s', '-p', 'no:cacheprovider',
         str(tmp_path / 'test_suite.py')], cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith('step'):
            proc.send_signal(signal.SIGINT)
            break
    start = time.time()
    out = ''.join(lines) + proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, out
    assert time.time() - start < 60
    assert 'Interrupted (Ctrl-C)' in out
    assert not os.path.exists(marker), 'the suite went on after Ctrl-C'


def test_ctrl_c_ends_the_readmes_parallel_test_command(tmp_path):
    """The README's ``-n auto --dist loadfile``: Ctrl-C (SIGINT to the
    terminal's process group) while a worker runs a command in-process ends
    the whole run, workers and all, and the next test never runs."""
    marker, save = str(tmp_path / 'ran'), tmp_path / 'run'
    (tmp_path / 'test_suite.py').write_text(SUITE.format(
        here=HERE, marker=marker, save=str(save)))
    proc = subprocess.Popen(
        [sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider',
         '-n', '2', '--dist', 'loadfile', str(tmp_path / 'test_suite.py')],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True)
    deadline = time.time() + 120
    while not (save / '.lock').exists() and time.time() < deadline:
        time.sleep(0.2)  # until the command runs (it holds its folder)
    assert (save / '.lock').exists(), proc.kill() or proc.communicate()[0]
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)
    start = time.time()
    out = proc.communicate(timeout=120)[0]
    assert proc.returncode != 0 and time.time() - start < 60, out
    assert 'KeyboardInterrupt' in out or 'Interrupted' in out, out
    assert not os.path.exists(marker), 'the suite went on after Ctrl-C'

"""README.md tried as a new user would: its shell commands and its Python
example, taken from the README itself (so the two cannot drift apart) and
run in order on tiny budgets: fewer steps, smaller pretraining batches,
fewer fine-tuning examples, held-out files cut short, the data folders
where this checkout keeps them.  Everything else is verbatim.
"""
import os
import re
import shlex
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.realdata, pytest.mark.slow]

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def _readme():
    with open(os.path.join(ROOT, 'README.md'), encoding='utf-8') as f:
        return f.read()


def blocks(kind):
    """The README's fenced blocks of ``kind`` (bash, python), in order."""
    return re.findall(rf'```{kind}\n(.*?)```', _readme(), re.S)


def shell_commands():
    """Every ``python -m gluon_bert...`` command and every other line of the
    README's bash blocks but the install lines, continuation lines joined,
    comments dropped, in order."""
    commands = []
    for block in blocks('bash'):
        for line in block.replace('\\\n', ' ').splitlines():
            line = line.split('  #')[0].strip()
            if not line or line.startswith('#') or 'pip install' in line:
                continue
            commands.append(line)
    return commands


def tiny(command):
    """``command`` on a tiny budget: what a test can afford of it."""
    command = re.sub(r'\.venv/bin/python', 'python', command)
    # a --resume continues a run made with --steps 2
    steps = '4' if '--resume' in command else '2'
    command = re.sub(r'--steps \d+', f'--steps {steps}', command)
    command = re.sub(r'--max-minutes \d+', '--steps 2', command)
    command = re.sub(r'--eval-every \d+', '--eval-every 2', command)
    if 'gluon_bert.finetune' in command:
        command += ' --max-examples 64 --epochs 1'
    if ('gluon_bert.pretrain' in command and '--steps' in command
            and '--batch-size' not in command and '--resume' not in command):
        command += ' --batch-size 64'  # a resumed run keeps its own
    return command


def _environment(short_data, tmp_path):
    """A shell where ../shared/data/... means this checkout's data with
    each held-out file cut short (``short_data``: the tests run in a
    scratch folder), python is this interpreter and ``gluon_bert`` imports
    from the checkout."""
    link = tmp_path / 'shared' / 'data'
    link.parent.mkdir()
    link.symlink_to(short_data)
    work = tmp_path / 'work'
    work.mkdir()
    env = dict(os.environ, PATH=f'{os.path.dirname(sys.executable)}:'
               f'{os.environ["PATH"]}', PYTHONPATH=ROOT)
    return work, env


def test_the_readme_has_the_commands_this_test_runs():
    commands = shell_commands()
    assert any(c.startswith('python -m gluon_bert.pretrain --gpus 0,1')
               for c in commands)
    assert any('gluon_bert.finetune' in c for c in commands)
    assert any('gluon_bert.export' in c for c in commands)
    assert len(blocks('python')) >= 2  # the example, the PyTorch snippet


def test_the_readmes_commands_run_in_order(short_data, tmp_path,
                                           shared_cache):
    """The README's shell commands (budgets cut), in order, as one shell
    script (a variable one line sets, the next uses), in a fresh folder
    beside a ../shared/data like the checkout's, without GLUON_BERT_DATA
    (a newcomer has not set it): every one exits 0."""
    work, env = _environment(short_data, tmp_path)
    env.pop('GLUON_BERT_DATA', None)
    onnx = _has('torch') and _has('onnx') and _has('onnxruntime')
    script = ['set -ex']
    for command in shell_commands():
        if ('gluon_bert.export' in command or 'onnxruntime' in command) \
                and not onnx:
            continue  # the [onnx] extra is not installed here
        script.append(tiny(command))
    done = subprocess.run(['bash', '-c', '\n'.join(script)], cwd=work,
                          env=env, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    ran = done.stderr.count('\n+ python -m gluon_bert.') + \
        done.stderr.startswith('+ python -m gluon_bert.')
    assert ran == sum('python -m gluon_bert.' in c for c in script)
    if onnx:  # the snippet that loads the export into the book's PyTorch
        snippet = next(b for b in blocks('python') if 'bert.pt' in b)
        done = subprocess.run([sys.executable, '-c', snippet + (
            '\nprint("loaded", type(net).__name__)\n')], cwd=work, env=env,
            capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-2000:]
        assert 'loaded BERTModel' in done.stdout


def test_the_readmes_python_example_runs(short_data, tmp_path):
    """The Python example as written (mxnet imported first), 2 steps
    instead of 50, as a newcomer runs it: in the README's layout (the data
    in ../shared/data), no GLUON_BERT_DATA, no cache, no network."""
    work, env = _environment(short_data, tmp_path)
    env.pop('GLUON_BERT_DATA', None)
    env['GLUON_BERT_CACHE'] = str(tmp_path / 'empty-cache')
    example = blocks('python')[0]
    assert 'from mxnet import gluon' in example.splitlines()[0]
    code = example.replace('devices, 50)', 'devices, 2)')
    code += '\nprint("crane", crane.shape)\n'
    done = subprocess.run([sys.executable, '-c', code], cwd=work, env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'MLM loss' in done.stdout and 'crane (1, 128)' in done.stdout


def _has(module):
    import importlib.util
    return importlib.util.find_spec(module) is not None


def test_tiny_keeps_everything_but_the_budget():
    assert tiny('python -m gluon_bert.pretrain --gpus 0,1 --steps 50 '
                '--data-dir $D') == ('python -m gluon_bert.pretrain --gpus '
                                     '0,1 --steps 2 --data-dir $D '
                                     '--batch-size 64')
    assert tiny('python -m gluon_bert.pretrain --steps 4 --resume') == (
        'python -m gluon_bert.pretrain --steps 4 --resume')
    assert shlex.split(tiny('python -m gluon_bert.finetune --task qnli'))[
        -4:] == ['--max-examples', '64', '--epochs', '1']

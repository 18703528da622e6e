"""Model directories: round trip, and a one-line error naming each bad file."""
import json
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import init, np

from gluon_bert.checkpoint import (FORMAT_VERSION, load_pretrained,
                                   save_model_dir)
from gluon_bert.model import BERTModel
from gluon_bert.utils import GluonBertError
from gluon_bert.vocab import Vocab

RESERVED = ['<pad>', '<mask>', '<cls>', '<sep>']


@pytest.fixture
def model_dir(tmp_path):
    vocab = Vocab('a b c d e f'.split(), reserved_tokens=RESERVED)
    mx.random.seed(1)
    net = BERTModel(len(vocab), 8, 16, 2, 1, 0.1, max_len=16)
    net.initialize(init.Xavier())
    path = str(tmp_path / 'model')
    save_model_dir(path, net, vocab, {'steps': 3})
    return path, net, vocab


def _encode(net):
    tokens = np.array([[2, 5, 6, 7, 3]], dtype='int32')
    return net(tokens, np.zeros_like(tokens), np.array([5.0]))[0].asnumpy()


def test_round_trip(model_dir):
    path, net, vocab = model_dir
    loaded, loaded_vocab, config = load_pretrained(path)
    assert loaded_vocab == vocab
    assert config['format_version'] == FORMAT_VERSION
    assert config['model'] == net.config
    assert config['train'] == {'steps': 3}
    onp.testing.assert_allclose(_encode(loaded), _encode(net), atol=1e-6)
    assert not [f for f in os.listdir(path) if f.endswith('.tmp')]


def _one_line_naming(path_part, fn):
    with pytest.raises(GluonBertError) as e:
        fn()
    msg = str(e.value)
    assert '\n' not in msg and path_part in msg
    return msg


@pytest.mark.parametrize('name', ['config.json', 'vocab.json',
                                  'model.params'])
def test_missing_file(model_dir, name):
    path = model_dir[0]
    os.remove(os.path.join(path, name))
    assert 'is missing' in _one_line_naming(name,
                                            lambda: load_pretrained(path))


@pytest.mark.parametrize('cut', [0.5, 0.99, 0.0])
def test_truncated_params(model_dir, cut):
    path = model_dir[0]
    params = os.path.join(path, 'model.params')
    data = open(params, 'rb').read()
    open(params, 'wb').write(data[:int(len(data) * cut)])
    msg = _one_line_naming('model.params', lambda: load_pretrained(path))
    assert 'does not match the SHA-1 recorded in' in msg
    assert 'config.json' in msg and 'Traceback' not in msg
    # without a recorded SHA-1, MXNet's refusal becomes the same one line
    config_path = os.path.join(path, 'config.json')
    config = json.load(open(config_path))
    del config['files']
    json.dump(config, open(config_path, 'w'))
    msg = _one_line_naming('model.params', lambda: load_pretrained(path))
    assert 'truncated, damaged or from another model' in msg
    assert 'Traceback' not in msg and 'Stack trace' not in msg


def test_params_of_another_model(model_dir, tmp_path):
    path = model_dir[0]
    other = BERTModel(len(model_dir[2]), 8, 16, 2, 2, 0.1, max_len=16)
    other.initialize()
    other.save_parameters(os.path.join(path, 'model.params'))
    _one_line_naming('model.params', lambda: load_pretrained(path))


def test_vocab_size_disagrees(model_dir):
    path = model_dir[0]
    Vocab('a b'.split(), reserved_tokens=RESERVED).save(
        os.path.join(path, 'vocab.json'))
    msg = _one_line_naming('vocab.json', lambda: load_pretrained(path))
    assert 'says vocab_size 11' in msg


def test_newer_format_version(model_dir):
    path = model_dir[0]
    config_path = os.path.join(path, 'config.json')
    config = json.load(open(config_path))
    config['format_version'] = FORMAT_VERSION + 1
    json.dump(config, open(config_path, 'w'))
    msg = _one_line_naming('config.json', lambda: load_pretrained(path))
    assert 'upgrade gluon_bert' in msg


def test_damaged_json(model_dir):
    path = model_dir[0]
    open(os.path.join(path, 'config.json'), 'w').write('{"format_version": ')
    assert 'not valid JSON' in _one_line_naming(
        'config.json', lambda: load_pretrained(path))


def test_not_a_folder(tmp_path):
    _one_line_naming('nowhere', lambda: load_pretrained(str(tmp_path /
                                                            'nowhere')))


@pytest.mark.parametrize('command', ['encode', 'evaluate'])
def test_commands_on_damaged_params_of_a_run(corpus_dir, tmp_path, command):
    """One line naming the file, a non-zero exit, no traceback anywhere."""
    import subprocess
    import sys
    save = tmp_path / 'run'
    tiny = ['--num-hiddens', '16', '--ffn-num-hiddens', '32',
            '--batch-size', '16', '--max-len', '24', '--log-every', '0']
    subprocess.run([sys.executable, '-m', 'gluon_bert.pretrain', '--steps',
                    '2', '--data-dir', corpus_dir, '--save-dir', str(save)]
                   + tiny, check=True, capture_output=True)
    params = save / 'model.params'
    data = bytearray(params.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: still loadable by MXNet
    params.write_bytes(bytes(data))
    argv = {'encode': ['a', 'b'], 'evaluate': ['--data-dir', corpus_dir]}
    done = subprocess.run([sys.executable, '-m', f'gluon_bert.{command}',
                           '--model-dir', str(save)] + argv[command],
                          capture_output=True, text=True)
    assert done.returncode != 0
    err = done.stderr.strip().splitlines()
    assert len(err) == 1, done.stderr
    assert 'model.params does not match the SHA-1 recorded in' in err[0]
    assert 'state.json' in err[0]
    assert 'Traceback' not in done.stdout + done.stderr

"""Model directories: save a pretrained BERT, load it back.

A model directory holds::

    config.json    format version, every model hyperparameter, the run's
                   training settings
    vocab.json     the vocabulary (gluon_bert.vocab.Vocab.save)
    model.params   Gluon save_parameters (MXNet's binary format, no pickle)

Every file is written to a temporary name and renamed, so a crash at any
moment leaves the previous files loadable.  Loading checks each file and
says which one is wrong; it never loads a model partially.
"""
import json
import os

import mxnet as mx

from .model import BERTModel
from .utils import GluonBertError, atomic_path, atomic_write
from .vocab import Vocab

__all__ = ['FORMAT_VERSION', 'MODEL_KEYS', 'save_model_dir',
           'load_config', 'load_pretrained']

#: Bumped whenever the directory layout changes incompatibly.
FORMAT_VERSION = 1
#: The arguments of BERTModel, all stored in config.json['model'].
MODEL_KEYS = ('vocab_size', 'num_hiddens', 'ffn_num_hiddens', 'num_heads',
              'num_blks', 'dropout', 'max_len')
CONFIG, VOCAB, PARAMS = 'config.json', 'vocab.json', 'model.params'


def save_model_dir(model_dir, net, vocab, train_config=None):
    """Write config.json, vocab.json and model.params into ``model_dir``."""
    os.makedirs(model_dir, exist_ok=True)
    config = {'format_version': FORMAT_VERSION, 'model': dict(net.config),
              'train': dict(train_config or {})}
    if config['model']['vocab_size'] != len(vocab):
        raise GluonBertError(f'the model has {config["model"]["vocab_size"]} '
                             f'tokens, the vocabulary {len(vocab)}')
    # Parameters first: config.json last marks a complete directory
    with atomic_path(os.path.join(model_dir, PARAMS)) as tmp:
        net.save_parameters(tmp)
    vocab.save(os.path.join(model_dir, VOCAB))
    with atomic_write(os.path.join(model_dir, CONFIG), 'w') as f:
        json.dump(config, f, indent=2, sort_keys=True)
    return model_dir


def _read_json(path):
    if not os.path.isfile(path):
        raise GluonBertError(f'{path} is missing: not a gluon_bert model '
                             'directory (save one with gluon_bert.pretrain '
                             '--save-dir)')
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as e:
        raise GluonBertError(f'{path} is not valid JSON ({e}): the file is '
                             'damaged; save the model again') from None


def load_config(model_dir):
    """config.json of ``model_dir``, checked."""
    path = os.path.join(model_dir, CONFIG)
    config = _read_json(path)
    version = config.get('format_version') if isinstance(config, dict) else None
    if not isinstance(version, int):
        raise GluonBertError(f'{path} has no format_version: not a '
                             'gluon_bert model directory')
    if version > FORMAT_VERSION:
        raise GluonBertError(f'{path} has format version {version}, newer '
                             f'than this gluon_bert reads ({FORMAT_VERSION}): '
                             'upgrade gluon_bert')
    model = config.get('model', {})
    missing = [k for k in MODEL_KEYS if k not in model]
    if missing:
        raise GluonBertError(f'{path} lacks the model settings {missing}: '
                             'save the model again')
    return config


def load_pretrained(model_dir, device=None, hybridize=True):
    """Load a model directory.

    Returns
    -------
    (net, vocab, config)
        The BERTModel on ``device`` (default ``cpu(0)``), its vocabulary and
        the parsed config.json.
    """
    if not os.path.isdir(model_dir):
        raise GluonBertError(f'{model_dir} is not a folder: pass the model '
                             'directory written by gluon_bert.pretrain')
    config = load_config(model_dir)
    vocab_path = os.path.join(model_dir, VOCAB)
    if not os.path.isfile(vocab_path):
        raise GluonBertError(f'{vocab_path} is missing: save the model again')
    try:
        vocab = Vocab.load(vocab_path)
    except ValueError as e:
        raise GluonBertError(str(e)) from None
    model = config['model']
    if model['vocab_size'] != len(vocab):
        raise GluonBertError(f'{os.path.join(model_dir, CONFIG)} says '
                             f'vocab_size {model["vocab_size"]} but '
                             f'{vocab_path} has {len(vocab)} tokens: the two '
                             'files come from different models')
    params_path = os.path.join(model_dir, PARAMS)
    if not os.path.isfile(params_path):
        raise GluonBertError(f'{params_path} is missing: save the model again')
    device = device or mx.cpu(0)
    net = BERTModel(**{k: model[k] for k in MODEL_KEYS})
    try:
        net.load_parameters(params_path, ctx=device, allow_missing=False,
                            ignore_extra=False)
    except (mx.MXNetError, AssertionError, ValueError, RuntimeError) as e:
        first = str(e).strip().splitlines()[0][:200]
        raise GluonBertError(f'{params_path} cannot be loaded into the model '
                             f'of {CONFIG} ({first}): the file is truncated, '
                             'damaged or from another model') from None
    if hybridize:
        net.hybridize(static_alloc=True)
    return net, vocab, config

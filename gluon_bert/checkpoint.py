"""Model directories: save a pretrained BERT, load it back.

A model directory holds::

    config.json     format version, the model's and the run's settings
    vocab.json      the vocabulary (Vocab.save)
    tokenizer.json  a WordPiece vocabulary for Hugging Face tokenizers
    model.params    Gluon save_parameters
    trainer.states  the optimizer's state (nd.save: nothing is pickled)
    state.json      step, RNG states, data position, history, SHA-1s
    checkpoints/    each kept step's files (the two above link the newest)

Writes go to temporary names; state.json, last, only names complete files
(:mod:`gluon_bert.state`).  Loading checks every file and names a wrong
one; it never loads a model partially.
"""
import json
import logging
import os

import mxnet as mx

from . import state
from .model import BERTModel, count_parameters
from .state import PARAMS, STATE
from .utils import (GluonBertError, atomic_path, atomic_write, file_digest,
                    write_error)
from .vocab import Vocab

__all__ = ['FORMAT_VERSION', 'MODEL_KEYS', 'save_model_dir',
           'load_config', 'load_pretrained', 'save_checkpoint',
           'load_checkpoint', 'branch_checkpoint', 'D2L_MODELS', 'D2L_PREFIX',
           'load_d2l_pretrained', 'checked_files', 'bert_from_config',
           'pretrained_source', 'load_params']

logger = logging.getLogger(__name__)

#: Bumped whenever the directory layout changes incompatibly.
FORMAT_VERSION = 1
#: The arguments of BERTModel, all stored in config.json['model'].
MODEL_KEYS = ('vocab_size', 'num_hiddens', 'ffn_num_hiddens', 'num_heads',
              'num_blks', 'dropout', 'max_len')
CONFIG, VOCAB = 'config.json', 'vocab.json'
#: A WordPiece vocabulary as a Hugging Face tokenizer (when it is one).
TOKENIZER = 'tokenizer.json'
#: Where a model directory keeps its newest checkpoints' files.
CKPT_DIR = 'checkpoints'


def save_model_dir(model_dir, net, vocab, train_config=None, params=True,
                   model_config=None, sections=None, what='the model',
                   need=None):
    """Write config.json, vocab.json and (unless not ``params``) model.params.

    ``model_config`` (default ``net.config``) are the BERTModel settings;
    ``sections`` adds top-level entries to config.json (a fine-tuned
    classifier's ``classifier``).  The files are written into ``.saving/``
    first and then renamed into place, config.json (which records
    model.params' SHA-1) last: a write that cannot complete (a full disk)
    leaves the directory as it was and raises a one-line
    :class:`~gluon_bert.utils.GluonBertError` naming ``what`` and about how
    many bytes it needs (``need``; default: the parameters').
    """
    import shutil
    config = {'format_version': FORMAT_VERSION,
              'model': dict(model_config or net.config),
              'train': dict(train_config or {}), **(sections or {})}
    if config['model']['vocab_size'] != len(vocab):
        raise GluonBertError(f'the model has {config["model"]["vocab_size"]} '
                             f'tokens, the vocabulary {len(vocab)}')
    staging = os.path.join(model_dir, '.saving')
    shutil.rmtree(staging, ignore_errors=True)
    try:
        os.makedirs(staging)
        if params:
            net.save_parameters(os.path.join(staging, PARAMS))
            config['files'] = {PARAMS: file_digest(os.path.join(staging,
                                                                PARAMS))}
        vocab.save(os.path.join(staging, VOCAB))
        if vocab.kind == 'wordpiece':
            _save_tokenizer(vocab, staging)
        with open(os.path.join(staging, CONFIG), 'w') as f:
            json.dump(config, f, indent=2, sort_keys=True)
    except (OSError, mx.MXNetError) as e:
        shutil.rmtree(staging, ignore_errors=True)
        if need is None and params:
            need = 4 * count_parameters(net)
        raise write_error(e, what, model_dir, need) from None
    for name in sorted(os.listdir(staging), key=lambda n: n == CONFIG):
        os.replace(os.path.join(staging, name), os.path.join(model_dir, name))
    os.rmdir(staging)
    return model_dir


def _save_tokenizer(vocab, model_dir):
    """tokenizer.json beside vocab.json, for Hugging Face code, when
    ``tokenizers`` is installed (vocab.json alone is what gluon_bert reads)."""
    try:
        vocab.save_tokenizer(os.path.join(model_dir, TOKENIZER))
    except ImportError:
        pass


def _read_json(path):
    if not os.path.isfile(path):
        raise GluonBertError(f'{path} is missing: not a gluon_bert model '
                             'directory (gluon_bert.pretrain writes one)')
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
    version = (config.get('format_version') if isinstance(config, dict)
               else None)
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
    """Load a model directory, or one of the book's models (``d2l:NAME``).

    Parameters
    ----------
    model_dir : str
        Written by ``pretrain`` (or ``finetune``: its fine-tuned encoder,
        with new MLM and NSP heads), or ``d2l:bert.small``/``d2l:bert.base``.
    device : mxnet.Context, optional
        Default ``cpu(0)``.
    hybridize : bool

    Returns
    -------
    (BERTModel, Vocab, dict)
        The model, its vocabulary and its config.json.
    """
    if str(model_dir).startswith(D2L_PREFIX):
        return load_d2l_pretrained(str(model_dir)[len(D2L_PREFIX):], device,
                                   hybridize)
    if not os.path.isdir(model_dir):
        raise GluonBertError(f'{model_dir} is not a folder: pass the model '
                             'directory written by gluon_bert.pretrain')
    config = load_config(model_dir)
    vocab, params_path = checked_files(model_dir, config)
    if 'classifier' in config:
        net = _fine_tuned_bert(config, params_path, device or mx.cpu(0))
    else:
        net = load_params(bert_from_config(config), params_path,
                          device or mx.cpu(0), CONFIG)
    if hybridize:
        net.hybridize(static_alloc=True)
    return net, vocab, config


def pretrained_source(source, step=None):
    """What ``pretrain --init-from`` starts from, read without building a
    model: ``(model settings, vocab, path of the parameters)`` of a model
    directory written by ``pretrain`` (with ``step``, of its kept checkpoint
    of that step), or of one of the book's models (``d2l:NAME``).  A
    fine-tuned classifier's folder is refused: its MLM and NSP heads are
    gone."""
    source = str(source)
    if step is not None:
        return _kept_step(source, step)
    if source.startswith(D2L_PREFIX):
        name = source[len(D2L_PREFIX):]
        if name not in D2L_MODELS:
            raise GluonBertError(f'unknown d2l model {name!r}: use one of '
                                 f'{", ".join(sorted(D2L_MODELS))}')
        folder = _fetch_d2l_model(name, D2L_MODELS[name], None)
        path = os.path.join(folder, 'vocab.json')
        try:
            vocab = Vocab.from_tokens(_read_json(path), source=path)
        except ValueError as e:
            raise GluonBertError(str(e)) from None
        model = dict(D2L_MODELS[name]['model'], vocab_size=len(vocab))
        return model, vocab, os.path.join(folder, 'pretrained.params')
    if not os.path.isdir(source):
        raise GluonBertError(f'{source} is not a folder: pass a model '
                             'directory written by gluon_bert.pretrain, or '
                             'd2l:bert.small', ['init_from'])
    config = load_config(source)
    if 'classifier' in config:
        raise GluonBertError(
            f'{source} holds a fine-tuned classifier, which keeps no MLM and '
            'NSP heads to pretrain: start from the pretrained model it came '
            f'from ({config["classifier"].get("pretrained")})',
            ['init_from'])
    vocab, params_path = checked_files(source, config)
    return dict(config['model']), vocab, params_path


def _kept_step(run_dir, step):
    """:func:`pretrained_source` of a run's kept checkpoint of ``step``."""
    model, vocab, _ = pretrained_source(run_dir)
    kept = state.saved_steps(run_dir, CKPT_DIR)
    saved = state.read_state(
        run_dir, name=state.step_state_name(CKPT_DIR, step),
        missing=f'{run_dir} kept no checkpoint of step {step} (kept: '
                f'{kept or "none"}): pick one of those',
        settings=['init_step'])
    return model, vocab, saved['files'][PARAMS]['path']


def _fine_tuned_bert(config, params_path, device):
    """The BERT inside a fine-tuned classifier (gluon_bert.finetune's model
    directory): its fine-tuned encoder and ``<cls>`` hidden layer; the MLM
    and NSP heads, which fine-tuning leaves out, freshly initialized
    (``config['classifier']`` tells a caller that it got one)."""
    from mxnet import init

    from .model import BERTClassifier
    bert = bert_from_config(config)
    classifier = BERTClassifier(bert, config['classifier']['num_classes'])
    load_params(classifier, params_path, device, CONFIG)
    bert.mlm.initialize(init.Normal(0.02), ctx=device)
    bert.nsp.initialize(init.Normal(0.02), ctx=device)
    return bert


def bert_from_config(config):
    """A new BERTModel with the settings of a parsed config.json."""
    return BERTModel(**{k: config['model'][k] for k in MODEL_KEYS},
                     tie_output=config['model'].get('tie_output', False))


def checked_files(model_dir, config, require_sha1=False):
    """``(vocab, path of model.params)`` of a model directory, checked.

    The vocabulary must match config.json's vocab_size and model.params the
    SHA-1 recorded when it was saved (a missing record is an error with
    ``require_sha1``); any problem is one line naming the file.
    """
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
    expected, recorded_in = _recorded_params_sha1(model_dir, config)
    if expected is None and require_sha1:
        raise GluonBertError(f'{os.path.join(model_dir, CONFIG)} records no '
                             f'SHA-1 of {PARAMS}: save the model again')
    if expected is not None and file_digest(params_path) != expected:
        raise GluonBertError(f'{params_path} does not match the SHA-1 '
                             f'recorded in {recorded_in}: the file is '
                             'damaged or was replaced; copy the model '
                             'directory again (or resume the run)')
    return vocab, params_path


# --------------------------------------------------------------------------
# The book's published models
# --------------------------------------------------------------------------
#: The pretrained BERTs of d2l's natural-language-inference chapter (MXNet
#: versions): the archive on d2l's data hub, its SHA-1 (as the chapter sets
#: ``d2l.DATA_HUB``) and the model settings the chapter builds it with.
D2L_DATA_URL = 'http://d2l-data.s3-accelerate.amazonaws.com/'
D2L_MODELS = {
    'bert.small': dict(
        url=D2L_DATA_URL + 'bert.small.zip',
        sha1='a4e718a47137ccd1809c9107ab4f5edd317bae2c',
        model=dict(num_hiddens=256, ffn_num_hiddens=512, num_heads=4,
                   num_blks=2, dropout=0.1, max_len=512)),
    'bert.base': dict(
        url=D2L_DATA_URL + 'bert.base.zip',
        sha1='7b3820b35da691042e5d34c0971ac3edbd80d3f4',
        model=dict(num_hiddens=768, ffn_num_hiddens=3072, num_heads=12,
                   num_blks=12, dropout=0.1, max_len=512)),
}
#: How ``--model-dir`` names one of them: ``d2l:bert.small``.
D2L_PREFIX = 'd2l:'
_D2L_FILES = ('vocab.json', 'pretrained.params')


def _fetch_d2l_model(name, entry, cache_dir, timeout=60):
    """The folder holding the model's two files, downloaded once.

    The archive must match the recorded SHA-1 before anything is unpacked;
    its two files are written atomically, so an interrupted download leaves
    nothing half-written.
    """
    import zipfile

    from .wikitext import default_cache_dir, download_verified, unpack_zip
    folder = os.path.join(cache_dir or default_cache_dir(), 'd2l', name)
    if all(os.path.isfile(os.path.join(folder, f)) for f in _D2L_FILES):
        return folder
    url = entry['url']
    logger.info('Downloading %s from %s ...', name, url)
    try:
        payload = download_verified(url, entry['sha1'], timeout)
    except GluonBertError as e:
        raise GluonBertError(f'cannot download {name} ({e}): check the '
                             'network, or put vocab.json and '
                             f'pretrained.params in {folder}; nothing was '
                             'saved') from None
    try:
        return unpack_zip(payload, folder, lambda n: n in _D2L_FILES,
                          _D2L_FILES)
    except zipfile.BadZipFile as e:
        raise GluonBertError(f'{url} is not a usable d2l model archive '
                             f'({e})') from None


def load_d2l_pretrained(name, device=None, hybridize=True, cache_dir=None):
    """One of the book's published BERTs (a key of :data:`D2L_MODELS`) as a
    gluon_bert model.

    Downloads d2l's archive once (SHA-1 checked, cached in
    ``GLUON_BERT_CACHE``/d2l/NAME), builds :class:`~gluon_bert.model.
    BERTModel` with the chapter's settings and loads ``pretrained.params``
    (the parameter names agree).  Returns ``(net, vocab, config)`` as
    :func:`load_pretrained` does; ``config['train']`` names the source.
    """
    if name not in D2L_MODELS:
        raise GluonBertError(f'unknown d2l model {name!r}: use one of '
                             f'{", ".join(sorted(D2L_MODELS))}')
    entry = D2L_MODELS[name]
    folder = _fetch_d2l_model(name, entry, cache_dir)
    vocab_path = os.path.join(folder, 'vocab.json')
    tokens = _read_json(vocab_path)
    try:
        vocab = Vocab.from_tokens(tokens, source=vocab_path)
    except ValueError as e:
        raise GluonBertError(str(e)) from None
    model = dict(entry['model'], vocab_size=len(vocab))
    net = load_params(BERTModel(**model),
                      os.path.join(folder, 'pretrained.params'),
                      device or mx.cpu(0), name)
    if hybridize:
        net.hybridize(static_alloc=True)
    config = {'format_version': FORMAT_VERSION, 'model': model,
              'train': {'source': D2L_PREFIX + name, 'url': entry['url']}}
    return net, vocab, config


def load_params(net, params_path, device, origin):
    """Load ``params_path`` into ``net`` on ``device`` (a device or a list);
    a file that does not fit is one line naming ``origin``."""
    try:
        net.load_parameters(params_path, ctx=device, allow_missing=False,
                            ignore_extra=False)
    except (mx.MXNetError, AssertionError, ValueError, RuntimeError):
        # MXNet's own message is a C++ stack trace: not for the user
        raise GluonBertError(f'{params_path} cannot be loaded into the model '
                             f'of {origin}: the file is truncated, damaged '
                             'or from another model') from None
    return net


def _recorded_params_sha1(model_dir, config):
    """(SHA-1 of model.params as saved, the file that records it) or None.

    ``save_model_dir`` records it in config.json; a training run's
    checkpoints record it in state.json.
    """
    recorded = config.get('files', {}).get(PARAMS)
    if recorded:
        return recorded, os.path.join(model_dir, CONFIG)
    state_path = os.path.join(model_dir, STATE)
    if os.path.isfile(state_path):
        try:
            saved = _read_json(state_path)
            return (saved['files'][PARAMS]['sha1'], state_path)
        except (GluonBertError, KeyError, TypeError):
            pass  # an unreadable state.json matters to --resume, not here
    return None, None


# --------------------------------------------------------------------------
# Pretraining checkpoints (the training state of gluon_bert.state)
# --------------------------------------------------------------------------
def _link_latest(src, dst):
    """Make ``dst`` the same file as ``src`` (atomically)."""
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:  # file systems without hard links
            import shutil
            shutil.copyfile(src, tmp)


def save_checkpoint(model_dir, net, vocab, trainer, train_config, history,
                    position, keep=2):
    """Save what continuing exactly needs: config.json and vocab.json, then
    the training state (:func:`~gluon_bert.state.write_state`: weights,
    optimizer state, RNG states, ``position`` and ``history`` as
    :func:`~gluon_bert.trainer.train_bert` hands them to ``on_step``), the
    newest ``keep`` steps kept in checkpoints/ and linked as model.params and
    trainer.states.  A failed write is a one-line
    :class:`~gluon_bert.utils.GluonBertError`; the last checkpoint stays.
    """
    step = history['step'][-1] if history['step'] else 0
    save_model_dir(model_dir, net, vocab, train_config, params=False,
                   what=f'the checkpoint of step {step}',
                   need=state.checkpoint_bytes(net))
    seed = (train_config.get('config') or train_config).get('seed')
    fields = {'format_version': FORMAT_VERSION, 'position': position,
              'history': history,
              'rng': dict(state.random_states(), mxnet={
                  'seed': seed, 'scheme': 'mx.random.seed(step_seed(seed, '
                                          'step)) before every step'})}
    saved = state.write_state(model_dir, step, net, trainer, fields,
                              sub=CKPT_DIR, keep=keep, what='checkpoint')
    # The newest, under the names a model directory promises
    for name, entry in saved['files'].items():
        _link_latest(os.path.join(model_dir, entry['path']),
                     os.path.join(model_dir, name))
    return saved


def branch_checkpoint(model_dir, step, branch_dir):
    """Make ``branch_dir`` (new or empty) a copy of the run in ``model_dir`` at
    ``step`` (files checked against their SHA-1s, config, vocabulary), so that
    a run resumed there continues with a budget and cooldown of its own
    (``pretrain --branch-from``).  Returns the branch's state.
    """
    import shutil
    name = state.step_state_name(CKPT_DIR, step)
    kept = state.saved_steps(model_dir, CKPT_DIR)
    saved = state.read_state(model_dir, name=name, missing=(
        f'{model_dir} keeps no checkpoint of step {step} (it keeps steps '
        f'{", ".join(map(str, kept)) or "none"}): pick one of those, or keep '
        'more with keep_checkpoints'), settings=['keep_checkpoints'])
    os.makedirs(os.path.join(branch_dir, CKPT_DIR), exist_ok=True)
    for extra in (CONFIG, VOCAB, TOKENIZER):
        if os.path.isfile(os.path.join(model_dir, extra)):
            shutil.copyfile(os.path.join(model_dir, extra),
                            os.path.join(branch_dir, extra))
    for key, entry in saved['files'].items():
        relative = os.path.relpath(entry['path'], model_dir)
        target = os.path.join(branch_dir, relative)
        with atomic_path(target) as tmp:
            shutil.copyfile(entry['path'], tmp)
        entry['path'] = relative
        _link_latest(target, os.path.join(branch_dir, key))
    for target in (os.path.join(branch_dir, name),
                   os.path.join(branch_dir, STATE)):  # state.json last
        with atomic_write(target, 'w') as f:
            json.dump(saved, f)
    return saved


def load_checkpoint(model_dir):
    """state.json of ``model_dir``, with its files checked
    (:func:`~gluon_bert.state.read_state`).  Returns the state dict, with
    ``files[name]['path']`` made absolute."""
    saved = state.read_state(model_dir)
    if saved.get('format_version', 0) > FORMAT_VERSION:
        raise GluonBertError(f'{os.path.join(model_dir, STATE)} has format '
                             f'version {saved["format_version"]}, newer than '
                             'this gluon_bert reads: upgrade gluon_bert')
    return saved

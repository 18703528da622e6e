"""pretrain --init-from: continue pretraining from a saved model."""
import hashlib
import json
import os

import numpy as onp
import pytest
from mxnet import gluon

from gluon_bert import pretrain
from gluon_bert.checkpoint import load_pretrained
from gluon_bert.dataset import load_data_wiki
from gluon_bert.trainer import get_batch_loss_bert

from conftest import make_corpus
from test_encode_texts import d2l_zip  # noqa: F401 (a fixture)

TINY = ['--num-hiddens', '16', '--ffn-num-hiddens', '32', '--batch-size',
        '16', '--max-len', '24', '--log-every', '0', '--seed', '3']


def _digests(folder):
    return {os.path.relpath(os.path.join(d, f), folder): hashlib.sha1(
        open(os.path.join(d, f), 'rb').read()).hexdigest()
        for d, _, files in os.walk(folder) for f in files}


@pytest.fixture(scope='module')
def saved_model(tmp_path_factory):
    """One model for the module's tests, which only read it (two check
    that it stays byte-identical), pretrained on the corpus ``corpus_dir``
    writes, with a cache of its own."""
    root = tmp_path_factory.mktemp('init_from')
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('GLUON_BERT_CACHE', str(root / 'cache'))
        assert pretrain.main(['--data-dir', make_corpus(root / 'wikitext-2'),
                              '--steps', '40', '--save-dir',
                              str(root / 'model')] + TINY) == 0
    return root / 'model'


def _first_loss(save_dir):
    return json.loads((save_dir / 'history.json').read_text())['mlm_step'][0]


def test_init_from_loads_the_weights_and_vocabulary_exactly(
        saved_model, corpus_dir, tmp_path):
    before = _digests(saved_model)
    run = tmp_path / 'continued'
    assert pretrain.main(['--init-from', str(saved_model), '--data-dir',
                          corpus_dir, '--steps', '1', '--dropout', '0',
                          '--recipe', 'bert', '--save-dir', str(run),
                          '--batch-size', '16', '--max-len', '24',
                          '--log-every', '0', '--seed', '3']) == 0
    assert _digests(saved_model) == before  # only read
    net, vocab, config = load_pretrained(str(saved_model))
    _, new_vocab, new_config = load_pretrained(str(run))
    assert new_vocab == vocab
    assert dict(new_config['model'], dropout=0.2) == config['model']
    assert new_config['train']['config']['init_from'] == str(saved_model)
    # the first batch the run drew, scored by the saved model
    pretrain.seed_everything(3)
    train_iter, _ = load_data_wiki(16, 24, data_dir=corpus_dir, vocab=vocab)
    batch = next(iter(train_iter))
    mlm, _, _ = get_batch_loss_bert(net, gluon.loss.SoftmaxCELoss(),
                                    len(vocab), *[[x] for x in batch])
    assert abs(_first_loss(run) - float(mlm[0])) < 1e-4
    # from random weights the same batch scores otherwise
    fresh = tmp_path / 'fresh'
    assert pretrain.main(['--data-dir', corpus_dir, '--steps', '1',
                          '--dropout', '0', '--recipe', 'bert', '--save-dir',
                          str(fresh)] + TINY) == 0
    assert abs(_first_loss(fresh) - float(mlm[0])) > 1e-3


def test_init_from_on_a_corpus_cuts_it_into_the_models_vocabulary(
        saved_model, tmp_path):
    text = tmp_path / 'task.txt'
    text.write_text('w1 w2 new3 . w4 w5 . \n' * 200)
    run = tmp_path / 'adapted'
    assert pretrain.main(['--init-from', str(saved_model), '--corpus',
                          str(text), '--steps', '2', '--save-dir',
                          str(run)] + TINY) == 0
    _, vocab, _ = load_pretrained(str(saved_model))
    assert load_pretrained(str(run))[1] == vocab
    assert 'new3' not in vocab  # an unseen word is <unk>, not a new entry
    # resumed, the run keeps its vocabulary and settings
    assert pretrain.main(['--save-dir', str(run), '--resume', '--steps',
                          '3']) == 0


@pytest.mark.parametrize('flags, message', [
    (['--num-hiddens', '32'], '--num-hiddens 32 differs from the model'),
    (['--vocab', 'wordpiece'], '--vocab wordpiece differs from the model'),
    (['--vocab-size', '500'], '--vocab-size sets a vocabulary to build'),
    (['--corpus', 'x.txt', '--max-words', '9'], '--max-words sets'),
])
def test_init_from_refuses_what_contradicts_the_model(
        saved_model, corpus_dir, tmp_path, capsys, flags, message):
    code = pretrain.main(['--init-from', str(saved_model), '--steps', '1',
                          '--save-dir', str(tmp_path / 'run')] + flags)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0], err


def test_init_from_refuses_a_classifier_a_missing_model_and_itself(
        saved_model, tmp_path, capsys):
    classifier = tmp_path / 'classifier'
    classifier.mkdir()
    for name in os.listdir(saved_model):
        if os.path.isfile(saved_model / name):
            (classifier / name).write_bytes((saved_model / name).read_bytes())
    config = json.loads((classifier / 'config.json').read_text())
    config['classifier'] = {'num_classes': 3, 'pretrained': 'runs/bert'}
    (classifier / 'config.json').write_text(json.dumps(config))
    for source, save, message in [
            (classifier, tmp_path / 'a', 'holds a fine-tuned classifier'),
            (tmp_path / 'nothing', tmp_path / 'b', 'is not a folder'),
            (saved_model, saved_model, 'is the --init-from folder')]:
        before = _digests(saved_model)
        code = pretrain.main(['--init-from', str(source), '--steps', '1',
                              '--save-dir', str(save)])
        err = capsys.readouterr().err.strip().splitlines()
        assert code != 0 and len(err) == 1 and message in err[0], err
        assert _digests(saved_model) == before


def test_init_from_a_d2l_model(d2l_zip, corpus_dir, tmp_path):  # noqa: F811
    run = tmp_path / 'from_d2l'
    assert pretrain.main(['--init-from', 'd2l:bert.test', '--data-dir',
                          corpus_dir, '--steps', '1', '--batch-size', '8',
                          '--max-len', '16', '--save-dir', str(run)]) == 0
    config = json.loads((run / 'config.json').read_text())
    assert config['model']['num_hiddens'] == 16
    assert config['train']['config']['init_from'] == 'd2l:bert.test'


def test_init_step_starts_from_a_kept_checkpoint(corpus_dir, tmp_path,
                                                 capsys):
    run = tmp_path / 'long'
    assert pretrain.main(['--data-dir', corpus_dir, '--steps', '6',
                          '--checkpoint-every', '2', '--keep-checkpoints',
                          '0', '--dropout', '0', '--save-dir', str(run)]
                         + TINY) == 0
    # the run branched at step 4 scores step 5's batch as the kept model
    a, b = tmp_path / 'a', tmp_path / 'b'
    assert pretrain.main(['--init-from', str(run), '--init-step', '4',
                          '--data-dir', corpus_dir, '--steps', '1',
                          '--dropout', '0', '--save-dir', str(a)]
                         + TINY) == 0
    assert pretrain.main(['--init-from', str(run), '--data-dir', corpus_dir,
                          '--steps', '1', '--dropout', '0', '--save-dir',
                          str(b)] + TINY) == 0
    assert abs(_first_loss(a) - _first_loss(b)) > 1e-4  # step 4, not 6
    assert pretrain.main(['--init-from', str(run), '--init-step', '3',
                          '--steps', '1', '--save-dir', str(tmp_path / 'c')]
                         ) == 1
    err = capsys.readouterr().err
    assert 'kept no checkpoint of step 3 (kept: [2, 4, 6])' in err

"""Held-out evaluation: the numbers, the command, the JSON."""
import json
import random

import pytest
from mxnet import gluon, npx

from gluon_bert import evaluate, pretrain
from gluon_bert import trainer as T
from gluon_bert.checkpoint import load_pretrained
from gluon_bert.dataset import DataIter, load_dataset
from gluon_bert.trainer import evaluate_bert

npx.set_np()
TINY = ['--num-hiddens', '16', '--ffn-num-hiddens', '32', '--batch-size',
        '16', '--max-len', '24', '--log-every', '0']


@pytest.fixture
def trained(corpus_dir, tmp_path):
    save = tmp_path / 'run'
    assert pretrain.main(['--data-dir', corpus_dir, '--save-dir', str(save),
                          '--steps', '5'] + TINY) == 0
    return str(save)


def test_evaluate_bert_matches_the_books_loss(trained, corpus_dir):
    net, vocab, _ = load_pretrained(trained)
    random.seed(0)
    dataset = load_dataset(24, corpus_dir, split='valid', vocab=vocab)
    one_batch = next(iter(DataIter(dataset, len(dataset), shuffle=False)))
    mlm_ls, nsp_ls, _ = T.get_batch_loss_bert(
        net, gluon.loss.SoftmaxCELoss(), len(vocab), *[[x] for x in one_batch])
    result = evaluate_bert(net, DataIter(dataset, 7, shuffle=False),
                                    len(vocab))
    assert result['pairs'] == len(dataset)
    assert result['mlm_slots'] == int(dataset.arrays['mlm_weights'].sum())
    assert abs(result['mlm_loss'] - float(mlm_ls[0])) < 1e-4
    assert abs(result['nsp_loss'] - float(nsp_ls[0])) < 1e-4
    # accuracies, by hand
    _, mlm_hat, nsp_hat = net(*one_batch[:4])
    pred = mlm_hat.asnumpy().argmax(-1)
    w = one_batch[4].asnumpy()
    hits = ((pred == one_batch[5].asnumpy()) * w).sum() / w.sum()
    assert abs(result['mlm_accuracy'] - hits) < 1e-6
    nsp_hits = (nsp_hat.asnumpy().argmax(-1) == one_batch[6].asnumpy()).mean()
    assert abs(result['nsp_accuracy'] - nsp_hits) < 1e-6


def test_evaluate_command(trained, corpus_dir, capsys, tmp_path):
    assert evaluate.main(['--model-dir', trained, '--split', 'test',
                          '--data-dir', corpus_dir]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith('test: MLM loss ')
    result = json.load(open(f'{trained}/eval-test.json'))
    assert result['split'] == 'test' and result['max_len'] == 24
    assert 0 <= result['mlm_accuracy'] <= 1 and 0 <= result['nsp_accuracy'] <= 1
    assert result['mlm_loss'] > 0 and result['nsp_loss'] > 0
    out_file = tmp_path / 'valid.json'
    assert evaluate.main(['--model-dir', trained, '--data-dir', corpus_dir,
                          '--output', str(out_file)]) == 0
    assert json.load(open(out_file))['split'] == 'valid'


def test_evaluate_errors(trained, tmp_path, capsys):
    assert evaluate.main(['--model-dir', str(tmp_path / 'none')]) == 1
    assert 'is not a folder' in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        evaluate.main(['--model-dir', trained, '--split', 'dev'])
    assert e.value.code == 2
    assert evaluate.main(['--model-dir', trained, '--max-len', '2000',
                          '--data-dir', str(tmp_path)]) == 1
    assert "longer than the model's position embedding" in \
        capsys.readouterr().err

"""The GLUE tasks as published: readers, WikiText-2 tokens, metrics, the
regression head, and the finetune/predict commands on pair tasks."""
import json
import os
import re

import mxnet as mx
import numpy as onp
import pytest
from mxnet import init, npx

from gluon_bert import classifier, finetune, predict
from gluon_bert.checkpoint import save_model_dir
from gluon_bert.config import FinetuneConfig
from gluon_bert.tasks import accuracy, f1, pearson, spearman
from gluon_bert.model import BERTClassifier, BERTModel
from gluon_bert.tasks import (TASKS, ClassificationDataset, read_glue,
                              read_task, task_splits)
from gluon_bert.utils import GluonBertError
from gluon_bert.vocab import Vocab, wikitext_tokenize

npx.set_np()

WORDS = ('a man is playing the guitar woman dog runs sleeps park cat '
         'plays piano music outside inside').split()


def _vocab():
    return Vocab(WORDS + ['.', ',', "'t", 'doesn', '@-@'],
                 reserved_tokens=['<pad>', '<mask>', '<cls>', '<sep>'])


def _write(path, text, bom=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes((b'\xef\xbb\xbf' if bom else b'')
                     + text.encode('utf-8'))
    return path


# -- readers: each folder's own format ------------------------------------
def test_mrpc_reads_its_byte_order_mark_and_columns(tmp_path):
    path = _write(tmp_path / 'train.tsv',
                  'Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n'
                  '1\t12\t34\tHe said "yes".\tHe agreed.\n'
                  '0\t56\t78\tA cat sleeps.\tThe stock fell 3%.\n', bom=True)
    a, b, labels = read_glue(str(path), TASKS['mrpc'])
    assert a == ['He said "yes".', 'A cat sleeps.']
    assert b == ['He agreed.', 'The stock fell 3%.'] and labels == [1, 0]


@pytest.mark.parametrize('task,header,row,expected', [
    ('rte', 'index\tsentence1\tsentence2\tlabel',
     '0\tA man sleeps.\tA man rests.\tnot_entailment', 1),
    ('qnli', 'index\tquestion\tsentence\tlabel',
     '7\tWho plays?\tA man plays.\tentailment', 0),
    ('snli-small', 'sentence1\tsentence2\tlabel',
     'A dog runs .\tA cat runs .\tcontradiction', 1),
    ('sts-b', 'index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t'
     'sentence1\tsentence2\tscore',
     '0\tmain\tMSRvid\t2012\t0001\tnone\tnone\tA man runs.\tA man jogs.\t'
     '3.800', 3.8),
])
def test_string_labels_and_scores(tmp_path, task, header, row, expected):
    path = _write(tmp_path / 'train.tsv', f'{header}\n{row}\n')
    a, b, labels = read_glue(str(path), TASKS[task])
    assert len(a) == len(b) == 1 and labels == [expected]
    assert type(labels[0]) is type(expected)


@pytest.mark.parametrize('task,content,message', [
    ('rte', 'index\tsentence1\tlabel\n0\ta\tentailment\n',
     "no 'sentence2' column"),
    ('rte', 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n',
     "line 2: unknown label 'maybe': the task's labels are entailment, "
     'not_entailment'),
    ('sts-b', 'sentence1\tsentence2\tscore\na\tb\thigh\n',
     "line 2: score 'high' is not a number"),
    ('sts-b', 'sentence1\tsentence2\tscore\na\tb\tnan\n',
     "line 2: score 'nan' is not a number"),
    ('mrpc', '', 'is empty'),
    ('qnli', 'index\tquestion\tsentence\tlabel\n\n',
     'has a header but no example'),
    ('qnli', 'index\tquestion\tsentence\tlabel\n1\ta\tb\n',
     'line 2: 3 columns, the header has 4'),
])
def test_bad_task_files_are_one_line(tmp_path, task, content, message):
    path = _write(tmp_path / 'train.tsv', content)
    with pytest.raises(GluonBertError, match=re.escape(message)) as e:
        read_glue(str(path), TASKS[task])
    assert '\n' not in str(e.value)


def test_not_utf8_names_the_line(tmp_path):
    path = tmp_path / 'train.tsv'
    path.write_bytes(b'sentence1\tsentence2\tlabel\na\tb\tentailment\n'
                     b'\xff\tb\tentailment\n')
    with pytest.raises(GluonBertError, match=r'not UTF-8 text \(line 3\)'):
        read_glue(str(path), TASKS['snli-small'])


@pytest.mark.realdata
@pytest.mark.parametrize('task,folder,sizes', [
    ('mrpc', 'mrpc', {'train': 3668, 'dev': 408, 'test': 1725}),
    ('rte', 'rte', {'train': 2490, 'dev': 277}),
    ('qnli', 'qnli-small', {'train': 4463, 'dev': 1000}),
    ('sts-b', 'sts-b', {'train': 5749, 'dev': 1500}),
    ('snli-small', 'snli-small', {'train': 8842, 'dev': 1000, 'test': 9824}),
])
def test_the_shared_glue_folders_read_whole(wiki_dir, task, folder, sizes):
    data = os.path.join(os.path.dirname(wiki_dir), folder)
    if not os.path.isdir(data):
        pytest.skip(f'{data} is not here')
    assert task_splits(task, data) == list(sizes)
    for split, size in sizes.items():
        a, b, labels, num_classes = read_task(task, data, split)
        assert len(a) == len(b) == len(labels) == size
        assert num_classes == (1 if task == 'sts-b' else
                               3 if task == 'snli-small' else 2)


# -- WikiText-2's conventions --------------------------------------------
@pytest.mark.parametrize('text,tokens', [
    ("He doesn't like it.", ['he', 'doesn', "'t", 'like', 'it', '.']),
    ("He does n't like it .", ['he', 'doesn', "'t", 'like', 'it', '.']),
    ("I ca n't, won't", ['i', 'can', "'t", ',', 'won', "'t"]),
    ('role-playing 1,000,000 fans', ['role', '@-@', 'playing', '1', '@,@',
                                     '000', '@,@', '000', 'fans']),
    ('3.5% of the U.S. game\'s', ['3', '@.@', '5', '%', 'of', 'the', 'u.s.',
                                  'game', "'s"]),
    ('\u201cFine\u201d (it\u2019s) -- ok', ['"', 'fine', '"', '(', 'it',
                                            "'s", ')', '\u2014', 'ok']),
    ("``Hello,'' Mr. Smith said.", ['"', 'hello', ',', '"', 'mr.', 'smith',
                                    'said', '.']),
])
def test_raw_and_treebank_text_in_wikitext_tokens(text, tokens):
    assert wikitext_tokenize(text) == tokens


@pytest.mark.realdata
def test_wikitext_lines_are_their_own_tokens(wiki_dir):
    # WikiText-2 is already in its conventions: the tokenizer leaves its
    # lines as the book's whitespace split does (but for initials such as
    # "h." that it cannot tell from a sentence's end)
    lines = [line for line in open(os.path.join(wiki_dir, 'wiki.valid.tokens'),
                                   encoding='utf-8')
             if line.strip() and not line.startswith(' =')][:400]
    same = sum(wikitext_tokenize(line) == line.lower().split()
               for line in lines)
    assert same >= 0.9 * len(lines)


def test_the_tokenizer_finds_the_words_and_counts_unknowns():
    vocab = _vocab()
    split = ClassificationDataset(["A man doesn't play."], None, [0], vocab,
                                  16, 'split')
    ours = ClassificationDataset(["A man doesn't play."], None, [0], vocab,
                                 16, 'wikitext')
    assert ours.token_ids[0] == vocab[['<cls>', 'a', 'man', 'doesn', "'t",
                                       'play', '.', '<sep>']]
    # split: "doesn't" and "play." unknown (2 of 4); wikitext: "play" (1/6)
    assert split.unk_share == pytest.approx(2 / 4)
    assert ours.unk_share == pytest.approx(1 / 6)
    with pytest.raises(GluonBertError, match='unknown tokenizer'):
        ClassificationDataset(['a'], None, [0], vocab, 16, 'bpe')


# -- metrics, against hand-computed values --------------------------------
def test_metrics_by_hand():
    assert accuracy([1, 0, 1, 1], [1, 1, 0, 1]) == 0.5
    # tp 2, 3 predicted and 3 gold positives: 2 * 2 / 6
    assert f1([1, 0, 1, 1], [1, 1, 0, 1]) == pytest.approx(2 / 3)
    assert f1([0, 0], [0, 0]) == 0.0
    # x - mean = (-1, 0, 1), y - mean = (-4/3, -1/3, 5/3): 3 / sqrt(2 * 42/9)
    assert pearson([1, 2, 3], [1, 2, 4]) == pytest.approx(
        3 / (2 * 42 / 9) ** 0.5)
    assert pearson([2, 2, 2], [1, 2, 3]) == 0.0
    # Ranks (1, 2.5, 2.5, 4) and (1, 3, 2, 4): tied values share their mean
    assert spearman([1, 2, 2, 3], [1, 3, 2, 4]) == pytest.approx(
        pearson([1, 2.5, 2.5, 4], [1, 3, 2, 4]))
    assert spearman([1, 5, 10], [0, 1, 100]) == pytest.approx(1.0)


def test_metrics_equal_scipys():
    stats = pytest.importorskip('scipy.stats')
    rng = onp.random.RandomState(0)
    x, y = rng.rand(50), rng.randint(0, 6, 50).astype(float)
    assert pearson(x, y) == pytest.approx(stats.pearsonr(x, y)[0])
    assert spearman(x, y) == pytest.approx(stats.spearmanr(x, y)[0])


# -- the regression head --------------------------------------------------
def test_regression_loss_and_gradient_are_squared_error(monkeypatch):
    vocab = _vocab()
    mx.random.seed(0)
    net = BERTClassifier(BERTModel(len(vocab), 16, 32, 2, 1, 0.0,
                                   max_len=24), 1)
    net.initialize(init.Normal(0.5))
    data = ClassificationDataset(['a man plays', 'the dog runs', 'a cat'],
                                 ['a woman plays', 'a cat sleeps', 'music'],
                                 [0.5, 4.0, 2.5], vocab, 16, 'wikitext')
    assert data.labels.dtype == onp.float32
    *inputs, labels = data.batch(onp.arange(3))
    pred = net(*[mx.np.array(x) for x in inputs])[:, 0].asnumpy()
    seen = {}
    original = mx.gluon.Trainer.step

    def spy(self, batch_size, **kwargs):
        seen['bias_grad'] = net.output.bias.grad().asnumpy().copy()
        seen['batch_size'] = batch_size
        return original(self, batch_size, **kwargs)
    monkeypatch.setattr(mx.gluon.Trainer, 'step', spy)
    history = classifier.finetune(
        net, data, data, [mx.cpu()],
        FinetuneConfig(epochs=1, batch_size=3, padded=True),
        metrics=('pearson', 'spearman'), verbose=False)
    # L2Loss: 0.5 (pred - y)^2 per example; its bias gradient sum(pred - y)
    assert history['train_loss'][0] == pytest.approx(
        onp.mean(0.5 * (pred - labels) ** 2), rel=1e-4)
    onp.testing.assert_allclose(seen['bias_grad'], [onp.sum(pred - labels)],
                                rtol=1e-4)
    assert history['train_acc'] == [None]
    assert set(history['dev'][0]) == {'pearson', 'spearman'}
    assert history['dev_score'] == [history['dev'][0]['pearson']]


# -- the commands on pair tasks -------------------------------------------
def _sts_dir(folder, n=96, seed=0):
    """Pairs scored 4.5 when the first sentence has "guitar", else 0.5:
    learnable by a tiny model in a few steps."""
    rng = onp.random.RandomState(seed)
    header = ('index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\t'
              'sentence1\tsentence2\tscore')
    others = [w for w in WORDS if w != 'guitar']
    for split, size in (('train', n), ('dev', 32)):
        rows = [header]
        for i in range(size):
            a = list(rng.choice(others, 3)) + ['guitar'] * (i % 2)
            b = rng.choice(others, 3)
            rows.append(f'{i}\tg\tf\t2012\t{i}\tnone\tnone\t{" ".join(a)}.'
                        f'\t{" ".join(b)}.\t{0.5 + 4 * (i % 2):.3f}')
        _write(folder / f'{split}.tsv', '\n'.join(rows) + '\n')
    return str(folder)


@pytest.fixture
def pretrained_dir(tmp_path):
    mx.random.seed(0)
    vocab = _vocab()
    net = BERTModel(len(vocab), 16, 32, 2, 1, 0.1, max_len=32)
    net.initialize(init.Xavier())
    return save_model_dir(str(tmp_path / 'bert'), net, vocab)


def test_sts_b_finetunes_as_a_regression_and_predicts_scores(
        tmp_path, pretrained_dir, capsys):
    data = _sts_dir(tmp_path / 'sts-b')
    save = str(tmp_path / 'clf')
    assert finetune.main(['--task', 'sts-b', '--model-dir', pretrained_dir,
                          '--data-dir', data, '--save-dir', save, '--epochs',
                          '20', '--lr', '3e-3', '--batch-size', '16',
                          '--max-len', '16', '--log-every', '0']) == 0
    out = capsys.readouterr().out
    assert 'a regression (one output)' in out and 'no test split' in out
    results = json.load(open(os.path.join(save, 'results.json')))
    assert results['metrics'] == ['pearson', 'spearman']
    assert results['test'] is None and 'dev_acc' not in results
    assert results['dev']['pearson'] == max(results['history']['dev_score'])
    # The score is learnable from the words: well above chance
    assert results['dev']['pearson'] > 0.5
    assert set(results['unk_shares']) == {'train', 'dev'}
    # A pair as two arguments, or with a tab: the same scores
    assert predict.main(['--model-dir', save, 'a man plays guitar.',
                         'a man plays guitar.', 'a dog runs.',
                         'the cat sleeps inside.']) == 0
    two = capsys.readouterr().out.splitlines()
    assert predict.main(['--model-dir', save,
                         'a man plays guitar.\ta man plays guitar.',
                         'a dog runs.\tthe cat sleeps inside.']) == 0
    assert capsys.readouterr().out.splitlines() == two
    scores = [float(line.split('\t')[0]) for line in two]
    assert scores[0] > scores[1]  # "guitar" in the first sentence
    assert predict.main(['--model-dir', save, 'one', 'two', 'three']) == 1
    assert 'give two per pair' in capsys.readouterr().err


def test_a_pair_task_prints_its_label_names(tmp_path, pretrained_dir,
                                            capsys):
    rows = ['index\tsentence1\tsentence2\tlabel']
    rng = onp.random.RandomState(0)
    for i in range(64):
        a = ' '.join(rng.choice(WORDS, 3))
        same = i % 2 == 0
        b = a if same else ' '.join(rng.choice(WORDS, 3))
        rows.append(f'{i}\t{a}\t{b}\t'
                    f'{"entailment" if same else "not_entailment"}')
    for split in ('train', 'dev'):
        _write(tmp_path / 'rte' / f'{split}.tsv', '\n'.join(rows) + '\n')
    save = str(tmp_path / 'clf')
    assert finetune.main(['--task', 'rte', '--model-dir', pretrained_dir,
                          '--data-dir', str(tmp_path / 'rte'), '--save-dir',
                          save, '--epochs', '1', '--batch-size', '16',
                          '--log-every', '0']) == 0
    capsys.readouterr()
    assert predict.main(['--model-dir', save, 'a dog', 'a dog']) == 0
    label = capsys.readouterr().out.split('\t')[0]
    assert label in ('entailment', 'not_entailment')


def test_a_folder_without_its_dev_split_is_one_line(tmp_path,
                                                    pretrained_dir, capsys):
    data = _sts_dir(tmp_path / 'sts-b')
    os.remove(os.path.join(data, 'dev.tsv'))
    save = tmp_path / 'clf'
    assert finetune.main(['--task', 'sts-b', '--model-dir', pretrained_dir,
                          '--data-dir', data, '--save-dir', str(save)]) == 1
    err = capsys.readouterr().err.strip()
    assert 'has no dev split for --task sts-b: it needs dev.tsv' in err
    assert len(err.splitlines()) == 1 and not save.exists()

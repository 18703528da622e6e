"""Fine-tuning: the book's classifier and data, the commands, bad input."""
import json
import os
import re
import shutil

import mxnet as mx
import numpy as onp
import pytest
from d2l import mxnet as d2l
from mxnet import init, np, npx

from gluon_bert import classifier, finetune, predict
from gluon_bert.checkpoint import load_pretrained, save_model_dir
from gluon_bert.config import FinetuneConfig
from book_reference import copy_d2l_parameters
from gluon_bert.model import BERTClassifier, BERTModel
from gluon_bert.tasks import ClassificationDataset, read_snli, read_tsv
from gluon_bert.utils import GluonBertError
from gluon_bert.vocab import Vocab

npx.set_np()

WORDS = ('a gripping funny film dull boring movie the plot is great '
         'bad good acting').split()


def _vocab():
    return Vocab(WORDS, reserved_tokens=['<pad>', '<mask>', '<cls>',
                                         '<sep>'])


def test_classifier_equals_the_books_on_copied_parameters():
    vocab = _vocab()
    mx.random.seed(0)
    ref = d2l.BERTModel(len(vocab), 16, 32, 2, 2, 0.0, max_len=24)
    ref.initialize(init.Xavier())
    tokens = np.array([[2, 5, 6, 3, 0, 0], [2, 7, 8, 3, 9, 3]],
                      dtype='int32')
    segments = np.array([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1]],
                        dtype='int32')
    valid_lens = np.array([4.0, 6.0])
    ref(tokens, segments, valid_lens, np.zeros((2, 1), dtype='int32'))
    ours = BERTModel(len(vocab), 16, 32, 2, 2, 0.0, max_len=24)
    ours.initialize(init.Xavier())
    copy_d2l_parameters(ref, ours)
    net = BERTClassifier(ours, 3)
    net.output.initialize(init.Xavier())
    for hybridize in (False, True):
        if hybridize:
            net.hybridize(static_alloc=True)
        got = net(tokens, segments, valid_lens)
        # The book's BERTClassifier.forward, on d2l's model
        encoded_X = ref.encoder(tokens, segments, valid_lens)
        expected = net.output(ref.hidden(encoded_X[:, 0, :]))
        onp.testing.assert_allclose(got.asnumpy(), expected.asnumpy(),
                                    atol=1e-5)
    # Only the encoder, the <cls> hidden layer and the new output layer
    assert len(net.collect_params().keys()) == len(
        ours.encoder.collect_params().keys()) + 4


@pytest.mark.parametrize('num_heads', [1, 2, 4])
@pytest.mark.parametrize('num_devices', [1, 2])
def test_packed_batches_give_the_padded_scores_and_gradients(num_heads,
                                                             num_devices):
    vocab = _vocab()
    mx.random.seed(0)
    devices = [mx.cpu(i) for i in range(num_devices)]
    net = BERTClassifier(BERTModel(len(vocab), 16, 32, num_heads, 2, 0.0,
                                   max_len=24), 2)
    net.initialize(init.Xavier(), ctx=devices)
    net.hybridize(static_alloc=True)
    rng = onp.random.RandomState(0)
    lens = [3, 9, 5, 2, 7]
    dataset = ClassificationDataset(
        [' '.join(rng.choice(WORDS, n - 2)) for n in lens], None,
        [0, 1, 1, 0, 1], vocab, 16)
    *inputs, labels = dataset.batch(onp.arange(len(lens)))
    loss = mx.gluon.loss.SoftmaxCELoss()
    results = []
    for heads in (None, num_heads):
        # A new graph for the other argument structure
        net.hybridize(static_alloc=True)
        X_shards = classifier._input_shards(inputs, devices, heads)
        y_shards = classifier._shards([labels], devices)
        with mx.autograd.record():
            scores = [net(*X) for X in X_shards]
            ls = [loss(s, y) for s, (y,) in zip(scores, y_shards)]
        for l in ls:
            l.backward()
        results.append((onp.concatenate([s.asnumpy() for s in scores]),
                        {k: p.grad(devices[0]).asnumpy().copy()
                         for k, p in net.collect_params().items()}))
    (padded, padded_grads), (packed, packed_grads) = results
    onp.testing.assert_allclose(packed, padded, rtol=1e-5, atol=1e-6)
    for k in padded_grads:
        onp.testing.assert_allclose(packed_grads[k], padded_grads[k],
                                    rtol=1e-4, atol=1e-6, err_msg=k)
    assert dataset.batch(onp.arange(len(lens)))[0].shape == (5, 16)


SNLI = ('gold_label\tsentence1_binary_parse\tsentence2_binary_parse\textra\n'
        'neutral\t( ( A man ) ( is  here ) )\t( He ( waits ) )\tx\n'
        '-\t( Nobody )\t( agrees )\tx\n'
        'entailment\t( The plot )\t( is   great ( . ) )\tx\n'
        'contradiction\tA   film\tno film\tx\n')


def test_read_snli_is_d2ls(tmp_path):
    for name in ('snli_1.0_train.txt', 'snli_1.0_test.txt'):
        (tmp_path / name).write_text(SNLI, encoding='utf-8')
    for is_train in (True, False):
        assert read_snli(str(tmp_path), is_train) == d2l.read_snli(
            str(tmp_path), is_train)
    assert read_snli(str(tmp_path), True)[2] == [2, 0, 1]


def _books_snli_bert_example(p_tokens, h_tokens, vocab, max_len):
    # SNLIBERTDataset._mp_worker of d2l's NLI chapter (not in the d2l 1.0.3
    # package), with its _truncate_pair_of_tokens
    while len(p_tokens) + len(h_tokens) > max_len - 3:
        if len(p_tokens) > len(h_tokens):
            p_tokens.pop()
        else:
            h_tokens.pop()
    tokens, segments = d2l.get_tokens_and_segments(p_tokens, h_tokens)
    token_ids = vocab[tokens] + [vocab['<pad>']] * (max_len - len(tokens))
    segments = segments + [0] * (max_len - len(segments))
    return token_ids, segments, len(tokens)


def test_pair_inputs_are_the_books_snli_bert_dataset(tmp_path):
    (tmp_path / 'snli_1.0_train.txt').write_text(SNLI, encoding='utf-8')
    premises, hypotheses, labels = read_snli(str(tmp_path), True)
    vocab = _vocab()
    for max_len in (6, 8, 12):
        ours = ClassificationDataset(premises, hypotheses, labels, vocab,
                                     max_len)
        tokens, segments, valid_lens, got_labels = ours.batch(
            onp.arange(len(ours)), width=max_len)
        # The book tokenizes with d2l.tokenize on lower-cased sentences
        books = [_books_snli_bert_example(p, h, vocab, max_len)
                 for p, h in zip(*[d2l.tokenize([s.lower() for s in text])
                                   for text in (premises, hypotheses)])]
        assert tokens.tolist() == [b[0] for b in books]
        assert segments.tolist() == [b[1] for b in books]
        assert valid_lens.tolist() == [b[2] for b in books]
        assert got_labels.tolist() == labels


def test_unknown_words_are_counted():
    data = ClassificationDataset(['a gripping qqq film', 'zzz'], None, [1, 0],
                                 _vocab(), 16)
    assert data.unk_share == pytest.approx(2 / 5)
    assert data.token_ids[1] == _vocab()[['<cls>', '<unk>', '<sep>']]


@pytest.mark.parametrize('content, message', [
    (b'', 'is empty'),
    (b'sentence\tlabel\n', 'at least one example'),
    (b'sentence\tlabel\n\n\n', 'has a header but no example'),
    (b'text\tlabel\na film\t1\n', 'names no sentence column'),
    (b'sentence\tscore\na film\t1\n', 'no label column'),
    (b'sentence\tlabel\na film\t1\nthe plot\t2\n', 'line 3: label 2 is out'),
    (b'sentence\tlabel\na film\tgood\n', "line 2: label 'good' is not an"),
    (b'sentence\tlabel\na film\t1\textra\n', 'line 2: 3 columns'),
    (b'sentence\tlabel\na \xff film\t1\n', 'not UTF-8 text (line 2)'),
])
def test_bad_tsv_files(tmp_path, content, message):
    path = tmp_path / 'train.tsv'
    path.write_bytes(content)
    with pytest.raises(GluonBertError, match=re.escape(message)):
        read_tsv(str(path), num_classes=2)


def _sst_dir(folder, n=64, seed=0):
    rng = onp.random.RandomState(seed)
    pos, neg = 'a gripping funny film good acting', 'a dull boring bad movie'
    os.makedirs(folder, exist_ok=True)
    for split, size in (('train', n), ('dev', 16), ('test', 16)):
        rows = ['sentence\tlabel']
        for _ in range(size):
            label = int(rng.randint(2))
            words = (pos if label else neg).split()
            rng.shuffle(words)
            rows.append(' '.join(words[:int(rng.randint(2, len(words)))])
                        + f'\t{label}')
        (folder / f'{split}.tsv').write_text('\n'.join(rows) + '\n',
                                             encoding='utf-8')
    return str(folder)


@pytest.fixture
def pretrained_dir(tmp_path):
    vocab = _vocab()
    mx.random.seed(0)
    net = BERTModel(len(vocab), 16, 32, 2, 1, 0.1, max_len=32)
    net.initialize(init.Xavier())
    return save_model_dir(str(tmp_path / 'bert'), net, vocab)


@pytest.mark.parametrize('how', ['pretrained', 'random'])
def test_finetune_then_predict(tmp_path, pretrained_dir, capsys, how):
    data = _sst_dir(tmp_path / 'sst')
    save = str(tmp_path / 'clf')
    assert finetune.main(['--model-dir', pretrained_dir, '--data-dir', data,
                          '--save-dir', save, '--epochs', '6', '--lr',
                          '3e-3', '--batch-size', '16', '--max-len', '16',
                          '--log-every', '0', '--init', how,
                          '--cpus', '2']) == 0
    out = capsys.readouterr().out
    assert 'words not in the vocabulary of' in out
    results = json.load(open(os.path.join(save, 'results.json')))
    assert results['init'] == how and len(results['history']['dev_acc']) == 6
    # The task is easy: the words give the label away
    assert results['dev_acc'] >= 0.8
    assert results['dev_acc'] == max(results['history']['dev_acc'])
    assert predict.main(['--model-dir', save, 'a gripping funny film',
                         'a dull boring movie']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split('\t')[0] for line in lines] == ['1', '0']
    assert lines[0].endswith('\ta gripping funny film')
    source = tmp_path / 'in.txt'
    source.write_text('good acting\nbad movie\n', encoding='utf-8')
    assert predict.main(['--model-dir', save, '--input', str(source)]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2


def test_bad_input_gets_one_line_and_writes_nothing(tmp_path, pretrained_dir,
                                                    capsys):
    data = _sst_dir(tmp_path / 'sst')
    with open(os.path.join(data, 'dev.tsv'), 'a') as f:
        f.write('a film\t7\n')
    save = tmp_path / 'clf'
    assert finetune.main(['--model-dir', pretrained_dir, '--data-dir', data,
                          '--save-dir', str(save)]) == 1
    err = capsys.readouterr().err
    assert 'dev.tsv line 18: label 7 is out of range' in err
    assert len(err.strip().splitlines()) == 1 and not save.exists()
    assert finetune.main(['--model-dir', str(tmp_path / 'none'),
                          '--data-dir', _sst_dir(tmp_path / 'ok'),
                          '--save-dir', str(save)]) == 1
    assert 'is not a folder' in capsys.readouterr().err
    assert not save.exists()
    # predict on a pretrained BERT, not a classifier
    assert predict.main(['--model-dir', pretrained_dir, 'a film']) == 1
    assert 'not a fine-tuned classifier' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict.parse_args(['--model-dir', 'x'])


@pytest.mark.parametrize('schedule,weight_decay', [('constant', 0.0),
                                                   ('linear', 0.01)])
def test_finetune_follows_the_schedule(tmp_path, monkeypatch, schedule,
                                       weight_decay):
    from gluon_bert.recipe import learning_rate
    vocab = _vocab()
    mx.random.seed(0)
    net = BERTClassifier(BERTModel(len(vocab), 16, 32, 2, 1, 0.0,
                                   max_len=24), 2)
    net.initialize(init.Xavier())
    a, _, labels = read_tsv(os.path.join(_sst_dir(tmp_path), 'train.tsv'))
    data = ClassificationDataset(a, None, labels, vocab, 16)
    rates, optimizers = [], []
    original = mx.gluon.Trainer.step

    def spy(self, batch_size, **kwargs):
        rates.append(self.learning_rate)
        optimizers.append(type(self._optimizer).__name__)
        return original(self, batch_size, **kwargs)
    monkeypatch.setattr(mx.gluon.Trainer, 'step', spy)
    classifier.finetune(net, data, data, [mx.cpu()], FinetuneConfig(
        epochs=2, lr=1e-2, batch_size=16, schedule=schedule, warmup=0.25,
        weight_decay=weight_decay), verbose=False)
    # 64 examples: 4 batches an epoch, 8 steps
    expected = [learning_rate(s, 8, 1e-2, schedule, 0.25)
                for s in range(1, 9)]
    onp.testing.assert_allclose(rates, expected)
    assert set(optimizers) == {'AdamW' if weight_decay else 'Adam'}
    if weight_decay:
        # No decay on LayerNorm and biases, as in pretraining
        assert all(p.wd_mult == 0 for n, p in net.collect_params().items()
                   if n.endswith(('gamma', 'beta', 'bias')))


@pytest.mark.parametrize('flags,message', [
    (['--warmup', '1.5'], 'argument --warmup: must be in [0, 1), got 1.5'),
    (['--weight-decay', '-0.1'],
     'argument --weight-decay: must be 0 or more, got -0.1'),
    (['--schedule', 'cosine'], "invalid choice: 'cosine'"),
    (['--lr', '0'], 'argument --lr: must be a positive number, got 0'),
    (['--gpus', '0', '--cpus', '2'], '--gpus and --cpus exclude each other'),
    (['--max-len', '3'], 'argument --max-len: max_len 3 leaves no room')])
def test_bad_flags_get_one_line(capsys, flags, message):
    with pytest.raises(SystemExit) as exit_info:
        finetune.parse_args(['--model-dir', 'm', '--data-dir', 'd'] + flags)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# -- Nothing lost: SIGTERM and --resume, one run per folder, a full disk -----
def _ft_argv(pretrained_dir, data, save, *extra):
    return ['--model-dir', pretrained_dir, '--data-dir', data, '--save-dir',
            str(save), '--epochs', '3', '--lr', '3e-3', '--batch-size', '8',
            '--max-len', '16', '--log-every', '1', *extra]


def _history_of(save):
    with open(os.path.join(save, 'results.json')) as f:
        return json.load(f)['history']


def test_sigterm_saves_and_resume_repeats_the_uninterrupted_run(
        tmp_path, pretrained_dir, capsys):
    """SIGTERM at a random step of a fine-tuning run: the step ends, the
    state is saved, one line says so, exit 143; --resume with the same
    flags then gives the uninterrupted run's losses and scores."""
    import random
    import signal
    import subprocess
    import sys
    data = _sst_dir(tmp_path / 'sst')
    reference = tmp_path / 'reference'
    assert finetune.main(_ft_argv(pretrained_dir, data, reference)) == 0
    a = _history_of(reference)
    save = tmp_path / 'run'
    stop_at = random.Random(0).randint(3, 18)  # of 24 steps, 8 per epoch
    proc = subprocess.Popen(
        [sys.executable, '-m', 'gluon_bert.finetune',
         *_ft_argv(pretrained_dir, data, save)], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    seen = 0
    for line in proc.stdout:
        seen += line.startswith('epoch ') and ' batch ' in line
        if seen >= stop_at:
            proc.send_signal(signal.SIGTERM)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('Stopped by SIGTERM at '
                                                   'epoch '), err
    assert '--resume' in lines[0] and '--task' not in lines[0]  # the default
    assert not (save / 'results.json').exists()
    state = json.loads((save / 'resume' / 'state.json').read_text())
    assert 0 < state['position']['step'] < 24
    capsys.readouterr()
    assert finetune.main(_ft_argv(pretrained_dir, data, save,
                                  '--resume')) == 0
    assert 'Resuming from epoch' in capsys.readouterr().out
    b = _history_of(save)
    onp.testing.assert_allclose(b['train_loss'], a['train_loss'], rtol=1e-5)
    onp.testing.assert_allclose(b['dev_score'], a['dev_score'], rtol=1e-5)
    assert not (save / 'resume').exists()  # finished: nothing to resume
    # --resume with other settings is refused, naming them
    assert finetune.main(_ft_argv(pretrained_dir, data, reference,
                                  '--resume')) == 1
    assert 'holds no stopped fine-tuning run' in capsys.readouterr().err


def test_a_finetune_folder_holds_one_run_and_keeps_the_one_before(
        tmp_path, pretrained_dir, capsys):
    import subprocess
    import sys
    data = _sst_dir(tmp_path / 'sst')
    save = tmp_path / 'clf'

    def run(*extra):
        return finetune.main(_ft_argv(pretrained_dir, data, save,
                                      '--epochs', '1', '--log-every', '0',
                                      *extra))
    assert run() == 0
    first = (save / 'model.params').read_bytes()
    assert run() == 0  # the same command again: the first kept
    assert (save / 'previous' / 'model.params').read_bytes() == first
    capsys.readouterr()
    assert run('--lr', '1e-3') == 1  # other settings: refused, one line
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and '--lr' in err and '--overwrite' in err
    assert run('--lr', '1e-3', '--overwrite') == 0
    assert json.loads((save / 'results.json').read_text())['lr'] == 1e-3
    # a pretrained model is not a fine-tuning run: never replaced unasked,
    # and said so (not '(unreadable)')
    other = tmp_path / 'other-bert'
    shutil.copytree(pretrained_dir, other)
    capsys.readouterr()
    assert finetune.main(_ft_argv(pretrained_dir, data, other)) == 1
    err = capsys.readouterr().err
    assert 'holds a pretrained model, not a fine-tuning run' in err, err
    assert 'unreadable' not in err and '--overwrite' in err
    assert not (other / 'previous').exists()
    # a folder in use by a live process: refused, naming it
    holder = subprocess.Popen([sys.executable, '-c',
                               'import time; time.sleep(60)'])
    try:
        import socket
        (save / '.lock').write_text(json.dumps(
            {'pid': holder.pid, 'host': socket.gethostname(),
             'started': 'earlier'}))
        assert run() == 1
        err = capsys.readouterr().err
        assert f'pid {holder.pid}' in err and 'in use by another run' in err
    finally:
        holder.kill()
        holder.wait()
    assert run('--lr', '1e-3') == 0  # stale now: taken over


def _tree(folder):
    """{relative path: bytes} of every file under ``folder``."""
    return {os.path.relpath(os.path.join(d, n), folder):
            open(os.path.join(d, n), 'rb').read()
            for d, _, names in os.walk(folder) for n in names}


@pytest.mark.parametrize('where', ['same', 'parent'])
@pytest.mark.parametrize('overwrite', [False, True])
def test_fine_tuning_into_the_folder_it_reads_is_refused_before_anything_moves(
        tmp_path, pretrained_dir, capsys, where, overwrite):
    """--save-dir M with --model-dir M (an easy slip), or a --save-dir that
    holds M: exit 2, one line naming the slip, M byte-identical (with
    --overwrite too, which once moved the model into M/previous/)."""
    data = _sst_dir(tmp_path / 'sst')
    before = _tree(pretrained_dir)
    save = (pretrained_dir if where == 'same'
            else os.path.dirname(pretrained_dir))
    outer = _tree(save)
    code = finetune.main(_ft_argv(pretrained_dir, data, save,
                                  *(['--overwrite'] if overwrite else [])))
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.count('\n') == 0 and '--model-dir' in err, err
    assert ('is the --model-dir' if where == 'same'
            else 'holds (bert) the --model-dir') in err, err
    assert _tree(pretrained_dir) == before and _tree(save) == outer
    # the model still loads, and the suggested folder works
    load_pretrained(pretrained_dir)
    suggested = err.rsplit('--save-dir ', 1)[1]
    assert finetune.main(_ft_argv(pretrained_dir, data, suggested,
                                  '--epochs', '1')) == 0


def test_a_full_disk_keeps_the_best_model_saved_before(
        tmp_path, pretrained_dir, capsys, monkeypatch):
    """ENOSPC while saving a better model after epoch 1: one line, no
    traceback, nothing half-written; the model saved before still loads."""
    data = _sst_dir(tmp_path / 'sst')
    save = tmp_path / 'clf'
    real, calls = mx.npx.save, []

    def full_disk(fname, data):
        calls.append(fname)
        if len(calls) > 1:  # the second save: after epoch 2 or later
            with open(fname, 'wb') as f:
                f.write(b'\0' * 100)
            raise mx.MXNetError('Check failed: FileStream.Write incomplete')
        return real(fname, data)
    monkeypatch.setattr(mx.npx, 'save', full_disk)
    code = finetune.main(_ft_argv(pretrained_dir, data, save, '--epochs',
                                  '6', '--log-every', '0'))
    monkeypatch.undo()
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(calls) == 2, err
    assert err.count('\n') == 0 and 'Traceback' not in err
    assert 'could not write the fine-tuned model' in err and 'MB free' in err
    left = sorted(n for n in os.listdir(save) if n != 'previous')
    assert left == ['config.json', 'model.params', 'vocab.json']
    net, _, config = classifier.load_classifier(str(save))
    assert config['classifier']['best_epoch'] == 1


def test_a_fine_tuned_folder_encodes_with_its_encoder_and_evaluate_says_why_not(
        tmp_path, pretrained_dir, capsys, corpus_dir):
    """encode on finetune's folder uses the fine-tuned encoder (the same
    vectors as the classifier's own encoder); evaluate says in one line that
    a classifier has no MLM/NSP heads and names the pretrained model."""
    from gluon_bert import encode, evaluate
    from gluon_bert.encoder import encode_texts
    data = _sst_dir(tmp_path / 'sst')
    save = tmp_path / 'clf'
    assert finetune.main(_ft_argv(pretrained_dir, data, save,
                                  '--epochs', '1')) == 0
    capsys.readouterr()
    assert encode.main(['--model-dir', str(save), 'a gripping film',
                        '--num-elements', '2']) == 0
    assert 'gripping' in capsys.readouterr().out
    clf, vocab, _ = classifier.load_classifier(str(save))
    bert, _, config = load_pretrained(str(save))
    assert 'classifier' in config
    texts = ['a gripping funny film', 'a dull movie']
    got = encode_texts(bert, vocab, texts)
    fresh = BERTModel(**{k: config['model'][k] for k in (
        'vocab_size', 'num_hiddens', 'ffn_num_hiddens', 'num_heads',
        'num_blks', 'dropout', 'max_len')})
    fresh.initialize()
    fresh.encoder = clf.encoder  # the classifier's own fine-tuned encoder
    onp.testing.assert_allclose(got, encode_texts(fresh, vocab, texts),
                                atol=1e-5)
    before = encode_texts(load_pretrained(pretrained_dir)[0], vocab, texts)
    assert not onp.allclose(got, before)  # fine-tuning moved it
    assert evaluate.main(['--model-dir', str(save), '--data-dir',
                          corpus_dir]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'holds a fine-tuned classifier' in err
    assert pretrained_dir in err

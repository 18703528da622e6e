"""Export to the book's PyTorch BERT and to ONNX (the [torch] and [onnx]
extras; skipped, with the reason, when they are not installed)."""
import json
import os

import mxnet as mx
import numpy as onp
import pytest
from mxnet import init, np, npx

from gluon_bert import encode, export
from gluon_bert.checkpoint import save_model_dir
from gluon_bert.classifier import save_classifier
from gluon_bert.model import BERTClassifier, BERTModel
from gluon_bert.vocab import Vocab

torch = pytest.importorskip('torch', reason="the [torch] extra: pip install "
                            "'gluon_bert[torch]'")
npx.set_np()

SENTENCES = ['the crane is flying over the river', 'a crane driver came',
             'he just left', 'the river is long and the crane is tall and '
             'the driver came back over the long river', 'flying']


def _d2l_torch():
    """The installed d2l's PyTorch code (the oracle), as the README's
    snippet gets it."""
    from gluon_bert.interop import d2l_torch
    return d2l_torch()


def _vocab():
    words = sorted({w for s in SENTENCES for w in s.split()})
    return Vocab(words, reserved_tokens=['<pad>', '<mask>', '<cls>', '<sep>'])


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
    vocab = _vocab()
    mx.random.seed(0)
    net = BERTModel(len(vocab), 32, 64, 2, 2, 0.0, max_len=64)
    net.initialize(init.Normal(0.5))
    folder = str(tmp_path_factory.mktemp('m') / 'bert')
    return save_model_dir(folder, net, vocab), net, vocab


def _batch(vocab, sentences):
    """(tokens, segments, valid_lens) of padded single sentences."""
    rows = [['<cls>'] + s.split() + ['<sep>'] for s in sentences]
    width = max(map(len, rows))
    tokens = [vocab[r] + [vocab['<pad>']] * (width - len(r)) for r in rows]
    return (onp.array(tokens, dtype='int64'),
            onp.zeros((len(rows), width), dtype='int64'),
            onp.array([len(r) for r in rows], dtype='float32'))


@pytest.fixture(scope='module')
def tied_dir(tmp_path_factory):
    """A model whose MLM output layer shares the token embedding."""
    vocab = _vocab()
    mx.random.seed(1)
    net = BERTModel(len(vocab), 32, 64, 2, 2, 0.0, max_len=64,
                    tie_output=True)
    net.initialize(init.Normal(0.5))
    net.mlm.decoder.bias.set_data(np.arange(len(vocab)) * 0.01)
    folder = str(tmp_path_factory.mktemp('t') / 'bert')
    return save_model_dir(folder, net, vocab), net, vocab


@pytest.mark.parametrize('which', ['book', 'tied'])
def test_the_books_pytorch_model_loads_the_export_and_agrees(
        model_dir, tied_dir, tmp_path, which):
    """Loaded strictly by d2l.torch.BERTModel, the export scores as the
    model does; a tied output layer is exported as the book's own matrix,
    a copy of the embedding."""
    folder, net, vocab = model_dir if which == 'book' else tied_dir
    out = tmp_path / 'bert.pt'
    assert export.main(['--model-dir', folder, '--output', str(out)]) == 0
    meta = json.loads((tmp_path / 'bert.json').read_text())
    m = meta['model']
    d2l_torch = _d2l_torch()
    book = d2l_torch.BERTModel(m['vocab_size'], m['num_hiddens'],
                               m['ffn_num_hiddens'], m['num_heads'],
                               m['num_blks'], 0.0, max_len=m['max_len'])
    book.load_state_dict(torch.load(out), strict=True)
    book.eval()
    assert meta['vocab'] == vocab.idx_to_token
    tokens, segments, valid_lens = _batch(vocab, SENTENCES)
    positions = onp.array([[1, 2], [1, 3], [2, 1], [5, 9], [1, 1]])
    with torch.no_grad():
        theirs = book(torch.from_numpy(tokens), torch.from_numpy(segments),
                      torch.from_numpy(valid_lens),
                      torch.from_numpy(positions))
    ours = net(np.array(tokens, dtype='int32'),
               np.array(segments, dtype='int32'), np.array(valid_lens),
               np.array(positions, dtype='int32'))
    for a, b in zip(ours, theirs):  # encodings, MLM scores, NSP scores
        onp.testing.assert_allclose(b.numpy(), a.asnumpy(), atol=1e-5)
    if which == 'tied':
        assert torch.equal(book.mlm.mlp[3].weight,
                           book.encoder.token_embedding.weight)


def test_a_fine_tuned_classifier_predicts_the_same(model_dir, tmp_path):
    from gluon_bert import interop
    folder, net, vocab = model_dir
    clf = BERTClassifier(net, 3)
    clf.output.initialize(init.Normal(0.5))
    save = str(tmp_path / 'clf')
    save_classifier(save, clf, vocab, dict(net.config),
                    dict(num_classes=3, task='snli-small'))
    out = tmp_path / 'clf.pt'
    assert export.main(['--model-dir', save, '--output', str(out)]) == 0
    meta = json.loads((tmp_path / 'clf.json').read_text())
    m = meta['model']
    twin = interop.torch_classifier(interop.torch_bert(
        m['vocab_size'], m['num_hiddens'], m['ffn_num_hiddens'],
        m['num_heads'], m['num_blks'], 0.0, m['max_len']),
        meta['classifier']['num_classes'])
    twin.load_state_dict(torch.load(out), strict=True)
    tokens, segments, valid_lens = _batch(vocab, SENTENCES)
    with torch.no_grad():
        theirs = twin.eval()(torch.from_numpy(tokens),
                             torch.from_numpy(segments),
                             torch.from_numpy(valid_lens)).numpy()
    ours = clf(np.array(tokens, dtype='int32'),
               np.array(segments, dtype='int32'),
               np.array(valid_lens)).asnumpy()
    # float32 rounding of scores up to about 5 in size
    onp.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    assert (theirs.argmax(1) == ours.argmax(1)).all()


def test_onnx_runtime_gives_the_same_vectors(model_dir, tmp_path, capsys):
    pytest.importorskip('onnxruntime', reason="the [onnx] extra: pip "
                        "install 'gluon_bert[onnx]'")
    folder, _, _ = model_dir
    graph = tmp_path / 'bert.onnx'
    assert export.main(['--model-dir', folder, '--format', 'onnx',
                        '--output', str(graph)]) == 0
    rng = onp.random.RandomState(0)
    words = ' '.join(SENTENCES).split()
    lines = [' '.join(rng.choice(words, rng.randint(1, 30)))
             for _ in range(64)]
    source = tmp_path / 'in.txt'
    for batch in (1, 64):
        source.write_text('\n'.join(lines[:batch]) + '\n', encoding='utf-8')
        got = {}
        for backend in ('mxnet', 'onnxruntime'):
            out = tmp_path / f'{backend}{batch}.npy'
            extra = ['--onnx', str(graph)] if backend == 'onnxruntime' else []
            assert encode.main(['--model-dir', folder, '--input', str(source),
                                '--output', str(out), '--pool', 'none',
                                '--backend', backend, '--batch-size', '64']
                               + extra) == 0
            got[backend] = onp.load(out)
        assert got['mxnet'].shape[0] == batch
        onp.testing.assert_allclose(got['onnxruntime'], got['mxnet'],
                                    atol=1e-4)
    # one sentence or a pair on the command line, as the guide prints it
    printed = {}
    for backend in ('mxnet', 'onnxruntime'):
        extra = ['--onnx', str(graph)] if backend == 'onnxruntime' else []
        assert encode.main(['--model-dir', folder, 'the crane is flying',
                            'he just left', '--backend', backend,
                            '--num-elements', '2'] + extra) == 0
        printed[backend] = _floats(capsys.readouterr().out)
    assert len(printed['mxnet']) == 2 * 10  # 10 tokens, 2 elements each
    onp.testing.assert_allclose(printed['onnxruntime'], printed['mxnet'],
                                atol=2e-4)


def _floats(text):
    """The numbers of the printed vectors (inside brackets)."""
    import re
    return [float(x) for line in text.splitlines() if line.startswith('First')
            for part in re.findall(r'\[([^\]]*)\]', line)
            for x in part.split()]


def test_bad_export_input_is_one_line_and_writes_nothing(model_dir, tmp_path,
                                                         capsys, monkeypatch):
    from gluon_bert import interop
    folder, _, _ = model_dir
    out = tmp_path / 'x.pt'

    def fails(argv, message, code=1):
        if code == 2:
            with pytest.raises(SystemExit) as e:
                export.main(argv)
            assert e.value.code == 2
        else:
            assert export.main(argv) == code
        err = capsys.readouterr().err.strip()
        assert message in err.splitlines()[-1] and 'Traceback' not in err
        assert code == 2 or err.count('\n') == 0, err  # else usage + error
        assert [n for n in os.listdir(tmp_path) if n.startswith('x')] == []
    damaged = tmp_path / 'damaged'
    damaged.mkdir()
    (damaged / 'config.json').write_text('{not json')
    fails(['--model-dir', str(damaged), '--output', str(out)],
          'config.json')
    fails(['--model-dir', str(tmp_path), '--output', str(out)],
          'not a gluon_bert model directory')
    fails(['--model-dir', folder, '--output', str(tmp_path / 'no' / 'x.pt')],
          'does not exist', code=2)
    out.write_bytes(b'keep')
    with pytest.raises(SystemExit):
        export.main(['--model-dir', folder, '--output', str(out)])
    assert 'exists: pass --force' in capsys.readouterr().err
    assert out.read_bytes() == b'keep'
    out.unlink()

    def missing(module):
        raise interop.GluonBertError(
            f"{module} is not installed: pip install 'gluon_bert[onnx]'")
    monkeypatch.setattr(interop, 'require', missing)
    fails(['--model-dir', folder, '--format', 'onnx', '--output',
           str(tmp_path / 'x.onnx')], "pip install 'gluon_bert[onnx]'")


def test_both_formats_of_one_model_share_their_settings_file(model_dir,
                                                             tmp_path,
                                                             capsys):
    """bert.pt then bert.onnx in one folder: both written, the one bert.json
    kept (it describes both); another model under the same name is refused
    unless --force, and nothing is written."""
    pytest.importorskip('onnx', reason="the [onnx] extra")
    folder, _, vocab = model_dir
    pt, graph = tmp_path / 'bert.pt', tmp_path / 'bert.onnx'
    assert export.main(['--model-dir', folder, '--output', str(pt)]) == 0
    side = (tmp_path / 'bert.json').read_bytes()
    assert export.main(['--model-dir', folder, '--format', 'onnx',
                        '--output', str(graph)]) == 0
    assert graph.exists() and (tmp_path / 'bert.json').read_bytes() == side
    other = tmp_path / 'other'
    net = BERTModel(len(vocab), 16, 32, 2, 1, 0.0, max_len=64)
    net.initialize()
    save_model_dir(str(other), net, vocab)
    capsys.readouterr()
    graph.unlink()
    assert export.main(['--model-dir', str(other), '--format', 'onnx',
                        '--output', str(graph)]) == 1
    err = capsys.readouterr().err.strip()
    assert 'describes another model' in err and err.count('\n') == 0
    assert not graph.exists() and (tmp_path / 'bert.json').read_bytes() == side
    assert export.main(['--model-dir', str(other), '--format', 'onnx',
                        '--output', str(graph), '--force']) == 0
    assert json.loads((tmp_path / 'bert.json').read_text())['model'][
        'num_hiddens'] == 16


@pytest.mark.parametrize('output', ['/proc/forbidden.pt',
                                    '/proc/forbidden.onnx'])
def test_an_unwritable_output_is_one_line(output, capsys):
    with pytest.raises(SystemExit) as e:
        export.main(['--model-dir', 'runs/any', '--output', output])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'the folder /proc cannot be written' in err[0]

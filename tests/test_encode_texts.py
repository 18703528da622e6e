"""Embeddings for files of text, and the book's published models."""
import hashlib
import json
import os
import zipfile

import mxnet as mx
import numpy as onp
import pytest
from d2l import mxnet as d2l
from mxnet import init, np, npx

from gluon_bert import checkpoint, encode
from gluon_bert.checkpoint import load_pretrained, save_model_dir
from gluon_bert.encoder import (encode_texts, get_bert_encoding, split_text,
                                truncate_pair)
from gluon_bert.model import BERTModel
from gluon_bert.utils import GluonBertError
from gluon_bert.vocab import Vocab

npx.set_np()

WORDS = 'a crane is flying driver came he just left the bird sky'.split()
TEXTS = ['a crane is flying', 'the crane driver came\the just left', 'sky',
         'a bird qqq is flying in the sky', 'he came']


@pytest.fixture
def model():
    vocab = Vocab(WORDS, reserved_tokens=['<pad>', '<mask>', '<cls>',
                                          '<sep>'])
    mx.random.seed(0)
    net = BERTModel(len(vocab), 16, 32, 2, 2, 0.2, max_len=12)
    net.initialize(init.Xavier())
    return net, vocab


def _one_by_one(net, vocab, texts):
    """The guide's way: get_bert_encoding once per text, (tokens, hidden)."""
    return [get_bert_encoding(net, vocab, *split_text(t)).asnumpy()[0]
            for t in texts]


@pytest.mark.parametrize('pool', ['cls', 'mean', 'none'])
def test_batches_equal_the_guides_function_one_text_at_a_time(model, pool):
    net, vocab = model
    expected = _one_by_one(net, vocab, TEXTS)
    got = encode_texts(net, vocab, TEXTS, batch_size=2, pool=pool)
    longest = max(len(e) for e in expected)
    assert got.dtype == onp.float32
    assert got.shape == ((5, 16) if pool != 'none' else (5, longest, 16))
    for row, e in zip(got, expected):
        if pool == 'cls':
            onp.testing.assert_allclose(row, e[0], atol=1e-5)
        elif pool == 'mean':
            onp.testing.assert_allclose(row, e.mean(axis=0), atol=1e-5)
        else:
            onp.testing.assert_allclose(row[:len(e)], e, atol=1e-5)
            assert not row[len(e):].any()


def test_long_inputs_are_cut_as_the_book_cuts_pairs_with_one_warning(model):
    net, vocab = model
    assert truncate_pair(list('abcdefghijk'), None, 8)[0] == list('abcdef')
    assert truncate_pair(list('ab'), list('xy'), 8)[2] is False
    warnings = []
    long = ' '.join(WORDS * 2)
    got = encode_texts(net, vocab, [long, 'a crane', long + '\tsky'],
                       warn=warnings.append)
    assert warnings == ["2 of 3 inputs were longer than the model's max_len "
                        "12 and were cut"]
    cut = get_bert_encoding(net, vocab, WORDS[:10]).asnumpy()[0, 0]
    onp.testing.assert_allclose(got[0], cut, atol=1e-5)


def _books_truncate_pair_of_tokens(p_tokens, h_tokens, max_len):
    # SNLIBERTDataset._truncate_pair_of_tokens of d2l's NLI chapter (not in
    # the d2l 1.0.3 package): reserve slots for <CLS>, <SEP> and <SEP>
    while len(p_tokens) + len(h_tokens) > max_len - 3:
        if len(p_tokens) > len(h_tokens):
            p_tokens.pop()
        else:
            h_tokens.pop()


def test_pairs_are_cut_by_the_books_rule():
    for a, b in [('abcdefg', 'xy'), ('abc', 'xyz'), ('ab', 'wxyz'),
                 ('abcd', 'wxyz'), ('ab', 'xy')]:
        p, h = list(a), list(b)
        _books_truncate_pair_of_tokens(p, h, 8)
        assert truncate_pair(list(a), list(b), 8) == (
            p, h, (p, h) != (list(a), list(b)))


def test_bad_texts(model):
    net, vocab = model
    with pytest.raises(GluonBertError, match='3 tab-separated fields'):
        encode_texts(net, vocab, ['a\tb\tc'])
    with pytest.raises(GluonBertError, match='empty sentence'):
        encode_texts(net, vocab, ['a', '  '])
    with pytest.raises(GluonBertError, match='no text'):
        encode_texts(net, vocab, [])
    with pytest.raises(GluonBertError, match='unknown pool'):
        encode_texts(net, vocab, ['a'], pool='max')


def test_encode_command_on_a_file(model, tmp_path, capsys):
    net, vocab = model
    save_model_dir(str(tmp_path / 'm'), net, vocab)
    source = tmp_path / 'in.txt'
    source.write_text('\n'.join(TEXTS) + '\n', encoding='utf-8')
    out = tmp_path / 'out' / 'vectors.npy'
    assert encode.main(['--model-dir', str(tmp_path / 'm'), '--input',
                        str(source), '--output', str(out), '--pool', 'mean',
                        '--batch-size', '2']) == 0
    assert '5 lines ->' in capsys.readouterr().out
    loaded, vocab2, _ = load_pretrained(str(tmp_path / 'm'))
    expected = [e.mean(axis=0) for e in _one_by_one(loaded, vocab2, TEXTS)]
    onp.testing.assert_allclose(onp.load(out), onp.stack(expected),
                                atol=1e-5)


@pytest.mark.parametrize('content, message', [
    (None, 'does not exist'),
    (b'', 'is empty'),
    (b'\n  \n', 'is empty'),
    (b'a crane\n\xff\xfe flying\n', 'not UTF-8 text (line 2)'),
    (b'a crane\nis\tflying\tnow\n', 'line 2: 3 tab-separated fields'),
    (b'a crane\n\tflying\n', 'line 2: an empty sentence'),
])
def test_bad_input_files_get_one_line_and_write_nothing(model, tmp_path,
                                                        capsys, content,
                                                        message):
    net, vocab = model
    save_model_dir(str(tmp_path / 'm'), net, vocab)
    source = tmp_path / 'in.txt'
    if content is not None:
        source.write_bytes(content)
    out = tmp_path / 'vectors.npy'
    assert encode.main(['--model-dir', str(tmp_path / 'm'), '--input',
                        str(source), '--output', str(out)]) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert 'Traceback' not in err
    assert [f for f in os.listdir(tmp_path) if 'vectors' in f] == []


def test_blank_lines_are_skipped_and_counted_or_refused(model, tmp_path,
                                                       capsys):
    """A blank line (as text tools leave them) is left out, and said; the
    rows are those of the other lines.  --blank-lines error refuses it."""
    net, vocab = model
    save_model_dir(str(tmp_path / 'm'), net, vocab)
    source = tmp_path / 'in.txt'
    source.write_text('\n'.join([TEXTS[0], '', TEXTS[1], '   ', TEXTS[2]])
                      + '\n\n', encoding='utf-8')
    out = tmp_path / 'vectors.npy'
    argv = ['--model-dir', str(tmp_path / 'm'), '--input', str(source),
            '--output', str(out)]
    assert encode.main(argv) == 0
    said = capsys.readouterr().out
    assert '3 lines ->' in said and '3 blank lines skipped' in said
    loaded, vocab2, _ = load_pretrained(str(tmp_path / 'm'))
    expected = [e[0] for e in _one_by_one(loaded, vocab2, TEXTS[:3])]
    onp.testing.assert_allclose(onp.load(out), onp.stack(expected),
                                atol=1e-5)
    out.unlink()
    assert encode.main(argv + ['--blank-lines', 'error']) == 1
    err = capsys.readouterr().err.strip()
    assert 'line 2: an empty sentence' in err and '--blank-lines skip' in err
    assert not out.exists()


def test_input_flags_are_checked():
    for argv in (['--input', 'x.txt'], ['--input', 'x', '--output', 'y',
                                        'a sentence'],
                 ['--output', 'y.npy', 'a sentence'], []):
        with pytest.raises(SystemExit) as e:
            encode.parse_args(argv)
        assert e.value.code == 2


# --------------------------------------------------------------------------
# The book's published models, from a zip the test builds
# --------------------------------------------------------------------------
@pytest.fixture
def d2l_zip(tmp_path, monkeypatch):
    """A d2l-style archive of a freshly initialized d2l.BERTModel."""
    tokens = sorted(set(['<unk>', '<pad>', '<mask>', '<cls>', '<sep>']
                        + WORDS))
    config = dict(num_hiddens=16, ffn_num_hiddens=32, num_heads=2,
                  num_blks=2, dropout=0.1, max_len=20)
    mx.random.seed(1)
    ref = d2l.BERTModel(len(tokens), **config)
    ref.initialize(init.Xavier())
    ref(np.zeros((1, 4), dtype='int32'), np.zeros((1, 4), dtype='int32'),
        np.array([4.0]), np.zeros((1, 2), dtype='int32'))
    folder = tmp_path / 'build'
    folder.mkdir()
    ref.save_parameters(str(folder / 'pretrained.params'))
    (folder / 'vocab.json').write_text(json.dumps(tokens))
    archive = tmp_path / 'bert.test.zip'
    with zipfile.ZipFile(archive, 'w') as zf:
        for name in ('vocab.json', 'pretrained.params'):
            zf.write(folder / name, f'bert.test/{name}')
    sha1 = hashlib.sha1(archive.read_bytes()).hexdigest()
    monkeypatch.setitem(checkpoint.D2L_MODELS, 'bert.test', dict(
        url=archive.as_uri(), sha1=sha1, model=config))
    vocab = d2l.Vocab()
    vocab.idx_to_token = tokens
    vocab.token_to_idx = {t: i for i, t in enumerate(tokens)}
    return ref, vocab, archive


def test_a_d2l_archive_loads_and_encodes_as_d2l_does(d2l_zip, capsys):
    ref, d2l_vocab, _ = d2l_zip
    net, vocab, config = load_pretrained('d2l:bert.test')
    assert config['train']['source'] == 'd2l:bert.test'
    assert vocab.idx_to_token == d2l_vocab.idx_to_token
    for a, b in [(['a', 'crane', 'is', 'flying'], None),
                 (['a', 'crane', 'driver', 'came'], ['he', 'qqq', 'left'])]:
        # d2l's own encoding function of the NLI chapter's model
        tokens, segments = d2l.get_tokens_and_segments(a, b)
        token_ids = np.expand_dims(np.array(d2l_vocab[tokens]), axis=0)
        expected, _, _ = ref(token_ids, np.expand_dims(np.array(segments),
                                                       axis=0),
                             np.expand_dims(np.array(len(tokens)), axis=0))
        got = get_bert_encoding(net, vocab, a, b)
        onp.testing.assert_allclose(got.asnumpy(), expected.asnumpy(),
                                    atol=1e-5)
    # cached: the second load reads the cache, even with the URL gone
    checkpoint.D2L_MODELS['bert.test']['url'] = 'file:///nowhere.zip'
    load_pretrained('d2l:bert.test')
    assert encode.main(['--model-dir', 'd2l:bert.test', 'a crane']) == 0
    assert 'Shape of encoded text: (1, 4, 16)' in capsys.readouterr().out


def test_a_d2l_archive_with_the_wrong_sha1_is_refused(d2l_zip, tmp_path,
                                                      capsys):
    checkpoint.D2L_MODELS['bert.test']['sha1'] = '0' * 40
    assert encode.main(['--model-dir', 'd2l:bert.test', 'a crane']) == 1
    err = capsys.readouterr().err
    assert 'not the expected 0000' in err and 'nothing was saved' in err
    assert not (tmp_path / 'cache' / 'd2l').exists()
    with pytest.raises(GluonBertError, match='unknown d2l model'):
        load_pretrained('d2l:bert.huge')


def test_the_real_d2l_entries_name_the_chapters_archives():
    small = checkpoint.D2L_MODELS['bert.small']
    assert small['url'].endswith('/bert.small.zip')
    assert small['model'] == dict(num_hiddens=256, ffn_num_hiddens=512,
                                  num_heads=4, num_blks=2, dropout=0.1,
                                  max_len=512)
    assert checkpoint.D2L_MODELS['bert.base']['model']['num_blks'] == 12


def test_a_pretrain_model_directory_encodes_as_d2l_does(model, tmp_path):
    # d2l's BERTModel names its parameters as ours does: it loads our file
    net, vocab = model
    save_model_dir(str(tmp_path / 'm'), net, vocab)
    loaded, vocab2, config = load_pretrained(str(tmp_path / 'm'))
    cfg = config['model']
    ref = d2l.BERTModel(cfg['vocab_size'], cfg['num_hiddens'],
                        cfg['ffn_num_hiddens'], cfg['num_heads'],
                        cfg['num_blks'], cfg['dropout'], cfg['max_len'])
    ref.load_parameters(str(tmp_path / 'm' / 'model.params'))
    got = encode_texts(loaded, vocab2, TEXTS, pool='none')
    for row, text in zip(got, TEXTS):
        a, b = split_text(text)
        tokens, segments = d2l.get_tokens_and_segments(a, b)
        expected, _, _ = ref(
            np.expand_dims(np.array(vocab2[tokens]), axis=0),
            np.expand_dims(np.array(segments), axis=0),
            np.expand_dims(np.array(len(tokens)), axis=0))
        onp.testing.assert_allclose(row[:len(tokens)], expected.asnumpy()[0],
                                    atol=1e-5)


def test_progress_reaches_the_end_and_shows_for_long_inputs(model, capsys):
    import sys
    net, vocab = model
    calls = []
    encode_texts(net, vocab, TEXTS * 3, batch_size=4,
                 progress=lambda done, total: calls.append((done, total)))
    assert calls == [(4, 15), (8, 15), (12, 15), (15, 15)]
    bar = encode._Progress(sys.stderr, every=0)
    bar(500, 999)
    assert capsys.readouterr().err == ''  # short inputs: no bar
    bar(500, 1000)
    bar(1000, 1000)
    err = capsys.readouterr().err
    assert '500/1000 lines' in err and '1000/1000 lines' in err
    assert err.endswith('lines/sec\n')  # the bar ends its line when done


def test_a_full_disk_is_one_line_and_leaves_no_file(model, tmp_path, capsys,
                                                     monkeypatch):
    """No room before encoding: refused at once; ENOSPC while writing: one
    line naming the free and needed space, no half-written file."""
    import collections
    import errno
    import shutil
    net, vocab = model
    save_model_dir(str(tmp_path / 'm'), net, vocab)
    source = tmp_path / 'in.txt'
    source.write_text('\n'.join(TEXTS) + '\n', encoding='utf-8')
    out = tmp_path / 'out' / 'vectors.npy'
    argv = ['--model-dir', str(tmp_path / 'm'), '--input', str(source),
            '--output', str(out)]
    usage = collections.namedtuple('usage', 'total used free')
    with monkeypatch.context() as m:
        m.setattr(shutil, 'disk_usage', lambda p: usage(10, 10, 100))
        assert encode.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'the vectors take about' in err

    def full_disk(f, array):
        f.write(b'\x93NUMPY')  # what got out before the disk filled
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(onp, 'save', full_disk)
    assert encode.main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and 'Traceback' not in err
    assert 'could not write vectors.npy' in err
    assert 'No space left on device' in err and 'needed' in err
    assert os.listdir(tmp_path / 'out') == []


def test_token_finds_a_word_a_wordpiece_vocabulary_cuts(tmp_path, capsys):
    """--token crane on a WordPiece model that spells it cra ##ne shows
    both pieces (the README's tour asks for it on such a model)."""
    from gluon_bert.model import BERTModel
    from gluon_bert.vocab import Vocab
    vocab = Vocab(['a', 'is', 'flying', 'cra', '##ne'],
                  reserved_tokens=['<pad>', '<mask>', '<cls>', '<sep>'])
    vocab.kind = 'wordpiece'
    net = BERTModel(len(vocab), 16, 32, 2, 1, 0.0, max_len=16)
    net.initialize()
    save_model_dir(str(tmp_path / 'm'), net, vocab)
    assert encode.main(['--model-dir', str(tmp_path / 'm'),
                        'a crane is flying', '--token', 'crane']) == 0
    out = capsys.readouterr().out
    assert '"cra" (position 2)' in out and '"##ne" (position 3)' in out
    assert '"flying"' not in out
    assert encode.main(['--model-dir', str(tmp_path / 'm'),
                        'a crane is flying', '--token', 'driver']) == 1

"""Contextual representations: the guide's function, batches, the command."""
import mxnet as mx
import numpy as onp
import pytest
from mxnet import init

from gluon_bert import encode
from gluon_bert.checkpoint import save_model_dir
from gluon_bert.encoder import (get_bert_encoding, get_bert_encodings,
                                get_tokens_and_segments)
from gluon_bert.model import BERTModel
from gluon_bert.utils import GluonBertError
from gluon_bert.vocab import Vocab

WORDS = 'a crane is flying driver came he just left'.split()


@pytest.fixture(params=[False, True], ids=['imperative', 'hybridized'])
def model(request):
    vocab = Vocab(WORDS, reserved_tokens=['<pad>', '<mask>', '<cls>',
                                          '<sep>'])
    mx.random.seed(0)
    net = BERTModel(len(vocab), 16, 32, 2, 2, 0.2, max_len=12)
    net.initialize(init.Xavier())
    if request.param:
        net.hybridize(static_alloc=True)
    return net, vocab


def test_tokens_and_segments_as_the_book():
    from d2l import mxnet as d2l
    for a, b in ((['a', 'b'], None), (['a'], ['c', 'd'])):
        assert get_tokens_and_segments(a, b) == d2l.get_tokens_and_segments(
            a, b)


def test_guide_shapes_and_context(model):
    net, vocab = model
    one = get_bert_encoding(net, vocab, ['a', 'crane', 'is', 'flying'])
    assert one.shape == (1, 6, 16)
    assert one[:, 0, :].shape == (1, 16)
    pair = get_bert_encoding(net, vocab, ['a', 'crane', 'driver', 'came'],
                             ['he', 'just', 'left'])
    assert pair.shape == (1, 10, 16)
    # dropout is off outside training: the same call, the same vectors
    onp.testing.assert_array_equal(
        one.asnumpy(), get_bert_encoding(net, vocab, ['a', 'crane', 'is',
                                                      'flying']).asnumpy())
    assert not onp.allclose(one[0, 2].asnumpy(), pair[0, 2].asnumpy())


def test_batched_equals_one_by_one(model):
    net, vocab = model
    inputs = [(['a', 'crane', 'is', 'flying'], None),
              (['a', 'crane', 'driver', 'came'], ['he', 'just', 'left']),
              ['he', 'left'], (['zzz'], ['a'])]
    batched = get_bert_encodings(net, vocab, inputs)
    for item, got in zip(inputs, batched):
        a, b = item if isinstance(item, tuple) else (item, None)
        expected = get_bert_encoding(net, vocab, a, b)
        assert got.shape == expected.shape
        onp.testing.assert_allclose(got.asnumpy(), expected.asnumpy(),
                                    atol=1e-5, rtol=1e-5)


def test_unknown_words_become_unk(model):
    net, vocab = model
    x = get_bert_encoding(net, vocab, ['zzz', 'crane'])
    y = get_bert_encoding(net, vocab, ['<unk>', 'crane'])
    onp.testing.assert_array_equal(x.asnumpy(), y.asnumpy())


def test_bad_inputs(model):
    net, vocab = model
    with pytest.raises(GluonBertError, match='tokens_a is empty'):
        get_bert_encoding(net, vocab, [])
    with pytest.raises(GluonBertError, match='tokens_b is empty'):
        get_bert_encoding(net, vocab, ['a'], [])
    with pytest.raises(GluonBertError, match="more than the model's max_len 12"):
        get_bert_encoding(net, vocab, ['a'] * 11)
    with pytest.raises(GluonBertError, match='not a string'):
        get_bert_encoding(net, vocab, 'a crane')
    with pytest.raises(GluonBertError, match='no input'):
        get_bert_encodings(net, vocab, [])


def test_encode_command(model, tmp_path, capsys):
    net, vocab = model
    save_model_dir(str(tmp_path / 'm'), net, vocab)
    assert encode.main(['--model-dir', str(tmp_path / 'm'),
                        'A crane is flying', '--token', 'crane']) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == 'Tokens: <cls> a crane is flying <sep>'
    assert out[1] == 'Shape of encoded text: (1, 6, 16)'
    assert out[2] == 'Shape of [CLS] token embedding: (1, 16)'
    assert out[3].startswith('First 3 elements of "crane" (position 2) '
                             'embedding: [')
    assert len(out) == 4
    assert encode.main(['--model-dir', str(tmp_path / 'm'),
                        'a crane driver came', 'he just qqq']) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == ('Tokens: <cls> a crane driver came <sep> he just <unk> '
                      '<sep>')
    assert len(out) == 3 + 10
    assert encode.main(['--model-dir', str(tmp_path / 'm'), ' ']) == 1
    assert 'tokens_a is empty' in capsys.readouterr().err
    assert encode.main(['--model-dir', str(tmp_path / 'm'),
                        ' '.join(['a'] * 11)]) == 1
    assert "max_len 12" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        encode.main(['--model-dir', 'x', 'a', 'b', 'c'])
    assert e.value.code == 2


def test_cosine_similarity():
    from gluon_bert.encoder import cosine_similarity
    assert cosine_similarity([1, 0], [2, 0]) == pytest.approx(1.0)
    assert cosine_similarity([1, 0], [0, 3]) == pytest.approx(0.0)
    assert cosine_similarity(onp.array([1.0, 1.0]), [-1, -1]) == \
        pytest.approx(-1.0)
    assert cosine_similarity([3, 4], [4, 3]) == pytest.approx(24 / 25)
    with pytest.raises(GluonBertError, match='different sizes'):
        cosine_similarity([1, 2], [1, 2, 3])
    with pytest.raises(GluonBertError, match='zero vector'):
        cosine_similarity([0, 0], [1, 2])

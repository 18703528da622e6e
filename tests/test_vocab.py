import json

import pytest
from d2l import mxnet as d2l

from gluon_bert.vocab import Vocab, tokenize

LINES = ['the cat sat on the mat', 'the dog ate the cat food',
         'a b c d a b a']


def test_tokenize_matches_d2l():
    for kind in ('word', 'char'):
        assert tokenize(LINES, kind) == d2l.tokenize(LINES, kind)
    with pytest.raises(ValueError, match="unknown token type 'bpe'"):
        tokenize(LINES, 'bpe')


@pytest.mark.parametrize('min_freq', [0, 2, 3])
def test_same_index_order_as_d2l(min_freq):
    tokens = tokenize(LINES)
    reserved = ['<pad>', '<mask>', '<cls>', '<sep>']
    ours = Vocab(tokens, min_freq=min_freq, reserved_tokens=reserved)
    ref = d2l.Vocab(tokens, min_freq=min_freq, reserved_tokens=reserved)
    assert ours.idx_to_token == ref.idx_to_token
    assert ours.token_to_idx == ref.token_to_idx
    assert ours.token_freqs == ref.token_freqs
    assert len(ours) == len(ref)
    assert ours.unk == ref.unk


def test_lookup_and_back():
    vocab = Vocab(tokenize(LINES), reserved_tokens=['<pad>'])
    assert vocab['cat'] == vocab.token_to_idx['cat']
    assert vocab['never-seen'] == vocab.unk
    assert vocab[['the', 'zzz']] == [vocab['the'], vocab.unk]
    assert vocab[('the', 'cat')] == [vocab['the'], vocab['cat']]
    assert vocab.to_tokens(vocab['cat']) == 'cat'
    assert vocab.to_tokens([vocab['cat']]) == ['cat']
    assert vocab.to_tokens(vocab[['a', 'b']]) == ['a', 'b']


def test_save_load_roundtrip(tmp_path):
    vocab = Vocab(tokenize(LINES), min_freq=2, reserved_tokens=['<pad>'])
    path = tmp_path / 'vocab.json'
    vocab.save(path)
    loaded = Vocab.load(path)
    assert loaded == vocab
    assert loaded.token_to_idx == vocab.token_to_idx
    assert loaded.token_freqs == vocab.token_freqs
    # plain JSON, no pickle
    assert json.loads(path.read_text())['idx_to_token'] == vocab.idx_to_token
    assert [p.name for p in tmp_path.iterdir()] == ['vocab.json']


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.json'):
        Vocab.load(tmp_path / 'missing.json')
    bad = tmp_path / 'bad.json'
    bad.write_text('{not json')
    with pytest.raises(ValueError, match='bad.json: not valid JSON'):
        Vocab.load(bad)
    other = tmp_path / 'other.json'
    other.write_text('{"idx_to_token": ["a"]}')
    with pytest.raises(ValueError, match='not a gluon_bert vocabulary'):
        Vocab.load(other)

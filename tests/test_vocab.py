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


# -- WordPiece ---------------------------------------------------------------
def test_wordpiece_split_is_greedy_longest_match_first():
    from gluon_bert.vocab import wordpiece_split
    tokens = {'<unk>', 'play', 'p', '##l', '##ing', '##in', '##g', 'un',
              '##play', 'unplay'}
    assert wordpiece_split('playing', tokens) == ['play', '##ing']
    # the longest first piece wins even if a shorter one would go on
    assert wordpiece_split('unplaying', tokens) == ['unplay', '##ing']
    assert wordpiece_split('play', tokens) == ['play']
    # one character no piece spells makes the whole word <unk>
    assert wordpiece_split('playx', tokens) == ['<unk>']
    assert wordpiece_split('p' + 'l' * 100, tokens) == ['<unk>']


def _wordpiece(corpus_dir, size=80):
    from gluon_bert.dataset import RESERVED_TOKENS, wiki_sentences
    from gluon_bert.vocab import train_wordpiece
    sentences = wiki_sentences(corpus_dir)
    return train_wordpiece(sentences, size, RESERVED_TOKENS,
                           min_frequency=1), sentences


def test_wordpiece_round_trip_equals_tokenizers(corpus_dir, tmp_path):
    """Our plain-Python split, the saved vocab.json and the exported
    tokenizer.json read back by Hugging Face tokenizers agree, and the
    pieces spell the words again."""
    tokenizers = pytest.importorskip('tokenizers')
    vocab, sentences = _wordpiece(corpus_dir)
    assert vocab.kind == 'wordpiece' and len(vocab) <= 80
    assert vocab.idx_to_token[:5] == ['<unk>', '<pad>', '<mask>', '<cls>',
                                      '<sep>']
    words = ' '.join(sentences[:20]).split() + ['w391', 'zebra', '<unk>']
    pieces = vocab.split(words)
    assert any(p.startswith('##') for p in pieces), 'nothing was split'
    vocab.save(tmp_path / 'vocab.json')
    loaded = Vocab.load(tmp_path / 'vocab.json')
    assert loaded == vocab and loaded.kind == 'wordpiece'
    assert loaded.split(words) == pieces
    vocab.save_tokenizer(str(tmp_path / 'tokenizer.json'))
    hf = tokenizers.Tokenizer.from_file(str(tmp_path / 'tokenizer.json'))
    encoding = hf.encode(words, is_pretokenized=True)
    assert encoding.tokens == pieces
    assert encoding.ids == vocab[pieces]
    # Joining the ## pieces gives the words back (<unk> words excepted)
    joined = ' '.join(pieces).replace(' ##', '').split()
    assert [w for w, j in zip(words, joined) if j != '<unk>'] == [
        j for j in joined if j != '<unk>']


def test_the_same_text_gives_the_same_wordpiece_ids(corpus_dir):
    """tokenizers numbers its pieces in a run-dependent order; the
    vocabulary does not."""
    pytest.importorskip('tokenizers')
    first, _ = _wordpiece(corpus_dir, size=200)
    for _ in range(3):
        assert _wordpiece(corpus_dir, size=200)[0].idx_to_token == \
            first.idx_to_token


def test_unknown_words_counted_by_what_the_vocabulary_spells(corpus_dir):
    pytest.importorskip('tokenizers')
    vocab, _ = _wordpiece(corpus_dir)
    # 'w391' is spelt in pieces; 'zz' has a letter no piece holds
    assert vocab.split(['w391'])[-1].startswith('##')
    assert vocab.count_unknown(['w1', 'w391', 'zz', '<unk>']) == 1
    words = Vocab(['a', 'b'])
    assert words.count_unknown(['a', 'c', '<unk>']) == 1
    assert words.split(['a', 'c']) == ['a', 'c']
    assert words.continuation_ids() == []


def test_an_unknown_vocabulary_kind_is_refused(tmp_path):
    path = tmp_path / 'vocab.json'
    path.write_text(json.dumps({'format': 'gluon_bert.vocab/1', 'kind': 'bpe',
                                'idx_to_token': ['<unk>']}))
    with pytest.raises(ValueError, match="unknown vocabulary kind 'bpe'"):
        Vocab.load(path)

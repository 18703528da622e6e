"""pretrain --corpus: any text, prepared into shards, read as a stream."""
import gzip
import json
import os
import random

import numpy as onp
import pytest

from gluon_bert import corpus, pretrain, stream, text
from gluon_bert.dataset import Sampling, load_data_wiki
from gluon_bert.utils import GluonBertError

TINY = ['--num-hiddens', '16', '--ffn-num-hiddens', '32', '--batch-size',
        '16', '--max-len', '24', '--log-every', '0', '--seed', '3']


def _words(rng, n):
    return ' '.join(f'w{rng.randrange(30)}' for _ in range(n))


def write_wikitext(path, paragraphs=80, seed=0):
    rng = random.Random(seed)
    with open(path, 'w', encoding='utf-8') as f:
        f.write(' \n = Title = \n')
        for _ in range(paragraphs):
            f.write(' ' + ' . '.join(_words(rng, rng.randint(2, 8))
                                     for _ in range(rng.randint(2, 5)))
                    + ' . \n')
    return str(path)


def write_documents(path, documents=40, seed=0):
    rng = random.Random(seed)
    with open(path, 'w', encoding='utf-8') as f:
        for _ in range(documents):
            for _ in range(rng.randint(2, 5)):
                f.write(_words(rng, rng.randint(2, 8)).capitalize() + '.\n')
            f.write('\n')
    return str(path)


def _prepare(paths, tmp_path, **kwargs):
    return corpus.prepare_corpus(paths, cache_dir=str(tmp_path / 'cache'),
                                 processes=1, say=lambda *a, **k: None,
                                 **kwargs)


# -- the layouts ------------------------------------------------------------
def test_each_layout_is_read_as_stated():
    wikitext = [' = Heading = \n', ' A b . C d , e . F \n', ' one only \n']
    assert list(text.read_paragraphs(wikitext, 'wikitext')) == [
        (None, 3), [['a', 'b'], ['c', 'd', ',', 'e'], ['f']], (None, 2)]
    documents = ['The cat sat.\n', "It doesn't move.\n", '\n', 'Alone.\n']
    assert list(text.read_paragraphs(documents, 'documents')) == [
        [['the', 'cat', 'sat', '.'], ['it', 'doesn', "'t", 'move', '.']],
        (None, 2)]
    lines = ['First one here. Then a second! A third? yes.\n']
    assert list(text.read_paragraphs(lines, 'lines')) == [
        [['first', 'one', 'here', '.'], ['then', 'a', 'second', '!'],
         ['a', 'third', '?', 'yes', '.']]]


def test_the_layout_is_detected(tmp_path):
    assert text.detect_format(write_wikitext(tmp_path / 'a.txt')) == \
        'wikitext'
    assert text.detect_format(write_documents(tmp_path / 'b.txt')) == \
        'documents'
    (tmp_path / 'c.txt').write_text('One sentence. And another one.\n' * 9)
    assert text.detect_format(str(tmp_path / 'c.txt')) == 'lines'


def test_files_folders_globs_and_gzip(tmp_path):
    texts = tmp_path / 'texts'
    texts.mkdir()
    write_wikitext(texts / 'a.txt', seed=1)
    with open(write_wikitext(texts / 'b.txt', seed=2), 'rb') as f, \
            gzip.open(texts / 'b.txt.gz', 'wb') as g:
        g.write(f.read())
    plain = _prepare([str(texts / 'a.txt'), str(texts / 'b.txt')], tmp_path)
    zipped = _prepare([str(texts / 'a.txt'), str(texts / 'b.txt.gz')],
                      tmp_path)
    assert zipped.manifest['tokens'] == plain.manifest['tokens'] > 0
    assert zipped.vocab == plain.vocab
    assert text.resolve_files([str(texts / '*.txt')]) == [
        str(texts / 'a.txt'), str(texts / 'b.txt')]
    assert text.resolve_files([str(texts)]) == [
        str(texts / n) for n in ('a.txt', 'b.txt', 'b.txt.gz')]


def test_wikitext_folder_gives_the_books_vocabulary(corpus_dir, tmp_path):
    """--corpus at a WikiText folder: the vocabulary of today's path; its
    pairs are the consecutive sentences whose pair fits max_len (the book
    also drops a pair whose random second sentence is too long: the stream
    cuts that sentence instead)."""
    _, vocab = load_data_wiki(16, 24, data_dir=corpus_dir, use_cache=False)
    prepared = _prepare([corpus_dir], tmp_path)
    assert prepared.vocab == vocab
    assert text.valid_files([corpus_dir]) == [
        os.path.join(corpus_dir, 'wiki.valid.tokens')]
    paragraphs = [line.strip().lower().split(' . ') for line in open(
        os.path.join(corpus_dir, 'wiki.train.tokens'), encoding='utf-8')
        if len(line.split(' . ')) >= 2]
    fits = sum(len(p[i].split()) + len(p[i + 1].split()) + 3 <= 24
               for p in paragraphs for i in range(len(p) - 1))
    assert stream.CorpusStream(prepared, 16, 24).num_pairs == fits


# -- the examples -----------------------------------------------------------
def _stream(prepared, **kwargs):
    return stream.CorpusStream(prepared, kwargs.pop('batch_size', 16),
                               kwargs.pop('max_len', 24), **kwargs)


def test_examples_follow_the_books_rules(tmp_path):
    prepared = _prepare([write_wikitext(tmp_path / 'a.txt', 400)], tmp_path)
    s = _stream(prepared, batch_size=512, max_len=24)
    tokens, segments, valid_lens, positions, weights, labels, nsp = next(
        iter(s)).host
    v = prepared.vocab
    assert tokens.shape == (512, 24) and positions.shape == (512, 4)
    for k in range(512):
        n = int(valid_lens[k])
        row = list(tokens[k])
        assert row[0] == v['<cls>'] and row[n - 1] == v['<sep>']
        assert row[n:] == [v['<pad>']] * (24 - n)
        second = int(onp.argmax(segments[k]))
        assert row[second - 1] == v['<sep>'] and segments[k, n:].sum() == 0
        m = int(weights[k].sum())
        assert m == max(1, round(n * 0.15))
        assert list(positions[k, :m]) == sorted(set(positions[k, :m]))
    assert abs(nsp.mean() - 0.5) < 0.07
    slots = weights > 0
    masked = tokens[onp.arange(512)[:, None], positions][slots]
    assert abs((masked == v['<mask>']).mean() - 0.8) < 0.05
    assert abs((masked == labels[slots]).mean() - 0.1) < 0.04


def test_whole_word_masking_takes_every_piece(tmp_path):
    pytest.importorskip('tokenizers')
    path = write_wikitext(tmp_path / 'a.txt', 300)
    prepared = _prepare([path], tmp_path, kind='wordpiece', vocab_size=40)
    continuation = set(prepared.vocab.continuation_ids())
    assert continuation
    s = _stream(prepared, batch_size=256,
                sampling=Sampling(whole_word=True))
    tokens, _, valid_lens, positions, weights, labels, _ = next(iter(s)).host
    for k in range(256):
        chosen = set(positions[k, :int(weights[k].sum())])
        original = list(tokens[k])
        for p, label in zip(positions[k], labels[k]):
            original[p] = label
        for p in range(1, int(valid_lens[k]) - 1):
            # a chosen piece that continues a word: the piece before too
            if p in chosen and original[p] in continuation:
                assert p - 1 in chosen


def test_resume_across_a_shard_boundary_repeats_the_stream(tmp_path,
                                                           monkeypatch):
    monkeypatch.setattr(corpus, 'SHARD_TOKENS', 300)
    prepared = _prepare([write_wikitext(tmp_path / 'a.txt', 200)], tmp_path)
    assert len(prepared.manifest['shards']) > 3
    s = _stream(prepared)
    s.set_epoch(2)
    whole = [b.host for b in s.batches(s.batch_order())]
    assert len(whole) == len(s) > 10
    for start in (1, 5, len(whole) - 1):
        resumed = [b.host for b in s.batches(2, start=start)]
        assert len(resumed) == len(whole) - start
        for a, b in zip(resumed, whole[start:]):
            for x, y in zip(a, b):
                onp.testing.assert_array_equal(x, y)
    other = next(s.batches(3)).host[0]
    assert not onp.array_equal(other, whole[0][0])


def test_two_workers_see_each_pair_once_an_epoch(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus, 'SHARD_TOKENS', 300)
    prepared = _prepare([write_wikitext(tmp_path / 'a.txt', 200)], tmp_path)
    seen = {}
    for rank in (0, 1):
        s = _stream(prepared, shard=(rank, 2))
        drawn = []
        monkeypatch.setattr(s, '_draw', lambda i, firsts, rng, d=drawn, s=s:
                            d.extend((i, f) for f in firsts) or
                            stream.CorpusStream._draw(s, i, firsts, rng))
        assert sum(1 for _ in s.batches(0)) == len(s)
        seen[rank] = drawn
    assert not set(seen[0]) & set(seen[1])
    assert len(seen[0]) == len(seen[1]) == len(s) * 16
    one = _stream(prepared)
    # together, every pair of the single-worker epoch but its remainder
    assert len(seen[0]) + len(seen[1]) > one.num_pairs - 32
    assert len(set(seen[0]) | set(seen[1])) == 2 * len(s) * 16


def test_held_out_paragraphs_are_never_trained_on(tmp_path):
    prepared = _prepare([write_wikitext(tmp_path / 'a.txt', 400)], tmp_path)
    train = _stream(prepared, part='train')
    held = _stream(prepared, batch_size=1, part='held_out')
    _, sentences, paragraphs = prepared.shard_arrays(
        prepared.manifest['shards'][0])
    paragraph_of = onp.repeat(onp.arange(len(paragraphs) - 1),
                              onp.diff(paragraphs))
    held_paragraphs = set(onp.flatnonzero(
        onp.arange(len(paragraphs) - 1) % stream.HELD_OUT_EVERY
        == stream.HELD_OUT_EVERY - 1))
    assert set(paragraph_of[held._firsts(0)]) <= held_paragraphs
    assert not set(paragraph_of[train._firsts(0)]) & held_paragraphs
    assert held.num_pairs > 0
    assert sum(len(b.host[0]) for b in held.held_out_batches(7, 20)) == min(
        20, held.num_pairs)


# -- the cache --------------------------------------------------------------
def test_shards_are_reused_and_keyed_by_the_text(tmp_path):
    path = write_wikitext(tmp_path / 'a.txt')
    first = _prepare([path], tmp_path)
    again = _prepare([path], tmp_path)
    assert again.folder == first.folder
    with open(path, 'a', encoding='utf-8') as f:
        f.write(' new words here . and more of them . \n')
    changed = _prepare([path], tmp_path)
    assert changed.folder != first.folder
    assert changed.manifest['tokens'] > first.manifest['tokens']
    with pytest.raises(GluonBertError, match='differ from those the run'):
        _prepare([path], tmp_path, expect_key=first.key)


def test_a_failed_preparation_leaves_nothing(tmp_path, monkeypatch):
    path = write_wikitext(tmp_path / 'a.txt')

    def killed(task):
        raise KeyboardInterrupt
    monkeypatch.setattr(corpus, '_write_chunk', killed)
    with pytest.raises(KeyboardInterrupt):
        _prepare([path], tmp_path)
    assert os.listdir(tmp_path / 'cache' / 'corpora') == []
    # a preparation killed outright: its folder is not taken for done
    monkeypatch.undo()
    (tmp_path / 'cache' / 'corpora' / 'x.tmp-999999999').mkdir()
    prepared = _prepare([path], tmp_path)
    assert os.listdir(tmp_path / 'cache' / 'corpora') == [
        os.path.basename(prepared.folder)]


def test_word_vocabulary_too_large_is_refused_or_capped(tmp_path,
                                                        monkeypatch):
    monkeypatch.setattr(corpus, 'MAX_WORDS', 10)
    path = write_wikitext(tmp_path / 'a.txt')
    with pytest.raises(GluonBertError, match='use vocab wordpiece, or cap'):
        _prepare([path], tmp_path)
    assert len(_prepare([path], tmp_path, max_words=12).vocab) == 12 + 5


# -- bad input: one line, nothing written -------------------------------------
@pytest.mark.parametrize('content, message', [
    (b'', 'is empty'),
    (b'\x00\x01binary\x00' * 50, 'is binary'),
    (b' a b . c d . \n \xff\xfe bad . line . \n', 'line 2 is not UTF-8'),
    (b'just one sentence per line\n' * 20, 'no paragraph of two sentences'),
    (b'one sentence only\n' * 50 + b' a . b . \n', 'only 2 % of the corpus'),
])
def test_bad_corpus_is_one_line(tmp_path, capsys, content, message):
    bad = tmp_path / 'bad.txt'
    bad.write_bytes(content)
    code = pretrain.main(['--corpus', str(bad), '--corpus-format',
                          'wikitext', '--steps', '1', '--save-dir',
                          str(tmp_path / 'run')] + TINY)
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0 and len(err) == 1 and message in err[0], err
    assert 'bad.txt' in err[0] or 'corpus' in err[0]
    corpora = tmp_path / 'cache' / 'corpora'
    assert not corpora.exists() or os.listdir(corpora) == []


def test_missing_file_overlong_line_and_tiny_corpus(tmp_path, capsys,
                                                    monkeypatch):
    good = write_wikitext(tmp_path / 'a.txt', 3)
    run = ['--steps', '1', '--save-dir', str(tmp_path / 'run')] + TINY
    assert pretrain.main(['--corpus', good, str(tmp_path / 'nope.txt')]
                         + run) != 0
    assert 'nope.txt does not exist' in capsys.readouterr().err
    assert pretrain.main(['--corpus', good] + run) != 0
    err = capsys.readouterr().err
    assert 'fewer than one batch of 16' in err and '--batch-size' in err
    monkeypatch.setattr(text, 'MAX_LINE_BYTES', 100)
    long = tmp_path / 'long.txt'
    long.write_text(' a . b . \n' + 'x ' * 200 + '\n')
    assert pretrain.main(['--corpus', str(long)] + run) != 0
    assert 'has a line over' in capsys.readouterr().err


def test_flags_that_need_corpus(tmp_path, capsys):
    for flags in (['--valid-corpus', 'x'], ['--max-words', '9'],
                  ['--corpus', 'x', '--data-dir', 'y']):
        with pytest.raises(SystemExit) as e:
            pretrain.parse_flags(flags)
        assert e.value.code == 2
    assert '--corpus' in capsys.readouterr().err


# -- the command ------------------------------------------------------------
def test_pretrain_on_a_corpus_resumes_exactly(tmp_path, monkeypatch):
    """Stopped across a shard boundary and resumed: the same history as the
    uninterrupted run, with the corpus's held-out text evaluated."""
    monkeypatch.setattr(corpus, 'SHARD_TOKENS', 300)
    path = write_documents(tmp_path / 'docs.txt', 300)
    common = ['--corpus', path, '--eval-every', '4', '--dropout', '0'] + TINY
    whole, part = tmp_path / 'whole', tmp_path / 'part'
    assert pretrain.main(common + ['--steps', '8', '--save-dir',
                                   str(whole)]) == 0
    assert pretrain.main(common + ['--steps', '3', '--save-dir',
                                   str(part)]) == 0
    assert pretrain.main(['--save-dir', str(part), '--resume', '--steps',
                          '8']) == 0
    a, b = (json.loads((d / 'history.json').read_text())
            for d in (whole, part))
    assert a['step'] == b['step'] == list(range(1, 9))
    onp.testing.assert_allclose(a['mlm'], b['mlm'], rtol=1e-5)
    assert a['eval'][-1]['pairs'] == b['eval'][-1]['pairs'] > 0
    config = json.loads((part / 'config.json').read_text())
    assert config['train']['config']['corpus'] == [path]


def test_evaluate_scores_the_held_out_text_as_eval_every(tmp_path, capsys):
    from gluon_bert import evaluate
    path = write_wikitext(tmp_path / 'a.txt', 600)
    save = tmp_path / 'run'
    assert pretrain.main(['--corpus', path, '--eval-every', '2', '--steps',
                          '2', '--save-dir', str(save)] + TINY) == 0
    last = json.loads((save / 'history.json').read_text())['eval'][-1]
    assert evaluate.main(['--model-dir', str(save)]) == 0
    result = json.loads((save / 'eval-valid.json').read_text())
    assert result['pairs'] == last['pairs'] > 0
    assert abs(result['mlm_loss'] - last['mlm_loss']) < 1e-4
    # any text, in the model's vocabulary
    other = write_wikitext(tmp_path / 'b.txt', 30, seed=5)
    assert evaluate.main(['--model-dir', str(save), '--corpus', other,
                          '--output', str(tmp_path / 'b.json')]) == 0
    assert json.loads((tmp_path / 'b.json').read_text())['pairs'] > 0


# -- a task's own text ------------------------------------------------------
def _task_folder(folder, rows, header='index\tquestion\tsentence\tlabel'):
    folder.mkdir()
    for split in ('train', 'dev', 'test'):
        lines = [header] + [f'{i}\t{q}\t{s}\t{label}'.replace('SPLIT', split)
                            for i, (q, s, label) in enumerate(rows)]
        (folder / f'{split}.tsv').write_text('\n'.join(lines) + '\n')
    return str(folder)


def _words_of(prepared):
    words = []
    for shard in prepared.manifest['shards']:
        tokens, _, _ = prepared.shard_arrays(shard)
        words += prepared.vocab.to_tokens(tokens)
    return words


def test_a_tasks_text_is_its_training_sentences_without_labels(tmp_path):
    rows = [(f'Where is SPLIT{i} here?', f'The SPLIT{i} is there.',
             'entailment' if i % 2 else 'not_entailment') for i in range(30)]
    folder = _task_folder(tmp_path / 'qnli-small', rows)
    prepared = _prepare([f'qnli:{folder}'], tmp_path, min_freq=1)
    words = set(_words_of(prepared))
    assert {f'train{i}' for i in range(30)} <= words
    assert not any(w.startswith(('dev', 'test')) for w in words)
    assert not {'entailment', 'not_entailment', '<unk>'} & words
    # each pair a paragraph of two sentences, split as finetune splits it
    assert prepared.manifest['paragraphs'] == 30
    assert prepared.manifest['sentences'] == 60
    assert 'here' in words and '?' in words
    with pytest.raises(GluonBertError, match='no training split of qnli'):
        _prepare([f'qnli:{tmp_path}'], tmp_path)


def test_single_sentence_tasks_and_mixed_sources(tmp_path):
    folder = tmp_path / 'sst2'
    folder.mkdir()
    (folder / 'train.tsv').write_text('sentence\tlabel\n' + ''.join(
        f'a film number{i} .\t{i % 2}\n' for i in range(10)))
    prepared = _prepare([f'sst2:{folder}'], tmp_path, min_freq=1)
    assert prepared.manifest['paragraphs'] == 2  # 4 a paragraph, 2 left out
    both = _prepare([f'sst2:{folder}', write_wikitext(tmp_path / 'w.txt')],
                    tmp_path, min_freq=1)
    assert both.manifest['layouts'] == ['task', 'wikitext']
    assert both.manifest['paragraphs'] == 2 + 80


def test_a_corpus_changed_under_a_run_is_refused_on_resume(tmp_path, capsys):
    path = write_wikitext(tmp_path / 'a.txt', 200)
    save = tmp_path / 'run'
    assert pretrain.main(['--corpus', path, '--steps', '2', '--save-dir',
                          str(save)] + TINY) == 0
    capsys.readouterr()
    with open(path, 'a', encoding='utf-8') as f:
        f.write(' more . text . \n')
    assert pretrain.main(['--save-dir', str(save), '--resume', '--steps',
                          '3']) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'differ from those the run began with' in err[0]


def test_held_out_pairs_are_drawn_as_the_books_held_out_splits(tmp_path):
    """Whatever the run's masking, evaluation draws the book's (as
    load_heldout does), and held-out text is read in --corpus's layout."""
    from gluon_bert.config import PretrainConfig
    from gluon_bert.dataset import BOOK_SAMPLING
    from gluon_bert.sources import corpus_streams
    docs = write_documents(tmp_path / 'docs.txt', 40)
    valid = tmp_path / 'valid.txt'
    text_of_docs = open(docs, encoding='utf-8').read()
    valid.write_text(text_of_docs.replace('\n\n', '\n'))  # no blank line
    config = PretrainConfig(corpus=[docs], valid_corpus=[str(valid)],
                            corpus_format='documents', mask_prob=0.3,
                            no_nsp=True, batch_size=16, max_len=24,
                            cache_dir=str(tmp_path / 'cache'))
    train, held = corpus_streams(config, say=lambda *a, **k: None)
    assert train.sampling == Sampling(mask_prob=0.3, next_prob=1.0)
    assert held.sampling == BOOK_SAMPLING
    assert held.corpus.manifest['layouts'] == ['documents']


def test_wordpiece_is_learnt_from_the_texts_counts():
    """The counted words reach the WordPiece trainer as often as counted
    (a frequent word's count was once capped at 10,000)."""
    import collections
    counts = collections.Counter({'the': 25_001, 'crane': 3})
    fed = collections.Counter(w for text in corpus._repeated(counts)
                              for w in text.split())
    assert fed == counts

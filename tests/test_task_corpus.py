"""benchmarks/task_corpus.py: WikiText-2 plus a task's sentences, as a data
folder (task-adaptive pretraining, a study tool)."""
import os
import shutil
import sys

import pytest

from gluon_bert.dataset import read_wiki
from gluon_bert.utils import GluonBertError

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir,
                                'benchmarks'))
from task_corpus import task_paragraphs, write_task_corpus  # noqa: E402


def test_task_sentences_become_wikitext_paragraphs():
    lines = task_paragraphs(['a fine film .', 'dull', '.', 'so , so .',
                             'one more', 'left out'], per_paragraph=2)
    # The lone '.' is dropped, the last odd sentence left out
    assert lines == [' a fine film . dull . \n', ' so , so . one more . \n']
    with pytest.raises(GluonBertError, match='2 or more'):
        task_paragraphs(['a', 'b'], per_paragraph=1)


def test_task_corpus_is_wikitext_then_task_sentences(tmp_path, monkeypatch):
    wiki = tmp_path / 'wt2'
    wiki.mkdir()
    train = ' = Title = \n Alpha beta . Gamma delta . \n One . Two '  # no \n
    (wiki / 'wiki.train.tokens').write_text(train, encoding='utf-8')
    for split in ('valid', 'test'):
        (wiki / f'wiki.{split}.tokens').write_text(f' {split} . x . \n')
    out = tmp_path / 'corpus'
    assert write_task_corpus(out, wiki, ['good fun .', 'a bore', 'neat'],
                             per_paragraph=3) == (3, 1)
    text = (out / 'wiki.train.tokens').read_text(encoding='utf-8')
    assert text.startswith(train)  # WikiText-2's bytes, unchanged
    for split in ('valid', 'test'):
        assert (out / f'wiki.{split}.tokens').read_bytes() == (
            wiki / f'wiki.{split}.tokens').read_bytes()
    # What pretraining reads: WikiText-2's paragraphs, then the task's
    paragraphs = sorted(read_wiki(out))
    assert paragraphs == sorted(read_wiki(wiki) + [['good fun', 'a bore',
                                                    'neat .']])
    # The task's sentences alone, WikiText-2's held-out files kept
    assert write_task_corpus(tmp_path / 'alone', wiki, ['a', 'b', 'c', 'd'],
                             per_paragraph=2, with_wikitext=False) == (0, 2)
    assert read_wiki(tmp_path / 'alone') in ([['a', 'b .'], ['c', 'd .']],
                                             [['c', 'd .'], ['a', 'b .']])
    assert (tmp_path / 'alone' / 'wiki.valid.tokens').read_bytes() == (
        wiki / 'wiki.valid.tokens').read_bytes()
    # An existing folder is not overwritten; a failure leaves nothing
    with pytest.raises(GluonBertError, match='exists'):
        write_task_corpus(out, wiki, ['a', 'b'], per_paragraph=2)
    copyfile = shutil.copyfile

    def disk_full(src, dst):
        if src.endswith('test.tokens'):
            raise OSError(28, 'No space left on device')
        return copyfile(src, dst)
    monkeypatch.setattr(shutil, 'copyfile', disk_full)
    with pytest.raises(OSError, match='No space'):
        write_task_corpus(tmp_path / 'broken', wiki, ['a', 'b'], 2)
    monkeypatch.undo()
    (wiki / 'wiki.test.tokens').unlink()
    with pytest.raises(GluonBertError, match='wiki.test.tokens does not'):
        write_task_corpus(tmp_path / 'broken', wiki, ['a', 'b'], 2)
    assert sorted(os.listdir(tmp_path)) == ['alone', 'corpus', 'wt2']

"""Shared fixtures: tiny corpora built in the test, and the real WikiText-2.

The real data comes from GLUON_BERT_DATA (``.ci/run`` points it at
``../shared/data/wikitext-2``); tests that need it are skipped, with the reason,
when it is unset.  Every test writes its caches under its own tmp_path.
"""
import os
import random
import re

# Under pytest-xdist (README: ``-n auto``) each worker takes one core: one
# OpenMP thread each, set before MXNet loads, or the workers' OpenMP threads
# oversubscribe the cores
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ.setdefault('OMP_NUM_THREADS', '1')

import numpy as onp  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _stop_on_ctrl_c():
    """Ctrl-C during a test that runs a command in-process reaches the
    command's handler (which saves and returns 130), not pytest: end the
    session here, as Ctrl-C ends it anywhere else."""
    import signal

    from gluon_bert import signals
    before = len(signals.received)
    yield
    if signal.SIGINT in signals.received[before:]:
        pytest.exit('Interrupted (Ctrl-C)', returncode=130)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's cache."""
    monkeypatch.setenv('GLUON_BERT_CACHE', str(tmp_path / 'cache'))


def make_corpus(folder, num_paragraphs=60, seed=0, vocab_words=40,
                splits=('train', 'valid', 'test')):
    """Write a small WikiText-like corpus (` . `-separated sentences)."""
    rng = random.Random(seed)
    words = [f'w{i}' for i in range(vocab_words)] + ['The', 'Of', '@-@']
    os.makedirs(folder, exist_ok=True)
    for split in splits:
        lines = [' \n', ' = Title = \n']
        for _ in range(num_paragraphs):
            sentences = [' '.join(rng.choice(words)
                                  for _ in range(rng.randint(2, 14)))
                         for _ in range(rng.randint(1, 6))]
            lines.append(' ' + ' . '.join(sentences) + ' . \n')
        with open(os.path.join(folder, f'wiki.{split}.tokens'), 'w',
                  encoding='utf-8') as f:
            f.writelines(lines)
    return str(folder)


@pytest.fixture
def corpus_dir(tmp_path):
    return make_corpus(tmp_path / 'wikitext-2')


@pytest.fixture(scope='session')
def wiki_dir():
    path = os.environ.get('GLUON_BERT_DATA')
    if not path:
        pytest.skip('real WikiText-2 needed: set GLUON_BERT_DATA to the '
                    'folder with wiki.train.tokens')
    # absolute: notebooks and subprocesses run in other folders
    return os.path.abspath(path)


#: Lines kept of each held-out file in :func:`short_data`
HELD_OUT_LINES = 400


@pytest.fixture(scope='session')
def short_data(wiki_dir, tmp_path_factory):
    """The data folders beside WikiText-2 (``../shared/data``) with each
    held-out file (WikiText-2's valid and test, the tasks' dev and test)
    cut to its first :data:`HELD_OUT_LINES` lines and the rest linked: a
    budget cut for the README's commands and the notebooks' small runs,
    which score whole splits."""
    data = os.path.dirname(wiki_dir)
    short = tmp_path_factory.mktemp('shared') / 'data'
    for name in os.listdir(data):
        if not os.path.isdir(os.path.join(data, name)):
            continue
        (short / name).mkdir(parents=True)
        for file in os.listdir(os.path.join(data, name)):
            source = os.path.join(data, name, file)
            if re.search(r'(^|[._])(valid|dev|test)\.', file):
                with open(source, encoding='utf-8') as f:
                    head = ''.join(f.readline() for _ in range(
                        HELD_OUT_LINES))
                (short / name / file).write_text(head, encoding='utf-8')
            else:
                (short / name / file).symlink_to(source)
    return str(short)


@pytest.fixture(scope='session')
def _real_cache(tmp_path_factory):
    return tmp_path_factory.mktemp('real-data-cache')


@pytest.fixture
def shared_cache(_real_cache, monkeypatch):
    """One cache for the real-data runs that only read through it (the
    notebooks, the README's commands, the guide's run): WikiText-2's
    examples and its WordPiece vocabulary are built once a session, not
    once a test.  Tests of the cache itself keep their own."""
    monkeypatch.setenv('GLUON_BERT_CACHE', str(_real_cache))
    return str(_real_cache)


@pytest.fixture
def seeded():
    """Seed Python's and NumPy's RNGs; returns the seeding function."""
    def seed(s):
        random.seed(s)
        onp.random.seed(s)
    return seed


@pytest.fixture
def library_log(caplog, monkeypatch):
    """caplog for the gluon_bert loggers at info, also after a command set
    them to print on stdout without propagating."""
    import logging
    monkeypatch.setattr(logging.getLogger('gluon_bert'), 'propagate', True)
    caplog.set_level(logging.INFO, logger='gluon_bert')
    return caplog

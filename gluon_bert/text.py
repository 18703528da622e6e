"""Text files as pretraining paragraphs: lists of sentences of words.

``pretrain --corpus`` takes files, folders or globs, plain or ``.gz``, and
``TASK:FOLDER`` for a fine-tuning task's training text; each file is in one
of three layouts (``corpus_format``):

* ``wikitext``: a paragraph a line, sentences separated by `` . `` (the
  book's reader: lower-cased, split on whitespace; a WikiText-103 folder
  works as it is);
* ``documents``: a sentence a line, a blank line between documents (BERT's
  and GluonNLP's ``create_pretraining_data.py``);
* ``lines``: running text, a paragraph a line, cut into sentences after
  ``.``, ``!`` or ``?``.

The last two are raw text, split into words as ``finetune`` splits a task's
text (:func:`~gluon_bert.vocab.wikitext_tokenize`).  A paragraph of one
sentence gives no next-sentence pair and is dropped, as the book drops it.
Bad input (a missing, empty or binary file, bad UTF-8, an overlong line) is
a one-line error naming the file; :mod:`gluon_bert.corpus` prepares what is
read here into shards.
"""
import glob
import gzip
import os
import re

from .utils import GluonBertError, file_digest
from .vocab import wikitext_tokenize

__all__ = ['CORPUS_FORMATS', 'MAX_LINE_BYTES', 'CHUNK_BYTES', 'resolve_files',
           'valid_files', 'task_source', 'check_text', 'chunks', 'lines_of',
           'detect_format', 'read_paragraphs', 'paragraphs', 'digest']

#: The layouts a corpus file can have (``auto``: :func:`detect_format`).
CORPUS_FORMATS = ('auto', 'wikitext', 'documents', 'lines')
#: Longer lines are an error (no layout puts a whole text on one line).
MAX_LINE_BYTES = 16 << 20
#: Text per task of the preparation's process pool (about).
CHUNK_BYTES = 32 << 20
_SENTENCE_END = re.compile(r'(?<=[.!?])["\')\]]*\s+(?=["\'(\[]?[A-Z0-9])')


# --------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------
def task_source(path):
    """``(task, folder)`` of a ``TASK:FOLDER`` source, else None."""
    from .tasks import TASKS
    task, _, folder = path.partition(':')
    return (task, folder) if task in TASKS and folder else None


def _expand(path):
    if task_source(path):
        return [path]
    if os.path.isdir(path):
        if os.path.isfile(os.path.join(path, 'wiki.train.tokens')):
            return [os.path.join(path, 'wiki.train.tokens')]
        return sorted(os.path.join(d, f) for d, dirs, files in os.walk(path)
                      for f in files if not f.startswith('.'))
    if any(c in path for c in '*?['):
        return sorted(p for p in glob.glob(path, recursive=True)
                      if os.path.isfile(p))
    if not os.path.isfile(path):
        raise GluonBertError(f'corpus file {path} does not exist: check the '
                             'path given to corpus', ['corpus'])
    return [path]


def resolve_files(paths):
    """The files of ``paths`` (files, folders, globs), in order, each once.

    A folder holding ``wiki.train.tokens`` is the WikiText layout: its
    training file alone (:func:`valid_files` finds ``wiki.valid.tokens``).
    """
    files = []
    for path in paths:
        found = _expand(os.fspath(path))
        if not found:
            raise GluonBertError(f'corpus {path} names no file: give files, '
                                 'a folder of them or a glob', ['corpus'])
        files += [f for f in found if f not in files]
    return files


def valid_files(paths):
    """``wiki.valid.tokens`` beside a WikiText folder's training file (the
    held-out split of the WikiText layout), else None."""
    if len(paths) == 1 and os.path.isdir(paths[0]):
        valid = os.path.join(paths[0], 'wiki.valid.tokens')
        if os.path.isfile(os.path.join(paths[0], 'wiki.train.tokens')) and \
                os.path.isfile(valid):
            return [valid]
    return None


def _open(path):
    if path.endswith('.gz'):
        return gzip.open(path, 'rb')
    return open(path, 'rb')


def check_text(path):
    """An empty or binary file is an error naming it."""
    if task_source(path):
        return
    try:
        with _open(path) as f:
            head = f.read(8192)
    except (OSError, EOFError) as e:
        raise GluonBertError(f'corpus file {path} cannot be read ({e}): '
                             'pass text files, plain or .gz') from None
    if not head.strip():
        raise GluonBertError(f'corpus file {path} is empty: remove it from '
                             'corpus or give it text', ['corpus'])
    if b'\0' in head:
        raise GluonBertError(f'corpus file {path} is binary (it holds NUL '
                             'bytes): pass UTF-8 text files', ['corpus'])


def chunks(path, corpus_format):
    """Byte ranges ``(path, start, end)`` of about ``CHUNK_BYTES`` each,
    cut after a line (a blank line for ``documents``); a .gz file is one."""
    if path.endswith('.gz') or corpus_format == 'task':
        return [(path, 0, None)]
    size = os.path.getsize(path)
    cuts, start = [], 0
    with open(path, 'rb') as f:
        while start < size:
            f.seek(min(start + CHUNK_BYTES, size))
            if f.tell() < size:
                f.readline(MAX_LINE_BYTES)
                while corpus_format == 'documents':
                    line = f.readline(MAX_LINE_BYTES)
                    if not line or not line.strip():
                        break
            end = f.tell()
            cuts.append((path, start, end))
            start = end
    return cuts


def lines_of(path, start, end):
    """Decoded lines of a byte range; bad UTF-8 or an overlong line is an
    error naming the file and the line."""
    with _open(path) as f:
        f.seek(start)
        while end is None or f.tell() < end:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                return
            if len(raw) > MAX_LINE_BYTES:
                raise GluonBertError(
                    f'corpus file {path} has a line over '
                    f'{MAX_LINE_BYTES >> 20} MB near byte {f.tell()}: put a '
                    'paragraph (or a sentence) a line', ['corpus'])
            try:
                yield raw.decode('utf-8')
            except UnicodeDecodeError as e:
                number = _line_number(path, f.tell() - len(raw))
                raise GluonBertError(
                    f'corpus file {path} line {number} is not UTF-8 (byte '
                    f'{e.start + 1} of the line: {e.reason}): re-encode the '
                    'file as UTF-8, e.g. iconv -f latin1 -t utf-8',
                    ['corpus']) from None


def _line_number(path, offset):
    with _open(path) as f:
        return f.read(offset).count(b'\n') + 1


# --------------------------------------------------------------------------
# Paragraphs
# --------------------------------------------------------------------------
def detect_format(path):
    """The layout of a file, from its name and first lines: ``wikitext``
    when it is ``wiki.*.tokens`` or most lines hold `` . ``, ``documents``
    when it has blank lines between lines of one sentence each, else
    ``lines``."""
    name = os.path.basename(path)
    if name.startswith('wiki.') and name.endswith('.tokens'):
        return 'wikitext'
    lines = []
    for line in lines_of(path, 0, None):
        lines.append(line)
        if len(lines) >= 2000:
            break
    text = [line for line in lines if line.strip()]
    if sum(' . ' in line for line in text) > 0.3 * len(text):
        return 'wikitext'
    blank = len(lines) - len(text)
    one = sum(len(_SENTENCE_END.split(line.strip())) == 1 for line in text)
    return 'documents' if blank and one > 0.8 * len(text) else 'lines'


def read_paragraphs(lines, corpus_format):
    """Yield the paragraphs of ``lines`` as lists of sentences (lists of
    words), and ``(None, words)`` for each stretch of text dropped (a
    paragraph of fewer than two sentences)."""
    if corpus_format == 'wikitext':
        for line in lines:
            # The book's rule: two sentences in the raw line, lower-cased
            if len(line.split(' . ')) >= 2:
                yield [s.split() for s in line.strip().lower().split(' . ')]
            elif line.strip():
                yield None, len(line.split())
        return
    if corpus_format == 'lines':
        for line in lines:
            if line.strip():
                yield _paragraph([wikitext_tokenize(s) for s in
                                  _SENTENCE_END.split(line.strip())])
        return
    document = []
    for line in lines:
        if line.strip():
            document.append(wikitext_tokenize(line))
        elif document:
            yield _paragraph(document)
            document = []
    if document:
        yield _paragraph(document)


def _paragraph(sentences):
    if len(sentences) >= 2:
        return sentences
    return None, sum(map(len, sentences))


def paragraphs(path, start, end, corpus_format):
    """:func:`read_paragraphs` of a byte range, or a task's training text
    (:func:`~gluon_bert.tasks.task_text`)."""
    if corpus_format == 'task':
        from .tasks import task_text
        return task_text(*task_source(path))
    return read_paragraphs(lines_of(path, start, end), corpus_format)


def digest(path):
    """SHA-1 of a file, or of a task's training file."""
    source = task_source(path)
    if source:
        from .tasks import TASKS, task_splits
        task, folder = source
        train = TASKS[task].files['train']
        if 'train' not in task_splits(task, folder):
            raise GluonBertError(f'corpus {path}: {folder} has no training '
                                 f'split of {task} ({train})', ['corpus'])
        path = os.path.join(folder, train)
    return file_digest(path)

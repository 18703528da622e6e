"""WikiText-2's files: where they are, the download, the book's reader.

:func:`resolve_data_dir` finds the folder (an argument, ``GLUON_BERT_DATA``,
d2l's cache folder, or a download checked against d2l's SHA-1), and
:func:`read_wiki` reads a split into paragraphs exactly as the book's
``_read_wiki`` does; :mod:`gluon_bert.dataset` makes the examples.
"""
import hashlib
import io
import logging
import os
import random
import urllib.request
import zipfile

from .utils import GluonBertError, atomic_write

__all__ = ['resolve_data_dir', 'read_wiki', 'read_paragraphs',
           'wiki_sentences',
           'download_wikitext2', 'download_verified', 'unpack_zip',
           'default_cache_dir', 'DATA_URLS', 'DATA_SHA1', 'SPLITS',
           'README_DATA_DIR']

logger = logging.getLogger(__name__)

#: Where WikiText-2 can be downloaded: the dataset author's mirror first (it
#: refuses Python's default User-Agent), then the book's URL, which has
#: answered 403/301 since 2024.  Both serve the same archive.
DATA_URLS = ['https://wikitext.smerity.com/wikitext-2-v1.zip',
             'https://s3.amazonaws.com/research.metamind.io/wikitext/'
             'wikitext-2-v1.zip']
#: SHA-1 of the archive, as in ``d2l.DATA_HUB['wikitext-2']``.
DATA_SHA1 = '3c914d17d80b1459be871a5039ac23e752a53cbe'
SPLITS = ('train', 'valid', 'test')
_HOW_TO_SUPPLY = (
    'pass data_dir DIR, set GLUON_BERT_DATA=DIR, '
    "or put the files in d2l's cache folder ../data/wikitext-2")
#: The README's layout: the data folder beside the checkout.
README_DATA_DIR = os.path.join('..', 'shared', 'data', 'wikitext-2')


def default_cache_dir():
    """``$GLUON_BERT_CACHE``, else ``~/.cache/gluon_bert``."""
    return os.environ.get('GLUON_BERT_CACHE') or os.path.join(
        os.path.expanduser('~'), '.cache', 'gluon_bert')


# --------------------------------------------------------------------------
# Where the data comes from
# --------------------------------------------------------------------------
def _upward(path):
    """A relative ``path`` that is not a folder here, looked for from each
    folder above this one (a notebook runs in tutorials/, while
    ``GLUON_BERT_DATA`` was set relative to the checkout); else as given."""
    if os.path.isabs(path) or os.path.isdir(path):
        return path
    here = os.path.abspath(os.getcwd())
    while os.path.dirname(here) != here:
        here = os.path.dirname(here)
        if os.path.isdir(os.path.join(here, path)):
            return os.path.join(here, path)
    return path


def _check_data_dir(data_dir, split, origin):
    # data_dir is a setting (--data-dir); GLUON_BERT_DATA stays as it is
    settings = [origin] if origin == 'data_dir' else []
    if not os.path.isdir(data_dir):
        raise GluonBertError(f'{origin} {data_dir!r} is not a folder: point '
                             'it at the folder holding wiki.train.tokens',
                             settings)
    file_name = os.path.join(data_dir, f'wiki.{split}.tokens')
    if not os.path.isfile(file_name):
        raise GluonBertError(f'{origin} {data_dir!r} has no '
                             f'wiki.{split}.tokens: point it at the '
                             'unpacked WikiText-2 folder '
                             '(wiki.train/valid/test.tokens)',
                             settings)
    return data_dir


def resolve_data_dir(data_dir=None, split='train', download=True,
                     cache_dir=None):
    """Find the WikiText-2 folder: ``data_dir``, then ``GLUON_BERT_DATA`` (a
    relative path is also looked for from the folders above), then d2l's
    ``../data/wikitext-2``, then the README's ``../shared/data/wikitext-2``
    (from here or a folder above: a notebook runs in tutorials/), then the
    cache, then a download into ``cache_dir`` (SHA-1 verified).  A wrong
    explicit ``data_dir`` or ``GLUON_BERT_DATA`` is an error.
    """
    if split not in SPLITS:
        raise GluonBertError(f'unknown split {split!r}: use one of '
                             f'{", ".join(SPLITS)}')
    if data_dir is not None:
        return _check_data_dir(os.fspath(data_dir), split, 'data_dir')
    env = os.environ.get('GLUON_BERT_DATA')
    if env:
        return _check_data_dir(_upward(env), split, 'GLUON_BERT_DATA')
    d2l_dir = os.path.join('..', 'data', 'wikitext-2')
    if os.path.isfile(os.path.join(d2l_dir, f'wiki.{split}.tokens')):
        return d2l_dir
    beside = _upward(README_DATA_DIR)
    if os.path.isfile(os.path.join(beside, f'wiki.{split}.tokens')):
        return beside
    cached = os.path.join(cache_dir or default_cache_dir(), 'wikitext-2')
    if os.path.isfile(os.path.join(cached, f'wiki.{split}.tokens')):
        return cached
    if not download:
        raise GluonBertError(f'WikiText-2 not found: {_HOW_TO_SUPPLY}',
                             ['data_dir'])
    try:
        return download_wikitext2(cache_dir)
    except GluonBertError as e:
        raise GluonBertError(f'WikiText-2 not found and the download failed '
                             f'({e}): {_HOW_TO_SUPPLY}',
                             ['data_dir']) from None


def download_verified(url, sha1, timeout=60):
    """The bytes at ``url``, which must have SHA-1 ``sha1``.

    Any failure is a :class:`GluonBertError` starting with the URL.
    """
    try:
        request = urllib.request.Request(
            url, headers={'User-Agent': 'Mozilla/5.0 (gluon_bert)'})
        with urllib.request.urlopen(request, timeout=timeout) as r:
            payload = r.read()
    except Exception as e:  # network errors come in many types
        raise GluonBertError(f'{url}: {e}') from None
    digest = hashlib.sha1(payload).hexdigest()
    if digest != sha1:
        raise GluonBertError(f'{url}: SHA-1 {digest} is not the expected '
                             f'{sha1}')
    return payload


def unpack_zip(payload, folder, keep, required):
    """Write the members of a zip archive (bytes) whose file names satisfy
    ``keep`` into ``folder``, each atomically, by file name (the archive's
    folders dropped).  A member named in ``required`` that is missing, or
    bytes that are no zip archive, raise ``zipfile.BadZipFile`` before
    anything is written."""
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        members = {os.path.basename(n): n for n in zf.namelist()
                   if keep(os.path.basename(n))}
        missing = [name for name in required if name not in members]
        if missing:
            raise zipfile.BadZipFile(f'no {" or ".join(missing)} inside')
        for base, name in members.items():
            with atomic_write(os.path.join(folder, base)) as f:
                f.write(zf.read(name))
    return folder


def download_wikitext2(cache_dir=None, urls=None, sha1=None, timeout=60):
    """Download and unpack WikiText-2 into ``cache_dir/wikitext-2``.

    Each URL of ``urls`` (default :data:`DATA_URLS`) is tried in turn; the
    archive must match ``sha1`` (default :data:`DATA_SHA1`) before anything is
    unpacked.  Returns the folder holding ``wiki.*.tokens``.
    """
    cache_dir = cache_dir or default_cache_dir()
    sha1 = sha1 or DATA_SHA1
    errors = []
    for url in urls or DATA_URLS:
        logger.info('Downloading WikiText-2 from %s ...', url)
        try:
            payload = download_verified(url, sha1, timeout)
        except GluonBertError as e:
            errors.append(str(e))
            continue
        try:
            return unpack_zip(payload, os.path.join(cache_dir, 'wikitext-2'),
                              lambda name: name.endswith('.tokens'),
                              ['wiki.train.tokens'])
        except zipfile.BadZipFile as e:
            errors.append(f'{url}: not a usable archive ({e})')
    raise GluonBertError('; '.join(errors) or 'no URL to try')


# --------------------------------------------------------------------------
# Paragraphs
# --------------------------------------------------------------------------
def _read_lines(file_name):
    try:
        with open(file_name, 'r', encoding='utf-8') as f:
            lines = f.readlines()
    except UnicodeDecodeError as e:
        raise GluonBertError(
            f'{file_name} is not UTF-8 text (byte {e.start}: {e.reason}): '
            'WikiText-2 .tokens files are UTF-8; re-download or re-encode '
            'the file') from None
    if not any(line.strip() for line in lines):
        raise GluonBertError(f'{file_name} is empty: it should hold '
                             'WikiText-2 text; re-download it')
    return lines


def read_paragraphs(data_dir, split):
    """The paragraphs of one split in file order (see :func:`read_wiki`)."""
    data_dir = _check_data_dir(os.fspath(data_dir), split, 'data folder')
    file_name = os.path.join(data_dir, f'wiki.{split}.tokens')
    lines = _read_lines(file_name)
    # Uppercase letters are converted to lowercase ones.  The two-sentence
    # test looks at the raw line, the sentences at the stripped one: the
    # book's exact rule.
    paragraphs = [line.strip().lower().split(' . ')
                  for line in lines if len(line.split(' . ')) >= 2]
    if not paragraphs:
        raise GluonBertError(
            f'{file_name} has no paragraph of two sentences (separated by '
            "' . '): BERT's next-sentence task needs sentence pairs; use the "
            'tokenized WikiText-2 files')
    return paragraphs


def read_wiki(data_dir, split='train'):
    """Read one split into shuffled paragraphs, as the book's ``_read_wiki``:
    lower-cased lines split into sentences on ``' . '``, lines of two or more
    sentences kept, ``random.shuffle``d.  Returns a list of sentence lists.
    """
    paragraphs = read_paragraphs(data_dir, split)
    random.shuffle(paragraphs)
    return paragraphs


def wiki_sentences(data_dir, split='train'):
    """Every sentence of the paragraphs :func:`read_wiki` reads, in file
    order (what a subword vocabulary is trained on); ``random`` is not
    touched."""
    return [sentence for paragraph in read_paragraphs(data_dir, split)
            for sentence in paragraph]

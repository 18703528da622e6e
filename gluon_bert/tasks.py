"""Fine-tuning data: the book's SNLI reader and GLUE-style TSV files.

``read_snli`` is d2l's; ``read_tsv``/``read_glue`` read files whose header
names the columns.  ``ClassificationDataset`` turns sentences into the
book's BERT inputs as d2l's ``SNLIBERTDataset`` does (``<cls>`` a ``<sep>``
b ``<sep>``, tokens popped from the longer sentence until the pair fits,
unknown words ``<unk>``).
"""
import dataclasses
import math
import os
import re

import numpy as onp

from .encoder import get_tokens_and_segments, truncate_pair
from .utils import GluonBertError, read_text_lines
from .vocab import wikitext_tokenize

__all__ = ['task_text', 'TASKS', 'Task', 'read_snli', 'read_tsv', 'read_glue',
           'read_task', 'task_splits', 'ClassificationDataset', 'SNLI_LABELS',
           'TOKENIZERS', 'METRICS', 'accuracy', 'f1', 'pearson', 'spearman',
           'score']

#: d2l's SNLI labels.
SNLI_LABELS = {'entailment': 0, 'contradiction': 1, 'neutral': 2}
_ENTAILMENT = {'entailment': 0, 'not_entailment': 1}


@dataclasses.dataclass(frozen=True)
class Task:
    """How a task's folder is laid out and how the task is scored.

    Attributes
    ----------
    files : dict
        Split -> file name; a split whose file is missing is skipped.
    text : tuple of str
        The header's text columns: a sentence, or a pair.
    label : str
        The header's label column.
    labels : dict or None
        Label text -> class; ``None``: integer classes as written (in [0,
        classes) when given); ``'score'``: a real number (regression).
    metrics : tuple of str
        Names of :data:`METRICS`; the first picks the best epoch.
    tokenizer : str
        The default of ``TOKENIZERS``: how raw text is split into words.
    help : str
        What ``finetune --help`` says of the task.
    """
    files: dict
    text: tuple = ('sentence',)
    label: str = 'label'
    labels: object = None
    metrics: tuple = ('accuracy',)
    tokenizer: str = 'wikitext'
    classes: int = None
    help: str = ''

    @property
    def regression(self):
        return self.labels == 'score'

    @property
    def num_classes(self):
        """1 for regression, else the number of labels (None: from data)."""
        if self.regression:
            return 1
        return len(self.labels) if self.labels else self.classes


_GLUE_FILES = {'train': 'train.tsv', 'dev': 'dev.tsv', 'test': 'test.tsv'}
#: The tasks ``python -m gluon_bert.finetune --task`` knows, each reading its
#: folder's own files as published (``../shared/data/<task>``).
TASKS = {
    'sst2': Task(_GLUE_FILES, classes=2, help='SST-2, train/dev/test.tsv '
                 'with sentence and label'),
    'mrpc': Task(_GLUE_FILES, text=('#1 String', '#2 String'),
                 label='Quality', labels={'0': 0, '1': 1},
                 metrics=('accuracy', 'f1'), help='MRPC as GLUE publishes '
                 'it (byte-order mark, Quality and #1/#2 String columns), '
                 'scored by accuracy and F1'),
    'rte': Task(_GLUE_FILES, text=('sentence1', 'sentence2'),
                labels=_ENTAILMENT, help='RTE, sentence1/sentence2, '
                'entailment or not_entailment'),
    'qnli': Task(_GLUE_FILES, text=('question', 'sentence'),
                 labels=_ENTAILMENT, help='QNLI (or qnli-small), '
                 'question/sentence, entailment or not_entailment'),
    'sts-b': Task(_GLUE_FILES, text=('sentence1', 'sentence2'),
                  label='score', labels='score',
                  metrics=('pearson', 'spearman'), help='STS-B, a '
                  'regression: one output, squared-error loss, scored by '
                  'Pearson and Spearman correlation'),
    'snli-small': Task(_GLUE_FILES, text=('sentence1', 'sentence2'),
                       labels=SNLI_LABELS, help="the book's SNLI as "
                       'tab-separated sentence1/sentence2/label files'),
    # The book's reader of SNLI's own files, and its whitespace split
    'snli': Task({'train': 'snli_1.0_train.txt', 'dev': 'snli_1.0_dev.txt',
                  'test': 'snli_1.0_test.txt'}, labels=SNLI_LABELS,
                 tokenizer='split', help="SNLI's own "
                 'snli_1.0_{train,dev,test}.txt, read as the book does'),
    'tsv': Task(_GLUE_FILES, help='GLUE-style train/dev/test.tsv whose '
                'header names sentence (or sentence1, sentence2) and an '
                'integer label'),
}


def _split_words(text):
    return text.lower().split()


#: Ways to split raw text into the vocabulary's words: ``split``, the book's
#: (lower-case, split on whitespace); ``wikitext``, into WikiText-2's
#: conventions first (:func:`~gluon_bert.vocab.wikitext_tokenize`).
TOKENIZERS = {'split': _split_words, 'wikitext': wikitext_tokenize}


def _read_text(path):
    lines = read_text_lines(path, 'check data_dir', ['data_dir'])
    if lines and lines[0].startswith('\ufeff'):  # MRPC's byte-order mark
        lines[0] = lines[0][1:]
    if len(lines) < 2:
        raise GluonBertError(f'{path} is empty: it needs a header line and '
                             'at least one example')
    return lines


def read_snli(data_dir, is_train):
    """Premises, hypotheses and labels of SNLI, as d2l's ``read_snli``.

    Reads ``snli_1.0_train.txt`` or ``snli_1.0_test.txt``; ``is_train`` may
    also be a split name ('train', 'dev', 'test').
    """
    split = is_train if isinstance(is_train, str) else (
        'train' if is_train else 'test')

    def extract_text(s):
        # Remove information that will not be used by us
        s = re.sub('\\(', '', s)
        s = re.sub('\\)', '', s)
        # Substitute two or more consecutive whitespace with space
        s = re.sub('\\s{2,}', ' ', s)
        return s.strip()
    path = os.path.join(data_dir, TASKS['snli'].files[split])
    rows = [row.split('\t') for row in _read_text(path)[1:]]
    rows = [row for row in rows if row[0] in SNLI_LABELS]
    for row in rows:
        if len(row) < 3:
            raise GluonBertError(f'{path}: a row has {len(row)} columns, '
                                 'SNLI needs gold_label, sentence1_binary_'
                                 'parse and sentence2_binary_parse first')
    premises = [extract_text(row[1]) for row in rows]
    hypotheses = [extract_text(row[2]) for row in rows]
    labels = [SNLI_LABELS[row[0]] for row in rows]
    return premises, hypotheses, labels


def _label_of(task, text, where, num_classes=None):
    """The class (or score) a label field stands for."""
    if task.regression:
        try:
            value = float(text)
        except ValueError:
            value = float('nan')
        if not math.isfinite(value):
            raise GluonBertError(f'{where}: score {text!r} is not a number')
        return value
    if task.labels is not None:
        if text not in task.labels:
            raise GluonBertError(f'{where}: unknown label {text!r}: the '
                                 f'task\'s labels are '
                                 f'{", ".join(task.labels)}')
        return task.labels[text]
    try:
        label = int(text)
    except ValueError:
        raise GluonBertError(f'{where}: label {text!r} is not an '
                             'integer') from None
    if label < 0 or (num_classes is not None and label >= num_classes):
        raise GluonBertError(f'{where}: label {label} is out of range (0 to '
                             f'{(num_classes or 1) - 1})')
    return label


def read_glue(path, task, num_classes=None):
    """``(sentences_a, sentences_b or None, labels)`` of a task's file: columns
    named by the header (``task.text``, ``task.label``), labels mapped by
    ``task.labels``, a byte-order mark dropped; a problem is one line naming
    the file and line.
    """
    lines = _read_text(path)
    header = lines[0].split('\t')
    missing = [c for c in task.text + (task.label,) if c not in header]
    if missing:
        raise GluonBertError(f'{path}: the header has no '
                             f'{" or ".join(map(repr, missing))} column '
                             f'(it has {", ".join(header)})')
    index = [header.index(c) for c in task.text]
    label_index = header.index(task.label)
    columns = [[] for _ in task.text]
    labels = []
    for number, line in enumerate(lines[1:], 2):
        if not line.strip():
            continue
        fields = line.split('\t')
        where = f'{path} line {number}'
        if len(fields) != len(header):
            raise GluonBertError(f'{where}: {len(fields)} columns, the '
                                 f'header has {len(header)}')
        labels.append(_label_of(task, fields[label_index], where,
                                num_classes))
        for column, i in zip(columns, index):
            column.append(fields[i])
    if not labels:
        raise GluonBertError(f'{path} has a header but no example')
    return columns[0], (columns[1] if len(columns) == 2 else None), labels


def read_tsv(path, num_classes=None):
    """``(sentences_a, sentences_b or None, labels)`` of a GLUE-style TSV.

    The header names the columns: ``sentence`` (one sentence) or
    ``sentence1`` and ``sentence2`` (a pair), and ``label``: an integer in
    [0, num_classes).  Any problem is one line naming the file and line.
    """
    lines = _read_text(path)
    header = lines[0].split('\t')
    if 'label' not in header:
        raise GluonBertError(f'{path}: the header {header} has no label '
                             'column')
    if 'sentence' in header:
        text = ('sentence',)
    elif 'sentence1' in header and 'sentence2' in header:
        text = ('sentence1', 'sentence2')
    else:
        raise GluonBertError(f'{path}: the header {header} names no '
                             'sentence column (sentence, or sentence1 and '
                             'sentence2)')
    return read_glue(path, Task(_GLUE_FILES, text=text), num_classes)


def task_splits(task, data_dir):
    """The splits of ``task`` whose files are in ``data_dir``."""
    return [split for split, name in TASKS[task].files.items()
            if os.path.isfile(os.path.join(data_dir, name))]


def read_task(task, data_dir, split):
    """``(sentences_a, sentences_b or None, labels, num_classes)``.

    ``num_classes`` is 1 for a regression task (STS-B: labels are scores).
    """
    if task not in TASKS:
        raise GluonBertError(f'unknown task {task!r}: use one of '
                             f'{", ".join(TASKS)}')
    if not os.path.isdir(data_dir):
        raise GluonBertError(f'{data_dir} is not a folder: pass data_dir '
                             f'with the {task} files', ['data_dir'])
    spec = TASKS[task]
    if task == 'snli':
        a, b, labels = read_snli(data_dir, split)
        return a, b, labels, 3
    path = os.path.join(data_dir, spec.files[split])
    if task == 'tsv':
        a, b, labels = read_tsv(path)
    else:
        a, b, labels = read_glue(path, spec, spec.classes)
    return a, b, labels, spec.num_classes or max(labels) + 1


def task_text(task, data_dir, per_paragraph=4):
    """The *training* text of ``task`` as pretraining paragraphs (lists of
    sentences, each a list of words): labels dropped, dev and test never
    read.  A sentence pair is a two-sentence paragraph, the second sentence
    the first's next one for NSP; a single-sentence task's sentences are
    grouped ``per_paragraph`` at a time, in file order.  Words are split as
    ``finetune`` splits the task's text.
    """
    a, b, _, _ = read_task(task, data_dir, 'train')
    split = TOKENIZERS[TASKS[task].tokenizer]
    if b is not None:
        for first, second in zip(a, b):
            yield [split(first), split(second)]
        return
    for i in range(0, len(a) - per_paragraph + 1, per_paragraph):
        yield [split(sentence) for sentence in a[i:i + per_paragraph]]


# --------------------------------------------------------------------------
# How GLUE scores a task (the metrics a Task names)
# --------------------------------------------------------------------------
def accuracy(pred, gold):
    """Share of predictions equal to the gold class."""
    pred, gold = onp.asarray(pred), onp.asarray(gold)
    return float((pred == gold).mean())


def f1(pred, gold, positive=1):
    """F1 of the ``positive`` class (MRPC's: paraphrase = 1); 0 when the
    class is never predicted nor present."""
    pred, gold = onp.asarray(pred) == positive, onp.asarray(gold) == positive
    true_pos = float((pred & gold).sum())
    denominator = float(pred.sum() + gold.sum())
    return 2 * true_pos / denominator if denominator else 0.0


def pearson(pred, gold):
    """Pearson's correlation; 0 where either side is constant (a model that
    predicts one score for everything correlates with nothing)."""
    x = onp.asarray(pred, dtype='float64')
    y = onp.asarray(gold, dtype='float64')
    x, y = x - x.mean(), y - y.mean()
    denominator = onp.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator > 0 else 0.0


def _ranks(values):
    """Ranks from 1, ties sharing their mean rank (as SciPy's rankdata)."""
    values = onp.asarray(values, dtype='float64')
    order = onp.argsort(values, kind='mergesort')
    ranks = onp.empty(len(values))
    sorted_values = values[order]
    start = 0
    for end in range(1, len(values) + 1):
        if end == len(values) or sorted_values[end] != sorted_values[start]:
            ranks[order[start:end]] = (start + end + 1) / 2
            start = end
    return ranks


def spearman(pred, gold):
    """Spearman's rank correlation: Pearson's of the (tie-averaged) ranks."""
    return pearson(_ranks(pred), _ranks(gold))


#: Metric name -> function(pred, gold).
METRICS = {'accuracy': accuracy, 'f1': f1, 'pearson': pearson,
           'spearman': spearman}


def score(names, pred, gold):
    """``{name: value}`` for the metrics ``names``."""
    return {name: METRICS[name](pred, gold) for name in names}


class ClassificationDataset:
    """BERT inputs of labelled sentences (or pairs), as d2l's
    ``SNLIBERTDataset`` builds them.

    Parameters
    ----------
    sentences_a, sentences_b : list of str (sentences_b may be None)
    labels : list of int, or of float (a regression task's scores)
    vocab : Vocab
        The pretrained model's.
    max_len : int
        Longest input, ``<cls>`` and ``<sep>`` included; longer ones are cut.
    tokenizer : str
        A name of :data:`TOKENIZERS`: ``split`` (the book's) or ``wikitext``.

    Attributes
    ----------
    token_ids, segments : list of list of int (not padded)
    valid_lens : (no. of examples,) int32
    labels : (no. of examples,) int32, or float32 for scores
    unk_share : float
        Share of the words that become ``<unk>`` (high: the vocabulary fits
        the task poorly).
    num_cut : int
        Examples longer than ``max_len``.
    """

    def __init__(self, sentences_a, sentences_b, labels, vocab, max_len,
                 tokenizer='split'):
        if tokenizer not in TOKENIZERS:
            raise GluonBertError(f'unknown tokenizer {tokenizer!r}: use '
                                 f'{" or ".join(TOKENIZERS)}')
        tokenize = TOKENIZERS[tokenizer]
        self.vocab, self.max_len = vocab, max_len
        pairs = zip(sentences_a, sentences_b if sentences_b is not None
                    else [None] * len(sentences_a))
        self.token_ids, self.segments, lens = [], [], []
        words = unknown = self.num_cut = 0
        for a, b in pairs:
            words_a = tokenize(a)
            words_b = tokenize(b) if b is not None else []
            words += len(words_a) + len(words_b)
            unknown += vocab.count_unknown(words_a + words_b)
            # A WordPiece vocabulary cuts words into pieces
            tokens_a = vocab.split(words_a)
            tokens_b = vocab.split(words_b) if b is not None else None
            tokens_a, tokens_b, cut = truncate_pair(tokens_a, tokens_b,
                                                    max_len)
            self.num_cut += cut
            tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
            ids = vocab[tokens]
            self.token_ids.append(ids)
            self.segments.append(segments)
            lens.append(len(ids))
        self.valid_lens = onp.array(lens, dtype='int32')
        self.labels = onp.array(labels, dtype='float32' if any(
            isinstance(y, float) for y in labels) else 'int32')
        self.unk_share = unknown / max(words, 1)

    def __len__(self):
        return len(self.labels)

    def batch(self, indices, multiple=8, width=None):
        """Padded arrays of some examples: (tokens, segments, valid_lens,
        labels), padded to the longest of them rounded up to ``multiple``
        (fewer distinct shapes for the hybridized graph), or to ``width``:
        the book pads to ``max_len``; attention ignores the padding either
        way."""
        lens = self.valid_lens[indices]
        if width is None:
            width = min(self.max_len,
                        -(-int(lens.max()) // multiple) * multiple)
        pad = self.vocab['<pad>']
        tokens = onp.full((len(indices), width), pad, dtype='int32')
        segments = onp.zeros((len(indices), width), dtype='int32')
        for row, i in enumerate(indices):
            n = self.valid_lens[i]
            tokens[row, :n] = self.token_ids[i]
            segments[row, :n] = self.segments[i]
        return (tokens, segments, lens.astype('float32'),
                self.labels[indices])

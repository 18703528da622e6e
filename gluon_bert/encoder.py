"""Contextual representations from a pretrained BERT (the guide's Step 6).

``get_bert_encoding`` is the book's function, with the vocabulary and device
passed in; ``get_bert_encodings`` does many inputs in one padded batch;
``encode_texts`` turns a list of texts into one NumPy array of vectors.
"""
from mxnet import np

from .dataset import get_tokens_and_segments
from .model import net_device
from .utils import GluonBertError, check_batch_size, read_text_lines

__all__ = ['get_tokens_and_segments', 'get_bert_encoding',
           'get_bert_encodings', 'prepare_input', 'cosine_similarity',
           'encode_texts', 'split_text', 'truncate_pair', 'POOLS',
           'read_inputs']

#: How ``encode_texts`` turns an input's token vectors into its result.
POOLS = ('cls', 'mean', 'none')


def prepare_input(net, tokens_a, tokens_b=None):
    """Checked ``(tokens, segments)`` of one input for ``net``."""
    for name, part in (('tokens_a', tokens_a), ('tokens_b', tokens_b)):
        if part is None:
            continue
        if isinstance(part, str):
            raise GluonBertError(f'{name} must be a list of tokens, not a '
                                 f'string: use {part!r}.split()')
        if len(part) == 0:
            raise GluonBertError(f'{name} is empty: give at least one token')
    tokens, segments = get_tokens_and_segments(tokens_a, tokens_b)
    max_len = net.config['max_len']
    if len(tokens) > max_len:
        raise GluonBertError(f'the input has {len(tokens)} tokens with <cls> '
                             f'and <sep>, more than the model\'s max_len '
                             f'{max_len}: shorten it')
    return tokens, segments


def get_bert_encoding(net, vocab, tokens_a, tokens_b=None, device=None):
    """BERT representations of every token of one input, as in the guide.

    Parameters
    ----------
    net : BERTModel
    vocab : Vocab
    tokens_a, tokens_b : list of str
        Words (unknown ones become ``<unk>``); ``tokens_b`` for a pair.
    device : mxnet.Context, optional
        Where ``net``'s parameters are, by default.

    Returns
    -------
    (1, no. of tokens, num_hiddens) mxnet.np.ndarray
        For ``<cls>``, tokens_a, ``<sep>`` (, tokens_b, ``<sep>``).
    """
    tokens, segments = prepare_input(net, tokens_a, tokens_b)
    device = device or net_device(net)
    token_ids = np.expand_dims(np.array(vocab[tokens], ctx=device,
                                        dtype='int32'), axis=0)
    segments = np.expand_dims(np.array(segments, ctx=device, dtype='int32'),
                              axis=0)
    valid_len = np.expand_dims(np.array(len(tokens), ctx=device,
                                        dtype='float32'), axis=0)
    encoded_X, _, _ = net(token_ids, segments, valid_len)
    return encoded_X


def get_bert_encodings(net, vocab, inputs, device=None):
    """Encode many inputs (``(tokens_a, tokens_b or None)`` or ``tokens_a``) in
    one padded batch: a list of (1, no. of tokens, num_hiddens), the same
    vectors as one :func:`get_bert_encoding` call per input.
    """
    pairs = [item if isinstance(item, tuple) else (item, None)
             for item in inputs]
    if not pairs:
        raise GluonBertError('no input to encode')
    prepared = [prepare_input(net, a, b) for a, b in pairs]
    device = device or net_device(net)
    length = max(len(tokens) for tokens, _ in prepared)
    pad = vocab['<pad>']
    token_ids = [vocab[tokens] + [pad] * (length - len(tokens))
                 for tokens, _ in prepared]
    segments = [seg + [0] * (length - len(seg)) for _, seg in prepared]
    valid_lens = [len(tokens) for tokens, _ in prepared]
    # (no. of inputs, longest length, num_hiddens)
    encoded_X, _, _ = net(np.array(token_ids, ctx=device, dtype='int32'),
                          np.array(segments, ctx=device, dtype='int32'),
                          np.array(valid_lens, ctx=device, dtype='float32'))
    return [encoded_X[i:i + 1, :n] for i, n in enumerate(valid_lens)]


def cosine_similarity(a, b):
    """Cosine of the angle between two vectors (NumPy or MXNet arrays).

    1.0 for vectors pointing the same way: e.g. a word that gets the same
    representation in two contexts.
    """
    import numpy as onp
    a, b = (onp.asarray(x.asnumpy() if hasattr(x, 'asnumpy') else x,
                        dtype='float64').reshape(-1) for x in (a, b))
    if a.shape != b.shape:
        raise GluonBertError(f'vectors of different sizes: {a.size} and '
                             f'{b.size}')
    norms = onp.linalg.norm(a) * onp.linalg.norm(b)
    if norms == 0:
        raise GluonBertError('the cosine of a zero vector is undefined')
    return float(a @ b / norms)


def split_text(text):
    """``(tokens_a, tokens_b or None)`` of a text, tokenized as the book does.

    Lower-cased and split on whitespace, like the WikiText-2 training data; a
    tab separates the two sentences of a pair.
    """
    fields = text.split('\t')
    if len(fields) > 2:
        raise GluonBertError(f'{len(fields)} tab-separated fields: give one '
                             'sentence, or two separated by one tab')
    tokens = [f.lower().split() for f in fields]
    if not tokens[0] or (len(tokens) == 2 and not tokens[1]):
        raise GluonBertError('an empty sentence: give at least one word')
    return tokens[0], (tokens[1] if len(tokens) == 2 else None)


def truncate_pair(tokens_a, tokens_b, max_len):
    """Cut an input to ``max_len`` tokens with ``<cls>`` and ``<sep>``.

    A pair loses tokens from its longer sentence, one at a time, as d2l's
    ``SNLIBERTDataset._truncate_pair_of_tokens`` does; a single sentence
    loses its end.  Returns ``(tokens_a, tokens_b, cut)``.
    """
    tokens_a = list(tokens_a)
    if tokens_b is None:
        cut = len(tokens_a) > max_len - 2
        return tokens_a[:max_len - 2], None, cut
    tokens_b = list(tokens_b)
    cut = False
    while len(tokens_a) + len(tokens_b) > max_len - 3:
        cut = True
        (tokens_a if len(tokens_a) > len(tokens_b) else tokens_b).pop()
    return tokens_a, tokens_b, cut


class InputLines(list):
    """The lines :func:`read_inputs` kept; ``blank``: how many it skipped."""
    blank = 0


def read_inputs(path, skip_blank=True):
    """The lines of a text file of inputs, checked: one per row of output.
    Blank lines are left out (``skip_blank``; the result's ``blank`` counts
    them), or refused."""
    lines = InputLines()
    for number, line in enumerate(read_text_lines(
            path, 'pass a text file with one sentence per line'), 1):
        if skip_blank and not line.strip():
            lines.blank += 1
            continue
        try:
            split_text(line)
        except GluonBertError as e:
            raise GluonBertError(f'{path} line {number}: {e}' + (
                '' if line.strip() else ' (or skip blank lines with '
                'blank_lines skip)'), e.settings + ('blank_lines',)) from None
        lines.append(line)
    if not lines:
        raise GluonBertError(f'{path} is empty: give one sentence per line')
    return lines


def _cut_inputs(texts, max_len, warn, vocab=None):
    """``(tokens, segments)`` of every text (its words cut into the pieces
    of a WordPiece ``vocab``), cut to ``max_len``; one ``warn`` says how
    many were cut."""
    inputs, num_cut = [], 0
    for text in texts:
        a, b = split_text(text) if isinstance(text, str) else text
        if vocab is not None:
            a, b = vocab.split(a), (vocab.split(b) if b is not None else None)
        a, b, cut = truncate_pair(a, b, max_len)
        num_cut += cut
        inputs.append(get_tokens_and_segments(a, b))
    if num_cut:
        warn(f'{num_cut} of {len(inputs)} inputs were longer than the '
             f"model's max_len {max_len} and were cut")
    return inputs


def _host(array):
    """A NumPy copy of an MXNet array (a NumPy array as it is)."""
    return array.asnumpy() if hasattr(array, 'asnumpy') else array


def _forward(net):
    """``forward(token_ids, segments, lens)`` (lists of a padded batch) ->
    encodings (batch, width, num_hiddens): through a BERTModel (hybridized
    on first use, on its device), or an :class:`~gluon_bert.interop.
    OnnxEncoder` in ONNX Runtime."""
    if not hasattr(net, 'collect_params'):  # an OnnxEncoder
        return net.encode
    from .threads import ensure_cpu_threads
    device = net_device(net)
    ensure_cpu_threads([device])  # a script that imported mxnet first
    if not net._active:
        net.hybridize(static_alloc=True)

    def forward(token_ids, segments, lens):
        return net.encode(np.array(token_ids, ctx=device, dtype='int32'),
                          np.array(segments, ctx=device, dtype='int32'),
                          np.array(lens, ctx=device, dtype='float32'))
    return forward


def _pooled(encoded, pool, lens):
    """``encoded`` (batch size, width, num_hiddens) with every position past
    an input's end zeroed; ``pool='mean'``: its mean over the input's own
    tokens (batch size, num_hiddens)."""
    import numpy as onp

    lens = onp.array(lens)
    # (batch size, width): 1 over each input's own tokens
    mask = (onp.arange(encoded.shape[1])[None, :]
            < lens[:, None]).astype('float32')
    if pool == 'mean':
        mask /= lens[:, None].astype('float32')
        return (encoded * mask[:, :, None]).sum(axis=1)
    return encoded * mask[:, :, None]


def encode_texts(net, vocab, texts, batch_size=64, pool='cls',
                 progress=None, warn=None):
    """BERT vectors of many texts, as one float32 NumPy array.

    Texts are batched by similar length (attention skips the padding) and
    put back in their order.

    Parameters
    ----------
    net : BERTModel or OnnxEncoder
        The model, or its ONNX export in ONNX Runtime
        (:class:`~gluon_bert.interop.OnnxEncoder`: the same vectors).
    vocab : Vocab
        A WordPiece vocabulary cuts words into pieces.
    texts : list
        Strings (a sentence, or a pair separated by a tab:
        :func:`split_text`) or ``(tokens_a, tokens_b or None)``; an input
        longer than the model's ``max_len`` is cut (:func:`truncate_pair`).
    batch_size : int
    pool : str
        ``'cls'`` (the ``<cls>`` vector), ``'mean'`` (over the input's
        tokens) or ``'none'`` (every token's vector).
    progress : callable, optional
        ``progress(done, total)`` after every batch.
    warn : callable, optional
        Told once when inputs were cut (default: ``warnings.warn``).

    Returns
    -------
    numpy.ndarray, float32
        (no. of texts, num_hiddens); with ``pool='none'`` (no. of texts,
        longest input, num_hiddens), zero after each input's end.
    """
    import warnings

    import numpy as onp

    if pool not in POOLS:
        raise GluonBertError(f'unknown pool {pool!r}: use one of '
                             f'{", ".join(POOLS)}')
    batch_size = check_batch_size(batch_size)
    if not texts:
        raise GluonBertError('no text to encode')
    inputs = _cut_inputs(texts, net.config['max_len'],
                         warn or warnings.warn, vocab)
    forward = _forward(net)
    hidden = net.config['num_hiddens']
    longest = max(len(tokens) for tokens, _ in inputs)
    shape = ((len(inputs), longest, hidden) if pool == 'none'
             else (len(inputs), hidden))
    result = onp.zeros(shape, dtype='float32')
    order = sorted(range(len(inputs)), key=lambda i: len(inputs[i][0]))
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        _encode_rows(forward, vocab, [inputs[i] for i in rows], pool,
                     result, rows)
        if progress is not None:
            progress(min(start + batch_size, len(order)), len(order))
    return result


def _encode_rows(forward, vocab, inputs, pool, result, rows):
    """Encode a batch of ``(tokens, segments)`` inputs into ``result[rows]``,
    padded to the longest of them."""
    lens = [len(tokens) for tokens, _ in inputs]
    width = max(lens)
    pad = vocab['<pad>']
    token_ids = [vocab[tokens] + [pad] * (width - n)
                 for (tokens, _), n in zip(inputs, lens)]
    segments = [list(segs) + [0] * (width - n)
                for (_, segs), n in zip(inputs, lens)]
    # (batch size, width, num_hiddens)
    encoded_X = forward(token_ids, segments, lens)
    if pool == 'cls':
        result[rows] = _host(encoded_X[:, 0, :])
    elif pool == 'mean':
        result[rows] = _pooled(_host(encoded_X), pool, lens)
    else:
        result[rows, :width] = _pooled(_host(encoded_X), pool, lens)

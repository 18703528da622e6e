"""Contextual representations from a pretrained BERT (the guide's Step 6).

``get_bert_encoding`` is the book's function, with the vocabulary and device
passed in rather than read from globals; ``get_bert_encodings`` does many
inputs in one padded batch and returns the same vectors.
"""
from mxnet import np

from .dataset import get_tokens_and_segments
from .model import net_device
from .utils import GluonBertError

__all__ = ['get_tokens_and_segments', 'get_bert_encoding',
           'get_bert_encodings', 'prepare_input', 'cosine_similarity']



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
        Unknown words become ``<unk>``.
    tokens_a : list of str
    tokens_b : list of str, optional
    device : Context, optional
        Default: where ``net``'s parameters are.

    Returns
    -------
    (1, no. of tokens, num_hiddens)
        Tokens are ``<cls>``, tokens_a, ``<sep>`` (, tokens_b, ``<sep>``).
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
    """Encode many inputs in one padded batch.

    Parameters
    ----------
    inputs : list of (tokens_a, tokens_b or None), or list of tokens_a

    Returns
    -------
    list of (1, no. of tokens, num_hiddens)
        The same vectors as one :func:`get_bert_encoding` call per input.
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

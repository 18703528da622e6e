"""gluon_bert models outside MXNet: the book's PyTorch BERT, and ONNX.

The d2l book's PyTorch ``BERTModel`` has the same blocks as its MXNet one
(and as :class:`~gluon_bert.model.BERTModel`), and a ``Dense`` weight is
(out, in) like an ``nn.Linear``'s, so a trained model moves over by renaming
its parameters (:func:`torch_state_dict`): LayerNorm's gamma/beta become
weight/bias, and the book's PyTorch ``hidden`` and MLM ``mlp`` are
``nn.Sequential`` with the activations as layers of their own (other
indices).  :func:`torch_bert` and :func:`torch_classifier` make those
PyTorch models (``TorchBERT``, ``TorchBERTClassifier``), with the book's
parameter names, so that a ``state_dict``
made here loads into ``d2l.torch.BERTModel`` with ``strict=True`` and back;
their attention masks with ``torch.where`` instead of the book's in-place
assignment, which ONNX exports as one graph (:func:`export_onnx`).

Needs the optional extra ``torch`` (``pip install 'gluon_bert[torch]'``);
ONNX export and ONNX Runtime need ``onnx`` (``gluon_bert[onnx]``).
"""
import functools
import importlib
import math

from .utils import GluonBertError

__all__ = ['require', 'torch_state_dict', 'torch_bert', 'torch_classifier',
           'torch_model', 'export_onnx', 'OnnxEncoder']

#: The optional extra that provides each module.
EXTRAS = {'torch': 'torch', 'onnx': 'onnx', 'onnxruntime': 'onnx'}


def require(module):
    """Import ``module`` (torch, onnx, onnxruntime), or a one-line error
    naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise GluonBertError(
            f'{module} is not installed: pip install '
            f"'gluon_bert[{EXTRAS.get(module, module)}]'") from None


def _torch_name(name):
    """The book's PyTorch name of one of our structural parameter names."""
    if name.endswith('.gamma'):
        name = name[:-len('gamma')] + 'weight'
    elif name.endswith('.beta'):
        name = name[:-len('beta')] + 'bias'
    # Sequential(Linear, Tanh) / Sequential(Linear, ReLU, LayerNorm, Linear)
    for ours, theirs in (('hidden.', 'hidden.0.'), ('mlm.mlp.1.', 'mlm.mlp.2.'),
                         ('mlm.mlp.2.', 'mlm.mlp.3.')):
        if name.startswith(ours):
            return theirs + name[len(ours):]
    return name


def torch_state_dict(net):
    """``{name: torch.Tensor}`` of a :class:`~gluon_bert.model.BERTModel`
    or :class:`~gluon_bert.model.BERTClassifier`, under the book's PyTorch
    names (see the module's docstring)."""
    torch = require('torch')
    state = {}
    for name, param in net._collect_params_with_prefix().items():
        value = param.data().asnumpy()
        state[_torch_name(name)] = torch.from_numpy(value.copy())
    return state


def _modules():
    """The PyTorch classes, defined once torch is imported."""
    torch = require('torch')
    nn = torch.nn

    def masked_softmax(scores, valid_lens):
        # scores: (batch size * heads, no. of queries, no. of keys);
        # valid_lens: (batch size * heads,). The book's -1e6 beyond each
        # input's end, with torch.where (no in-place write)
        keys = torch.arange(scores.shape[-1], device=scores.device)
        mask = keys[None, None, :] < valid_lens[:, None, None]
        return nn.functional.softmax(
            torch.where(mask, scores, torch.full_like(scores, -1e6)), dim=-1)

    class MultiHeadAttention(nn.Module):
        def __init__(self, num_hiddens, num_heads, dropout):
            super().__init__()
            self.num_heads = num_heads
            self.W_q, self.W_k, self.W_v, self.W_o = (
                nn.Linear(num_hiddens, num_hiddens) for _ in range(4))
            self.dropout = nn.Dropout(dropout)

        def _split(self, X):
            # (batch size, no. of tokens, num_hiddens) ->
            # (batch size * num_heads, no. of tokens, num_hiddens / num_heads)
            b, t = X.shape[0], X.shape[1]
            X = X.reshape(b, t, self.num_heads, -1).permute(0, 2, 1, 3)
            return X.reshape(b * self.num_heads, t, -1)

        def forward(self, X, valid_lens):
            q, k, v = (self._split(W(X)) for W in (self.W_q, self.W_k,
                                                    self.W_v))
            scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])
            weights = masked_softmax(scores, torch.repeat_interleave(
                valid_lens, self.num_heads, dim=0))
            out = torch.bmm(self.dropout(weights), v)
            b, t = X.shape[0], X.shape[1]
            out = out.reshape(b, self.num_heads, t, -1).permute(0, 2, 1, 3)
            return self.W_o(out.reshape(b, t, -1))

    class AddNorm(nn.Module):
        def __init__(self, num_hiddens, dropout):
            super().__init__()
            self.dropout = nn.Dropout(dropout)
            self.ln = nn.LayerNorm(num_hiddens)

        def forward(self, X, Y):
            return self.ln(self.dropout(Y) + X)

    class PositionWiseFFN(nn.Module):
        def __init__(self, ffn_num_hiddens, num_hiddens):
            super().__init__()
            self.dense1 = nn.Linear(num_hiddens, ffn_num_hiddens)
            self.relu = nn.ReLU()
            self.dense2 = nn.Linear(ffn_num_hiddens, num_hiddens)

        def forward(self, X):
            return self.dense2(self.relu(self.dense1(X)))

    class TransformerEncoderBlock(nn.Module):
        def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout):
            super().__init__()
            self.attention = MultiHeadAttention(num_hiddens, num_heads,
                                                dropout)
            self.addnorm1 = AddNorm(num_hiddens, dropout)
            self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens)
            self.addnorm2 = AddNorm(num_hiddens, dropout)

        def forward(self, X, valid_lens):
            Y = self.addnorm1(X, self.attention(X, valid_lens))
            return self.addnorm2(Y, self.ffn(Y))

    class BERTEncoder(nn.Module):
        def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens,
                     num_heads, num_blks, dropout, max_len):
            super().__init__()
            self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
            self.segment_embedding = nn.Embedding(2, num_hiddens)
            self.blks = nn.Sequential(*(TransformerEncoderBlock(
                num_hiddens, ffn_num_hiddens, num_heads, dropout)
                for _ in range(num_blks)))
            self.pos_embedding = nn.Parameter(torch.zeros(1, max_len,
                                                          num_hiddens))

        def forward(self, tokens, segments, valid_lens):
            X = self.token_embedding(tokens) + self.segment_embedding(
                segments)
            X = X + self.pos_embedding[:, :X.shape[1], :]
            for blk in self.blks:
                X = blk(X, valid_lens)
            return X

    return nn, BERTEncoder


def _bert_class():
    nn, BERTEncoder = _modules()
    torch = require('torch')

    class TorchBERT(nn.Module):
        """The book's PyTorch ``BERTModel`` (same names and outputs):
        ``forward(tokens, segments, valid_lens, pred_positions=None)`` ->
        (encodings (batch, tokens, num_hiddens), MLM scores or None, NSP
        scores (batch, 2))."""

        def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens,
                     num_heads, num_blks, dropout, max_len=1000):
            super().__init__()
            self.encoder = BERTEncoder(vocab_size, num_hiddens,
                                       ffn_num_hiddens, num_heads, num_blks,
                                       dropout, max_len)
            self.hidden = nn.Sequential(nn.Linear(num_hiddens, num_hiddens),
                                        nn.Tanh())
            self.mlm = nn.Module()
            self.mlm.mlp = nn.Sequential(
                nn.Linear(num_hiddens, num_hiddens), nn.ReLU(),
                nn.LayerNorm(num_hiddens), nn.Linear(num_hiddens, vocab_size))
            self.nsp = nn.Module()
            self.nsp.output = nn.Linear(num_hiddens, 2)

        def forward(self, tokens, segments, valid_lens, pred_positions=None):
            encoded_X = self.encoder(tokens, segments, valid_lens)
            mlm_Y_hat = None
            if pred_positions is not None:
                # (batch size, no. of positions, num_hiddens)
                masked_X = torch.gather(encoded_X, 1, pred_positions.long()[
                    :, :, None].expand(-1, -1, encoded_X.shape[-1]))
                mlm_Y_hat = self.mlm.mlp(masked_X)
            nsp_Y_hat = self.nsp.output(self.hidden(encoded_X[:, 0, :]))
            return encoded_X, mlm_Y_hat, nsp_Y_hat
    return TorchBERT


def _classifier_class():
    nn, _ = _modules()

    class TorchBERTClassifier(nn.Module):
        """The book's PyTorch ``BERTClassifier`` (its natural-language-
        inference chapter): the encoder, the ``<cls>`` hidden layer and a
        new output layer; ``forward(tokens, segments, valid_lens)`` ->
        (batch, num_classes)."""

        def __init__(self, bert, num_classes):
            super().__init__()
            self.encoder = bert.encoder
            self.hidden = bert.hidden
            self.output = nn.Linear(bert.hidden[0].out_features, num_classes)

        def forward(self, tokens, segments, valid_lens):
            encoded_X = self.encoder(tokens, segments, valid_lens)
            return self.output(self.hidden(encoded_X[:, 0, :]))
    return TorchBERTClassifier


def torch_bert(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
               num_blks, dropout=0.0, max_len=1000):
    """A :class:`TorchBERT` (defined when torch is first needed)."""
    return _classes()[0](vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                         num_blks, dropout, max_len)


def torch_classifier(bert, num_classes):
    """A :class:`TorchBERTClassifier` over a :func:`torch_bert`."""
    return _classes()[1](bert, num_classes)


@functools.lru_cache(maxsize=None)
def _classes():
    return _bert_class(), _classifier_class()


def torch_model(net, config):
    """The PyTorch twin of ``net`` (a BERTModel, or a BERTClassifier when
    ``config`` has a ``classifier`` section) with ``net``'s weights, in
    prediction mode."""
    m = config['model']
    model = torch_bert(m['vocab_size'], m['num_hiddens'],
                       m['ffn_num_hiddens'], m['num_heads'], m['num_blks'],
                       0.0, m['max_len'])
    if 'classifier' in config:
        model = torch_classifier(model, config['classifier']['num_classes'])
    model.load_state_dict(torch_state_dict(net), strict=True)
    return model.eval()


def export_onnx(model, path, opset=17):
    """Write the encoder of ``model`` (a :func:`torch_bert`) to ``path`` as
    an ONNX graph: inputs ``tokens`` and ``segments`` (batch, length) int64
    and ``valid_lens`` (batch,) float32; outputs ``encodings`` (batch,
    length, num_hiddens) and ``cls_hidden`` (batch, num_hiddens), the
    ``<cls>`` hidden layer's output; batch and length are dynamic."""
    torch = require('torch')
    require('onnx')

    class Encode(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.encoder, self.hidden = bert.encoder, bert.hidden

        def forward(self, tokens, segments, valid_lens):
            encoded_X = self.encoder(tokens, segments, valid_lens)
            return encoded_X, self.hidden(encoded_X[:, 0, :])
    example = (torch.zeros(2, 5, dtype=torch.int64),
               torch.zeros(2, 5, dtype=torch.int64),
               torch.tensor([5.0, 3.0]))
    axes = {'tokens': {0: 'batch', 1: 'length'},
            'segments': {0: 'batch', 1: 'length'}, 'valid_lens': {0: 'batch'},
            'encodings': {0: 'batch', 1: 'length'}, 'cls_hidden': {0: 'batch'}}
    import warnings
    # The TorchScript exporter (dynamo=False) needs no onnxscript and keeps
    # batch and length dynamic through dynamic_axes; it warns that it is
    # the older of torch's two exporters, and traces shapes as it goes
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.onnx.export(Encode(model).eval(), example, path,
                          input_names=['tokens', 'segments', 'valid_lens'],
                          output_names=['encodings', 'cls_hidden'],
                          dynamic_axes=axes, opset_version=opset,
                          dynamo=False)
    return path


class OnnxEncoder:
    """An exported encoder (:func:`export_onnx`) in ONNX Runtime, called as
    :meth:`encode` (the arrays of a padded batch -> its encodings, NumPy),
    which is what :func:`~gluon_bert.encoder.encode_texts` asks of a model.
    """

    def __init__(self, path, config):
        ort = require('onnxruntime')
        self.session = ort.InferenceSession(
            path, providers=['CPUExecutionProvider'])
        self.config = dict(config)

    def encode(self, token_ids, segments, valid_lens):
        """(batch, width) ids and segments, (batch,) lengths -> encodings
        (batch, width, num_hiddens), float32 NumPy."""
        import numpy as onp
        encodings, _ = self.session.run(None, {
            'tokens': onp.asarray(token_ids, dtype='int64'),
            'segments': onp.asarray(segments, dtype='int64'),
            'valid_lens': onp.asarray(valid_lens, dtype='float32')})
        return encodings

"""gluon_bert models outside MXNet: the book's PyTorch BERT, and ONNX.

The book's PyTorch ``BERTModel`` has the same blocks as ours, and a
``Dense`` weight is (out, in) like an ``nn.Linear``'s, so a model moves over
by renaming parameters (:func:`torch_state_dict`).  :func:`torch_bert` and
:func:`torch_classifier` build those models (:mod:`gluon_bert.torch_bert`,
exportable to ONNX: :func:`export_onnx`).  Needs ``gluon_bert[torch]``
(and ``[onnx]``).
"""
import importlib

from .utils import GluonBertError

__all__ = ['require', 'd2l_torch', 'torch_state_dict', 'torch_bert',
           'torch_classifier', 'torch_model', 'export_onnx', 'OnnxEncoder']

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


def d2l_torch():
    """The book's PyTorch code, ``d2l.torch``, to load an export into
    (``d2l = d2l_torch()``); where torchvision cannot load beside this torch,
    an empty stand-in lets the BERT classes, which do not use it, import.
    """
    import sys
    import types
    require('torch')
    try:
        import torchvision  # noqa: F401
    except Exception:  # noqa: BLE001 -- ImportError, or a failed operator
        stub = types.ModuleType('torchvision')
        stub.transforms = types.ModuleType('torchvision.transforms')
        sys.modules['torchvision'] = stub
        sys.modules['torchvision.transforms'] = stub.transforms
    from d2l import torch as d2l
    return d2l


def _torch_name(name):
    """The book's PyTorch name of one of our structural parameter names."""
    if name.endswith('.gamma'):
        name = name[:-len('gamma')] + 'weight'
    elif name.endswith('.beta'):
        name = name[:-len('beta')] + 'bias'
    # Sequential(Linear, Tanh) / Sequential(Linear, ReLU, LayerNorm, Linear)
    for ours, theirs in (('hidden.', 'hidden.0.'),
                         ('mlm.mlp.1.', 'mlm.mlp.2.'),
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


def torch_bert(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
               num_blks, dropout=0.0, max_len=1000):
    """The book's PyTorch BERTModel (:class:`gluon_bert.torch_bert.
    BERTModel`; torch is imported here)."""
    require('torch')
    from . import torch_bert as tb
    return tb.BERTModel(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                        num_blks, dropout, max_len)


def torch_classifier(bert, num_classes):
    """The book's PyTorch BERTClassifier over a :func:`torch_bert`."""
    from . import torch_bert as tb
    return tb.BERTClassifier(bert, num_classes)


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

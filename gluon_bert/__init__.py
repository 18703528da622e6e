"""gluon_bert: pretrain BERT on WikiText-2 as the d2l book does, with MXNet Gluon.

The modules follow the data flow, and none imports one downstream of it::

    vocab -> dataset -> model -> loss -> recipe -> trainer -> checkpoint
        -> encoder

Importing the package is cheap and changes nothing in the process; MXNet is
loaded by the modules that need it.  Two settings are made where they are
needed, on purpose: ``gluon_bert.model`` switches MXNet to NumPy mode
(``npx.set_np()``, as the book does), and ``train_bert``/``evaluate_bert``
give MXNet's CPU operators one thread per core (``gluon_bert.threads``,
whatever was imported first).
"""
__version__ = '0.1.0'

# A clear error without MXNet, a warning with two builds of it (see setup.cfg)
from .utils import check_mxnet_install as _check_mxnet_install

_check_mxnet_install()

__all__ = ['__version__']

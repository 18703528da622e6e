"""gluon_bert: pretrain BERT on WikiText-2 as the d2l book does, with MXNet Gluon.

The modules follow the data flow, and none imports one downstream of it::

    vocab -> dataset -> packing -> model -> loss -> recipe -> trainer
        -> checkpoint
        -> encoder

Importing the package is cheap and loads no MXNet (the modules that need it
do).  Three settings are made, on purpose: before MXNet loads, importing
the package sets ``OMP_NUM_THREADS`` to the core count unless you set it
(``gluon_bert.threads``: MXNet would take half the cores; in a program that
imported mxnet first, training, fine-tuning and encoding set them when they
start); ``gluon_bert.model`` switches MXNet to NumPy mode
(``npx.set_np()``, as the book does); and in IPython or Jupyter a
:class:`~gluon_bert.utils.GluonBertError` shows as one line, as the
commands show it.  What the library reports goes through ``logging`` (a
logger per module under ``gluon_bert``), shown at info level on stdout
until a program or a command's ``--log-level`` sets it otherwise.
"""
__version__ = '0.1.0'

# A clear error without MXNet, a warning with two builds of it (see setup.cfg)
from .utils import check_mxnet_install as _check_mxnet_install

_check_mxnet_install()

# One OpenMP thread per core, set while MXNet can still take it
from .threads import set_threads_before_mxnet as _set_threads

_set_threads()

# In a notebook, a GluonBertError is one line, as the commands show it, and
# what the library reports (logging, 'gluon_bert' loggers) shows at info
# level unless the program set up its own handler
import logging as _logging

from .utils import configure_logging as _configure_logging
from .utils import one_line_errors_in_ipython as _one_line_errors

_one_line_errors()
if not _logging.getLogger('gluon_bert').handlers:
    _configure_logging('info')

__all__ = ['__version__']

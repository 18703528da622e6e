"""gluon_bert: pretrain BERT on WikiText-2 as the d2l book does, with MXNet.

The modules follow the data flow, and none imports one downstream of it::

    vocab -> dataset -> packing -> model -> loss -> recipe -> trainer
        -> checkpoint
        -> encoder

Importing loads no MXNet, and sets on purpose: ``OMP_NUM_THREADS`` to the
core count unless set (:mod:`gluon_bert.threads`), one-line
:class:`~gluon_bert.utils.GluonBertError` in IPython; ``gluon_bert.model``
switches MXNet to NumPy mode, as the book does.  The library reports
through ``logging`` (loggers under ``gluon_bert``).
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

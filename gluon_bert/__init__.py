"""gluon_bert: pretrain BERT on WikiText-2 as the d2l book does, with MXNet Gluon.

The modules follow the data flow, and none imports one downstream of it::

    vocab -> dataset -> model -> loss -> recipe -> trainer -> checkpoint
        -> encoder

Importing the package is cheap; MXNet is loaded by the modules that need it.
"""
import os

__version__ = '0.1.0'

# MXNet's CPU operators run on OpenMP threads; unless told otherwise it uses
# fewer threads than there are cores.  One per core (the README, "Training,
# measured", has what that gains).  Takes effect only if MXNet is imported
# after gluon_bert; a value the user set is kept.
if hasattr(os, 'sched_getaffinity'):
    os.environ.setdefault('OMP_NUM_THREADS',
                          str(len(os.sched_getaffinity(0))))

# A clear error without MXNet, a warning with two builds of it (see setup.cfg)
from .utils import check_mxnet_install as _check_mxnet_install  # noqa: E402

_check_mxnet_install()

__all__ = ['__version__']

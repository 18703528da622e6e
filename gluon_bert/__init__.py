"""gluon_bert: pretrain BERT on WikiText-2 as the d2l book does, with MXNet Gluon.

The modules follow the data flow, and none imports one downstream of it::

    vocab -> dataset -> model -> trainer -> checkpoint -> encoder

Importing the package is cheap; MXNet is loaded by the modules that need it.
"""
__version__ = '0.1.0'

__all__ = ['__version__']

"""A worker's part in a distributed job (MXNet's parameter server).

:func:`join_job` creates the worker's ``dist_sync`` kvstore, :class:`Allreduce`
sums a few floats over the workers, :func:`leave_job` says the parameter
server's goodbye (``ps::Finalize``, a barrier of every node) explicitly:
left to the kvstore's destructor at interpreter shutdown, after SIGTERM's
default action is back, a late SIGTERM killed a worker inside the barrier
and the rest of the job waited for ever.  Said here, while the command's
signal handler is installed, a late signal is only noted.  Each phase is
logged at debug level (``-v``).
"""
import logging
import os

from .utils import GluonBertError

__all__ = ['join_job', 'leave_job', 'Allreduce']

logger = logging.getLogger(__name__)


def join_job(kind):
    """The kvstore of this worker in a job of ``kind`` (``'dist_sync'``,
    ...), made from the ``DMLC_*`` environment :mod:`gluon_bert.launch`
    sets; a one-line error when there is no job."""
    if 'DMLC_ROLE' not in os.environ:
        raise GluonBertError(
            f'kvstore {kind} needs a job of scheduler, servers and '
            'workers: start the command under python -m gluon_bert.launch '
            '-n WORKERS -s SERVERS', ['kvstore'])
    import mxnet as mx
    kvstore = mx.kv.create(kind)
    if (kvstore.rank == 0
            and os.environ.get('MXNET_ENGINE_TYPE') != 'NaiveEngine'):
        logger.warning("with MXNet's threaded engine, dist_sync gradients "
                       'have differed from run to run; python -m '
                       'gluon_bert.launch sets MXNET_ENGINE_TYPE=NaiveEngine')
    logger.debug('rank %d of %d workers joined the job', kvstore.rank,
                 kvstore.num_workers)
    return kvstore


def leave_job(kvstore):
    """Say the parameter server's goodbye now (MXNet's ``ps::Finalize``:
    rank 0 stops the servers; every node waits until all have said it) and
    free the kvstore, which must not be used afterwards.  Call it while a
    signal handler is installed (see the module's notes)."""
    from mxnet.base import _LIB, check_call
    if kvstore is None or getattr(kvstore, 'handle', None) is None:
        return
    rank = kvstore.rank
    logger.debug('rank %d: parameter-server goodbye (waits for every node)',
                 rank)
    check_call(_LIB.MXKVStoreFree(kvstore.handle))
    # the destructor has run: the object's own __del__ frees nothing more
    # (MXKVStoreFree of NULL deletes nothing)
    kvstore.handle = None
    logger.debug('rank %d: goodbye done, the job is over for this worker',
                 rank)


class Allreduce:
    """Sum a few named floats over the workers of a distributed kvstore.

    What a step exchanges (:data:`EXCHANGED`): the batch's pairs and MLM
    slots (every worker's loss is divided by the whole global batch), the
    losses and hits it reports (so every worker sees, and stops on, the same
    numbers) and whether a worker asked to stop.  With one worker it does
    nothing.
    """

    KEY = 1 << 30  # far above the Trainer's parameter indices
    #: The names of what is summed, each its own kvstore key
    EXCHANGED = ('batch totals', 'losses', 'hits', 'stop')

    def __init__(self, kvstore):
        multi = kvstore is not None and getattr(kvstore, 'num_workers', 1) > 1
        self.kvstore = kvstore if multi else None
        self._keys = set()

    def __call__(self, name, values):
        import mxnet as mx
        if self.kvstore is None:
            return list(values)
        key = self.KEY + self.EXCHANGED.index(name)
        if key not in self._keys:
            self.kvstore.init(key, mx.nd.zeros(len(values)))
            self._keys.add(key)
        self.kvstore.push(key, mx.nd.array(values))
        out = mx.nd.zeros(len(values))
        self.kvstore.pull(key, out=out)
        return [float(v) for v in out.asnumpy()]

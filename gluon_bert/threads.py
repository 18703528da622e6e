"""One OpenMP thread per core for MXNet's CPU operators.

MXNet 1.9 decides its operator threads once, when ``libmxnet`` loads: unless
``OMP_NUM_THREADS`` is set, it takes half the processors on x86 and gives
every engine worker thread that many.  Setting the variable afterwards
changes nothing, and MXNet's ``MXSetNumOMPThreads`` only sets the calling
thread, not the engine's workers where the operators run.  So:

* before MXNet loads, :func:`set_threads_before_mxnet` sets
  ``OMP_NUM_THREADS`` to the core count.  ``import gluon_bert`` calls it, so
  every command (``python -m gluon_bert.<command>``) and every program that
  imports gluon_bert before mxnet gets one thread per core, and nothing
  else is ever changed;
* in a program that imported MXNet first, the library's training, fine-tuning
  and encoding functions call :func:`ensure_cpu_threads`, which calls
  :func:`set_cpu_threads` once.  It changes the count after the fact, in the
  two places MXNet keeps it:

1. the limit of MXNet's own kernels (``engine::OpenMP::omp_thread_max_``,
   found through the exported ``OpenMP::Get``).  Before anything is written,
   every field read at its assumed offset is checked, read-only, against what
   MXNet's own ``GetRecommendedOMPThreadCount`` returns; after the write, the
   new value is read back the same way and undone if it disagrees;
2. each CPU engine worker's OpenMP thread count, which oneDNN uses: a small
   function pushed to every worker (``MXEnginePushSync``) calls
   ``MXSetNumOMPThreads`` there.  Workers started later take the new limit.

Nothing is changed when the user chose: ``OMP_NUM_THREADS`` or
``MXNET_OMP_MAX_THREADS`` set in the environment.  If the mechanism does not
fit the MXNet build, one warning says how to set the threads instead.
"""
import ctypes
import os
import sys
import threading
import warnings

__all__ = ['set_cpu_threads', 'set_cpu_threads_for', 'cpu_thread_counts',
           'usable_cores', 'set_threads_before_mxnet', 'ensure_cpu_threads']

# engine::FnProperty values (include/mxnet/engine.h of MXNet 1.9)
_NORMAL, _CPU_PRIORITIZED = 0, 3
_CPU = 1  # Context::kCPU
_PUSH_TIMEOUT = 10.0

_SYNC_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)
_state = {'done': None, 'warned': False, 'mxnet_first': False}
_stranded = []


class _Context(ctypes.Structure):
    _fields_ = [('dev_type', ctypes.c_int), ('dev_id', ctypes.c_int)]


def usable_cores():
    """Cores this process may run on (its CPU affinity)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _user_chose():
    return bool(os.environ.get('OMP_NUM_THREADS')
                or os.environ.get('MXNET_OMP_MAX_THREADS'))


def set_threads_before_mxnet(n=None):
    """Set ``OMP_NUM_THREADS`` to ``n`` (default: :func:`usable_cores`) if
    MXNet is not loaded yet and the user set neither it nor
    ``MXNET_OMP_MAX_THREADS``.  Returns the count set, or None."""
    _state['mxnet_first'] = 'mxnet' in sys.modules
    if _state['mxnet_first'] or _user_chose():
        return None
    n = int(n or usable_cores())
    os.environ['OMP_NUM_THREADS'] = str(n)
    return n


def _lib():
    from mxnet.base import _LIB
    return _LIB


def _openmp():
    """``(address of MXNet's OpenMP object, GetRecommendedOMPThreadCount)``."""
    lib = _lib()
    get = lib._ZN5mxnet6engine6OpenMP3GetEv
    get.restype, get.argtypes = ctypes.c_void_p, []
    rec = lib._ZNK5mxnet6engine6OpenMP28GetRecommendedOMPThreadCountEb
    rec.restype, rec.argtypes = ctypes.c_int, [ctypes.c_void_p, ctypes.c_bool]
    return get(), rec


def _run_on_workers(fn, devices, priority_threads):
    """Run ``fn()`` once on each CPU engine worker thread; returns results.

    One push per CPU device's worker (one thread each, MXNet's default
    ``MXNET_CPU_WORKER_NTHREADS``) and one per thread of the prioritized pool;
    the pool's pushes wait for each other at a barrier, so each lands on a
    different thread.  Waits for these functions only, not for other work.
    """
    lib = _lib()
    results, keep, done = [], [], threading.Semaphore(0)
    barrier = threading.Barrier(priority_threads) if priority_threads else None

    def call(with_barrier):
        def run(_rctx, _param):
            try:
                if with_barrier:
                    barrier.wait(_PUSH_TIMEOUT)
                results.append(fn())
            except threading.BrokenBarrierError:
                pass
            finally:
                done.release()
        return _SYNC_FN(run)

    jobs = [(d, _NORMAL, False) for d in devices]
    jobs += [(0, _CPU_PRIORITIZED, True)] * priority_threads
    for dev_id, prop, with_barrier in jobs:
        cb, ctx = call(with_barrier), _Context(_CPU, dev_id)
        prop_c = ctypes.c_int(prop)
        keep.append((cb, ctx, prop_c))  # alive until the engine ran them
        rc = lib.MXEnginePushSync(cb, None, None, ctypes.byref(ctx), None, 0,
                                  None, 0, ctypes.byref(prop_c), 0,
                                  b'gluon_bert_set_threads')
        if rc != 0:
            raise RuntimeError('MXEnginePushSync failed')
    for _ in jobs:
        if not done.acquire(timeout=2 * _PUSH_TIMEOUT):
            _stranded.extend(keep)  # the engine may still call them
            raise RuntimeError('an engine worker did not run the function')
    if len(results) != len(jobs):
        raise RuntimeError('the prioritized pool has fewer threads than '
                           'MXNET_CPU_PRIORITY_NTHREADS says')
    return results


def _warn_once(reason, n):
    if not _state['warned']:
        _state['warned'] = True
        warnings.warn(
            f'gluon_bert could not set MXNet to {n} CPU threads ({reason}); '
            'training may run about 1.5x slower: start Python with '
            f'OMP_NUM_THREADS={n} set, or import gluon_bert before mxnet',
            RuntimeWarning, stacklevel=3)


def _engine_type():
    return os.environ.get('MXNET_ENGINE_TYPE', 'ThreadedEnginePerDevice')


def set_cpu_threads(n=None, num_cpu_devices=1):
    """Give MXNet's CPU operators ``n`` OpenMP threads (default: one per core).

    For a program that imported MXNet before gluon_bert (otherwise
    ``import gluon_bert`` has set ``OMP_NUM_THREADS`` and this does nothing);
    :func:`ensure_cpu_threads` calls it; idempotent.

    Parameters
    ----------
    n : int, optional
        Threads per operator; default :func:`usable_cores`.
    num_cpu_devices : int
        CPU contexts in use (``cpu(0)`` .. ``cpu(k-1)``): each has its own
        engine worker.

    Returns
    -------
    int or None
        The thread count now in effect, or None when the environment decides
        (``OMP_NUM_THREADS``/``MXNET_OMP_MAX_THREADS`` set) or the mechanism
        did not fit this MXNet build (then a warning says what to do).
    """
    if _user_chose():
        return None
    n = int(n or usable_cores())
    key = (n, num_cpu_devices)
    if _state['done'] == key:
        return n
    try:
        address, recommended = _openmp()
        limit = _verified_limit(address, recommended)
        old = limit.value
        limit.value = n
        lib = _lib()
        lib.MXSetNumOMPThreads(n)  # this thread (NaiveEngine runs ops here)
        if recommended(address, False) != n:
            limit.value = old
            raise RuntimeError('engine::OpenMP did not take the new limit')
        if _engine_type() != 'NaiveEngine':
            prio = int(os.environ.get('MXNET_CPU_PRIORITY_NTHREADS', '4'))
            _run_on_workers(lambda: lib.MXSetNumOMPThreads(n),
                            range(num_cpu_devices), prio)
    except (AttributeError, OSError, RuntimeError) as e:
        _warn_once(e, n)
        return None
    _state['done'] = key
    return n


def _verified_limit(address, recommended):
    """The ``omp_thread_max_`` field of ``engine::OpenMP`` at ``address``,
    after checking, without writing anything, that the four fields read at
    their offsets (MXNet 1.9's layout: bool enabled_, int omp_thread_max_,
    int reserve_cores_, bool omp_num_threads_set_in_environment_) are what
    ``GetRecommendedOMPThreadCount`` computes from."""
    raw = (ctypes.c_ubyte * 16).from_address(address)
    enabled, env_set = raw[0], raw[12]
    limit = ctypes.c_int.from_address(address + 4)
    reserve = ctypes.c_int.from_address(address + 8).value
    if enabled != 1 or env_set != 0 or not 0 < limit.value <= 4096 \
            or not 0 <= reserve <= 4096:
        raise RuntimeError('unexpected layout of engine::OpenMP')
    # On this thread MXNet's OpenMP count equals the limit (it set both when
    # it loaded, or set_cpu_threads did): the recommendation must be the
    # limit, and the limit less the reserved cores when those are excluded
    expected = [limit.value, max(1, limit.value - reserve)
                if reserve < limit.value else 1]
    if [recommended(address, False), recommended(address, True)] != expected:
        raise RuntimeError('engine::OpenMP does not hold the values read')
    return limit


def ensure_cpu_threads(devices):
    """One thread per core for ``devices``' CPU work, whatever the import
    order: when MXNet was loaded before gluon_bert (so ``OMP_NUM_THREADS``
    could not be set in time) and the user chose no thread count,
    :func:`set_cpu_threads_for` ``devices``; otherwise nothing.  Called by
    :func:`~gluon_bert.trainer.train_bert`, :func:`~gluon_bert.classifier.
    finetune` and :func:`~gluon_bert.encoder.encode_texts`."""
    if not _state['mxnet_first'] or _user_chose():
        return None
    return set_cpu_threads_for(devices)


def set_cpu_threads_for(devices):
    """:func:`set_cpu_threads` for the CPU contexts among ``devices``
    (``cpu(0)`` .. the highest one); nothing when all are GPUs."""
    cpu_ids = [d.device_id for d in devices if d.device_type == 'cpu']
    if cpu_ids:
        return set_cpu_threads(num_cpu_devices=max(cpu_ids) + 1)
    return None


def cpu_thread_counts(num_cpu_devices=1):
    """OpenMP threads each CPU engine worker would give an operator.

    Returns a sorted list, one entry per worker thread reached (see
    ``_run_on_workers``); for tests and diagnostics.
    """
    address, recommended = _openmp()
    if _engine_type() == 'NaiveEngine':
        return [recommended(address, True)]
    prio = int(os.environ.get('MXNET_CPU_PRIORITY_NTHREADS', '4'))
    return sorted(_run_on_workers(lambda: recommended(address, True),
                                  range(num_cpu_devices), prio))

"""One OpenMP thread per core for MXNet's CPU operators.

MXNet 1.9 sets its operator threads when ``libmxnet`` loads: without
``OMP_NUM_THREADS``, half the processors on x86.  Setting the variable
later changes nothing, and ``MXSetNumOMPThreads`` only sets the calling
thread.  So:

* before MXNet loads, ``import gluon_bert`` sets ``OMP_NUM_THREADS`` to
  the core count (:func:`set_threads_before_mxnet`);
* in a program that imported MXNet first, training, fine-tuning and
  encoding call :func:`ensure_cpu_threads`, which changes the count where
  MXNet keeps it: the limit of its own kernels
  (``engine::OpenMP::omp_thread_max_``, each field checked read-only
  against ``GetRecommendedOMPThreadCount`` before the write and read back
  after it), and each CPU engine worker's count, which oneDNN uses (a
  function pushed to every worker calls ``MXSetNumOMPThreads`` there).

Nothing changes when the user set ``OMP_NUM_THREADS`` or
``MXNET_OMP_MAX_THREADS``; if the build does not fit, one warning says how
to set the threads.
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

    One push per CPU device's worker and one per thread of the prioritized
    pool (those wait for each other at a barrier, so each lands on its own
    thread).  Waits for these functions only.
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
    """Give MXNet's CPU operators ``n`` OpenMP threads (default: one per core),
    for a program that imported MXNet before gluon_bert; idempotent.
    ``num_cpu_devices``: CPU contexts in use (each has its own engine worker).
    Returns the count now in effect, or None when the environment decides or
    the build does not fit (then a warning says what to do).
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
    order: when MXNet loaded before gluon_bert and the user chose no count,
    :func:`set_cpu_threads` for ``devices``; otherwise nothing.
    """
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

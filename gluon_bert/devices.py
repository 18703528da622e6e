"""The devices to train on: GPUs, CPU contexts, and their free memory.

The book's ``try_gpu``/``try_all_gpus``, with one difference: on a machine
without GPUs ``try_all_gpus`` gives ``[cpu(0)]`` (d2l 1.0.3 returns ``[]``
and the book's loop then crashes).  :func:`parse_devices` turns what a user
asks for (``gpus='0,1'`` or ``cpus=2``) into contexts, and says once why a
GPU asked for is not there.
"""
import logging
import os

import mxnet as mx
from mxnet import npx

from .utils import GluonBertError, count_devices, parse_gpu_ids

__all__ = ['try_gpu', 'try_all_gpus', 'no_gpu_reason', 'parse_devices',
           'available_memory', 'cpu_name']

logger = logging.getLogger(__name__)


def try_gpu(i=0):
    """``gpu(i)`` if it exists, else ``cpu()``."""
    return mx.gpu(i) if npx.num_gpus() >= i + 1 else mx.cpu()


def try_all_gpus():
    """All GPUs, or ``[cpu(0)]`` when there is none (d2l 1.0.3 returns []).

    Returns
    -------
    list of mxnet.Context"""
    return [mx.gpu(i) for i in range(npx.num_gpus())] or [mx.cpu(0)]


def no_gpu_reason(cuda=None):
    """Why MXNet sees no GPU, and what to do about it, in one sentence."""
    if cuda is None:
        cuda = mx.runtime.Features().is_enabled('CUDA')
    if not cuda:
        return ('No GPU: this MXNet is a CPU build without CUDA; for GPUs '
                'install a CUDA build instead (pip uninstall -y mxnet, then '
                "pip install -e '.[cu112]' or '.[cu117]', i.e. "
                'mxnet-cu112/-cu117==1.9.1, matching your CUDA)')
    return ('No GPU: this MXNet has CUDA but sees no GPU; check nvidia-smi '
            'and CUDA_VISIBLE_DEVICES')


def parse_devices(gpus=None, cpus=None):
    """Devices from ``gpus`` ('0,1') or ``cpus`` (N).

    ``cpus=N`` gives N CPU contexts, so the sharding runs (and is tested) on
    machines without GPUs.  GPUs asked for on a machine that has none: logged
    once why, then ``[cpu(0)]``.
    """
    count = count_devices(gpus, cpus)
    if cpus is not None:
        return [mx.cpu(i) for i in range(count)]
    if gpus is None:
        return try_all_gpus()
    ids = parse_gpu_ids(gpus)
    available = npx.num_gpus()
    if available == 0:
        logger.info('%s (asked for --gpus %s); training on cpu(0).',
                    no_gpu_reason(), gpus)
        return [mx.cpu(0)]
    missing = [i for i in ids if i >= available]
    if missing:
        raise GluonBertError(f'gpu({missing[0]}) does not exist: this machine '
                             f'has {available} GPU(s), numbered 0 to '
                             f'{available - 1}')
    return [mx.gpu(i) for i in ids]


def available_memory(device):
    """Bytes free on ``device``: GPU memory, or the machine's available RAM."""
    if device.device_type == 'gpu':
        free, _ = mx.context.gpu_memory_info(device.device_id)
        return free
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_AVPHYS_PAGES')


def cpu_name():
    """The CPU's model name (what a benchmark's results record of the
    machine), or 'unknown CPU'."""
    try:
        with open('/proc/cpuinfo', encoding='utf-8') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return 'unknown CPU'

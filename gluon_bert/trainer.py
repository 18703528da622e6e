"""The book's pretraining loop: devices, the two losses, ``train_bert``.

The multi-device design is the book's: every batch is cut into one shard per
device with ``gluon.utils.split_and_load(even_split=False)``, the losses are
kept as per-shard lists, ``SoftmaxCELoss`` weighs the MLM slots with sample
weights, and ``npx.waitall()`` synchronises.  What differs from d2l 1.0.3:
``try_all_gpus`` falls back to ``[cpu(0)]`` (the book's returns ``[]`` on a
machine without GPUs and then crashes), the model is hybridized by default,
and ``train_bert`` returns its history instead of only drawing it.
"""
import math
import os
import time

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, init, np, npx

from .loss import BERTPretrainLoss, pack_mlm_slots
from .utils import (GluonBertError, numpy_state_from_json,
                    numpy_state_to_json)

__all__ = ['try_gpu', 'try_all_gpus', 'parse_devices', 'available_memory',
           'init_bert',
           'get_batch_loss_bert', '_get_batch_loss_bert',
           'get_batch_loss_bert_fused', 'make_trainer', 'step_seed',
           'train_bert',
           'NonFiniteLossError']

npx.set_np()


class NonFiniteLossError(GluonBertError):
    """The loss became NaN or Inf; ``step`` says when."""

    def __init__(self, step, mlm, nsp):
        self.step = step
        super().__init__(f'loss is not finite at step {step} (MLM {mlm}, NSP '
                         f'{nsp}): lower the learning rate (--lr)')


def try_gpu(i=0):
    """``gpu(i)`` if it exists, else ``cpu()``."""
    return mx.gpu(i) if npx.num_gpus() >= i + 1 else mx.cpu()


def try_all_gpus():
    """All GPUs, or ``[cpu(0)]`` when there is none (d2l 1.0.3 returns [])."""
    return [mx.gpu(i) for i in range(npx.num_gpus())] or [mx.cpu(0)]


def parse_devices(gpus=None, cpus=None, log=print):
    """Devices from the command line's ``--gpus 0,1`` or ``--cpus N``.

    ``--cpus N`` gives N CPU contexts, so the sharding runs (and is tested) on
    machines without GPUs.  GPUs asked for on a machine that has none: said
    once through ``log``, then ``[cpu(0)]``.
    """
    if gpus is not None and cpus is not None:
        raise GluonBertError('--gpus and --cpus exclude each other: pick one')
    if cpus is not None:
        if int(cpus) != cpus or cpus < 1:
            raise GluonBertError(f'--cpus must be a positive integer, got '
                                 f'{cpus!r}')
        return [mx.cpu(i) for i in range(int(cpus))]
    if gpus is None:
        return try_all_gpus()
    try:
        ids = [int(i) for i in str(gpus).split(',') if i.strip() != '']
    except ValueError:
        raise GluonBertError(f'--gpus takes GPU numbers like 0,1, got '
                             f'{gpus!r}') from None
    if not ids or any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise GluonBertError(f'--gpus takes distinct GPU numbers like 0,1, '
                             f'got {gpus!r}')
    available = npx.num_gpus()
    if available == 0:
        log(f'No GPU found (asked for --gpus {gpus}); training on cpu(0).')
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


def init_bert(net, devices):
    """Xavier-initialize ``net`` on ``devices`` unless already initialized."""
    params = net.collect_params()
    fresh = []
    for param in params.values():
        try:
            param.list_ctx()
        except RuntimeError:
            fresh.append(param)
    for param in fresh:
        param.initialize(default_init=init.Xavier(), ctx=devices)
    return net


def get_batch_loss_bert(net, loss, vocab_size, tokens_X_shards,
                        segments_X_shards, valid_lens_x_shards,
                        pred_positions_X_shards, mlm_weights_X_shards,
                        mlm_Y_shards, nsp_y_shards, num_mlm_slots=None,
                        num_pairs=None):
    """The book's two losses, shard by shard.

    By default each shard's MLM loss is divided by that shard's MLM weight
    sum and its NSP loss averaged over the shard: the book's code, whose
    numbers (and gradients) depend on how the batch was split.  Given the
    whole batch's ``num_mlm_slots`` (sum of MLM weights) and ``num_pairs``,
    every shard is divided by those instead: the shard losses then add up to
    the whole batch's loss, and the summed gradients are the same on any
    number of devices.  On one device both give the book's numbers.

    Returns
    -------
    (mlm_ls, nsp_ls, ls)
        Lists with one scalar per shard: MLM loss, NSP loss and their sum.
    """
    mlm_ls, nsp_ls, ls = [], [], []
    for (tokens_X_shard, segments_X_shard, valid_lens_x_shard,
         pred_positions_X_shard, mlm_weights_X_shard, mlm_Y_shard,
         nsp_y_shard) in zip(
            tokens_X_shards, segments_X_shards, valid_lens_x_shards,
            pred_positions_X_shards, mlm_weights_X_shards, mlm_Y_shards,
            nsp_y_shards):
        # Forward pass
        _, mlm_Y_hat, nsp_Y_hat = net(
            tokens_X_shard, segments_X_shard, valid_lens_x_shard.reshape(-1),
            pred_positions_X_shard)
        # Compute masked language model loss: padded prediction slots have
        # weight 0, so they add nothing
        mlm_l = loss(
            mlm_Y_hat.reshape((-1, vocab_size)), mlm_Y_shard.reshape(-1),
            mlm_weights_X_shard.reshape((-1, 1)))
        if num_mlm_slots is None:
            mlm_l = mlm_l.sum() / (mlm_weights_X_shard.sum() + 1e-8)
        else:
            mlm_l = mlm_l.sum() / (num_mlm_slots + 1e-8)
        # Compute next sentence prediction loss
        nsp_l = loss(nsp_Y_hat, nsp_y_shard)
        nsp_l = nsp_l.mean() if num_pairs is None else nsp_l.sum() / num_pairs
        mlm_ls.append(mlm_l)
        nsp_ls.append(nsp_l)
        ls.append(mlm_l + nsp_l)
        npx.waitall()
    return mlm_ls, nsp_ls, ls


#: The book's name for it.
_get_batch_loss_bert = get_batch_loss_bert


def get_batch_loss_bert_fused(pretrain_loss, tokens_X_shards,
                              segments_X_shards, valid_lens_x_shards,
                              pred_positions_X_shards, mlm_weights_X_shards,
                              mlm_Y_shards, nsp_y_shards, num_mlm_slots,
                              num_pairs):
    """:func:`get_batch_loss_bert` through one fused, hybridized graph.

    The same shards, the same per-shard lists and the same numbers (normalized
    by the whole batch); the MLM head scores only the weighted slots, packed
    on the host by :func:`~gluon_bert.loss.pack_mlm_slots`.

    Parameters
    ----------
    pretrain_loss : BERTPretrainLoss
    num_mlm_slots : float
        Sum of the whole batch's MLM weights.
    num_pairs : int
        Size of the whole batch.
    """
    mlm_ls, nsp_ls, ls = [], [], []
    for (tokens_X_shard, segments_X_shard, valid_lens_x_shard,
         pred_positions_X_shard, mlm_weights_X_shard, mlm_Y_shard,
         nsp_y_shard) in zip(
            tokens_X_shards, segments_X_shards, valid_lens_x_shards,
            pred_positions_X_shards, mlm_weights_X_shards, mlm_Y_shards,
            nsp_y_shards):
        device = tokens_X_shard.ctx
        indices, weights, labels = pack_mlm_slots(
            pred_positions_X_shard.asnumpy(), mlm_weights_X_shard.asnumpy(),
            mlm_Y_shard.asnumpy())
        mlm_sum, nsp_sum = pretrain_loss(
            tokens_X_shard, segments_X_shard, valid_lens_x_shard.reshape(-1),
            np.array(indices, ctx=device), np.array(weights, ctx=device),
            np.array(labels, ctx=device), nsp_y_shard)
        mlm_l = mlm_sum / (num_mlm_slots + 1e-8)
        nsp_l = nsp_sum / num_pairs
        mlm_ls.append(mlm_l)
        nsp_ls.append(nsp_l)
        ls.append(mlm_l + nsp_l)
        npx.waitall()
    return mlm_ls, nsp_ls, ls


def _format_seconds(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f'{seconds // 3600}h{seconds % 3600 // 60:02d}m'
    return f'{seconds // 60}m{seconds % 60:02d}s'


def make_trainer(net, lr=0.01, kvstore='device', optimizer='adam'):
    """The book's optimizer: ``gluon.Trainer`` with Adam at ``lr``.

    Updates run on each device (``update_on_kvstore=False``), the gradients
    being summed across devices (and workers) through ``kvstore`` ('device',
    'local', or a KVStore such as ``mx.kv.create('dist_sync')``); so every
    device holds the optimizer state, which checkpoints save and restore.
    """
    return gluon.Trainer(net.collect_params(), optimizer,
                         {'learning_rate': lr}, kvstore=kvstore,
                         update_on_kvstore=False)


def step_seed(seed, step):
    """The MXNet seed of one step: dropout depends only on (seed, step)."""
    return (seed * 1000003 + step) % (2 ** 31 - 1)


def _batches(train_iter, position):
    """Yield ``(batch, position after it)`` forever, epoch after epoch.

    For a :class:`~gluon_bert.dataset.DataIter` the position is the NumPy RNG
    state at the start of the epoch (it decides the order) and the number of
    batches done in it, so a run can continue exactly where it stopped.
    Other iterables are iterated as the book does, with position None.
    """
    resumable = hasattr(train_iter, 'batch_order')
    while True:
        if not resumable:
            for batch in train_iter:
                yield batch, None
            continue
        if position is None:
            epoch_rng = onp.random.get_state()
            done = 0
        else:
            epoch_rng = numpy_state_from_json(position['epoch_rng'])
            done = position['batch']
            onp.random.set_state(epoch_rng)
        order = train_iter.batch_order()
        position = None
        state = numpy_state_to_json(epoch_rng)
        for batch in train_iter.batches(order, start=done):
            done += 1
            yield batch, {'epoch_rng': state, 'batch': done}


class _Allreduce:
    """Sum a few floats over the workers of a distributed kvstore.

    Used for the batch totals (the loss of every worker is normalized by the
    whole global batch) and for the reported losses (so every worker sees,
    and stops on, the same numbers).  With one worker it does nothing.
    """

    KEY = 1 << 30  # far above the Trainer's parameter indices

    def __init__(self, kvstore):
        multi = kvstore is not None and getattr(kvstore, 'num_workers', 1) > 1
        self.kvstore = kvstore if multi else None
        self._keys = set()

    def __call__(self, slot, values):
        if self.kvstore is None:
            return list(values)
        key = self.KEY + slot
        if key not in self._keys:
            self.kvstore.init(key, mx.nd.zeros(len(values)))
            self._keys.add(key)
        self.kvstore.push(key, mx.nd.array(values))
        out = mx.nd.zeros(len(values))
        self.kvstore.pull(key, out=out)
        return [float(v) for v in out.asnumpy()]


def train_bert(train_iter, net, loss, vocab_size, devices, num_steps,
               lr=0.01, trainer=None, hybridize=True, fused=True,
               log_every=10, on_step=None, verbose=True, seed=None,
               resume=None, accumulate=1, kvstore=None):
    """Pretrain ``net`` for ``num_steps`` steps, as the book's ``train_bert``.

    Parameters
    ----------
    train_iter : iterable of batches of the seven fields
    net : BERTModel
        Xavier-initialized on ``devices`` here if it is not yet.
    loss : gluon.loss.SoftmaxCELoss
    vocab_size : int
    devices : list of Context
        Each batch is split across them (``even_split=False``).
    num_steps : int
        Train until this step (counting the steps of a resumed run).
    lr : float
        Adam's learning rate (the book: 0.01).
    trainer : gluon.Trainer, optional
        Made by :func:`make_trainer` when not given.
    hybridize : bool
        Hybridize with ``static_alloc`` and ``static_shape`` first.
    fused : bool
        Compute model and losses in one graph
        (:class:`~gluon_bert.loss.BERTPretrainLoss`, MLM head on the weighted
        slots only): the same numbers, about twice as fast.  False runs the
        book's :func:`get_batch_loss_bert` on ``net``'s outputs.
    log_every : int
        Print a progress line every so many steps (0: never).
    on_step : callable, optional
        Called as ``on_step(step, history, position)`` after every step;
        ``position`` locates the next batch (see ``resume``).  Returning True
        stops training after that step.
    seed : int, optional
        Reseed MXNet with :func:`step_seed` before every step, so dropout
        depends only on (seed, step) and a resumed run repeats it exactly.
    resume : dict, optional
        ``{'history': ..., 'position': ...}`` of an earlier run: training goes
        on from its last step and batch.
    accumulate : int
        Batches per optimizer step: their gradients are summed, and the loss
        normalized by all of them, so a step equals one on the big batch.
    kvstore : KVStore, optional
        A distributed kvstore (``dist_sync``): the batch totals and losses
        are summed over its workers, so that the workers' gradients add up
        to the gradient of the global batch.

    Returns
    -------
    dict
        ``step``, ``mlm`` and ``nsp`` (running means, as the book plots them),
        ``mlm_step`` and ``nsp_step`` (each step's own loss), ``seconds`` and
        ``pairs`` (training time and sentence pairs so far, all workers) and
        the final ``pairs_per_sec``.
    """
    if num_steps < 1:
        raise GluonBertError(f'num_steps must be at least 1, got {num_steps}')
    if accumulate < 1:
        raise GluonBertError(f'accumulate must be at least 1, got '
                             f'{accumulate}')
    init_bert(net, devices)
    if accumulate > 1:
        for param in net.collect_params().values():
            if param.grad_req != 'null':
                param.grad_req = 'add'
    model = BERTPretrainLoss(net, loss) if fused else net
    if hybridize:
        model.hybridize(static_alloc=True, static_shape=True)
    if trainer is None:
        trainer = make_trainer(net, lr)
    allreduce = _Allreduce(kvstore)
    history = {'step': [], 'mlm': [], 'nsp': [], 'mlm_step': [],
               'nsp_step': [], 'seconds': [], 'pairs': [],
               'pairs_per_sec': 0.0, 'devices': [str(d) for d in devices]}
    position = None
    if resume is not None:
        history.update({k: list(v) if isinstance(v, list) else v
                        for k, v in resume['history'].items()})
        history['devices'] = [str(d) for d in devices]
        position = resume.get('position')
    step = len(history['step'])
    # Sum of MLM losses, sum of NSP losses, no. of sentence pairs, no. of steps
    metric = [sum(history['mlm_step']), sum(history['nsp_step']),
              history['pairs'][-1] if history['pairs'] else 0, step]
    train_seconds = history['seconds'][-1] if history['seconds'] else 0.0
    batches = _batches(train_iter, position)
    while step < num_steps:
        group = [next(batches) for _ in range(accumulate)]
        position = group[-1][1]
        if seed is not None:
            mx.random.seed(step_seed(seed, step + 1))
        start = time.perf_counter()
        # Normalize by the whole (global, accumulated) batch, so that the
        # shard losses add up to its loss on any number of devices
        num_pairs, num_mlm_slots = allreduce(0, [
            sum(b[0].shape[0] for b, _ in group),
            sum(float(b[4].sum()) for b, _ in group)])
        mlm_l = nsp_l = 0.0
        for batch, _ in group:
            (tokens_X_shards, segments_X_shards, valid_lens_x_shards,
             pred_positions_X_shards, mlm_weights_X_shards,
             mlm_Y_shards, nsp_y_shards) = [gluon.utils.split_and_load(
                 elem, devices, even_split=False) for elem in batch]
            with autograd.record():
                if fused:
                    mlm_ls, nsp_ls, ls = get_batch_loss_bert_fused(
                        model, tokens_X_shards, segments_X_shards,
                        valid_lens_x_shards, pred_positions_X_shards,
                        mlm_weights_X_shards, mlm_Y_shards, nsp_y_shards,
                        num_mlm_slots, num_pairs)
                else:
                    mlm_ls, nsp_ls, ls = get_batch_loss_bert(
                        net, loss, vocab_size, tokens_X_shards,
                        segments_X_shards, valid_lens_x_shards,
                        pred_positions_X_shards, mlm_weights_X_shards,
                        mlm_Y_shards, nsp_y_shards,
                        num_mlm_slots=num_mlm_slots, num_pairs=num_pairs)
            for l in ls:
                l.backward()
            mlm_l += sum([float(l) for l in mlm_ls])
            nsp_l += sum([float(l) for l in nsp_ls])
        trainer.step(1)
        if accumulate > 1:
            net.collect_params().zero_grad()
        mlm_l, nsp_l = allreduce(1, [mlm_l, nsp_l])
        metric[0] += mlm_l
        metric[1] += nsp_l
        metric[2] += int(num_pairs)
        metric[3] += 1
        # The backward pass and the update run asynchronously; wait for
        # them so that pairs/sec counts the whole step (the book's timer
        # stops before they finish and overstates its speed)
        npx.waitall()
        train_seconds += time.perf_counter() - start
        step += 1
        if not (math.isfinite(mlm_l) and math.isfinite(nsp_l)):
            raise NonFiniteLossError(step, mlm_l, nsp_l)
        history['step'].append(step)
        history['mlm'].append(metric[0] / metric[3])
        history['nsp'].append(metric[1] / metric[3])
        history['mlm_step'].append(mlm_l)
        history['nsp_step'].append(nsp_l)
        history['seconds'].append(train_seconds)
        history['pairs'].append(metric[2])
        history['pairs_per_sec'] = metric[2] / train_seconds
        if verbose and log_every and (step % log_every == 0
                                      or step == num_steps):
            left = train_seconds / len(history['step']) * (num_steps - step)
            print(f'step {step:>{len(str(num_steps))}}/{num_steps}  '
                  f'mlm {history["mlm"][-1]:.3f}  '
                  f'nsp {history["nsp"][-1]:.3f}  '
                  f'{history["pairs_per_sec"]:.1f} pairs/sec  '
                  f'{_format_seconds(left)} left', flush=True)
        if on_step is not None and on_step(step, history, position):
            break
    if verbose:
        print(f'MLM loss {metric[0] / metric[3]:.3f}, '
              f'NSP loss {metric[1] / metric[3]:.3f}')
        print(f'{metric[2] / train_seconds:.1f} sentence pairs/sec on '
              f'{str(devices)}')
    return history

"""The book's pretraining loop: the two losses, one step, ``train_bert``.

The multi-device design is the book's: each batch is cut into one shard per
device by MXNet's ``split_data`` (``split_and_load(even_split=False)``'s
cut), losses are per-shard lists, ``SoftmaxCELoss`` weighs the MLM slots,
``npx.waitall()`` synchronises.  A step reads top to bottom in
:func:`train_step`; :func:`train_bert` loops over it as the book does.
Unlike d2l 1.0.3 the model is hybridized and ``train_bert`` returns its
history (:mod:`gluon_bert.history`).  :func:`evaluate_bert` scores held-out
text (``python -m gluon_bert.evaluate``, ``pretrain --eval-every``).
"""
import collections
import dataclasses
import logging
import math
import time

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, npx

from .distributed import Allreduce
from .history import Clock, History
from .loss import BERTPretrainLoss, is_softmax_ce
from .model import net_device
from .packing import host_fields, pack_cut_batch
# The optimizer's side (gluon_bert.recipe), importable from here as the
# book's training module offers it
from .recipe import apply_gradients, init_bert, learning_rate, make_trainer
from .threads import ensure_cpu_threads
from .utils import (GluonBertError, numpy_state_from_json,
                    numpy_state_to_json)

__all__ = ['init_bert', 'get_batch_loss_bert', 'get_batch_loss_bert_fused',
           'make_trainer', 'apply_gradients', 'step_seed', 'train_bert',
           'TrainOptions', 'Callbacks', 'train_step', 'StepResult',
           'NonFiniteLossError', 'evaluate_bert']

logger = logging.getLogger(__name__)


class NonFiniteLossError(GluonBertError):
    """The loss became NaN or Inf; ``step`` says when."""

    def __init__(self, step, mlm, nsp):
        self.step = step
        super().__init__(f'loss is not finite at step {step} (MLM {mlm}, NSP '
                         f'{nsp}): lower the learning rate (lr)', ['lr'])

    @classmethod
    def check(cls, step, out):
        """Raise if a step's losses (a :data:`StepResult`) are not finite."""
        if not (math.isfinite(out.mlm) and math.isfinite(out.nsp)):
            raise cls(step, out.mlm, out.nsp)


def get_batch_loss_bert(net, loss, vocab_size, tokens_X_shards,
                        segments_X_shards, valid_lens_x_shards,
                        pred_positions_X_shards, mlm_weights_X_shards,
                        mlm_Y_shards, nsp_y_shards, num_mlm_slots=None,
                        num_pairs=None):
    """The book's two losses, shard by shard: lists ``(mlm_ls, nsp_ls,
    ls)`` of one scalar per shard (MLM, NSP, their sum).

    As the book's code, each shard's MLM loss is divided by its own MLM
    weight sum and its NSP loss averaged over the shard (so the numbers
    depend on the split); given the whole batch's ``num_mlm_slots`` and
    ``num_pairs``, every shard is divided by those, and the shard losses add
    up to the batch's on any number of devices.
    """
    mlm_ls, nsp_ls, ls = [], [], []
    shards = (tokens_X_shards, segments_X_shards, valid_lens_x_shards,
              pred_positions_X_shards, mlm_weights_X_shards, mlm_Y_shards,
              nsp_y_shards)
    for (tokens_X_shard, segments_X_shard, valid_lens_x_shard,
         pred_positions_X_shard, mlm_weights_X_shard, mlm_Y_shard,
         nsp_y_shard) in zip(*shards):
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


def get_batch_loss_bert_fused(pretrain_loss, shards, num_mlm_slots,
                              num_pairs, hits=None):
    """:func:`get_batch_loss_bert` through one fused, hybridized graph.

    The same per-shard lists and numbers (normalized by the whole batch), from
    shards packed on the host (:func:`~gluon_bert.packing.pack_cut_batch`):
    the layers skip padded tokens and the MLM head scores only weighted slots.
    Nothing waits, so the devices' passes overlap.  ``hits``, given a list,
    gets ``(MLM hits, NSP hits)`` of every shard appended.
    """
    mlm_ls, nsp_ls, ls = [], [], []
    for shard in shards:
        mlm_sum, nsp_sum, mlm_hits, nsp_hits = pretrain_loss(*shard)
        mlm_l = mlm_sum / (num_mlm_slots + 1e-8)
        nsp_l = nsp_sum / num_pairs
        if hits is not None:
            hits.append((mlm_hits, nsp_hits))
        mlm_ls.append(mlm_l)
        nsp_ls.append(nsp_l)
        ls.append(mlm_l + nsp_l)
    return mlm_ls, nsp_ls, ls


def step_seed(seed, step):
    """The MXNet seed of one step: dropout depends only on (seed, step)."""
    return (seed * 1000003 + step) % (2 ** 31 - 1)


def _batches(train_iter, position):
    """Yield ``(batch, position after it)`` forever, epoch after epoch.

    For a :class:`~gluon_bert.dataset.DataIter` the position (epoch, the NumPy
    RNG state at its start, batches done) lets a run continue exactly; other
    iterables are iterated as the book does, with position None.
    """
    resumable = hasattr(train_iter, 'batch_order')
    epoch = 0 if position is None else position.get('epoch', 0)
    while True:
        if not resumable:
            for batch in train_iter:
                yield batch, None
            continue
        if hasattr(train_iter, 'set_epoch'):
            train_iter.set_epoch(epoch)
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
            yield batch, {'epoch': epoch, 'epoch_rng': state, 'batch': done}
        epoch += 1


@dataclasses.dataclass
class Callbacks:
    """What :func:`train_bert` calls while it trains.

    Attributes
    ----------
    evaluate : callable, optional
        ``evaluate(net) -> dict`` of held-out metrics, every ``eval_every``
        steps and after the last (kept in ``history['eval']``).
    on_step : callable, optional
        ``on_step(step, history, position)`` after every step; True stops
        training (in a distributed job, every worker after that step), and
        the history says at which step (``history['stopped']``).
    """
    evaluate: object = None
    on_step: object = None


@dataclasses.dataclass
class TrainOptions:
    """How :func:`train_bert` trains; the defaults are the book's loop.

    Attributes
    ----------
    lr : float, optional
        The (peak) rate; by default the trainer's (:func:`make_trainer`'s
        without one).
    schedule, warmup, warmup_steps, cooldown : str, float, int, float
        The rate of every step: :func:`~gluon_bert.recipe.learning_rate`.
    clip_norm : float
        Clip the summed gradients to this global norm (0: no clipping).
    accumulate : int
        Batches per optimizer step (their gradients summed).
    fused : bool
        Model and losses in one graph (:class:`~gluon_bert.loss.
        BERTPretrainLoss`): the same numbers, faster; False runs the book's
        :func:`get_batch_loss_bert`.
    hybridize : bool
        Hybridize with ``static_alloc`` and ``static_shape`` first.
    seed : int, optional
        Reseed MXNet with :func:`step_seed` before every step (exact resume).
    max_seconds : float, optional
        Wall-clock budget over resumed runs (:class:`~gluon_bert.history.
        Clock`).
    eval_every, log_every : int
        Evaluate / print progress every so many steps (0: never).
    verbose : bool
        Print progress, evaluations and the book's two closing lines.
    nsp_weight : float
        The NSP loss's weight in the loss minimized (0: MLM alone).
    """
    lr: float = None
    schedule: str = 'constant'
    warmup: float = 0.0
    warmup_steps: int = None
    cooldown: float = 0.0
    clip_norm: float = 0.0
    accumulate: int = 1
    fused: bool = True
    hybridize: bool = True
    seed: int = None
    max_seconds: float = None
    eval_every: int = 0
    log_every: int = 10
    verbose: bool = True
    nsp_weight: float = 1.0

    def learning_rate(self, step, total, peak):
        """The rate of step ``step`` of ``total`` (1-based), at ``peak``."""
        return learning_rate(step, total, peak, self.schedule, self.warmup,
                             self.warmup_steps, self.cooldown)


#: What one optimizer step measured: losses and hits summed over the batch's
#: shards (hits None on the book's loss path), the batch's pairs and MLM
#: slots, and the gradient norm before clipping (None without clipping).
StepResult = collections.namedtuple(
    'StepResult', 'mlm nsp mlm_hits nsp_hits pairs slots grad_norm')


def train_step(model, net, loss, vocab_size, devices, trainer, group,
               options, allreduce=None):
    """One optimizer step of :func:`train_bert`, waited for.

    Parameters
    ----------
    model : BERTPretrainLoss or BERTModel
        The fused graph, or ``net`` on the book's loss path.
    group : list of batches
        The step's batches, gradients summed (``options.accumulate``).
    net, loss, vocab_size, devices, trainer, options, allreduce
        As :func:`train_bert` has them (``allreduce``: what the step
        exchanges with a job's workers, :class:`~.distributed.Allreduce`).

    Returns
    -------
    StepResult
    """
    allreduce = allreduce or Allreduce(None)
    # Every shard's loss is divided by the whole (global) batch's pairs and
    # MLM slots, so the gradients add up to the whole batch's
    num_pairs, num_mlm_slots = allreduce('batch totals', batch_totals(group))
    cuts = []
    for batch in group:  # the book's cut: each field, a shard per device
        if options.fused:  # split_and_load's split_data, packed, then loaded
            cuts.append(pack_cut_batch(
                [gluon.utils.split_data(x, len(devices), even_split=False)
                 for x in batch], devices, net.config['num_heads']))
        else:
            cuts.append([gluon.utils.split_and_load(x, devices,
                                                    even_split=False)
                         for x in batch])
    mlm_ls, nsp_ls, hits = [], [], []
    for shards in cuts:
        with autograd.record():
            if options.fused:  # model and losses in one graph per shard
                mlm_l, nsp_l, ls = get_batch_loss_bert_fused(
                    model, shards, num_mlm_slots, num_pairs, hits)
            else:
                mlm_l, nsp_l, ls = get_batch_loss_bert(
                    net, loss, vocab_size, *shards,
                    num_mlm_slots=num_mlm_slots, num_pairs=num_pairs)
            if options.nsp_weight != 1.0:
                ls = [m + options.nsp_weight * n for m, n in zip(mlm_l, nsp_l)]
        for l in ls:
            l.backward()
        mlm_ls += mlm_l
        nsp_ls += nsp_l
    # Read back from the devices once every backward pass is queued
    mlm, nsp = allreduce('losses', [sum(map(float, mlm_ls)),
                                    sum(map(float, nsp_ls))])
    mlm_hits, nsp_hits = allreduce('hits', [sum(map(float, h)) for h in zip(
        *hits)]) if hits else (None, None)
    norm = apply_gradients(trainer, net, devices, options.clip_norm)
    if options.accumulate > 1:
        net.collect_params().zero_grad()
    npx.waitall()  # pairs/sec counts the backward pass and update (the book's
    # timer stops before they finish)
    return StepResult(mlm, nsp, mlm_hits, nsp_hits, num_pairs,
                      num_mlm_slots, norm)


def train_bert(train_iter, net, loss, vocab_size, devices, num_steps,
               trainer=None, options=None, callbacks=None, *, resume=None,
               kvstore=None):
    """Pretrain ``net`` as the book's ``train_bert`` does (the default
    :class:`TrainOptions` are the book's loop).

    Parameters
    ----------
    train_iter : iterable of batches of the seven fields
        (a :class:`~gluon_bert.dataset.DataIter`'s resume exactly)
    net, loss, vocab_size, devices
        The book's BERT, loss, vocabulary size and devices (cut across).
    num_steps : int or None
        Steps in all, resumed ones too (None: ``options.max_seconds``).
    trainer, options, callbacks : optional
        A ``gluon.Trainer`` (by default :func:`make_trainer`'s), the
        :class:`TrainOptions`, the :class:`Callbacks`.
    resume : dict, optional
        ``{'history', 'position'}`` of an earlier run, continued.
    kvstore : mxnet.kvstore.KVStore, optional
        A ``dist_sync`` one: totals and losses summed over its workers.

    Returns
    -------
    dict
        The history (:class:`~gluon_bert.history.History` lists its keys).
    """
    options, model, trainer, lr = _prepare(net, loss, devices, trainer,
                                           options, num_steps)
    callbacks = callbacks or Callbacks()
    allreduce = Allreduce(kvstore)
    history = History(devices, resume, options)
    clock = Clock(num_steps, options.max_seconds, history.history)
    batches = _batches(train_iter, resume and resume.get('position'))
    step = history.steps_done
    while not clock.finished(step):
        total = clock.total(step)
        rate = options.learning_rate(step + 1, total, lr)
        trainer.set_learning_rate(rate)
        group = [next(batches) for _ in range(options.accumulate)]
        if options.seed is not None:  # dropout depends on (seed, step) only
            mx.random.seed(step_seed(options.seed, step + 1))
        t0 = time.perf_counter()
        out = train_step(model, net, loss, vocab_size, devices, trainer,
                         [batch for batch, _ in group], options, allreduce)
        step += 1
        NonFiniteLossError.check(step, out)
        history.record_step(step, out, rate, total, time.perf_counter() - t0)
        clock.observe(step)
        last = clock.finished(step)
        if callbacks.evaluate and options.eval_every and (
                step % options.eval_every == 0 or last):
            history.record_eval(step, callbacks.evaluate(net))
        history.end_step(step, total, last, clock)
        if _stop(callbacks.on_step and callbacks.on_step(
                step, history.history, group[-1][1]), allreduce, step):
            history.history['stopped'] = step
            break
    history.close(devices)
    return history.history


def batch_totals(group):
    """``[pairs, MLM slots]`` of a step's batches (read on the host)."""
    hosts = [host_fields(batch) for batch in group]
    return [sum(len(h[0]) for h in hosts),
            sum(float(h[4].sum()) for h in hosts)]


def _prepare(net, loss, devices, trainer, options, num_steps):
    """Check, initialize, hybridize, make the trainer: ``(options, model,
    trainer, lr)``."""
    options = _loss_path(options or TrainOptions(), loss)
    _check_limits(num_steps, options)
    ensure_cpu_threads(devices)  # a script that imported mxnet first
    init_bert(net, devices)
    if options.accumulate > 1:
        for param in net.collect_params().values():
            if param.grad_req != 'null':
                param.grad_req = 'add'
    model = BERTPretrainLoss(net, loss) if options.fused else net
    if options.hybridize:
        model.hybridize(static_alloc=True, static_shape=True)
    lr = options.lr
    if trainer is None:
        trainer = make_trainer(net) if lr is None else make_trainer(net, lr)
    return (options, model, trainer,
            trainer.learning_rate if lr is None else lr)


def _loss_path(o, loss):
    """``o``, with the book's loss path for a loss the fused one does not
    compute (:func:`~gluon_bert.loss.is_softmax_ce`)."""
    if o.fused and not is_softmax_ce(loss):
        logger.info('%s is not the book\'s softmax cross-entropy: training '
                    'through the book\'s loss path', type(loss).__name__)
        return dataclasses.replace(o, fused=False)
    return o


def _check_limits(num_steps, o):
    if num_steps is None and o.max_seconds is None:
        raise GluonBertError('give num_steps, max_seconds or both')
    if num_steps is not None and num_steps < 1:
        raise GluonBertError(f'num_steps must be at least 1, got {num_steps}')
    if o.accumulate < 1:
        raise GluonBertError(f'accumulate must be at least 1, got '
                             f'{o.accumulate}')


def _stop(asked, allreduce, step):
    """Whether to stop after ``step``: a distributed job stops as one, at the
    step where any worker asked."""
    if allreduce.kvstore is None:
        return bool(asked)
    if allreduce('stop', [float(bool(asked))])[0] > 0:
        logger.debug('the workers agreed to stop after step %d', step)
        return True
    return False


def evaluate_bert(net, data_iter, vocab_size):
    """MLM and NSP loss and accuracy of ``net`` over held-out batches, in
    prediction mode (no dropout) on ``net``'s device.

    Parameters
    ----------
    net : BERTModel
    data_iter : iterable of batches of the seven fields
    vocab_size : int

    Returns
    -------
    dict
        ``mlm_loss``, ``mlm_accuracy`` (over weighted slots), ``nsp_loss``,
        ``nsp_accuracy`` (over pairs), ``mlm_slots`` and ``pairs``."""
    loss = gluon.loss.SoftmaxCELoss()
    device = net_device(net)
    sums = dict(mlm_loss=0.0, mlm_correct=0.0, mlm_slots=0.0, nsp_loss=0.0,
                nsp_correct=0.0, pairs=0)
    for batch in data_iter:
        (tokens, segments, valid_lens, pred_positions, mlm_weights,
         mlm_labels, nsp_labels) = [x.as_in_context(device) for x in batch]
        _, mlm_Y_hat, nsp_Y_hat = net(tokens, segments, valid_lens,
                                      pred_positions)
        mlm_Y_hat = mlm_Y_hat.reshape((-1, vocab_size))
        labels, weights = mlm_labels.reshape(-1), mlm_weights.reshape(-1)
        sums['mlm_loss'] += float((loss(mlm_Y_hat, labels) * weights).sum())
        hits = (mlm_Y_hat.argmax(axis=-1).astype('int32')
                == labels.astype('int32'))
        sums['mlm_correct'] += float((hits.astype('float32') * weights).sum())
        sums['mlm_slots'] += float(weights.sum())
        sums['nsp_loss'] += float(loss(nsp_Y_hat, nsp_labels).sum())
        sums['nsp_correct'] += float(
            (nsp_Y_hat.argmax(axis=-1).astype('int32')
             == nsp_labels.astype('int32')).astype('float32').sum())
        sums['pairs'] += int(tokens.shape[0])
    return {'mlm_loss': sums['mlm_loss'] / sums['mlm_slots'],
            'mlm_accuracy': sums['mlm_correct'] / sums['mlm_slots'],
            'nsp_loss': sums['nsp_loss'] / sums['pairs'],
            'nsp_accuracy': sums['nsp_correct'] / sums['pairs'],
            'mlm_slots': int(sums['mlm_slots']), 'pairs': sums['pairs']}

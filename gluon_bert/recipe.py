"""Training recipes: the book's, and one that learns past the demo.

The book trains with Adam at a constant learning rate of 0.01 on examples
drawn once.  That reproduces its 50-step demo, but longer runs stay on the
unigram plateau (the model predicts frequent words and NSP stays at chance).
The ``bert`` recipe adds what BERT's own pretraining (and GluonNLP's) uses:

* a learning rate that warms up linearly, then decays linearly to zero;
* Adam with *decoupled* weight decay (AdamW), none on LayerNorm and biases;
* gradients clipped to a global norm;
* new NSP pairs and MLM masks for every pass over the text
  (:class:`~gluon_bert.dataset.ResampledEpochs`).

The recipe's numbers (learning rate, batch size, warm-up, dropout) were
chosen by measurement on WikiText-2; ``benchmarks/bench_learning.py`` and the
README show the runs.
"""
import math

import mxnet as mx
from mxnet import gluon, init, np

from .utils import GluonBertError

__all__ = ['learning_rate', 'AdamW', 'NO_DECAY_PATTERN',
           'exclude_from_weight_decay', 'clip_global_norm', 'init_bert',
           'make_trainer', 'apply_gradients']

# The recipes themselves are named presets of the pretraining configuration:
# gluon_bert.config.RECIPES

#: Parameters that get no weight decay: LayerNorm's scale and shift, biases.
NO_DECAY_PATTERN = '.*gamma|.*beta|.*bias'


def learning_rate(step, total, peak, schedule='constant', warmup=0.0,
                  warmup_steps=None, cooldown=0.0):
    """The learning rate of (1-based) step ``step`` of ``total``.

    ``constant``: ``peak`` at every step (the book).  ``linear``: rises
    linearly over the first ``warmup`` share of the steps (at least one
    step; ``warmup_steps``, when given, instead) to ``peak``, then falls
    linearly from ``peak`` at the first step after it to ``peak / (total -
    warm-up steps)`` at the last step.  ``wsd`` (warm-up, stable, decay):
    the same warm-up, then ``peak`` until the last ``cooldown`` share of the
    steps, over which it falls linearly to ``peak / cooldown steps`` at the
    last step; with ``cooldown`` 0 it stays at ``peak``, so that one long run
    serves many budgets, each ended by a cooldown branch from one of its
    checkpoints.  ``total`` may be an estimate that changes during a run
    (``--max-minutes``): the rate is a function of the step and the current
    estimate only.
    """
    if schedule == 'constant':
        return peak
    if schedule not in ('linear', 'wsd'):
        raise ValueError(f'unknown schedule {schedule!r}: use constant, '
                         'linear or wsd')
    total = max(int(total), 1)
    if warmup_steps is not None:
        warm = int(warmup_steps)
    else:
        warm = max(1, int(round(warmup * total))) if warmup > 0 else 0
    if step <= warm:
        return peak * step / warm
    if schedule == 'linear':
        return peak * max(total - step + 1, 1) / max(total - warm, 1)
    decay = int(round(cooldown * total))
    start = total - decay  # the last stable step
    if decay <= 0 or step <= start:
        return peak
    return peak * max(total - step + 1, 1) / decay


@mx.optimizer.register
class AdamW(mx.optimizer.Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter).

    ``w -= lr * (m_hat / (sqrt(v_hat) + epsilon) + wd * w)``: the decay is
    applied to the weight, not added to the gradient, so Adam's scaling does
    not weaken it for parameters with large gradients.  With bias correction,
    as MXNet's Adam.  Registered as ``'adamw'``; per-parameter ``wd_mult``
    (see :func:`exclude_from_weight_decay`) is respected.
    """

    def __init__(self, learning_rate=0.001, beta1=0.9, beta2=0.999,
                 epsilon=1e-6, **kwargs):
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def create_state(self, index, weight):
        return (mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype),
                mx.nd.zeros(weight.shape, weight.context, dtype=weight.dtype))

    def update(self, index, weight, grad, state):
        self._update_count(index)
        lr, wd = self._get_lr(index), self._get_wd(index)
        t = self._index_update_count[index]
        # Bias correction folded into Adam's part of the step only
        correction = math.sqrt(1. - self.beta2 ** t) / (1. - self.beta1 ** t)
        kwargs = {'beta1': self.beta1, 'beta2': self.beta2,
                  'epsilon': self.epsilon, 'rescale_grad': self.rescale_grad}
        if self.clip_gradient:
            kwargs['clip_gradient'] = self.clip_gradient
        mean, var = state
        mx.nd.contrib.adamw_update(weight, grad, mean, var, out=weight,
                                   lr=correction, eta=lr, wd=wd, **kwargs)


def exclude_from_weight_decay(net):
    """Set ``wd_mult = 0`` on LayerNorm's gamma/beta and every bias of ``net``.

    Returns the names of the parameters excluded.
    """
    names = []
    for name, param in net.collect_params(NO_DECAY_PATTERN).items():
        param.wd_mult = 0.0
        names.append(name)
    return names


def clip_global_norm(grads, max_norm):
    """Scale the arrays ``grads`` (one device's) so their joint norm <= max_norm.

    Runs on the device without waiting for it; returns the norm before
    clipping as a 0-d array.
    """
    total = np.sqrt(sum((g * g).sum() for g in grads))
    scale = np.minimum(max_norm / (total + 1e-6), 1.0)
    for g in grads:
        g *= scale
    return total


def init_bert(net, devices, method='xavier'):
    """Initialize ``net`` on ``devices`` unless already initialized.

    ``method`` 'xavier' is the book's (``init.Xavier()`` for every weight);
    'normal' is BERT's own, N(0, 0.02^2) for every weight and embedding.
    Biases start at 0 and LayerNorms at (1, 0) with either.
    """
    if method not in ('xavier', 'normal'):
        raise GluonBertError(f'unknown init {method!r}: use xavier or normal')
    params = net.collect_params()
    fresh = []
    for param in params.values():
        try:
            param.list_ctx()
        except RuntimeError:
            fresh.append(param)
    default = init.Xavier() if method == 'xavier' else init.Normal(0.02)
    for param in fresh:
        param.initialize(default_init=default, ctx=devices)
    return net


def make_trainer(net, lr=0.01, kvstore='device', optimizer='adam',
                 weight_decay=0.0):
    """The book's optimizer: ``gluon.Trainer`` with Adam at ``lr``.

    Updates run on each device (``update_on_kvstore=False``), the gradients
    being summed across devices (and workers) through ``kvstore`` ('device',
    'local', or a KVStore such as ``mx.kv.create('dist_sync')``); so every
    device holds the optimizer state, which checkpoints save and restore.
    ``optimizer='adamw'`` is Adam with decoupled ``weight_decay``
    (:class:`~gluon_bert.recipe.AdamW`), which then skips LayerNorm and
    biases; with 'adam' or 'sgd' a weight decay is the classic L2 term.
    """
    params = {'learning_rate': lr}
    if weight_decay:
        params['wd'] = weight_decay
        if optimizer == 'adamw':
            exclude_from_weight_decay(net)
    return gluon.Trainer(net.collect_params(), optimizer, params,
                         kvstore=kvstore, update_on_kvstore=False)


def apply_gradients(trainer, net, devices, clip_norm=0.0, batch_size=1):
    """Sum the gradients over devices (and workers), clip them, update.

    The gradients are divided by ``batch_size`` (``trainer.step``'s
    argument: 1 when the loss is normalized already, as pretraining's is;
    the batch's size for a summed loss, as the book's fine-tuning does).
    Pretraining and fine-tuning both step through here.  Returns the global
    gradient norm before clipping (None without clipping).
    """
    if not clip_norm:
        trainer.step(batch_size)  # the book's: allreduce and update at once
        return None
    trainer.allreduce_grads()
    params = [p for p in net.collect_params().values()
              if p.grad_req != 'null']
    # Every device holds the same summed gradients, so the same norm
    norms = [clip_global_norm([p.grad(device) for p in params],
                              clip_norm * batch_size)
             for device in devices]
    trainer.update(batch_size)
    return float(norms[0]) / batch_size

"""Training recipes: the book's, and one that learns past the demo.

The book's Adam at a constant 0.01 on examples drawn once reproduces its
50-step demo, but longer runs stay on the unigram plateau.  The ``bert``
recipe adds what BERT's pretraining uses: warm-up then linear decay, AdamW
(none on LayerNorm and biases), clipping to a global norm, and new examples
every epoch (:class:`~gluon_bert.dataset.ResampledEpochs`).
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

    ``constant``: ``peak`` (the book).  ``linear``: up over the first
    ``warmup`` share of the steps (or ``warmup_steps``) to ``peak``, then down
    linearly to ``peak / (total - warm-up)`` at the last step.  ``wsd``: the
    same warm-up, ``peak`` until the last ``cooldown`` share, then down to
    ``peak / cooldown steps``; with ``cooldown`` 0 it stays at ``peak`` (a long
    run that cooldown branches end).  ``total`` may be a changing estimate
    (``--max-minutes``).
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
    """Scale the arrays ``grads`` (one device's) so their joint norm <=
    max_norm.

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


def make_trainer(net, lr=None, kvstore='device', optimizer='adam',
                 weight_decay=0.0):
    """The book's optimizer: ``gluon.Trainer`` with Adam at ``lr`` (default:
    :class:`~gluon_bert.config.PretrainConfig`'s, the book's 0.01).

    Updates run on each device (``update_on_kvstore=False``), gradients summed
    through ``kvstore`` ('device', 'local' or a KVStore), so every device holds
    the optimizer state.  ``optimizer='adamw'``: :class:`AdamW` with decoupled
    ``weight_decay``, none on LayerNorm and biases; with 'adam' or 'sgd' weight
    decay is the classic L2 term.
    """
    if lr is None:
        from .config import PretrainConfig
        lr = PretrainConfig.lr
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

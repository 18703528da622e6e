"""The fine-tuned classifier: the book's training loop, scores, saving and
predictions (the library behind ``finetune`` and ``predict``).
"""
import os
import time

from .utils import GluonBertError

__all__ = ['finetune', 'predict_dataset', 'evaluate_task',
           'save_classifier', 'load_classifier',
           'save_progress', 'load_progress', 'PROGRESS',
           'predict_texts', 'format_metrics', 'set_dropout']

#: The folder, inside a fine-tuning run's save_dir, of the run stopped by a
#: signal: what ``--resume`` continues from.
PROGRESS = 'resume'


def set_dropout(net, rate):
    """Set the rate of every Dropout layer of ``net``."""
    from mxnet.gluon import nn

    def visit(block):
        if isinstance(block, nn.Dropout):
            block._rate = rate
    net.apply(visit)


def _shards(arrays, devices):
    """The book's ``split_batch_multi_inputs``: per device, its inputs."""
    from mxnet import gluon, np
    return list(zip(*[gluon.utils.split_and_load(
        np.array(a, dtype=a.dtype), devices, even_split=False)
        for a in arrays]))


def _input_shards(inputs, devices, num_heads=None):
    """Per device, the classifier's inputs for its share of a padded batch
    ``(tokens, segments, valid_lens)``: as the book loads them, or packed
    (:func:`~gluon_bert.packing.pack_tokens`) when ``num_heads`` is given.
    Either way the batch is cut as ``split_and_load`` cuts it."""
    if num_heads is None:
        return _shards(inputs, devices)
    from .packing import pack_tokens, split_and_pack

    def pack(shard):
        (tokens, segments, positions, valid_lens, head_index, merge_index,
         row_of) = pack_tokens(*shard, num_heads, token_multiple=512)
        # In the order of BERTClassifier's inputs; row_of[:, 0]: the <cls>
        return (tokens, segments, valid_lens, positions, head_index,
                merge_index, row_of[:, 0].astype('int32'))
    return split_and_pack(inputs, devices, pack)


def predict_dataset(net, dataset, devices, batch_size=512, packed=True):
    """``net``'s predictions for every example of a :class:`~gluon_bert.
    tasks.ClassificationDataset`: classes (no. of examples,) int, or the
    scores of a one-output (regression) model (no. of examples,) float."""
    import numpy as onp
    heads = net.num_heads if packed else None
    preds = []
    for start in range(0, len(dataset), batch_size):
        idx = onp.arange(start, min(start + batch_size, len(dataset)))
        *inputs, _ = dataset.batch(idx)
        for x in _input_shards(inputs, devices, heads):
            out = net(*x)
            preds.append((out[:, 0] if net.num_classes == 1
                          else out.argmax(axis=-1)).asnumpy())
    return onp.concatenate(preds)


def evaluate_task(net, dataset, devices, metrics=('accuracy',),
                  batch_size=512, packed=True):
    """``{metric: value}`` of ``net`` on ``dataset`` (prediction mode)."""
    from .tasks import score
    return score(metrics, predict_dataset(net, dataset, devices, batch_size,
                                          packed), dataset.labels)


def _train_batch(net, loss, trainer, train_set, idx, devices, heads, totals):
    """One step on the examples ``idx``; adds to ``totals`` (summed loss,
    correct predictions or None for a regression, examples)."""
    from mxnet import autograd, npx

    from .trainer import apply_gradients
    *inputs, labels = train_set.batch(idx)
    X_shards = _input_shards(inputs, devices, heads)
    y_shards = [y for (y,) in _shards([labels], devices)]
    with autograd.record():
        pred_shards = [net(*X) for X in X_shards]
        ls = [loss(pred, y) for pred, y in zip(pred_shards, y_shards)]
    for l in ls:
        l.backward()
    # The summed loss is divided by the batch size here, as train_ch13's
    # trainer.step(labels.shape[0])
    apply_gradients(trainer, net, devices, batch_size=len(labels))
    totals[0] += sum(float(l.sum()) for l in ls)
    if totals[1] is not None:
        totals[1] += sum(int((pred.argmax(axis=-1).astype('int32') == y).sum())
                         for pred, y in zip(pred_shards, y_shards))
    totals[2] += len(labels)
    npx.waitall()


def _start(c, regression, metrics, resume):
    """Where the loop starts: a fresh run's position and history, or those
    of ``resume`` (what ``on_step`` was handed when the run stopped).  The
    position is the epoch, the batches done in it, the steps done, the
    NumPy RNG state at the epoch's start (it decides the order) and the
    epoch's running totals."""
    import numpy as onp

    from .utils import numpy_state_from_json, numpy_state_to_json
    rng = onp.random.RandomState(c.seed)
    if resume is not None:
        position, history = resume['position'], resume['history']
        rng.set_state(numpy_state_from_json(position['rng']))
        return rng, dict(position), history
    history = {'train_loss': [], 'train_acc': [], 'dev': [], 'dev_score': [],
               'seconds': []}
    if 'accuracy' in metrics:
        history['dev_acc'] = []
    position = dict(epoch=1, batch=0, step=0, seconds=0.0,
                    rng=numpy_state_to_json(rng.get_state()),
                    totals=[0.0, None if regression else 0, 0])
    return rng, position, history


def _trainer(net, c, resume):
    """The book's Adam, or AdamW without decay on LayerNorm and biases (the
    optimizer pretraining makes), with an earlier run's state if resuming."""
    from .state import load_trainer_states
    from .trainer import make_trainer
    trainer = make_trainer(net, c.lr, optimizer='adamw' if c.weight_decay
                           else 'adam', weight_decay=c.weight_decay)
    if resume is not None:
        load_trainer_states(trainer, resume['trainer_path'],
                            resume['trainer_meta'])
    return trainer


def finetune(net, train_set, dev_set, devices, config=None, on_epoch=None,
             metrics=('accuracy',), verbose=True, on_step=None, resume=None):
    """Train ``net`` (a :class:`~gluon_bert.model.BERTClassifier`) as the
    book's ``train_ch13`` does; score ``dev_set`` after every epoch.

    ``config`` (:class:`~gluon_bert.config.FinetuneConfig`) gives the epochs,
    rate, batch, seed and: ``schedule='linear'`` (warm-up, linear decay),
    ``weight_decay`` > 0 (AdamW), ``padded`` (else valid tokens are packed:
    the same numbers).  A one-output head is a regression (``L2Loss``).

    Returns the history per epoch: ``train_loss``, ``train_acc``, ``dev``
    (``{metric: value}``), ``dev_score``, ``dev_acc``, ``seconds``.  Calls
    ``on_epoch(epoch, history)`` after each epoch, ``on_step(history,
    position, trainer)`` after each step (True stops); ``resume`` (position,
    history, trainer_path, trainer_meta) continues a run.
    """
    import mxnet as mx
    from mxnet import gluon

    from .utils import numpy_state_to_json
    from .config import FinetuneConfig
    from .recipe import learning_rate
    from .threads import ensure_cpu_threads
    from .trainer import step_seed
    ensure_cpu_threads(devices)  # a script that imported mxnet first
    c = config or FinetuneConfig()
    regression = net.num_classes == 1
    loss = gluon.loss.L2Loss() if regression else gluon.loss.SoftmaxCELoss()
    trainer = _trainer(net, c, resume)
    heads = None if c.padded else net.num_heads
    num_batches = -(-len(train_set) // c.batch_size)
    total = c.epochs * num_batches
    rng, pos, history = _start(c, regression, metrics, resume)
    clock = time.perf_counter() - pos['seconds']
    for epoch in range(pos['epoch'], c.epochs + 1):
        if epoch != pos['epoch']:  # a new epoch: its order, fresh totals
            pos.update(epoch=epoch, batch=0, totals=[
                0.0, None if regression else 0, 0],
                rng=numpy_state_to_json(rng.get_state()))
        order = rng.permutation(len(train_set))
        totals = pos['totals']
        for i in range(pos['batch'], num_batches):
            pos['step'] += 1
            trainer.set_learning_rate(learning_rate(
                pos['step'], total, c.lr, c.schedule, c.warmup))
            mx.random.seed(step_seed(c.seed, pos['step']))
            _train_batch(net, loss, trainer, train_set,
                         order[i * c.batch_size:(i + 1) * c.batch_size],
                         devices, heads, totals)
            pos.update(batch=i + 1, seconds=time.perf_counter() - clock)
            if verbose and c.log_every and (i + 1) % c.log_every == 0:
                print(f'epoch {epoch} batch {i + 1}/{num_batches}: train '
                      f'loss {totals[0] / totals[2]:.3f}', flush=True)
            if on_step is not None and on_step(history, pos, trainer):
                return history
        _end_epoch(net, dev_set, devices, metrics, c, history, totals,
                   time.perf_counter() - clock, epoch, verbose)
        if on_epoch is not None:
            on_epoch(epoch, history)
    return history


def _end_epoch(net, dev_set, devices, metrics, c, history, totals, seconds,
               epoch, verbose):
    """Score the dev split and add the epoch to ``history``."""
    loss_sum, correct, seen = totals
    dev = evaluate_task(net, dev_set, devices, metrics, c.batch_size,
                        not c.padded)
    history['train_loss'].append(loss_sum / seen)
    history['train_acc'].append(None if correct is None else correct / seen)
    history['dev'].append(dev)
    history['dev_score'].append(dev[metrics[0]])
    if 'dev_acc' in history:
        history['dev_acc'].append(dev['accuracy'])
    history['seconds'].append(seconds)
    if verbose:
        acc = '' if correct is None else f', train acc {correct / seen:.3f}'
        print(f'epoch {epoch}/{c.epochs}: train loss {loss_sum / seen:.3f}'
              f'{acc}, dev {format_metrics(dev)} ({seconds:.0f} s)',
              flush=True)


def format_metrics(values):
    """``accuracy 0.812, f1 0.870``: metric values for a progress line."""
    return ', '.join(f'{name} {value:.3f}' for name, value in values.items())


def save_classifier(model_dir, net, vocab, bert_config, info):
    """Write config.json (the BERT settings and ``classifier``: ``info``),
    vocab.json and model.params with
    :func:`~gluon_bert.checkpoint.save_model_dir`, the writer of every model
    directory: a write that cannot complete leaves the model saved before it
    as it was and raises a one-line :class:`~gluon_bert.utils.
    GluonBertError`."""
    from .checkpoint import save_model_dir
    save_model_dir(model_dir, net, vocab, model_config=bert_config,
                   sections={'classifier': dict(info)},
                   what='the fine-tuned model')


def save_progress(model_dir, net, trainer, history, position, extra=None):
    """Save a fine-tuning run stopped after a step (what ``on_step`` of
    :func:`finetune` was handed) into ``model_dir/resume/`` with
    :func:`~gluon_bert.state.write_state`, pretraining's checkpoint writer:
    the weights, the optimizer state and ``state.json`` (position, history,
    ``extra``); the last complete state stays loadable if a write fails (a
    one-line :class:`~gluon_bert.utils.GluonBertError`)."""
    from .state import write_state
    return write_state(os.path.join(model_dir, PROGRESS), position['step'],
                       net, trainer, dict(extra or {}, position=position,
                                          history=history))


def load_progress(model_dir):
    """The state :func:`save_progress` wrote (its files checked by
    :func:`~gluon_bert.state.read_state`), as :func:`finetune` takes it
    (``resume=``), plus what was saved beside it; ``model_params`` is the
    weights' path."""
    from .state import PARAMS, STATE, STATES, read_state
    folder = os.path.join(model_dir, PROGRESS)
    state = read_state(folder, missing=(
        f'{model_dir} holds no stopped fine-tuning run '
        f'({os.path.join(folder, STATE)} is missing): start one without '
        'resume'), settings=['resume'])
    return dict(state, model_params=state['files'][PARAMS]['path'],
                trainer_path=state['files'][STATES]['path'],
                trainer_meta=state['trainer'])


def load_classifier(model_dir, device=None):
    """Load a fine-tuned classifier (a folder written by ``finetune``).

    Parameters
    ----------
    model_dir : str
    device : mxnet.Context, optional
        Default ``cpu(0)``.

    Returns
    -------
    (BERTClassifier, Vocab, dict)
        The classifier, its vocabulary and its config.json (its
        ``classifier`` entry: task, labels, tokenizer, settings)."""
    import mxnet as mx

    from .checkpoint import (CONFIG, load_params, bert_from_config,
                             checked_files, load_config)
    from .model import BERTClassifier
    if not os.path.isdir(model_dir):
        raise GluonBertError(f'{model_dir} is not a folder: pass the '
                             'directory written by gluon_bert.finetune')
    config = load_config(model_dir)
    info = config.get('classifier')
    if not isinstance(info, dict) or 'num_classes' not in info:
        raise GluonBertError(f'{model_dir} holds a pretrained BERT, not a '
                             'fine-tuned classifier: run gluon_bert.finetune '
                             'first')
    vocab, params = checked_files(model_dir, config, require_sha1=True)
    net = load_params(BERTClassifier(bert_from_config(config),
                                     info['num_classes']),
                      params, device or mx.cpu(0), CONFIG)
    net.hybridize(static_alloc=True)
    return net, vocab, config


def predict_texts(net, vocab, texts, max_len, batch_size=256,
                  tokenizer='split'):
    """A fine-tuned classifier's predictions for texts.

    Parameters
    ----------
    net : BERTClassifier
    vocab : Vocab
    texts : list of str
        Each a sentence, or a tab-separated pair.
    max_len : int
        Longer inputs are cut.
    batch_size : int
    tokenizer : str
        The one the model was fine-tuned with (its config says).

    Returns
    -------
    (no. of texts, num_classes) NumPy array
        Class probabilities; a regression model's scores: (no. of texts,
        1)."""
    import numpy as onp
    from mxnet import npx

    from .encoder import split_text
    from .model import net_device
    from .tasks import ClassificationDataset
    for text in texts:
        split_text(text)  # one sentence or two, none empty
    pairs = [text.split('\t') + [None] for text in texts]
    has_b = any(p[1] is not None for p in pairs)
    dataset = ClassificationDataset(
        [p[0] for p in pairs], [p[1] for p in pairs] if has_b else None,
        [0] * len(pairs), vocab, max_len, tokenizer)
    device = net_device(net)
    out = []
    for start in range(0, len(dataset), batch_size):
        idx = onp.arange(start, min(start + batch_size, len(dataset)))
        *inputs, _ = dataset.batch(idx)
        (x,) = _shards(inputs, [device])
        scores = net(*x)
        out.append((scores if net.num_classes == 1
                    else npx.softmax(scores)).asnumpy())
    return onp.concatenate(out)

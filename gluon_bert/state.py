"""Training state: what a stopped run needs to continue exactly.

One writer and one verifier for pretraining's checkpoints and a stopped
fine-tuning run (``SAVE_DIR/resume/``)::

    state.json              step, data position, history, RNG states, the
                            optimizer's counts, the SHA-1 of each file below
    SUB/model-<step>.params      Gluon save_parameters
    SUB/trainer-<step>.states    the optimizer's state (nd.save, no pickle)
    SUB/state-<step>.json        that step's state.json (a branch point)

:func:`write_state` writes each file under a temporary name, then
state.json, which only names complete files, then drops older steps;
:func:`read_state` checks every SHA-1 first.  No MXNet is imported until
arrays are read or written (:mod:`gluon_bert.launch` checks states).
"""
import json
import os
import random

from .utils import (GluonBertError, atomic_path, atomic_write, file_digest,
                    free_bytes, megabytes, numpy_state_from_json,
                    numpy_state_to_json, random_state_from_json,
                    random_state_to_json, write_error)

__all__ = ['STATE', 'PARAMS', 'STATES', 'write_state', 'read_state',
           'state_step', 'saved_steps', 'step_state_name',
           'save_trainer_states', 'load_trainer_states', 'random_states',
           'restore_random_states', 'checkpoint_bytes', 'check_room']

#: The file that names a complete state.
STATE = 'state.json'
#: The files of one step: (key in state.json's ``files``, name pattern);
#: the keys are the names a model directory gives the newest of them.
PARAMS, STATES = 'model.params', 'trainer.states'
_FILES = ((PARAMS, 'model-{:08d}.params'), (STATES, 'trainer-{:08d}.states'))
#: With ``sub``, each step's state.json is kept beside its files too.
_STEP_STATE = 'state-{:08d}.json'


def write_state(folder, step, net, trainer, fields, sub='', keep=1,
                what='state'):
    """Write the state of ``step`` into ``folder`` (atomic, see the module).

    ``net`` and the optimizer state go to ``sub/``; ``fields`` (JSON-able) into
    state.json with the SHA-1s and the optimizer's counts; all but the newest
    ``keep`` steps (None or 0: all kept) are removed.  A failed write removes
    this step's files and raises a one-line
    :class:`~gluon_bert.utils.GluonBertError` naming ``what``.  Returns the
    state.
    """
    import mxnet as mx
    names = {key: os.path.join(sub, pattern.format(step))
             for key, pattern in _FILES}
    try:
        os.makedirs(os.path.join(folder, sub), exist_ok=True)
        with atomic_path(os.path.join(folder, names[PARAMS])) as tmp:
            net.save_parameters(tmp)
        meta = save_trainer_states(trainer,
                                   os.path.join(folder, names[STATES]))
        state = dict(fields, step=step, trainer=meta, files={
            key: {'path': name,
                  'sha1': file_digest(os.path.join(folder, name))}
            for key, name in names.items()})
        if sub:  # each step's own copy: a branch can start from it
            with atomic_write(os.path.join(folder, step_state_name(
                    sub, step)), 'w') as f:
                json.dump(state, f)
        with atomic_write(os.path.join(folder, STATE), 'w') as f:
            json.dump(state, f)
    except (OSError, mx.MXNetError) as e:
        kept = _drop_unnamed(folder, sub, step)
        error = write_error(e, f'the {what} of step {step}', folder,
                            checkpoint_bytes(net))
        raise GluonBertError(
            f'{error}; ' + (f'the last complete {what} (step {kept}) is kept'
                            if kept is not None else
                            f'no {what} was completed'),
            ['save_dir']) from None
    _remove_older(folder, sub, keep)
    return state


def saved_steps(folder, sub):
    """The steps whose files lie in ``folder/sub``, oldest first."""
    try:
        names = os.listdir(os.path.join(folder, sub))
    except OSError:
        return []
    return sorted({int(n[6:14]) for n in names
                   if n.startswith('model-') and n.endswith('.params')
                   and n[6:14].isdigit()})


def _remove(folder, sub, step):
    for pattern in [p for _, p in _FILES] + [_STEP_STATE]:
        try:
            os.remove(os.path.join(folder, sub, pattern.format(step)))
        except OSError:
            pass


def _drop_unnamed(folder, sub, step):
    """Remove the files of ``step`` unless state.json names them; returns
    the step of the complete state, or None."""
    saved = state_step(folder)
    if saved != step:
        _remove(folder, sub, step)
    return saved


def _remove_older(folder, sub, keep):
    if not keep:  # None or 0: keep every step
        return
    for old in saved_steps(folder, sub)[:-keep]:
        _remove(folder, sub, old)


def step_state_name(sub, step):
    """Where :func:`write_state` keeps the state of ``step`` (with ``sub``),
    relative to its folder."""
    return os.path.join(sub, _STEP_STATE.format(step))


def state_step(folder):
    """The step state.json of ``folder`` names, or None when it is missing
    or unreadable (its files are not checked: :func:`read_state` does)."""
    try:
        with open(os.path.join(folder, STATE), encoding='utf-8') as f:
            return json.load(f).get('step')
    except (OSError, ValueError, AttributeError):
        return None


def read_state(folder, missing=None, settings=(), name=STATE):
    """state.json of ``folder`` (or the state file ``name`` there) with every
    file it names checked against its SHA-1; ``files[key]['path']`` made
    absolute.  ``missing``: the message when there is no such file
    (default: one naming it), naming ``settings``.  Any problem is a
    one-line :class:`~gluon_bert.utils.GluonBertError`."""
    path = os.path.join(folder, name)
    if not os.path.isfile(path):
        raise GluonBertError(missing or f'{path} is missing: no complete '
                             'state to resume', settings)
    try:
        with open(path, encoding='utf-8') as f:
            state = json.load(f)
        files = state['files']
        for entry in files.values():
            entry['path'] = os.path.join(folder, entry['path'])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise GluonBertError(f'{path} cannot be read ({e}): the file is '
                             'damaged') from None
    for entry in files.values():
        if not os.path.isfile(entry['path']):
            raise GluonBertError(f'{entry["path"]} is missing: {path} needs '
                                 'it to resume')
        if file_digest(entry['path']) != entry.get('sha1'):
            raise GluonBertError(f'{entry["path"]} does not match the SHA-1 '
                                 f'in {path}: the file is damaged')
    return state


# --------------------------------------------------------------------------
# The optimizer's state, without pickle
# --------------------------------------------------------------------------
def _flatten_state(state, prefix, arrays):
    """Adam's (mean, var) and other nested tuples -> named NDArrays."""
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return [_flatten_state(s, f'{prefix}.{i}', arrays)
                for i, s in enumerate(state)]
    arrays[prefix] = state.as_nd_ndarray() if hasattr(
        state, 'as_nd_ndarray') else state
    return prefix


def _unflatten_state(layout, arrays, device):
    if layout is None:
        return None
    if isinstance(layout, list):
        return tuple(_unflatten_state(x, arrays, device) for x in layout)
    return arrays[layout].copyto(device)


def save_trainer_states(trainer, path):
    """Write the optimizer state of ``trainer`` to ``path``.

    Returns the JSON-able part (update counts and the layout of the arrays),
    which :func:`write_state` keeps in state.json.
    """
    import mxnet as mx
    updater = trainer._updaters[0]
    arrays, layout = {}, {}
    for index, state in updater.states.items():
        layout[str(index)] = _flatten_state(state, f's{index}', arrays)
    with atomic_path(path) as tmp:
        mx.nd.save(tmp, arrays)
    optimizer = trainer._optimizer
    return {'layout': layout, 'num_update': optimizer.num_update,
            'index_update_count': {
                str(dev): {str(k): v for k, v in counts.items()}
                for dev, counts in optimizer._all_index_update_counts.items()}}


def load_trainer_states(trainer, path, meta):
    """Restore what :func:`save_trainer_states` wrote, on every device."""
    import mxnet as mx
    try:
        arrays = mx.nd.load(path)
    except mx.MXNetError as e:
        first = str(e).strip().splitlines()[0][:120]
        raise GluonBertError(f'{path} cannot be read ({first}): the file is '
                             'damaged') from None
    contexts = trainer._contexts
    for updater, device in zip(trainer._updaters, contexts):
        for index, layout in meta['layout'].items():
            updater.states[int(index)] = _unflatten_state(
                layout, arrays, device)
            updater.states_synced[int(index)] = True
    optimizer = trainer._optimizer
    optimizer.num_update = meta['num_update']
    optimizer._all_index_update_counts = {
        int(dev): {int(k): v for k, v in counts.items()}
        for dev, counts in meta['index_update_count'].items()}
    counts = optimizer._all_index_update_counts
    optimizer._index_update_count = counts.setdefault(0, {})


def random_states():
    """Python's and NumPy's RNG states, JSON-able."""
    import numpy as onp
    return {'python': random_state_to_json(random.getstate()),
            'numpy': numpy_state_to_json(onp.random.get_state())}


def restore_random_states(state):
    """Put Python's and NumPy's RNGs back as :func:`random_states` saved
    them (``state['rng']``)."""
    import numpy as onp
    random.setstate(random_state_from_json(state['rng']['python']))
    onp.random.set_state(numpy_state_from_json(state['rng']['numpy']))


# --------------------------------------------------------------------------
# Room
# --------------------------------------------------------------------------
def checkpoint_bytes(net):
    """About how many bytes one state of ``net`` (shapes known) takes:
    float32 parameters and Adam's two moments."""
    from .model import count_parameters
    return 3 * 4 * count_parameters(net)


def check_room(folder, net, copies=2):
    """Refuse to start a run whose folder cannot take ``copies`` states: not
    writable, or too little free space."""
    os.makedirs(folder, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise GluonBertError(f'{folder} is not writable: pick a save_dir '
                             'you can write to', ['save_dir'])
    need, free = copies * checkpoint_bytes(net), free_bytes(folder)
    if free is not None and free < need:
        raise GluonBertError(
            f'{folder} has {megabytes(free)} free, but {copies} '
            f'checkpoints of this model take about {megabytes(need)}: free '
            'some space or pick another save_dir', ['save_dir'])

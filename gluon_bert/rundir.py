"""The folder a run writes into: one run at a time, the one before kept.

A run holds ``.lock`` (pid, host, start time; made with ``O_EXCL``); a second
run into a held folder is refused, naming the holder, and a lock whose
process is gone is taken over.  A new run into a folder holding an earlier
one moves it to ``previous/`` first; :func:`make_room` says whether it may
start at all.
"""
import json
import logging
import os
import shutil
import socket
import time

from .utils import GluonBertError, atomic_write

__all__ = ['RunLock', 'LOCK', 'PREVIOUS', 'keep_previous', 'make_room',
           'make_room_for']

logger = logging.getLogger(__name__)

LOCK, PREVIOUS = '.lock', 'previous'


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunLock:
    """The lock of one run on ``folder``; a context manager.

    Raises :class:`~gluon_bert.utils.GluonBertError` (setting
    ``save_dir``) when another live process holds it.
    """

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK)
        self.held = self.created = False

    def _holder(self):
        try:
            with open(self.path, encoding='utf-8') as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def acquire(self):
        # made here: removed again on release if the run wrote nothing
        self.created = not os.path.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        me = {'pid': os.getpid(), 'host': socket.gethostname(),
              'started': time.strftime('%Y-%m-%d %H:%M:%S')}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                             0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None or (holder.get('host') == me['host']
                                      and not _alive(holder.get('pid', -1))):
                    # stale (its process is gone) or unreadable: take it over
                    with atomic_write(self.path, 'w') as f:
                        json.dump(me, f)
                    self.held = True
                    return self
                raise GluonBertError(
                    f'{self.folder} is in use by another run (pid '
                    f'{holder.get("pid")} on {holder.get("host")}, started '
                    f'{holder.get("started")}): wait for it to end, or write '
                    'to another save_dir', ['save_dir'])
            with os.fdopen(fd, 'w', encoding='utf-8') as f:
                json.dump(me, f)
            self.held = True
            return self
        raise GluonBertError(f'could not lock {self.folder}', ['save_dir'])

    def release(self):
        if self.held:
            holder = self._holder()
            if holder and holder.get('pid') == os.getpid():
                try:
                    os.remove(self.path)
                except OSError:
                    pass
            self.held = False
            if self.created:
                try:
                    os.rmdir(self.folder)  # only if empty
                except OSError:
                    pass

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def keep_previous(folder):
    """Move everything in ``folder`` but the lock and ``previous/`` into a
    fresh ``previous/`` (replacing an older one).  Returns the number of
    entries moved."""
    folder = os.fspath(folder)
    names = [n for n in os.listdir(folder) if n not in (LOCK, PREVIOUS)]
    if not names:
        return 0
    staging = os.path.join(folder, f'.{PREVIOUS}.new')
    shutil.rmtree(staging, ignore_errors=True)
    os.makedirs(staging)
    for name in names:
        os.replace(os.path.join(folder, name), os.path.join(staging, name))
    old = os.path.join(folder, PREVIOUS)
    if os.path.isdir(old):
        shutil.rmtree(old)
    os.replace(staging, old)
    return len(names)


def make_room(folder, differ, more_steps=None, overwrite=False, holds=None):
    """Before a new run writes into ``folder``, which holds an earlier one:
    ``differ`` (the settings that differ), ``more_steps`` (the earlier run's,
    when it trained further) or ``holds`` (what the folder holds when it cannot
    be compared) refuse it unless ``overwrite``; otherwise (the guide's command
    run again) the earlier run moves to ``previous/``.
    """
    if (holds or differ or more_steps) and not overwrite:
        names = ', '.join(differ[:4]) + (', ...' if len(differ) > 4 else '')
        what = (holds or (f'a run of other settings ({names})' if differ
                          else f'a run of more steps ({more_steps})'))
        raise GluonBertError(
            f'{folder} holds {what}: '
            + ('' if holds else 'continue it with resume, ')
            + 'replace it with overwrite (it is then kept in previous/), or '
            'pick another save_dir',
            ['resume', 'overwrite', 'save_dir'] + list(differ))
    keep_previous(folder)
    logger.info('The earlier run in %s is kept in %s/', folder,
                os.path.join(folder, PREVIOUS))


def make_room_for(config, earlier):
    """:func:`make_room` before a new run of ``config`` (a job's
    configuration: ``save_dir``, ``overwrite``, and ``steps`` for
    pretraining) into a folder that holds ``earlier``: None (nothing), or
    ``(its settings or None, its step or None, what it holds instead or
    None)``, as the job's own reader of the folder says."""
    if earlier is None:
        return
    from .flags import differing_settings
    saved, step, holds = earlier
    steps = getattr(config, 'steps', None)
    more = (step if step is not None and steps is not None and step > steps
            else None)
    differ = differing_settings(saved, config) if saved and not holds else []
    make_room(config.save_dir, differ, more, config.overwrite, holds)

"""Stopping a run cleanly on Ctrl-C (SIGINT) or SIGTERM.

SIGTERM is what ``timeout``, ``docker stop``, systemd, Slurm and Kubernetes
send; both ``pretrain`` and ``finetune`` turn either signal into 'finish
this step, save a checkpoint as at the end of a run, exit 128 + the signal
number' (:class:`StopOnSignal`).
"""
import logging
import os

__all__ = ['StopOnSignal', 'ForcedExit', 'signal_name', 'run_stoppable',
           'received']

logger = logging.getLogger(__name__)

#: Every signal a :class:`StopOnSignal` caught in this process, in order: a
#: caller that ran a command in-process (a test suite) can tell that the
#: user asked to stop, not only that the command saved and returned 130.
received = []


class ForcedExit(BaseException):
    """A third signal: quit now, without the checkpoint being finished."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def run_stoppable(prog, run, args):
    """A training command's exit code: ``run(args)`` (through
    :func:`~gluon_bert.utils.run_command`) returns ``(result, signal or
    None)``; 0 when it finished, 130 after Ctrl-C and 143 after SIGTERM
    (what a shell reports for them), 1 for a one-line error, and the same
    130/143 when the signal came before training began or a third one
    forced the exit."""
    from .utils import run_command
    try:
        code, result = run_command(prog, run, args)
    except KeyboardInterrupt:
        logger.warning('Interrupted before training began; nothing was '
                       'saved.')
        return 130
    except ForcedExit as e:
        logger.warning('Stopped by a third signal before the checkpoint was '
                       'complete; the last complete checkpoint (if any) is '
                       'as it was.')
        return 128 + e.signum
    if code:
        return code
    _, signum = result
    return 0 if signum is None else 128 + signum


def signal_name(signum):
    """``SIGTERM`` or ``Ctrl-C``: how a stop message names the signal."""
    import signal
    return 'SIGTERM' if signum == signal.SIGTERM else 'Ctrl-C'


class StopOnSignal:
    """A context manager: while inside, the first SIGINT or SIGTERM sets
    ``stop`` (the training loop finishes its step and saves); a second is
    ignored until the checkpoint is complete; a third raises
    :class:`ForcedExit` at once (files are written to temporary names and
    renamed, and an unfinished one is removed, so nothing half-written is
    left).  Outside the main thread signals stay as they are.  With
    ``keep`` (a distributed job), the handler stays after the block: a late
    signal is then ignored (the third still quits at once), so that a worker
    stopped by the others' agreement finishes its exit handshake.
    """

    _SIGNALS = ('SIGINT', 'SIGTERM')

    def __init__(self, keep=False):
        self.signum, self.count, self._old = None, 0, {}
        self.keep = keep

    @property
    def stop(self):
        return self.signum is not None

    def __enter__(self):
        import signal
        for name in self._SIGNALS:
            sig = getattr(signal, name)
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame):
        import signal
        received.append(signum)
        self.count += 1
        if self.count >= 3:
            raise ForcedExit(self.signum)
        if self.count == 1:
            self.signum = signum
            if signum == signal.SIGINT:
                logger.warning('Interrupted: finishing this step, then '
                               'saving a checkpoint (Ctrl-C twice more to '
                               'quit without saving).')

    def __exit__(self, *exc):
        import signal
        for sig, old in self._old.items():
            signal.signal(sig, self._late if self.keep else old)

    def _late(self, signum, frame):
        # After the loop of a distributed job: a signal that comes late
        # (the job already agreed to stop) must not kill the process before
        # MXNet's parameter-server client says goodbye at exit, or the other
        # workers wait for it forever; the third quits at once
        self.count += 1
        if self.count >= 3:
            os._exit(128 + signum)

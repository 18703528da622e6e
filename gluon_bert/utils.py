"""Small helpers shared by every module: atomic writes and file hashing."""
import argparse
import contextlib
import hashlib
import logging
import os
import re
import sys
import uuid

__all__ = ['ArgumentParser', 'check_mxnet_install', 'parse_gpu_ids',
           'count_devices',
           'max_len_arg', 'check_max_len', 'check_batch_size', 'MIN_MAX_LEN',
           'atomic_write', 'atomic_path', 'file_digest', 'GluonBertError',
           'UsageError', 'HelpFormatter', 'read_text_lines', 'checked_type',
           'positive_int', 'run_command', 'configure_logging',
           'one_line_errors_in_ipython', 'random_state_to_json',
           'random_state_from_json', 'numpy_state_to_json',
           'numpy_state_from_json']


#: How to get the MXNet 1.9.1 builds this package is tested with.
_INSTALL_HINT = ("pip install -e '.[cpu]' (mxnet==1.9.1), or for GPUs "
                 "'.[cu112]' or '.[cu117]' (mxnet-cu112/-cu117==1.9.1)")


def _mxnet_distributions():
    """Names of the installed distributions that provide the mxnet package."""
    from importlib import metadata
    names = set()
    for dist in metadata.distributions():
        name = (dist.metadata['Name'] or '').lower().replace('_', '-')
        if name == 'mxnet' or name.startswith('mxnet-'):
            names.add(name)
    return sorted(names)


def check_mxnet_install(find_spec=None, distributions=None, warn=None):
    """Fail clearly without MXNet; warn when several builds are installed.

    MXNet's CPU and CUDA builds are separate distributions that install the
    same ``mxnet`` package: with two of them, the files of the one installed
    last win, which is rarely what the user meant.  Called on import.
    """
    import importlib.util
    import warnings
    find_spec = find_spec or importlib.util.find_spec
    if find_spec('mxnet') is None:
        raise ImportError(f'gluon_bert needs MXNet 1.9.1, which is not '
                          f'installed: {_INSTALL_HINT}')
    names = (distributions or _mxnet_distributions)()
    if len(names) > 1:
        (warn or warnings.warn)(
            f'several MXNet builds are installed ({", ".join(names)}); they '
            'share one mxnet package, so whichever was installed last is the '
            f'one that runs: keep one, e.g. pip uninstall -y '
            f'{" ".join(n for n in names if n != names[-1])}')
    return names


def checked_type(convert, ok, requirement):
    """An argparse type: ``convert`` the text, then require ``ok(value)``."""
    noun = 'an integer' if convert is int else 'a number'

    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {noun}')
        if not ok(value):
            raise argparse.ArgumentTypeError(f'must be {requirement}, got '
                                             f'{text}')
        return value
    return parse


#: An argparse type for counts: an integer, at least 1.
positive_int = checked_type(int, lambda v: v >= 1, 'at least 1')


def max_len_arg(text):
    """An argparse type for ``--max-len``: :func:`check_max_len`'s rule."""
    value = checked_type(int, lambda v: True, '')(text)
    try:
        return check_max_len(value)
    except GluonBertError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help of every command: '(default: X)' only where the help does not
    say it already, and never '(default: None)'."""

    def _get_help_string(self, action):
        # 'is', not 'in': 0 == False, and a default of 0 is worth showing
        if any(action.default is v for v in (None, False, argparse.SUPPRESS)) \
                or 'default' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """Every command's parser: a usage error in one line with a pointer to
    --help (argparse's own prints the whole usage before it)."""

    def error(self, message):
        self.exit(2, f'{self.prog}: error: {message} (see {self.prog} '
                     '--help)\n')


class GluonBertError(Exception):
    """A problem with the user's input: the message says what and how to fix.

    The library's messages name settings as its functions do (``max_len``);
    ``settings`` lists those names, and :meth:`worded` words the message for
    a command line (``--max-len``).  Commands print it as one line and exit
    non-zero instead of a traceback.
    """

    def __init__(self, message, settings=()):
        super().__init__(message)
        self.settings = tuple(settings)

    def worded(self, flag=None):
        """The message with each of its settings named by ``flag(name)``
        (default: the command-line flag, ``max_len`` -> ``--max-len``)."""
        flag = flag or (lambda name: '--' + name.replace('_', '-'))
        message = str(self)
        for name in self.settings:
            message = re.sub(rf'(?<![-\w]){re.escape(name)}(?![-\w])',
                             flag(name), message)
        return message


class UsageError(GluonBertError):
    """Settings that contradict each other, found before anything is
    touched: a command exits 2 for it, as for any other usage error."""


#: The shortest example: <cls>, a token, <sep>, a token, <sep>.
MIN_MAX_LEN = 5


def parse_gpu_ids(gpus):
    """``'0,1'`` -> ``[0, 1]``; anything else is a one-line error."""
    parts = [p.strip() for p in str(gpus).split(',')]
    if (not all(p.isdigit() for p in parts)
            or len(set(map(int, parts))) != len(parts)):
        raise GluonBertError(f'gpus takes distinct GPU numbers like 0,1, '
                             f'got {gpus!r}', ['gpus'])
    return [int(p) for p in parts]


def count_devices(gpus=None, cpus=None):
    """How many devices ``gpus`` ('0,1') or ``cpus`` (N) ask for (None:
    neither); both, a bad GPU list or a ``cpus`` below 1 is a one-line
    error."""
    if gpus is not None and cpus is not None:
        raise GluonBertError('gpus and cpus exclude each other: pick one',
                             ['gpus', 'cpus'])
    if cpus is not None:
        if int(cpus) != cpus or cpus < 1:
            raise GluonBertError(f'cpus must be a positive integer, got '
                                 f'{cpus!r}', ['cpus'])
        return int(cpus)
    return None if gpus is None else len(parse_gpu_ids(gpus))


def check_max_len(max_len):
    """Every command's rule for ``max_len``."""
    if max_len < MIN_MAX_LEN:
        raise GluonBertError(
            f'max_len {max_len} leaves no room for a sentence pair with '
            f'<cls> and two <sep>: use at least {MIN_MAX_LEN} (the book uses '
            '64)', ['max_len'])
    return max_len


def check_batch_size(batch_size):
    """A batch size must be a positive integer."""
    if int(batch_size) != batch_size or batch_size <= 0:
        raise GluonBertError(f'batch_size must be a positive integer, got '
                             f'{batch_size!r}')
    return int(batch_size)


@contextlib.contextmanager
def atomic_write(path, mode='wb', encoding='utf-8'):
    """Open a temporary file beside ``path`` (:func:`atomic_path`); flush it
    to disk and rename it over ``path`` on success.

    A crash (or an exception in the ``with`` body) leaves ``path`` as it was
    and removes the temporary file, so readers never see a half-written file.
    """
    kwargs = {} if 'b' in mode else {'encoding': encoding}
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary file name beside ``path``; rename it over ``path``.

    For writers that want a file name (``save_parameters``, ``nd.save``)
    rather than a file object; same guarantees as :func:`atomic_write`.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # unique to this process and call, as two threads may write one path
    tmp = os.path.join(folder, f'.{os.path.basename(path)}.{os.getpid()}.'
                       f'{uuid.uuid4().hex[:8]}.tmp')
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def free_bytes(folder):
    """Free bytes in ``folder``'s file system (None when it cannot be told:
    the folder is gone)."""
    import shutil
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def megabytes(n):
    """``12 MB`` (``unknown`` for None)."""
    return 'unknown' if n is None else f'{n / 2 ** 20:.0f} MB'


def write_error(error, what, folder, need=None, settings=('save_dir',)):
    """A write that could not complete (a full disk, a quota, a read-only or
    vanished folder: ``error``, an OSError or MXNet's error) as a one-line
    :class:`GluonBertError`: what, where, how much space is free and about
    how much ``need`` is.  The callers write to temporary names, so nothing
    half-written is left."""
    reason = (error.strerror if isinstance(error, OSError) and error.strerror
              else (str(error).strip().splitlines() or ['?'])[0][:100])
    needed = f', about {megabytes(need)} needed' if need else ''
    return GluonBertError(f'could not write {what} to {folder} ({reason}; '
                          f'{megabytes(free_bytes(folder))} free{needed})',
                          settings)


def random_state_to_json(state):
    """``random.getstate()`` as JSON-able lists."""
    version, internal, gauss = state
    return [version, list(internal), gauss]


def random_state_from_json(data):
    """The inverse of :func:`random_state_to_json`, for ``random.setstate``."""
    version, internal, gauss = data
    return (version, tuple(internal), gauss)


def numpy_state_to_json(state):
    """``numpy.random.get_state()`` as JSON-able lists."""
    name, keys, pos, has_gauss, gauss = state
    return [name, [int(k) for k in keys], int(pos), int(has_gauss),
            float(gauss)]


def numpy_state_from_json(data):
    """The inverse of :func:`numpy_state_to_json`, for ``set_state``."""
    import numpy as onp
    name, keys, pos, has_gauss, gauss = data
    return (name, onp.array(keys, dtype=onp.uint32), pos, has_gauss, gauss)


def read_text_lines(path, hint, settings=()):
    """The lines of a UTF-8 text file; a missing file, a folder or another
    encoding is a :class:`GluonBertError` naming the file (and the line),
    ending with ``hint`` (which names ``settings``) where the file is not
    there."""
    try:
        with open(path, encoding='utf-8') as f:
            return f.read().splitlines()
    except FileNotFoundError:
        raise GluonBertError(f'{path} does not exist: {hint}',
                             settings) from None
    except IsADirectoryError:
        raise GluonBertError(f'{path} is a folder: {hint}', settings) from None
    except UnicodeDecodeError as e:
        line = e.object[:e.start].count(b'\n') + 1
        raise GluonBertError(f'{path} is not UTF-8 text (line {line}): '
                             'convert it, e.g. with iconv -t utf-8') from None


def file_digest(path, algorithm='sha1', chunk=1 << 20):
    """Hex digest of a file's bytes."""
    h = hashlib.new(algorithm)
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


class _Stdout(logging.Handler):
    """One line per record on whatever ``sys.stdout`` is when it comes (a
    test's capture, a notebook's cell); warnings and errors on stderr,
    after ``warning:``."""

    def emit(self, record):
        try:
            line = self.format(record)
            if record.levelno >= logging.WARNING:
                print(f'{record.levelname.lower()}: {line}', file=sys.stderr,
                      flush=True)
            else:
                print(line, flush=True)
        except Exception:  # noqa: BLE001 -- logging must never raise
            self.handleError(record)


def one_line_errors_in_ipython():
    """In IPython or Jupyter, show a :class:`GluonBertError` as the commands
    do: one line, ``error: ...``, instead of a traceback (the message says
    what is wrong and how to fix it; the stack says nothing more).  Other
    exceptions keep their tracebacks.  ``import gluon_bert`` calls it; it
    does nothing outside IPython."""
    shell = sys.modules.get('IPython')
    shell = shell and getattr(shell, 'get_ipython', lambda: None)()
    if shell is None:
        return False

    def show(self, etype, value, tb, tb_offset=None):
        print(f'error: {value}', file=sys.stderr)
    shell.set_custom_exc((GluonBertError,), show)
    return True


def configure_logging(level='info'):
    """How a command shows what the library reports: the ``gluon_bert``
    loggers at ``level`` ('warning', 'info' or 'debug'), each record one
    line on stdout, with the time and the module at 'debug'.  Called by
    every command; a program that uses the library sets up ``logging`` as
    it likes."""
    root = logging.getLogger('gluon_bert')
    for handler in [h for h in root.handlers if isinstance(h, _Stdout)]:
        root.removeHandler(handler)
    handler = _Stdout()
    handler.setFormatter(logging.Formatter(
        '%(asctime)s.%(msecs)03d %(name)s: %(message)s' if level == 'debug'
        else '%(message)s', '%H:%M:%S'))
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


def run_command(prog, run, args):
    """Call a command's ``run(args)``; returns ``(exit code, result)``.

    A :class:`GluonBertError` becomes one line on stderr, ``prog: error:
    ...``, and exit code 1 (2 for a :class:`UsageError`), instead of a
    traceback.  MXNet's NumPy mode is
    switched on first: it is per thread, and a command may run in any.
    """
    from mxnet import npx
    npx.set_np()
    configure_logging((args.get('log_level') if isinstance(args, dict)
                       else getattr(args, 'log_level', None)) or 'info')
    try:
        return 0, run(args)
    except GluonBertError as e:
        print(f'{prog}: error: {e.worded()}', file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1, None

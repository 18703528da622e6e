"""Can this machine run the guide?  One line per check, each with its fix.

    python -m gluon_bert.doctor [--data-dir DIR] [--gpus 0,1]

Python and numpy, the MXNet build (CUDA, oneDNN), GPUs, OpenMP threads, the
WikiText-2 folder, the example cache, the optional extras.  Exits 0 when
the guide's command can run here, 1 otherwise.
"""
import importlib.util
import os
import sys

from .utils import ArgumentParser, HelpFormatter

__all__ = ['main', 'build_parser', 'checks', 'OK', 'WARN', 'FAIL']

OK, WARN, FAIL = 'ok', 'warn', 'FAIL'
#: Optional extras: what each enables.
EXTRAS = {'tokenizers':
          "--vocab wordpiece (pip install 'gluon_bert[subword]')",
          'torch': "export --format torch (pip install 'gluon_bert[torch]')",
          'onnx': "export --format onnx (pip install 'gluon_bert[onnx]')",
          'onnxruntime': "encode --backend onnxruntime (pip install "
                         "'gluon_bert[onnx]')"}


def build_parser():
    p = ArgumentParser(
        prog='python -m gluon_bert.doctor',
        description='Check whether this machine can run the guide '
                    '(python -m gluon_bert.pretrain --gpus 0,1 --steps 50): '
                    'one line per check, with its fix; exit 0 when it can.',
        formatter_class=HelpFormatter)
    p.add_argument('--data-dir', default=None,
                   help='the WikiText-2 folder to check (default: where '
                        'pretrain looks: $GLUON_BERT_DATA, '
                        '../data/wikitext-2, the cache)')
    p.add_argument('--gpus', default='0,1',
                   help="the GPUs you will ask for (the guide's: 0,1)")
    return p


def _python(version=None):
    v = version or sys.version_info
    text = f'Python {v[0]}.{v[1]}.{v[2]}'
    if (3, 8) <= tuple(v[:2]) <= (3, 11):
        return OK, text
    return FAIL, (f'{text}: MXNet 1.9.1 needs Python 3.8-3.11; make the '
                  'venv with python3.11 -m venv .venv')


def _numpy(version=None):
    if version is None:
        import numpy
        version = numpy.__version__
    major_minor = tuple(int(x) for x in version.split('.')[:2])
    if major_minor < (1, 24):
        return OK, f'numpy {version}'
    return FAIL, (f'numpy {version}: MXNet 1.9.1 needs numpy < 1.24 (it '
                  "uses np.bool); pip install 'numpy<1.24'")


def _mxnet(distributions=None):
    from .utils import _mxnet_distributions
    names = (distributions or _mxnet_distributions)()
    if not names:
        return FAIL, ("no MXNet installed: pip install -e '.[cpu]' (or "
                      "'.[cu112]'/'.[cu117]' for GPUs)")
    if len(names) > 1:
        return FAIL, (f'several MXNet builds installed ({", ".join(names)}): '
                      'the last one installed won; pip uninstall -y '
                      f'{" ".join(names)}, then install one')
    try:
        import mxnet as mx
        features = mx.runtime.Features()
    except Exception as e:  # a broken install fails in many ways
        return FAIL, (f'{names[0]} does not import ({type(e).__name__}: '
                      f'{str(e)[:80]}): reinstall it')
    cuda = features.is_enabled('CUDA')
    onednn = features.is_enabled('MKLDNN')
    build = (f'CUDA build (CUDA {_cuda_version(names[0])})' if cuda
             else 'CPU build') + (', oneDNN' if onednn else ', no oneDNN')
    return OK, f'{names[0]} {mx.__version__}: {build}'


def _cuda_version(name):
    """'11.7' for the distribution mxnet-cu117."""
    digits = name[len('mxnet-cu'):] if name.startswith('mxnet-cu') else ''
    return f'{digits[:-1]}.{digits[-1]}' if len(digits) >= 2 else 'unknown'


def _gpus(asked):
    from mxnet import npx
    from .devices import no_gpu_reason
    from .utils import GluonBertError, parse_gpu_ids
    try:
        ids = parse_gpu_ids(asked)
    except GluonBertError as e:
        return FAIL, e.worded()
    n = npx.num_gpus()
    if n:
        missing = [i for i in ids if i >= n]
        if missing:
            return FAIL, (f'{n} GPU(s) visible, but --gpus {asked} asks for '
                          f'gpu({missing[0]}): ask for 0 to {n - 1}')
        return OK, f'{n} GPU(s) visible to MXNet'
    return WARN, (f'{no_gpu_reason()}; --gpus {asked} will train on cpu(0) '
                  '(slower, same numbers)')


def _threads():
    from .threads import usable_cores
    env = os.environ.get('OMP_NUM_THREADS')
    cores = usable_cores()
    if env and int(env) != cores:
        return WARN, (f'OpenMP threads: {env} (OMP_NUM_THREADS) on {cores} '
                      f'cores: unset it, or set it to {cores}, for speed')
    return OK, f'OpenMP threads: {env or cores} on {cores} cores'


def _data(data_dir):
    from .dataset import resolve_data_dir
    from .utils import GluonBertError
    try:
        found = resolve_data_dir(data_dir, download=False)
    except GluonBertError as e:
        return FAIL, (f'WikiText-2: {e}; or let pretrain download it (needs '
                      'the internet)')
    return OK, f'WikiText-2: {os.path.abspath(found)}'


def _cache():
    from .dataset import default_cache_dir
    folder = default_cache_dir()
    size = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                size += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return OK, (f'example cache: {folder} ({size / 2 ** 20:.0f} MB; delete it '
                'to free the space, it is rebuilt)')


def _extras():
    present = [n for n in EXTRAS if importlib.util.find_spec(n)]
    missing = [f'{n} ({EXTRAS[n]})' for n in EXTRAS if n not in present]
    text = 'optional extras: ' + (', '.join(present) or 'none')
    if missing:
        text += '; not installed: ' + ', '.join(missing)
    return OK, text


def checks(data_dir=None, gpus='0,1'):
    """``[(status, line), ...]``: every check; MXNet's only when it
    imports (the later ones need it)."""
    results = [_python(), _numpy(), _mxnet()]
    if results[-1][0] != FAIL:
        results += [_gpus(gpus), _threads()]
    results += [_data(data_dir), _cache(), _extras()]
    return results


def main(argv=None):
    args = build_parser().parse_args(argv)
    results = checks(args.data_dir, args.gpus)
    for status, line in results:
        print(f'{status:4}  {line}')
    failed = [line for status, line in results if status == FAIL]
    print('The guide\'s command can run here.' if not failed else
          f'{len(failed)} check(s) failed: fix them, then run doctor again.')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())

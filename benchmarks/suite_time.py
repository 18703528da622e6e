"""The test suite's time on a clean clone, on this machine or on a slower one.

    sudo .venv/bin/python benchmarks/suite_time.py [--cpu-share F]
        [--max-isa AVX2] [--out benchmarks/results/suite_time.txt]

The suite must end within 15 minutes on the slowest machine kind this
project runs on (AMD with AVX2 only).  On any other machine this stands one
in: it clones the checkout's HEAD beside it (where ``.ci/run`` finds
``../shared/data``), runs ``CI=true bash .ci/run`` there (what CI
runs: a fresh virtualenv, then pytest a worker per core) and appends a line
to ``--out`` with the machine, the commit, the pytest and whole-run times and
the counts.  Run it alone.

* ``--cpu-share F`` runs the job in a cgroup allowed F of the machine's
  cores in CPU time (cgroup v1 ``cpu.cfs_quota_us`` or v2 ``cpu.max``; needs
  root): every CPU-bound part takes about 1/F times as long, as on a machine
  1/F times slower.  Waits that are not CPU-bound (a sleep, a timeout) do not
  stretch, so this finds the tests that would fail there too.
* ``--max-isa AVX2`` caps oneDNN's instruction set (``DNNL_MAX_CPU_ISA``), so
  the GEMMs run the AVX2 kind's kernels.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from gluon_bert.devices import cpu_name
from gluon_bert.utils import atomic_write

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HEADER = ('date | machine | commit | cpu share | oneDNN ISA | pytest | '
          'in all | tests')
SUMMARY = re.compile(r'^=* ?(?P<counts>\d+ passed.*?) in (?P<s>[\d.]+)s')


def machine():
    """The CPU's model name, its cores and whether it has AVX-512."""
    with open('/proc/cpuinfo') as f:
        isa = 'AVX-512' if 'avx512f' in f.read() else 'AVX2'
    return f'{cpu_name()}, {os.cpu_count()} cores, {isa}'


def cgroup(share):
    """A new cgroup allowed ``share`` of the cores; its folder."""
    period = 100000
    quota = int(share * (os.cpu_count() or 1) * period)
    name = f'gluon_bert_suite_{os.getpid()}'
    if os.path.isdir('/sys/fs/cgroup/cpu'):  # cgroup v1
        root, limit, value = '/sys/fs/cgroup/cpu', 'cpu.cfs_quota_us', quota
    else:  # cgroup v2
        root, limit, value = '/sys/fs/cgroup', 'cpu.max', f'{quota} {period}'
    path = os.path.join(root, name)
    os.mkdir(path)
    with open(os.path.join(path, limit), 'w') as f:
        f.write(str(value))
    return path


def launch(command, cwd, env, log, group=None):
    """Run ``command`` (its output into ``log``), in ``group`` if given;
    its exit code.  Stopped, this stops the command and all it started."""
    def enter():  # the child and all it starts are in the cgroup
        if group:
            with open(os.path.join(group, 'cgroup.procs'), 'w') as f:
                f.write(str(os.getpid()))
    with open(log, 'w') as f:
        child = subprocess.Popen(command, cwd=cwd, env=env, stdout=f,
                                 stderr=f, preexec_fn=enter,
                                 start_new_session=True)
    try:
        return child.wait()
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()


def summary(lines):
    """pytest's closing counts and seconds in ``lines``, or None."""
    found = [m for m in map(SUMMARY.match, lines) if m]
    return (found[-1]['counts'], float(found[-1]['s'])) if found else None


def run(args):
    """Clone HEAD beside the checkout (where .ci/run finds
    ../shared/data, as in CI), run .ci/run there; (pytest seconds,
    seconds, counts)."""
    env = dict(os.environ, CI='true')
    if args.max_isa:
        env['DNNL_MAX_CPU_ISA'] = args.max_isa
    clone = os.path.join(os.path.dirname(ROOT), f'suite-time-{os.getpid()}')
    try:
        group = cgroup(args.cpu_share) if args.cpu_share else None
    except OSError as e:
        sys.exit(f'--cpu-share: no cgroup made ({e}); run as root where '
                 '/sys/fs/cgroup has the cpu controller')
    try:
        subprocess.run(['git', 'clone', '-q', ROOT, clone], check=True)
        log = os.path.join(clone, 'ci.log')
        start = time.perf_counter()
        code = launch(['bash', '.ci/run'], clone, env, log, group)
        seconds = time.perf_counter() - start
        with open(log) as f:
            lines = f.read().splitlines()
    finally:
        shutil.rmtree(clone, ignore_errors=True)
        if group:
            os.rmdir(group)
    found = summary(lines)
    if code or not found:
        sys.exit(f'the suite failed (exit {code}): ' + ' / '.join(lines[-3:]))
    return found[1], seconds, found[0]


def minutes(seconds):
    return f'{int(seconds // 60)} min {round(seconds % 60):02d} s'


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--cpu-share', type=float, default=None,
                        help='share of the cores in CPU time (0 < F <= 1)')
    parser.add_argument('--max-isa', default=None,
                        help="oneDNN's instruction set cap, e.g. AVX2")
    parser.add_argument('--out', default=os.path.join(
        HERE, 'results', 'suite_time.txt'))
    args = parser.parse_args(argv)
    if args.cpu_share is not None and not 0 < args.cpu_share <= 1:
        parser.error(f'--cpu-share {args.cpu_share}: give a share in (0, 1]')
    if args.cpu_share and os.geteuid() != 0:
        parser.error('--cpu-share makes a cgroup: run as root (sudo)')
    commit = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'],
                            cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.strip()
    if not os.path.isdir(os.path.join(os.path.dirname(ROOT), 'shared',
                                      'data', 'wikitext-2')):
        print('no ../shared/data/wikitext-2 beside the checkout: the '
              'real-data tests will be skipped', file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up
    pytest_s, seconds, counts = run(args)
    line = ' | '.join([time.strftime('%Y-%m-%d'), machine(), commit,
                       str(args.cpu_share or 1), args.max_isa or 'all',
                       minutes(pytest_s), minutes(seconds), counts])
    print(line)
    lines = [HEADER]
    if os.path.exists(args.out):
        with open(args.out) as f:
            lines = f.read().splitlines()
    with atomic_write(args.out, 'w') as f:
        f.write('\n'.join(lines + [line]) + '\n')


if __name__ == '__main__':
    main()

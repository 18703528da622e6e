"""benchmarks/suite_time.py: the suite's time on a clean clone, in a
cgroup that stands in for a slower machine (a study tool)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir,
                                'benchmarks'))
from suite_time import cgroup, launch, summary  # noqa: E402


def test_the_closing_line_of_a_parallel_run_is_read():
    lines = ['bringing up nodes...', '....s....  [100%]',
             '480 passed, 4 skipped in 707.55s (0:11:47)']
    assert summary(lines) == ('480 passed, 4 skipped', 707.55)
    assert summary(['== 12 passed in 3.10s ==']) == ('12 passed', 3.10)
    assert summary(['== 1 failed, 11 passed in 3.10s ==']) is None


def _writable_cgroup():
    try:
        os.rmdir(cgroup(0.5))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _writable_cgroup(),
                    reason='needs root and a writable cgroup file system')
def test_the_command_runs_in_a_cgroup_with_the_share_of_the_cores(tmp_path):
    group = cgroup(0.25)
    try:
        limit = 'cpu.cfs_quota_us' if os.path.exists(
            os.path.join(group, 'cpu.cfs_quota_us')) else 'cpu.max'
        with open(os.path.join(group, limit)) as f:
            quota = int(f.read().split()[0])
        assert quota == 0.25 * os.cpu_count() * 100000
        log = tmp_path / 'log'
        assert launch(['cat', '/proc/self/cgroup'], tmp_path, dict(os.environ),
                      log, group) == 0
        assert '/' + os.path.basename(group) in log.read_text()
    finally:
        os.rmdir(group)

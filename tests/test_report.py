"""benchmarks/report.py: the READMEs' measured blocks equal the results."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REPORT = os.path.join(ROOT, 'benchmarks', 'report.py')


def _check(root):
    return subprocess.run([sys.executable, REPORT, '--check', '--root',
                           str(root)], capture_output=True, text=True)


def test_the_committed_readmes_are_up_to_date():
    done = _check(ROOT)
    assert done.returncode == 0, done.stderr


def test_a_stale_block_fails_the_check_and_is_rewritten(tmp_path):
    shutil.copytree(os.path.join(ROOT, 'benchmarks'), tmp_path / 'benchmarks')
    shutil.copy(os.path.join(ROOT, 'README.md'), tmp_path / 'README.md')
    compare = tmp_path / 'benchmarks' / 'results' / 'compare.txt'
    compare.write_text(compare.read_text().replace('432.0', '999.9'))
    done = _check(tmp_path)
    assert done.returncode == 1
    assert 'stale: benchmarks/README.md, README.md' in done.stderr
    subprocess.run([sys.executable, REPORT, '--root', str(tmp_path)],
                   check=True, capture_output=True)
    assert _check(tmp_path).returncode == 0
    assert '999.9' in (tmp_path / 'README.md').read_text()

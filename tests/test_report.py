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


def test_a_finetune_study_is_grouped_by_settings_start_and_rate(tmp_path):
    import json
    sys.path.insert(0, os.path.dirname(REPORT))
    import report
    (tmp_path / 'results').mkdir()
    runs = [dict(name='bert', seed=s, lr=1e-3, dev_acc=d, test_acc=0.5,
                 best_epoch=s + 1, minutes=1.0) for s, d in
            enumerate([0.70, 0.72, 0.74])]
    runs.append(dict(name='random', seed=0, lr=1e-4, dev_acc=0.8,
                     test_acc=None, best_epoch=2, minutes=2.0,
                     args='--epochs 3'))
    (tmp_path / 'results' / 'study.json').write_text(json.dumps(runs))
    old, report.HERE = report.HERE, str(tmp_path)
    try:
        lines = report.finetune('results/study.json').splitlines()
    finally:
        report.HERE = old
    # mean 72.0, sample standard deviation 2.0 (x100), over the three seeds
    assert lines[2] == ("| the book's | pretrained | 0.001 | 3 | 72.0 ± 2.0 "
                        "| 50.0 ± 0.0 | 1, 2, 3 | 1.0, 1.0, 1.0 |")
    assert lines[3] == '| --epochs 3 | control | 0.0001 | 1 | 80.0 | - | 2 | 2.0 |'
    assert len(lines) == 4

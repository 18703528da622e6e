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


def test_the_scaling_sentence_says_where_each_target_is_met():
    """Gains of exactly 2, 5, 8 (qnli) and 1, 2, 3 (snli-small) at 1,000,
    10,000 and 100,000 steps of 128 pairs, below them a budget of 100 steps
    off both lines: QNLI's +8 is measured at the last budget; snli-small's
    line through the 3 largest budgets rises 1 point a decade, so its +5 is
    fitted four decades past 1,000 steps, at 10,000,000 (a line through all
    four budgets would put it elsewhere)."""
    sys.path.insert(0, os.path.dirname(REPORT))
    import bench_scaling
    budgets = [100, 1000, 10000, 100000]
    results = [dict(kind='pretrain', budget=b, pairs=128 * b, folder='f',
                    valid_mlm_accuracy=0.1) for b in budgets]

    def runs(start, qnli, snli):
        for seed in (0, 1, 2):
            base = dict(start=start, control='random-wp', model='m',
                        seed=seed, lr=1e-3, epochs=10, minutes=1.0)
            results.append(dict(base, task='qnli', test=None,
                                dev={'accuracy': qnli}))
            results.append(dict(base, task='snli-small',
                                dev={'accuracy': 0.5},
                                test={'accuracy': snli}))
    runs('random-wp', 0.50, 0.50)
    for b, q, s in zip(budgets, (0.46, 0.52, 0.55, 0.58),
                       (0.47, 0.51, 0.52, 0.53)):
        runs(f'wsd-{b}', q, s)
    sentence = bench_scaling.headline(results)
    assert sentence.startswith('From 100 to 100,000 steps of 128 pairs '
                               '(1000x, 4 budgets, 3 seeds or more each)')
    assert ('snli-small -3.0 to +3.0 (+5 at about 10,000,000 steps = '
            '1,300,000,000 pairs, fitted)') in sentence
    assert 'qnli -4.0 to +8.0 (+8 met at 100,000 steps, measured)' \
        in sentence
    assert sentence.endswith('; fitted as gain = a + b log10(pairs) over '
                             'the 3 largest budgets.')
    # with every target measured, no fit is named
    for r in results:
        if r.get('start') == 'wsd-100000' and r['task'] == 'snli-small':
            r['test'] = {'accuracy': 0.55}
    sentence = bench_scaling.headline(results)
    assert 'snli-small -3.0 to +5.0 (+5 met at 100,000 steps, measured)' \
        in sentence
    assert 'fitted' not in sentence and sentence.endswith('measured).')


def test_the_tapt_table_reads_each_start_against_both_references():
    """snli-small test accuracy: control 0.50, WikiText-2 alone 0.54, the
    task-text start 0.56, 0.58, 0.57 at its best rate: +7.0 over the
    control, +3.0 over WikiText-2 alone, mean ± the seeds' spread; a start
    with one seed so far (its grid unfinished) is left out."""
    sys.path.insert(0, os.path.dirname(REPORT))
    import bench_tapt
    results = []
    for start, tests, dev in (('random-wp', [0.50] * 3, 0.5),
                              ('wsd-4544', [0.54] * 3, 0.5),
                              ('tapt-3636-snli-small', [0.56, 0.58, 0.57],
                               0.6), ('tapt-3636-joint', [0.9], 0.9)):
        for seed, test in enumerate(tests):
            results.append(dict(
                task='snli-small', start=start, control='random-wp',
                model='m', seed=seed, lr=1e-3, epochs=10, minutes=1.0,
                dev={'accuracy': dev}, test={'accuracy': test}))
    lines = bench_tapt.format_table(results).splitlines()
    assert lines[2].endswith('| random-wp | 0.001 | 3 | 50.0 ± 0.0 |  |  |')
    assert lines[3].endswith('| wsd-4544 | 0.001 | 3 | 54.0 ± 0.0 | +4.0 |  |')
    assert lines[4] == ('| snli-small (test accuracy, +5) | '
                        'tapt-3636-snli-small | 0.001 | 3 | 57.0 ± 1.0 | '
                        '+7.0 | +3.0 |')
    assert len(lines) == 5


def test_the_long_models_task_runs_read_against_the_long_model():
    """A ``tapt-18176+1817-T`` start gains over ``wsd-18176`` (its own
    WikiText-2 alone), not over ``wsd-4544``; a task without a target
    (mrpc) is read on dev accuracy."""
    sys.path.insert(0, os.path.dirname(REPORT))
    import bench_tapt
    results = []
    for task, start, score in (
            ('mrpc', 'random-wp', 0.60), ('mrpc', 'wsd-4544', 0.62),
            ('mrpc', 'wsd-18176', 0.66), ('mrpc', 'tapt-18176+1817-mrpc',
                                          0.70)):
        for seed in range(3):
            results.append(dict(
                task=task, start=start, control='random-wp', model='m',
                seed=seed, lr=1e-3, epochs=10, minutes=1.0,
                dev={'accuracy': score}, test={}))
    lines = bench_tapt.format_table(results).splitlines()
    assert lines[4] == ('| mrpc (dev accuracy) | wsd-18176 | 0.001 | 3 | '
                        '66.0 ± 0.0 | +6.0 | +4.0 |')
    assert lines[5] == ('| mrpc (dev accuracy) | tapt-18176+1817-mrpc | '
                        '0.001 | 3 | 70.0 ± 0.0 | +10.0 | +4.0 |')


def test_the_routes_table_takes_the_best_start_within_and_beyond_the_budget():
    """Per task the best finished start within the 4,544 steps, and the
    long model's run as a second row; a start with one seed is not
    taken however well it scored."""
    sys.path.insert(0, os.path.dirname(REPORT))
    import bench_tapt
    results = []
    for start, score, seeds in (
            ('random-wp', 0.50, 3), ('wsd-4544', 0.54, 3),
            ('tapt-2727-qnli', 0.58, 3), ('tapt-3636-joint', 0.56, 3),
            ('tapt-3636-qnli', 0.90, 1), ('wsd-18176', 0.60, 3),
            ('tapt-18176+1817-qnli', 0.64, 3)):
        for seed in range(seeds):
            results.append(dict(
                task='qnli', start=start, control='random-wp', model='m',
                seed=seed, lr=1e-3, epochs=10, minutes=1.0,
                dev={'accuracy': score}, test={}))
    lines = bench_tapt.format_routes(results).splitlines()
    assert lines[2:] == [
        "| qnli (dev accuracy) | 2,727 steps of WikiText-2, then 1,817 of "
        "the task's own text | 4,544 | 58.0 ± 0.0 | +8.0 | +4.0 |",
        "| qnli (dev accuracy) | 18,176 steps of WikiText-2, then 1,817 of "
        "the task's own text | 19,993 | 64.0 ± 0.0 | +14.0 | +4.0 |"]
    # WikiText-2 alone as the best start: nothing over itself
    results = [r for r in results if r['start'] != 'tapt-18176+1817-qnli']
    assert bench_tapt.format_routes(results).splitlines()[-1] == (
        '| qnli (dev accuracy) | 18,176 steps of WikiText-2 alone | 18,176 | '
        '60.0 ± 0.0 | +10.0 |  |')


def test_a_start_is_described_by_its_name():
    sys.path.insert(0, os.path.dirname(REPORT))
    import bench_tapt
    assert bench_tapt.describe('tapt-3636-qnli-mix') == (
        "3,636 steps of WikiText-2, then 908 of the task's own text with "
        'WikiText-2')
    assert bench_tapt.describe('tapt-3636-qnli-knn4') == (
        "3,636 steps of WikiText-2, then 908 of the task's own text with "
        "WikiText-2's paragraphs nearest it")
    assert bench_tapt.describe('tapt-2727-snli-small-nonsp') == (
        "2,727 steps of WikiText-2, then 1,817 of the task's own text "
        '(MLM alone)')
    assert bench_tapt.describe('tapt-2727-joint') == (
        "2,727 steps of WikiText-2, then 1,817 of the three tasks' text")
    assert bench_tapt.describe('wsd-4544') == (
        '4,544 steps of WikiText-2 alone')

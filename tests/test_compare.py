"""The side-by-side comparison with the d2l reference and the book."""
import json

import pytest

from gluon_bert import compare


def test_compare_runs_both_on_the_same_data(corpus_dir, tmp_path, capsys):
    out_file = tmp_path / 'compare.json'
    assert compare.main(['--steps', '2', '--batch-size', '16', '--max-len',
                         '24', '--data-dir', corpus_dir, '--output',
                         str(out_file)]) == 0
    out = capsys.readouterr().out
    result = json.loads(out_file.read_text())
    d2l_run, ours = result['d2l'], result['gluon_bert']
    assert d2l_run['vocab'] == ours['vocab'] and \
        d2l_run['examples'] == ours['examples']
    lines = out.splitlines()
    table = lines[lines.index(next(line for line in lines
                                   if 'book (MXNet, 2 GPUs)' in line)):]
    assert table[1].split()[-3:] == ['20256', str(d2l_run['vocab']),
                                     str(ours['vocab'])]
    assert table[3].startswith('MLM loss after 2 steps')
    # the measured columns print what was measured
    for row, key, fmt in ((3, 'mlm', '.3f'), (4, 'nsp', '.3f'),
                          (5, 'pairs_per_sec', '.1f')):
        assert table[row].split()[-2:] == [format(d2l_run[key], fmt),
                                           format(ours[key], fmt)]
    # the same data and seed: the same vocabulary and examples as an
    # independent build, and losses that agree (dropout draws differ)
    import random

    from gluon_bert.dataset import load_dataset
    random.seed(0)
    independent = load_dataset(24, corpus_dir, use_cache=False)
    assert ours['vocab'] == len(independent.vocab)
    assert ours['examples'] == len(independent)
    # (NSP, two classes after two steps of Adam at 0.01, swings too much
    # with the dropout draws to compare)
    assert abs(ours['mlm'] - d2l_run['mlm']) < 0.05 * d2l_run['mlm']
    from gluon_bert.devices import try_all_gpus
    devices = str(try_all_gpus())  # [cpu(0)] here, the GPUs where there are
    assert table[7].endswith(devices) and table[7].count(devices) == 2
    assert 'x pairs/sec' in table[8]
    for run in (d2l_run, ours):
        assert 0 < run["nsp"] < 10 and 0 < run["mlm"] < 10
        assert run['pairs_per_sec'] > 0 and run['prep_seconds'] > 0


def test_compare_bad_arguments(capsys):
    with pytest.raises(SystemExit) as e:
        compare.main(['--steps', '0'])
    assert e.value.code == 2
    assert 'argument --steps: must be at least 1' in capsys.readouterr().err

"""python -m gluon_bert.doctor: one line per check, exit 0 when the guide's
command can run."""
import pytest

from gluon_bert import doctor


def test_everything_is_checked_and_passes_here(corpus_dir, capsys):
    assert doctor.main(['--data-dir', corpus_dir]) == 0
    out = capsys.readouterr().out.splitlines()
    for topic in ('Python', 'numpy', 'mxnet 1.9.1', 'OpenMP threads',
                  'WikiText-2', 'example cache', 'optional extras'):
        assert sum(topic in line for line in out) == 1, topic
    assert out[-1] == "The guide's command can run here."
    assert all(line.split()[0] in ('ok', 'warn') for line in out[:-1])


def test_a_cpu_build_asked_for_gpus_is_a_warning_not_a_failure(
        corpus_dir, capsys, monkeypatch):
    from mxnet import npx
    monkeypatch.setattr(npx, 'num_gpus', lambda: 0)
    assert doctor.main(['--data-dir', corpus_dir, '--gpus', '0,1']) == 0
    line = [x for x in capsys.readouterr().out.splitlines()
            if x.startswith('warn') and 'No GPU' in x]
    assert len(line) == 1 and 'will train on cpu(0)' in line[0]


@pytest.mark.parametrize('version, status', [('1.23.5', 'ok'),
                                             ('1.24.0', 'FAIL'),
                                             ('2.1.0', 'FAIL')])
def test_numpy_too_new_for_mxnet(version, status):
    got, line = doctor._numpy(version)
    assert got == status
    if status == 'FAIL':
        assert "pip install 'numpy<1.24'" in line


def test_a_missing_data_folder_fails_with_its_fix(tmp_path, capsys,
                                                  monkeypatch):
    monkeypatch.setattr(doctor, '_numpy', lambda: ('ok', 'numpy (as here)'))
    assert doctor.main(['--data-dir', str(tmp_path / 'missing')]) == 1
    out = capsys.readouterr().out.splitlines()
    fail = [x for x in out if x.startswith('FAIL')]
    assert len(fail) == 1 and 'is not a folder' in fail[0]
    assert out[-1].startswith('1 check(s) failed')


def test_python_and_mxnet_builds():
    assert doctor._python((3, 12, 1))[0] == 'FAIL'
    assert doctor._python((3, 11, 7))[0] == 'ok'
    status, line = doctor._mxnet(lambda: ['mxnet', 'mxnet-cu117'])
    assert status == 'FAIL' and 'several MXNet builds' in line
    assert doctor._mxnet(lambda: [])[0] == 'FAIL'
    assert doctor._cuda_version('mxnet-cu117') == '11.7'
    status, line = doctor._gpus('0,x')
    assert status == 'FAIL' and "--gpus takes distinct GPU numbers" in line

"""A dist_sync job across real hosts: two network namespaces with sshd.

Each host is a network namespace with its own address on a bridge and an
OpenSSH server started with a throwaway key; the launcher reaches them with
``-H hosts.txt --ssh ...`` as it would reach machines.  The namespaces share
this machine's files, which is what a multi-host job needs anyway: the
package, the data and the working directory at the same paths.  Needs root,
``ip`` (iproute2) and ``sshd`` (openssh-server); skipped with the reason
otherwise.  ``.ci/run`` installs openssh-server when it can.
"""
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as onp
import pytest

pytestmark = pytest.mark.slow

TINY = ['--num-hiddens', '16', '--ffn-num-hiddens', '32', '--num-heads',
        '2', '--num-blks', '2', '--dropout', '0', '--max-len', '24',
        '--log-every', '1']
SSHD = shutil.which('sshd') or '/usr/sbin/sshd'


def _why_not():
    if os.geteuid() != 0:
        return 'network namespaces need root'
    if not shutil.which('ip'):
        return 'no ip command (iproute2)'
    if not os.path.exists(SSHD) or not shutil.which('ssh-keygen'):
        return 'no OpenSSH server (apt-get install openssh-server)'
    probe = f'gbprobe{os.getpid() % 100000}'
    if subprocess.run(['ip', 'netns', 'add', probe],
                      capture_output=True).returncode != 0:
        return 'ip netns add is not allowed here'
    subprocess.run(['ip', 'netns', 'del', probe], capture_output=True)
    return None


def _sh(*argv):
    subprocess.run(argv, check=True, capture_output=True)


@pytest.fixture(scope='module')
def hosts(tmp_path_factory):
    why = _why_not()
    if why:
        pytest.skip(why)
    tag = os.getpid() % 10000
    subnet = f'10.231.{tag % 200 + 20}'
    bridge, names = f'gbb{tag}', [f'gbh{tag}a', f'gbh{tag}b']
    folder = tmp_path_factory.mktemp('hosts')
    key, host_key = folder / 'client', folder / 'host'
    for path in (key, host_key):
        _sh('ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', str(path))
    shutil.copy(f'{key}.pub', folder / 'authorized_keys')
    os.makedirs('/run/sshd', exist_ok=True)  # sshd's privilege separation
    daemons, ips = [], []
    try:
        _sh('ip', 'link', 'add', bridge, 'type', 'bridge')
        _sh('ip', 'addr', 'add', f'{subnet}.254/24', 'dev', bridge)
        _sh('ip', 'link', 'set', bridge, 'up')
        for i, ns in enumerate(names, 1):
            ip = f'{subnet}.{i}'
            _sh('ip', 'netns', 'add', ns)
            _sh('ip', 'link', 'add', f'{ns}o', 'type', 'veth', 'peer',
                'name', f'{ns}i')
            _sh('ip', 'link', 'set', f'{ns}i', 'netns', ns)
            _sh('ip', 'link', 'set', f'{ns}o', 'master', bridge, 'up')
            _sh('ip', '-n', ns, 'addr', 'add', f'{ip}/24', 'dev', f'{ns}i')
            _sh('ip', '-n', ns, 'link', 'set', f'{ns}i', 'up')
            _sh('ip', '-n', ns, 'link', 'set', 'lo', 'up')
            daemons.append(subprocess.Popen(
                ['ip', 'netns', 'exec', ns, SSHD, '-D', '-e', '-f',
                 '/dev/null', '-o', f'ListenAddress={ip}', '-o',
                 f'HostKey={host_key}', '-o',
                 f'AuthorizedKeysFile={folder / "authorized_keys"}', '-o',
                 'StrictModes=no', '-o', 'PidFile=none', '-o', 'UsePAM=no',
                 '-o', 'PasswordAuthentication=no', '-o',
                 'PermitRootLogin=prohibit-password'],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            ips.append(ip)
        ssh = (f'ssh -i {key} -o BatchMode=yes -o StrictHostKeyChecking=no '
               '-o UserKnownHostsFile=/dev/null -o LogLevel=ERROR '
               '-o ConnectTimeout=5')
        for ip, daemon in zip(ips, daemons):
            # up to a minute: on a loaded 2-core machine (MXNet's OpenMP
            # threads spin) sshd has been seen to take over 10 s to answer
            deadline = time.time() + 60
            while subprocess.run(ssh.split() + [ip, 'true'],
                                 capture_output=True).returncode != 0:
                if time.time() > deadline or daemon.poll() is not None:
                    pytest.skip(f'sshd in the namespace of {ip} did not '
                                'answer within 60 s')
                time.sleep(0.2)
        hostfile = folder / 'hosts.txt'
        hostfile.write_text('\n'.join(ips) + '\n')
        yield dict(ips=ips, ssh=ssh, hostfile=str(hostfile), names=names,
                   subnet=subnet, sshd=[d.pid for d in daemons])
    finally:
        for ns in names:
            for pid in _pids_in(ns):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
        for daemon in daemons:
            daemon.kill()
            daemon.wait()
        for ns in names:
            subprocess.run(['ip', 'netns', 'del', ns], capture_output=True)
        subprocess.run(['ip', 'link', 'del', bridge], capture_output=True)


def _pids_in(ns):
    out = subprocess.run(['ip', 'netns', 'pids', ns], capture_output=True,
                         text=True).stdout
    return [int(p) for p in out.split()]


def _job_pids(hosts):
    """Processes of the job still alive in the hosts (sshd itself aside)."""
    alive = []
    for ns in hosts['names']:
        for pid in _pids_in(ns):
            try:
                with open(f'/proc/{pid}/environ', 'rb') as f:
                    if b'DMLC_ROLE=' in f.read():
                        alive.append(pid)
            except OSError:
                pass
    return alive


def _launch(hosts, argv, hostfile=None, **kw):
    return subprocess.Popen(
        [sys.executable, '-m', 'gluon_bert.launch', '-H',
         hostfile or hosts['hostfile'], '--ssh', hosts['ssh']] + argv,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def _pretrain(corpus_dir, save, steps, *extra):
    return ['--', sys.executable, '-m', 'gluon_bert.pretrain', '--kvstore',
            'dist_sync', '--data-dir', corpus_dir, '--save-dir', str(save),
            '--steps', str(steps), '--batch-size', '8', '--optimizer', 'sgd',
            '--lr', '0.5', *extra] + TINY


@pytest.fixture(scope='module')
def uninterrupted(hosts, tmp_path_factory):
    """``(corpus, folder, return code, output)`` of one 10-step job across
    the two hosts, which the tests below share: one trains like one
    process, one is the job a resumed one must repeat."""
    from conftest import make_corpus
    folder = tmp_path_factory.mktemp('uninterrupted')
    corpus = make_corpus(folder / 'wikitext-2')
    proc = _launch(hosts, ['-n', '2', '-s', '1', '--timeout', '300']
                   + _pretrain(corpus, folder / 'run', 10),
                   env=dict(os.environ, GLUON_BERT_CACHE=str(folder / 'c')))
    out, _ = proc.communicate(timeout=360)
    return corpus, folder / 'run', proc.returncode, out


def test_two_hosts_train_like_one_process(hosts, uninterrupted):
    from test_launch import assert_equals_one_process
    corpus, save, code, out = uninterrupted
    assert code == 0, out
    ips = hosts['ips']
    # scheduler on the first host; servers and workers round-robin
    assert f'[launch] scheduler@{ips[0]}: pid' in out
    assert f'[launch] server 0@{ips[0]}: pid' in out
    assert f'[launch] worker 0@{ips[1]}: pid' in out
    assert f'[launch] worker 1@{ips[0]}: pid' in out
    assert '[launch] all workers finished' in out
    assert_equals_one_process(corpus, save, 10)


def _run_until(proc, pattern):
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if re.search(pattern, line):
            return lines
    raise AssertionError('the job ended first:\n' + ''.join(lines))


def _worker_on(hosts, i):
    """The pid of the worker process running in host ``i``."""
    for pid in _pids_in(hosts['names'][i]):
        try:
            with open(f'/proc/{pid}/environ', 'rb') as f:
                if b'DMLC_ROLE=worker' in f.read().split(b'\0'):
                    return pid
        except OSError:
            pass
    raise AssertionError(f'no worker on {hosts["ips"][i]}')


def test_a_killed_worker_ends_the_job_naming_host_and_role(hosts, corpus_dir,
                                                           tmp_path):
    proc = _launch(hosts, ['-n', '2', '-s', '1', '--timeout', '300']
                   + _pretrain(corpus_dir, tmp_path / 'run', 100000))
    lines = _run_until(proc, r'\[worker \d@[\d.]+\] step +3/')
    os.kill(_worker_on(hosts, 1), signal.SIGKILL)
    start = time.time()
    rest, _ = proc.communicate(timeout=90)
    assert time.time() - start < 60, ''.join(lines) + rest
    assert proc.returncode == 1
    # the plan's worker 0 runs on the second host
    assert re.search(rf'\[launch\] worker 0@{re.escape(hosts["ips"][1])} '
                     r'\(pid \d+\) exited with code \d+; stopping the others',
                     rest), rest
    deadline = time.time() + 30
    while _job_pids(hosts) and time.time() < deadline:
        time.sleep(0.5)
    assert _job_pids(hosts) == []  # nothing left on either host


def test_an_unreachable_host_is_named_before_anything_starts(hosts,
                                                             corpus_dir,
                                                             tmp_path):
    bad = tmp_path / 'hosts.txt'
    lost = f'{hosts["subnet"]}.99'
    bad.write_text(f'{hosts["ips"][0]}\n{lost}\n')
    start = time.time()
    proc = _launch(hosts, ['-n', '2'] + _pretrain(corpus_dir, tmp_path / 'r',
                                                  5), hostfile=str(bad))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert f'error: cannot reach {lost} over ssh' in out
    assert '[launch]' not in out and time.time() - start < 60
    assert not (tmp_path / 'r').exists()


def test_a_taken_scheduler_port_is_a_clear_error(hosts, corpus_dir,
                                                 tmp_path):
    with socket.socket() as s:
        s.bind(('', 0))
        port = s.getsockname()[1]
    holder = subprocess.Popen(
        ['ip', 'netns', 'exec', hosts['names'][0], sys.executable, '-c',
         f'import socket, time; s = socket.socket(); s.bind(("", {port})); '
         's.listen(); print("ready", flush=True); time.sleep(120)'],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'ready'
        proc = _launch(hosts, ['-n', '2', '--port', str(port)]
                       + _pretrain(corpus_dir, tmp_path / 'r', 5))
        out, _ = proc.communicate(timeout=120)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert (f"error: the scheduler's port {port} is in use on "
            f'{hosts["ips"][0]}') in out
    assert '[launch]' not in out


def test_a_job_resumed_after_a_lost_worker_equals_an_uninterrupted_one(
        hosts, uninterrupted, tmp_path):
    corpus, whole, code, out = uninterrupted
    assert code == 0, out
    # The same job, a worker killed after rank 0's checkpoint of step 4
    broken = tmp_path / 'broken'
    proc = _launch(hosts, ['-n', '2', '-s', '1', '--timeout', '300']
                   + _pretrain(corpus, broken, 10, '--checkpoint-every',
                               '2'))
    _run_until(proc, r'\[worker \d@[\d.]+\] step +5/')
    os.kill(_worker_on(hosts, 1), signal.SIGKILL)
    proc.communicate(timeout=90)
    assert proc.returncode == 1
    state = json.loads((broken / 'state.json').read_text())
    assert 4 <= state['step'] < 10
    proc = _launch(hosts, ['-n', '2', '-s', '1', '--timeout', '300']
                   + _pretrain(corpus, broken, 10, '--resume'))
    out, _ = proc.communicate(timeout=360)
    assert proc.returncode == 0, out
    assert f'Resuming from step {state["step"]}' in out
    a = json.loads((whole / 'history.json').read_text())
    b = json.loads((broken / 'history.json').read_text())
    onp.testing.assert_allclose(b['mlm_step'], a['mlm_step'], rtol=1e-5)
    onp.testing.assert_allclose(b['nsp_step'], a['nsp_step'], rtol=1e-5)


def test_sigterm_to_the_launcher_stops_both_hosts_and_resume_continues(
        hosts, corpus_dir, tmp_path):
    """SIGTERM reaches the remote workers over ssh (not as a hang-up):
    they agree on a step, rank 0 saves, and --resume continues exactly."""
    from test_launch import sigterm_then_resume

    def launch(argv):
        return _launch(hosts, argv)
    sigterm_then_resume(launch, corpus_dir, tmp_path / 'dist',
                        r'\[worker \d@[\d.]+\] step +4/')
    deadline = time.time() + 30  # a hung-up remote process ends soon after
    while _job_pids(hosts) and time.time() < deadline:
        time.sleep(0.5)
    assert _job_pids(hosts) == []  # nothing left on either host

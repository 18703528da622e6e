"""The pretrain command, called in-process through main([...])."""
import json
import os
import re

import numpy as onp
import pytest
from mxnet import npx

from gluon_bert import pretrain, sizes
from gluon_bert.checkpoint import load_pretrained

TINY = ['--num-hiddens', '16', '--ffn-num-hiddens', '32', '--batch-size',
        '16', '--max-len', '24', '--log-every', '1']


@pytest.mark.skipif(npx.num_gpus() > 0, reason='for machines without GPUs')
def test_three_steps_print_and_write(corpus_dir, tmp_path, capsys):
    save = tmp_path / 'run'
    code = pretrain.main(['--data-dir', corpus_dir, '--steps', '3',
                          '--gpus', '0,1', '--save-dir', str(save)] + TINY)
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    # this MXNet is a CPU build: a line says so, how to get CUDA, and where
    # it trains instead
    no_gpu = [line for line in out if line.startswith('No GPU')]
    assert len(no_gpu) == 1 and 'CPU build' in no_gpu[0]
    assert 'install a CUDA build' in no_gpu[0]
    assert no_gpu[0].endswith('training on cpu(0).')
    assert any(re.fullmatch(r'\d+ sentence pairs, vocabulary of \d+, ready '
                            r'in [\d.]+ s', line) for line in out)
    assert any('16 pairs of 24 tokens' in line and 'available on cpu(0)'
               in line for line in out if line.startswith('Model:'))
    # a progress line per step (--log-every 1)
    steps = [line.split()[1] for line in out if line.startswith('step ')]
    assert steps == ['1/3', '2/3', '3/3']
    # the book's two closing lines, then where the model went
    history = json.loads((save / 'history.json').read_text())
    assert out[-3] == (f'MLM loss {history["mlm"][-1]:.3f}, '
                       f'NSP loss {history["nsp"][-1]:.3f}')
    assert re.fullmatch(r'\d+\.\d sentence pairs/sec on \[cpu\(0\)\]',
                        out[-2])
    assert out[-1] == f'Saved the model, history.csv and loss.png to {save}'
    assert sorted(os.listdir(save)) == [
        'checkpoints', 'config.json', 'history.csv', 'history.json',
        'loss.png', 'model.params', 'state.json', 'trainer.states',
        'vocab.json']
    rows = (save / 'history.csv').read_text().strip().splitlines()
    assert rows[0] == ('step,mlm,nsp,mlm_step,nsp_step,mlm_acc_step,'
                       'nsp_acc_step,lr,total,grad_norm,seconds,wall')
    assert [r.split(',')[0] for r in rows[1:]] == ['1', '2', '3']
    assert (save / 'loss.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'
    config = json.loads((save / 'config.json').read_text())
    assert config['model']['num_hiddens'] == 16
    assert config['train']['config']['steps'] == 3
    net, vocab, _ = load_pretrained(str(save))
    assert len(vocab) == config['model']['vocab_size']


def test_same_seed_same_run(corpus_dir, tmp_path):
    runs = []
    for name in ('a', 'b'):
        pretrain.main(['--data-dir', corpus_dir, '--steps', '2', '--cpus',
                       '2', '--save-dir', str(tmp_path / name)] + TINY)
        runs.append(json.loads((tmp_path / name / 'history.json')
                               .read_text())['mlm_step'])
    onp.testing.assert_allclose(runs[0], runs[1], rtol=1e-6)


def test_help_explains(capsys):
    with pytest.raises(SystemExit) as e:
        pretrain.parse_args(['--help'])
    assert e.value.code == 0
    out = ' '.join(capsys.readouterr().out.split())
    for flag in ('--gpus', '--cpus', '--steps', '--batch-size', '--max-len',
                 '--num-hiddens', '--ffn-num-hiddens', '--num-heads',
                 '--num-blks', '--dropout', '--lr', '--data-dir', '--seed',
                 '--no-hybridize', '--save-dir'):
        assert flag in out
    assert 'book 512, bert 128' in out and 'book 0.01, bert 0.003' in out
    assert '(default: None)' not in out
    for flag in ('--recipe', '--max-minutes', '--eval-every', '--schedule',
                 '--warmup', '--weight-decay', '--clip-norm', '--resample'):
        assert flag in out
    # what each recipe sets, in the help
    assert 'bert: optimizer=adamw, lr=0.003, batch_size=128' in out


def test_defaults_are_the_guides():
    args = pretrain.parse_args([])
    assert (args.steps, args.batch_size, args.max_len, args.num_hiddens,
            args.ffn_num_hiddens, args.num_heads, args.num_blks,
            args.dropout, args.lr) == (50, 512, 64, 128, 256, 2, 2, 0.2, 0.01)


@pytest.mark.parametrize('argv, message', [
    (['--bogus'], 'unrecognized arguments: --bogus'),
    (['--steps', '0'], 'must be at least 1'),
    (['--lr', '-0.1'], 'must be a positive number'),
    (['--gpus', 'x'], "--gpus takes distinct GPU numbers like 0,1, got 'x'"),
    (['--cpus', '4', '--batch-size', '3'], 'smaller than the 4 devices'),
    (['--max-len', '2000'], 'longer than the position embedding'),
    (['--dropout', '1.5'], r'must be in \[0, 1\)'),
    (['--num-heads', '3'], 'not divisible by --num-heads 3'),
    (['--gpus', '0', '--cpus', '2'], 'exclude each other'),
    (['--whole-word'], '--whole-word needs a subword vocabulary: add --vocab '
                       'wordpiece'),
    (['--mask-prob', '0.01', '--max-len', '24'], 'is no MLM slot'),
    (['--mask-prob', '1'], r'must be in \(0, 1\)'),
    (['--vocab-size', '50'], 'must be 300 or more'),
])
def test_bad_command_lines_exit_2_and_write_nothing(argv, message, tmp_path,
                                                    capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        pretrain.main(argv + ['--save-dir', str(tmp_path / 'out')])
    assert e.value.code == 2
    assert re.search(message, capsys.readouterr().err)
    assert os.listdir(tmp_path) == []


def test_data_error_is_one_line_exit_1(tmp_path, capsys):
    code = pretrain.main(['--data-dir', str(tmp_path / 'missing'),
                          '--save-dir', str(tmp_path / 'out')])
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0
    assert err.startswith('python -m gluon_bert.pretrain: error: --data-dir')
    assert not (tmp_path / 'out').exists()


def test_runs_outside_the_main_thread(corpus_dir, tmp_path):
    """Neither Ctrl-C handling nor MXNet's per-thread NumPy mode stops it."""
    import threading
    codes = []
    errors = []

    def target():
        try:
            codes.append(pretrain.main(ARGS))
        except BaseException as e:  # shown if the test fails
            errors.append(repr(e))
    ARGS = (['--data-dir', corpus_dir, '--steps', '1', '--save-dir',
             str(tmp_path / 'run')] + TINY)
    thread = threading.Thread(target=target)
    thread.start()
    thread.join(120)
    assert (codes, errors) == ([0], [])


def test_mxnet_install_check():
    from gluon_bert.utils import check_mxnet_install
    with pytest.raises(ImportError) as e:
        check_mxnet_install(find_spec=lambda name: None)
    message = str(e.value)
    assert '\n' not in message
    assert 'needs MXNet 1.9.1' in message and "'.[cpu]'" in message
    warned = []
    names = check_mxnet_install(
        distributions=lambda: ['mxnet', 'mxnet-cu112'], warn=warned.append)
    assert names == ['mxnet', 'mxnet-cu112']
    assert len(warned) == 1 and 'pip uninstall -y mxnet' in warned[0]
    warned.clear()
    check_mxnet_install(distributions=lambda: ['mxnet-cu117'],
                        warn=warned.append)
    assert warned == []
    # and this machine has exactly one build
    assert len(check_mxnet_install(warn=warned.append)) == 1


def test_installing_gluon_bert_never_replaces_an_mxnet_build():
    """Requiring `mxnet` made pip put the CPU wheel over a CUDA build: the
    installed package asks for MXNet only through an extra."""
    from importlib import metadata
    requires = metadata.requires('gluon_bert') or []
    mxnet = [r for r in requires if r.lower().startswith('mxnet')]
    assert mxnet and all('extra ==' in r for r in mxnet)
    extras = {r.split('extra ==')[1].strip(' "\'') for r in mxnet}
    assert {'cpu', 'cu112', 'cu117'} <= extras


def _memory_args(batch_size):
    return pretrain.parse_args(['--batch-size', str(batch_size)])


def test_memory_check_covers_every_device(library_log):
    import mxnet as mx
    from gluon_bert.sizes import estimate_memory
    from gluon_bert.utils import GluonBertError
    args = _memory_args(512)
    est = estimate_memory(20256, 128, 256, 2, 2, 64, 512, 2)
    need = est['state'] + est['activations']  # per device, 256 pairs each
    # CPU contexts share the RAM: two of them need twice as much
    free = {'cpu': 1.5 * need}
    cpus = [mx.cpu(0), mx.cpu(1)]
    with pytest.raises(GluonBertError, match=r'cpu\(0\)/cpu\(1\) \(they '
                                             r'share the RAM\)'):
        sizes.check_memory(args, 20256, cpus,
                           lambda d: free[d.device_type])
    free['cpu'] = 2.5 * need
    sizes.check_memory(args, 20256, cpus,
                           lambda d: free[d.device_type])
    # each GPU has its own: a tight one is a warning, a short one an error
    gpus = [mx.gpu(0), mx.gpu(1)]
    room = {0: 10 * need, 1: need}
    library_log.clear()
    sizes.check_memory(args, 20256, gpus,
                       lambda d: room[d.device_id])
    said = [(r.levelname, r.getMessage()) for r in library_log.records]
    assert said[0][0] == 'INFO' and 'available on gpu(0), ' in said[0][1]
    assert said[1][0] == 'WARNING'
    assert said[1][1].startswith('gpu(1) may run out of memory')
    room[1] = 0.5 * need
    with pytest.raises(GluonBertError, match=r'but gpu\(1\) has'):
        sizes.check_memory(args, 20256, gpus,
                           lambda d: room[d.device_id])
    args.no_memory_check = True
    sizes.check_memory(args, 20256, gpus,
                           lambda d: room[d.device_id])


def test_book_loss_path_equals_the_fused_one(corpus_dir, tmp_path):
    histories = []
    for loss in ('book', 'fused'):
        save = tmp_path / loss
        assert pretrain.main(['--loss', loss, '--dropout', '0', '--steps',
                              '6', '--data-dir', corpus_dir, '--save-dir',
                              str(save)] + TINY) == 0
        histories.append(json.loads((save / 'history.json').read_text()))
    book, fused = histories
    onp.testing.assert_allclose(book['mlm_step'], fused['mlm_step'],
                                rtol=1e-4)
    onp.testing.assert_allclose(book['nsp_step'], fused['nsp_step'],
                                rtol=1e-4)
    assert book['mlm_acc_step'] == [None] * 6  # the book's path has none
    config = json.loads((tmp_path / 'book' / 'config.json').read_text())
    assert config['train']['config']['loss'] == 'book'


def test_wordpiece_vocabulary_lives_in_the_model_directory(corpus_dir,
                                                            tmp_path, capsys):
    """--vocab wordpiece: learnt once, saved as vocab.json (and
    tokenizer.json), kept on --resume, and used by fine-tuning's reader."""
    tokenizers = pytest.importorskip('tokenizers')
    from gluon_bert.tasks import ClassificationDataset
    save = tmp_path / 'run'
    argv = ['--data-dir', corpus_dir, '--vocab', 'wordpiece', '--vocab-size',
            '300', '--whole-word', '--no-nsp', '--save-dir', str(save)] + TINY
    assert pretrain.main(argv + ['--steps', '2']) == 0
    net, vocab, config = load_pretrained(str(save))
    assert vocab.kind == 'wordpiece'
    assert config['train']['config']['whole_word']
    words = ['w1', 'w391', 'the']
    assert vocab.split(words)[-2].startswith('##')
    hf = tokenizers.Tokenizer.from_file(str(save / 'tokenizer.json'))
    assert hf.encode(words, is_pretokenized=True).tokens == vocab.split(words)
    data = ClassificationDataset(['w391 w1'], None, [0], vocab, 16)
    assert data.token_ids[0] == vocab[['<cls>'] + vocab.split(['w391', 'w1'])
                                      + ['<sep>']]
    assert pretrain.main(['--save-dir', str(save), '--resume', '--steps',
                          '3']) == 0
    assert load_pretrained(str(save))[1] == vocab
    # encode shows the vectors of the pieces
    from gluon_bert import encode
    capsys.readouterr()
    assert encode.main(['--model-dir', str(save), 'w391 w1']) == 0
    out = capsys.readouterr().out
    assert all(f'"{piece}"' in out for piece in vocab.split(['w391']))

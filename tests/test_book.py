"""The book check: the guide's 50-step run on the real WikiText-2.

A few minutes on a 2-core CPU; skipped when GLUON_BERT_DATA is unset.
"""
import json

import numpy as onp
import pytest

from gluon_bert import pretrain
from gluon_bert.checkpoint import load_pretrained
from gluon_bert.encoder import get_bert_encoding


@pytest.mark.realdata
@pytest.mark.slow
def test_guides_50_steps_land_where_the_book_does(wiki_dir, tmp_path, capsys,
                                                  shared_cache):
    save = tmp_path / 'run'
    assert pretrain.main(['--gpus', '0,1', '--steps', '50', '--data-dir',
                          wiki_dir, '--save-dir', str(save)]) == 0
    out = capsys.readouterr().out.splitlines()
    history = json.loads((save / 'history.json').read_text())
    mlm, nsp = history['mlm'][-1], history['nsp'][-1]
    assert out[-3] == f'MLM loss {mlm:.3f}, NSP loss {nsp:.3f}'
    # the book's MXNet runs print 7.29-7.36 and 0.82-0.91
    assert 6.9 <= mlm <= 7.7
    assert 0.65 <= nsp <= 1.0
    # on this machine's devices (2 GPUs where there are, else cpu(0))
    from gluon_bert.devices import parse_devices
    devices = parse_devices(gpus='0,1')
    assert out[-2].endswith(f' sentence pairs/sec on {devices}')

    # The guide's Step 6: 'crane' in two contexts
    net, vocab, config = load_pretrained(str(save))
    assert len(vocab) == 20256
    one = get_bert_encoding(net, vocab, ['a', 'crane', 'is', 'flying'])
    pair = get_bert_encoding(net, vocab, ['a', 'crane', 'driver', 'came'],
                             ['he', 'just', 'left'])
    assert one.shape == (1, 6, 128) and pair.shape == (1, 10, 128)
    crane_one, crane_pair = one[0, 2].asnumpy(), pair[0, 2].asnumpy()
    # After only 50 steps the model has learnt little more than word
    # frequencies and its vectors barely depend on context (the book's model
    # too), but they do differ: far above float32 rounding (~3e-8 here)
    assert onp.abs(crane_one - crane_pair).max() > 1e-6
    assert not onp.array_equal(crane_one[:3], crane_pair[:3])

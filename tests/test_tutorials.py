"""Every tutorial notebook runs headless, in small-run mode, without error."""
import json
import os

import nbformat
import pytest

TUTORIALS = os.path.join(os.path.dirname(__file__), os.pardir, 'tutorials')
NOTEBOOKS = sorted(n for n in os.listdir(TUTORIALS) if n.endswith('.ipynb'))


def test_the_readme_lists_every_notebook_in_order():
    """The README's tour and the folder agree: nothing missing or stale, and
    the notebooks are numbered steps 01, 02, ... without a gap."""
    import re
    with open(os.path.join(TUTORIALS, os.pardir, 'README.md'),
              encoding='utf-8') as f:
        readme = f.read()
    listed = re.findall(r'`(\d\d_\w+)`', readme)
    assert listed == [n[:-len('.ipynb')] for n in NOTEBOOKS]
    assert [int(n[:2]) for n in NOTEBOOKS] == list(
        range(1, len(NOTEBOOKS) + 1))


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebooks_open_with_their_title_and_short_cells(name):
    """Each reads as a page of the book: its number and title first, then
    cells a reader takes in at a glance (no page of plumbing)."""
    book = nbformat.read(os.path.join(TUTORIALS, name), as_version=4)
    first = book.cells[0]
    assert first.cell_type == 'markdown'
    assert first.source.startswith(f'# {int(name[:2])}. ')
    for cell in book.cells:
        if cell.cell_type == 'code':
            assert len(cell.source.splitlines()) <= 25, cell.source[:80]


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebooks_define_no_library_code(name):
    book = nbformat.read(os.path.join(TUTORIALS, name), as_version=4)
    code = [c.source for c in book.cells if c.cell_type == 'code']
    assert code and any('gluon_bert' in src for src in code)
    for src in code:
        for line in src.splitlines():
            assert not line.lstrip().startswith(('def ', 'class ')), line


@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebooks_are_committed_with_a_full_runs_outputs(name):
    """They read like the book's pages where they are viewed unrun."""
    book = nbformat.read(os.path.join(TUTORIALS, name), as_version=4)
    code = [c for c in book.cells if c.cell_type == 'code']
    assert all(c.get('execution_count') for c in code), 'run every cell'
    text = json.dumps([c.get('outputs', []) for c in code])
    assert '"output_type": "error"' not in text
    assert 'small-run mode' not in text
    for expected in FULL_EXPECTED.get(name, EXPECTED[name]):
        assert expected in text, expected


EXPECTED = {
    '01_data.ipynb': ['20256', '(64, 64) (64, 64) (64,) (64, 10) (64, 10) '
                               '(64, 10) (64,)'],
    '02_model.ipynb': ['5632546', '(2, 8, 128) (2, 3, 20256) (2, 2)'],
    '03_loss_and_loop.ipynb': ['MLM per shard:', 'share of padded slots'],
    '04_pretraining.ipynb': ['MLM loss', 'pairs/sec'],
    '05_representations.ipynb': ['Shape of encoded text: (1, 6, 128)',
                                 'Shape of encoded pair: (1, 10, 128)',
                                 'cosine similarity:'],
    '06_exercises.ipynb': ['ln 20256 = 9.92', 'M parameters',
                           'try --batch-size', 'exit code 1'],
    '07_a_recipe_that_learns.ipynb': [
        'valid MLM loss', "cosine of the two 'crane' vectors",
        'released in <mask> ->'],
    '08_fine_tuning.ipynb': [
        '8842 training pairs, 3 classes', 'label 2: <cls> two women',
        "kept from the pretrained model: ['encoder', 'hidden']",
        'new output layer: Dense(128 -> 3', 'control     dev accuracy',
        'A man is performing music . -> entailment',
        'gain over the control', 'fitted over the 3 largest budgets',
        "steps of WikiText-2, then"],
}


#: What differs in a full run (the book's batch of 512)
FULL_EXPECTED = {'01_data.ipynb': [
    '20256', '(512, 64) (512, 64) (512,) (512, 10) (512, 10) (512, 10) '
             '(512,)']}


@pytest.mark.realdata
@pytest.mark.parametrize('name', NOTEBOOKS)
def test_notebook_runs(name, short_data, monkeypatch, tmp_path,
                       shared_cache):
    """Each notebook runs in its own folder, as `jupyter notebook
    tutorials/` runs it, with GLUON_BERT_DATA relative to the checkout (as
    the README's commands set it), on the data with its held-out files cut
    short (they are scored whole)."""
    import shutil
    from nbclient import NotebookClient
    monkeypatch.setenv('GLUON_BERT_SMALL', '1')
    root = os.path.abspath(os.path.join(TUTORIALS, os.pardir))
    monkeypatch.setenv('GLUON_BERT_DATA', os.path.relpath(
        os.path.join(short_data, 'wikitext-2'), root))
    made = not os.path.exists(os.path.join(TUTORIALS, 'runs'))
    book = nbformat.read(os.path.join(TUTORIALS, name), as_version=4)
    try:
        NotebookClient(book, timeout=600, kernel_name='python3',
                       resources={'metadata': {'path': TUTORIALS}}).execute()
    finally:
        if made:  # what the small runs wrote (runs/ is git-ignored)
            shutil.rmtree(os.path.join(TUTORIALS, 'runs'), ignore_errors=True)
    text = json.dumps([c.get('outputs', []) for c in book.cells])
    assert '"output_type": "error"' not in text
    for expected in EXPECTED[name]:
        assert expected in text, expected


def test_a_gluon_bert_error_in_a_notebook_is_one_line(tmp_path):
    """In Jupyter, a bad setting reads as the commands say it: one line on
    stderr, no traceback; other errors keep theirs."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    book = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell('import gluon_bert\n'
                                  'from gluon_bert.dataset import '
                                  'load_data_wiki'),
        nbformat.v4.new_code_cell("load_data_wiki(8, 16, data_dir='nowhere')"),
    ])
    # the cell still fails (Run All stops there), showing only the line
    NotebookClient(book, timeout=120, kernel_name='python3',
                   allow_errors=True,
                   resources={'metadata': {'path': str(tmp_path)}}).execute()
    outputs = book.cells[1].outputs
    assert [o.output_type for o in outputs] == ['stream'], outputs
    assert outputs[0].name == 'stderr'
    assert outputs[0].text.strip().count('\n') == 0
    assert outputs[0].text.startswith("error: data_dir 'nowhere' is not a "
                                      'folder')
    book.cells[1].source = '1 / 0'
    with pytest.raises(CellExecutionError, match='ZeroDivisionError'):
        NotebookClient(book, timeout=120, kernel_name='python3',
                       resources={'metadata': {'path': str(tmp_path)}}
                       ).execute()

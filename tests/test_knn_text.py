"""benchmarks/knn_text.py: WikiText paragraphs nearest a task's training
text (kNN-TAPT, a study tool)."""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir,
                                'benchmarks'))
from knn_text import nearest, write_knn_text  # noqa: E402


def test_each_query_picks_the_paragraph_sharing_its_rarest_words():
    paragraphs = [['the', 'dog', 'runs', 'the', 'the'],
                  ['a', 'crane', 'flies'],
                  ['the', 'crane', 'is', 'yellow'], ['the', 'cat', 'sat']]
    assert nearest([['the', 'crane', 'flies']], paragraphs, 1) == [1]
    assert nearest([['the', 'crane', 'flies']], paragraphs, 2) == [1, 2]
    # a word in most paragraphs weighs little: not the one with most 'the'
    assert nearest([['the', 'the', 'crane']], paragraphs, 1) == [2]
    # the union over queries, sorted
    assert nearest([['cat'], ['dog', 'runs'], ['crane', 'flies']],
                   paragraphs, 1) == [0, 1, 3]


def test_the_file_holds_wikitext_lines_near_training_text_only(tmp_path):
    wiki = tmp_path / 'wiki.train.tokens'
    lines = [' = Title = \n', ' Rivers flow . Oceans rise . \n',
             ' Kings rule . Queens reign . \n', ' Stars shine . \n',
             ' Moons orbit . Planets turn . \n']
    wiki.write_text(''.join(lines), encoding='utf-8')
    task = tmp_path / 'task'
    task.mkdir()
    (task / 'train.tsv').write_text(
        'sentence1\tsentence2\tlabel\nWhere do rivers flow?\tTo the sea.\t0\n'
        'Who rules?\tThe kings.\t1\n', encoding='utf-8')
    # dev text names the moons: never read, so that paragraph is not chosen
    (task / 'dev.tsv').write_text(
        'sentence1\tsentence2\tlabel\nMoons orbit?\tPlanets turn.\t0\n',
        encoding='utf-8')
    out = tmp_path / 'near.txt'
    assert write_knn_text([('tsv', str(task))], str(wiki), 1, str(out)) == (
        2, 4)  # the title is no paragraph (the book's rule)
    assert out.read_text(encoding='utf-8') == lines[1] + lines[2]

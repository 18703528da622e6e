"""The READMEs as a newcomer reads them: the start first, short
paragraphs, a contents list on the studies page (issue #45)."""
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), os.pardir))


def _read(*path):
    with open(os.path.join(ROOT, *path), encoding='utf-8') as f:
        return f.read()


def paragraphs(text):
    """(first line number, lines) of every prose paragraph: blank-line
    separated text outside code blocks, tables, headings and the report
    markers; each list item is a paragraph of its own."""
    out, current, fenced = [], [], False
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith('```'):
            fenced = not fenced
            line = ''
        prose = not fenced and line.strip() and not line.startswith(
            ('|', '#', '<!--'))
        if prose and re.match(r'\s*([-*]|\d+\.) ', line) and current:
            out.append(current)
            current = []
        if prose:
            current.append((number, line))
        elif current:
            out.append(current)
            current = []
    if current:
        out.append(current)
    return [(p[0][0], len(p)) for p in out]


def test_the_readme_starts_with_what_it_is_and_the_two_commands():
    lines = _read('README.md').splitlines()
    first = next(i for i, line in enumerate(lines, 1)
                 if 'pip install' in line)
    assert first <= 40, f'the first install command is at line {first}'


def test_no_prose_paragraph_over_ten_lines():
    for name in ('README.md',):
        long = [(line, n) for line, n in paragraphs(_read(name)) if n > 10]
        assert not long, f'{name}: paragraphs (line, lines) {long}'


def test_the_studies_page_opens_with_its_contents():
    text = _read('benchmarks', 'README.md')
    head = '\n'.join(text.splitlines()[:40])
    sections = re.findall(r'^## (.+)$', text, re.M)
    assert sections
    for title in sections:
        if title == 'Contents':
            continue
        anchor = re.sub(r'[^\w\- ]', '', title.lower()).replace(' ', '-')
        assert f'(#{anchor})' in head, f'{title!r} is not in the contents'

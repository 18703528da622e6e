"""Regenerate the measured blocks of the READMEs from benchmarks/results/.

    python benchmarks/report.py           # rewrite the blocks in place
    python benchmarks/report.py --check   # exit 1 if a block is stale

``benchmarks/README.md`` (the studies) and ``README.md`` (the front page)
are prose with generated blocks in them::

    <!-- report: include results/compare.txt -->
    ...written by this script...
    <!-- /report -->

A block's kind is ``include FILE`` (a results file, verbatim, in a text
block), ``transfer [FILE]`` (the table of ``results/transfer.json`` or of
FILE, as ``bench_transfer.py`` prints it), ``levers`` (``results/levers.json``, as
``bench_levers.py`` prints it), ``layernorm`` (``results/layernorm.json``),
``pretraining`` (``results/pretrain_30min.json``), ``pretrained FILE``
(held-out figures of recorded models, no wall times), ``finetune FILE`` (an
SST-2 study's runs, grouped by settings, start and learning rate),
``recipes`` (what each ``--recipe`` sets, from ``gluon_bert.config``),
``scaling`` and ``scaling-headline`` (``results/scaling.json``: the table
and the front page's sentence), ``tapt`` and ``tapt-routes``
(``results/tapt.json``: the task's own text, every start, and which start
to take for which task), ``corpus`` and ``shard-format``
(``results/corpus.json``, ``results/shard_format.json``: pretraining on
more than WikiText-2) or
``headline`` (the front page's table: speed, learning and transfer, book
against here).  Everything in a block
comes from a results file, so a figure there cannot drift from what was
measured; ``--check`` (run by the test suite) fails when a results file
changed and the READMEs were not regenerated.
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
BLOCK = re.compile(r'(<!-- report: (?P<spec>[^>]*?) -->\n)(?P<body>.*?)'
                   r'(<!-- /report -->)', re.S)


def _results(name):
    return os.path.join(HERE, 'results', name)


def include(name):
    with open(_results(os.path.relpath(name, 'results')
                       if name.startswith('results/') else name),
              encoding='utf-8') as f:
        text = f.read().rstrip('\n')
    return f'```text\n{text}\n```'


def _transfer_table(name='transfer.json'):
    sys.path.insert(0, HERE)
    import bench_transfer
    with open(_results(os.path.relpath(name, 'results')
                       if name.startswith('results/') else name)) as f:
        results = json.load(f)
    table, starts, tasks = bench_transfer.table_of(results)
    return bench_transfer, table, starts, tasks


def transfer(name='transfer.json'):
    """The table of a bench_transfer results file (``transfer.json`` by
    default)."""
    module, table, starts, tasks = _transfer_table(name)
    return module.format_table(table, starts, tasks)


def _row(text, label):
    """The numbers of the line of ``text`` that starts with ``label``."""
    for line in text.splitlines():
        if line.startswith(label):
            return re.findall(r'\d+\.\d+|\d+', line[len(label):])
    raise ValueError(f'no line {label!r}')


#: The pretrained start the front page's transfer row shows: the recipe
#: kept for transfer (``--recipe bert-wp``).
HEADLINE_START = 'bert-wp'


def headline():
    with open(_results('compare.txt'), encoding='utf-8') as f:
        compare = f.read()
    book_gpu, d2l_here, ours = _row(compare, 'sentence pairs/sec')
    with open(_results('bench_learning.txt'), encoding='utf-8') as f:
        # | book | steps | pairs | pairs/sec | MLM loss | MLM acc | NSP loss
        # | NSP acc | ...
        book = _row(f.read(), '| book |')
    with open(_results('pretrain_30min.json')) as f:
        runs = {r['name']: r for r in json.load(f)}
    module, table, starts, tasks = _transfer_table()
    gains = []
    for task in tasks:
        metric = module.TASKS[task][1]
        # each pretrained start against its own control (same vocabulary)
        pairs = [(s, table[task, s], table.get((task, table[task, s]['control'])))
                 for s in starts if (task, s) in table
                 and table[task, s]['control'] != s]
        pairs = [(s, e, c) for s, e, c in pairs if c is not None]
        if not pairs:
            continue
        split = 'test' if f'test {metric}' in pairs[0][2] else 'dev'
        key = f'{split} {metric}'
        # the recipe the package keeps, on every task (no picking the best
        # start per task)
        kept = [p for p in pairs if p[0] == HEADLINE_START] or pairs[:1]
        best, e, c = kept[0]
        gains.append(f'{task} {e[key][0] - c[key][0]:+.1f} '
                     f'({split} {metric})')
    bert = runs['bert']
    return '\n'.join([
        '| | the book\'s code | gluon_bert |', '| --- | ---: | ---: |',
        f'| sentence pairs/sec, the guide\'s 50 steps (`compare`) | '
        f'{d2l_here} here ({book_gpu} on the book\'s 2 GPUs) | {ours} here |',
        f'| held-out MLM loss / NSP accuracy after 30 minutes here | '
        f'{float(book[3]):.2f} / {float(book[6]):.2f} (its recipe, '
        f'{book[0]} steps) | {bert["valid_mlm"]:.2f} / '
        f'{bert["valid_nsp_acc"]:.2f} (`--recipe bert`, {bert["steps"]} '
        'steps) |',
        f'| fine-tuned, gain of `--recipe {HEADLINE_START}` (30 minutes) over '
        'the same classifier from random init (3 seeds) | - | '
        + '; '.join(gains) + ' |'])


def _cell(value, digits):
    return '' if value is None else f'{value:.{digits}f}'


def pretraining():
    """The time-budget pretrainings of results/pretrain_30min.json."""
    with open(_results('pretrain_30min.json')) as f:
        runs = json.load(f)
    lines = ['| start | steps | minutes | pairs/sec | GEMM peak (GFLOP/s) | '
             'valid MLM loss | valid NSP accuracy | training figures, last '
             '100 steps | command |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |']
    for r in runs:
        train = ', '.join(f'{k[6:-8]} {v:.3f}' for k, v in r.items()
                          if k.startswith('train_') and k.endswith('last100'))
        lines.append(
            f'| {r["name"]} | {r["steps"]} | {r["minutes"]:.1f} | '
            f'{r["pairs_per_sec"]:.0f} | {_cell(r.get("gemm_gflops"), 0)} | '
            f'{_cell(r.get("valid_mlm"), 3)} | '
            f'{_cell(r.get("valid_nsp_acc"), 3)} | {train} | '
            f'`{r["command"]}` |')
    notes = [f'- {r["name"]}: {r["note"]}' for r in runs if r.get('note')]
    return '\n'.join(lines + ([''] + notes if notes else []))


def pretrained(name):
    """Held-out figures of the models recorded in ``results/NAME``
    (``record_pretrain.py``), without wall times: for runs made side by
    side, whose minutes measure nothing."""
    with open(_results(name)) as f:
        runs = json.load(f)
    lines = ['| model | steps | valid MLM loss | valid MLM accuracy | '
             'valid NSP accuracy | command |',
             '| --- | ---: | ---: | ---: | ---: | --- |']
    for r in runs:
        lines.append(f'| {r["name"]} | {r["steps"]} | '
                     f'{_cell(r.get("valid_mlm"), 3)} | '
                     f'{_cell(r.get("valid_mlm_acc"), 3)} | '
                     f'{_cell(r.get("valid_nsp_acc"), 3)} | '
                     f'`{r["command"]}` |')
    return '\n'.join(lines)


def layernorm():
    """results/layernorm.json: LayerNorm forward and backward by width."""
    with open(_results('layernorm.json')) as f:
        data = json.load(f)
    lines = ['| width | tokens | MXNet kernel (ms) | matrix form (ms) | '
             'speed-up of the matrix form |', '| ---: | ---: | ---: | ---: | '
             '---: |']
    for r in data['rows']:
        lines.append(f'| {r["width"]} | {r["tokens"]} | {r["mxnet_ms"]:.1f} '
                     f'| {r["matrix_ms"]:.1f} | {r["speedup"]:.2f}x |')
    lines += ['', f'- {data["cpu"]}' + (f'; {data["note"]}'
                                        if data.get('note') else '')]
    return '\n'.join(lines)


_START_NAMES = {'random': 'control', 'bert': 'pretrained',
                'book50': "the guide's 50-step model"}


def _mean_sd(values):
    """``80.8 ± 0.5`` (x100) of one or more fractions; one value alone."""
    import statistics
    values = [100 * v for v in values if v is not None]
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.1f}'
    return f'{statistics.mean(values):.1f} ± {statistics.stdev(values):.1f}'


def finetune(name):
    """An SST-2 fine-tuning study (``bench_finetune.py`` or
    ``finetune_variants.py`` records in ``results/NAME``): one row per
    settings, start and learning rate, mean ± standard deviation over its
    seeds."""
    with open(_results(os.path.relpath(name, 'results')
                       if name.startswith('results/') else name)) as f:
        runs = json.load(f)
    groups = {}
    for r in runs:
        settings = r.get('variant') or r.get('args') or "the book's"
        groups.setdefault((settings, r['name'], r.get('lr', 1e-4)),
                          []).append(r)
    order = {"the book's": 0, '--schedule linear': 1}
    starts = {'random': 0, 'bert': 1}
    lines = ['| settings | start | lr | seeds | dev % | test % | best epochs '
             '| minutes per run |', '| --- | --- | ---: | ---: | ---: | ---: '
             '| --- | --- |']
    for (settings, start, lr), rs in sorted(
            groups.items(), key=lambda kv: (order.get(kv[0][0], 2), kv[0][0],
                                            starts.get(kv[0][1], 2), kv[0])):
        rs.sort(key=lambda r: r['seed'])
        lines.append(
            f'| {settings} | {_START_NAMES.get(start, start)} | {lr:g} | '
            f'{len(rs)} | {_mean_sd([r["dev_acc"] for r in rs])} | '
            f'{_mean_sd([r["test_acc"] for r in rs])} | '
            + ', '.join(str(r['best_epoch']) for r in rs) + ' | '
            + ', '.join(f'{r["minutes"]:.1f}' for r in rs) + ' |')
    return '\n'.join(lines)


def recipes():
    """What each ``--recipe`` sets (gluon_bert.config.RECIPES)."""
    sys.path.insert(0, os.path.dirname(HERE))
    from gluon_bert import config
    names = list(config.RECIPES)
    lines = ['| setting | ' + ' | '.join(f'`--recipe {n}`' for n in names)
             + ' |', '| --- |' + ' --- |' * len(names)]
    for key in config.RECIPE_KEYS:
        lines.append(f'| `--{key.replace("_", "-")}` | ' + ' | '.join(
            str(config.RECIPES[n][key]) for n in names) + ' |')
    return '\n'.join(lines)


def levers():
    """results/levers.json: the lever screen (bench_levers.py)."""
    sys.path.insert(0, HERE)
    import bench_levers
    with open(_results('levers.json')) as f:
        results = json.load(f)
    tasks = [t for t in bench_levers.bench_transfer.TASKS
             if any(r['task'] == t for r in results['finetune'])]
    return bench_levers.format_table(results, tasks)


def _scaling(name):
    """``(bench_scaling, the runs of results/NAME)``."""
    sys.path.insert(0, HERE)
    import bench_scaling
    with open(_results(name)) as f:
        return bench_scaling, json.load(f)


def scaling(name='scaling.json'):
    """results/scaling.json: transfer at each pretraining budget
    (bench_scaling.py)."""
    bench_scaling, results = _scaling(name)
    budgets, args = bench_scaling.settings(results)
    return bench_scaling.format_scaling(results, budgets, args)


def scaling_headline(name='scaling.json'):
    """One sentence for the front page from results/scaling.json."""
    bench_scaling, results = _scaling(name)
    return bench_scaling.headline(results)


def _record(module, name, formatter='format_table'):
    sys.path.insert(0, HERE)
    with open(_results(name)) as f:
        return getattr(__import__(module), formatter)(json.load(f))


def corpus(name='corpus.json'):
    """results/corpus.json: pretrain --corpus at 1x-50x (bench_corpus.py)."""
    return _record('bench_corpus', name)


def shard_format(name='shard_format.json'):
    """results/shard_format.json: memmap against Arrow
    (bench_shard_format.py)."""
    return _record('bench_shard_format', name)


def tapt(name='tapt.json'):
    """results/tapt.json: WikiText-2, then the task's own text
    (bench_tapt.py)."""
    return _record('bench_tapt', name)


def tapt_routes(name='tapt.json'):
    """results/tapt.json: which start to take for which task."""
    return _record('bench_tapt', name, 'format_routes')


KINDS = {'include': include, 'scaling': scaling, 'corpus': corpus,
         'tapt': tapt, 'tapt-routes': tapt_routes,
         'shard-format': shard_format,
         'scaling-headline': scaling_headline, 'transfer': transfer,
         'headline': headline, 'pretraining': pretraining,
         'pretrained': pretrained, 'layernorm': layernorm,
         'levers': levers, 'finetune': finetune, 'recipes': recipes}


def render(text):
    """``text`` with every block regenerated."""
    def fill(match):
        kind, *args = match.group('spec').split()
        body = KINDS[kind](*args)
        return f'{match.group(1)}{body}\n{match.group(4)}'
    return BLOCK.sub(fill, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--check', action='store_true',
                        help='change nothing; exit 1 when a file differs '
                             'from what would be written')
    parser.add_argument('--root', default=ROOT,
                        help='the checkout whose READMEs and benchmarks/'
                             'results/ to use')
    args = parser.parse_args(argv)
    global HERE
    HERE = os.path.join(os.path.abspath(args.root), 'benchmarks')
    stale = []
    for path in (os.path.join(HERE, 'README.md'),
                 os.path.join(os.path.dirname(HERE), 'README.md')):
        with open(path, encoding='utf-8') as f:
            text = f.read()
        new = render(text)
        if new == text:
            continue
        if args.check:
            stale.append(os.path.relpath(path, args.root))
        else:
            with open(path + '.tmp', 'w', encoding='utf-8') as f:
                f.write(new)
            os.replace(path + '.tmp', path)
            print(f'rewrote {os.path.relpath(path, args.root)}')
    if stale:
        print(f'stale: {", ".join(stale)}: run python benchmarks/report.py',
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())

"""Time to quality: the book's recipe against the bert recipe, same budget.

    python benchmarks/bench_learning.py [--minutes 30] [--data-dir DIR]

For each recipe, in turn and alone on the machine, it runs exactly what a
user would::

    python -m gluon_bert.pretrain --recipe R --max-minutes M --eval-every N
    python -m gluon_bert.evaluate --model-dir OUT/R --split valid

then measures how much the guide's 'crane' depends on context: the cosine
similarity of its vectors in "a crane is flying" and in "a crane driver
came" / "he just left" (1.0: the same vector in both).  It prints one table,
the held-out curve over wall-clock time, and the published reference points
beside them; writes ``OUT/learning.json`` and the plot
``OUT/learning_curve.png`` (``--out``, default runs/bench_learning).
"""
import argparse
import json
import os
import subprocess
import sys
import time

#: Held-out evaluations per run (the first and last included).
EVALS = 12
#: Roughly how many steps a minute each recipe runs on a 2-core CPU; only
#: used to space the evaluations.
STEPS_PER_MINUTE = {'book': 36, 'bert': 126}
REFERENCES = [
    ('earlier d2l draft, 4,000 steps, batch 256, max_len 128, 2 GPUs',
     '5.715', '', '0.321', ''),
    ('GluonNLP BERT-base, 1k steps', '7.11', '0.09', '', ''),
    ('GluonNLP BERT-base, 5k steps', '6.35', '0.14', '', ''),
    ('GluonNLP BERT-base, 10k steps', '4.75', '0.28', '', ''),
]


def _run(command, log):
    print('$ ' + ' '.join(command), flush=True)
    with open(log, 'w') as f:
        done = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        sys.exit(f'failed ({done.returncode}); see {log}')


def crane_cosine(model_dir):
    """Cosine of 'crane' in the guide's two inputs (1.0: context-free)."""
    from gluon_bert.checkpoint import load_pretrained
    from gluon_bert.encoder import cosine_similarity, get_bert_encoding
    net, vocab, _ = load_pretrained(model_dir)
    one = get_bert_encoding(net, vocab, ['a', 'crane', 'is', 'flying'])
    pair = get_bert_encoding(net, vocab, ['a', 'crane', 'driver', 'came'],
                             ['he', 'just', 'left'])
    return cosine_similarity(one[0, 2].asnumpy(), pair[0, 2].asnumpy())


def run_recipe(recipe, minutes, data_dir, out):
    save = os.path.join(out, recipe)
    every = max(1, int(minutes * STEPS_PER_MINUTE[recipe] / (EVALS - 1)))
    command = [sys.executable, '-m', 'gluon_bert.pretrain', '--recipe',
               recipe, '--max-minutes', str(minutes), '--eval-every',
               str(every), '--log-every', '100', '--save-dir', save]
    if data_dir:
        command += ['--data-dir', data_dir]
    start = time.perf_counter()
    _run(command, os.path.join(out, f'{recipe}-pretrain.log'))
    seconds = time.perf_counter() - start
    command = [sys.executable, '-m', 'gluon_bert.evaluate', '--model-dir',
               save, '--split', 'valid']
    if data_dir:
        command += ['--data-dir', data_dir]
    _run(command, os.path.join(out, f'{recipe}-evaluate.log'))
    with open(os.path.join(save, 'eval-valid.json')) as f:
        final = json.load(f)
    with open(os.path.join(save, 'history.json')) as f:
        history = json.load(f)
    curve = [{'minutes': history['wall'][e['step'] - 1] / 60,
              'step': e['step'], 'mlm_loss': e['mlm_loss'],
              'mlm_accuracy': e['mlm_accuracy'], 'nsp_loss': e['nsp_loss'],
              'nsp_accuracy': e['nsp_accuracy']} for e in history['eval']]
    return {'recipe': recipe, 'steps': history['step'][-1],
            'pairs': history['pairs'][-1],
            'pairs_per_sec': history['pairs_per_sec'],
            'command_seconds': seconds, 'final': final, 'curve': curve,
            'crane_cosine': crane_cosine(save)}


def plot(results, path):
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for r in results:
        minutes = [c['minutes'] for c in r['curve']]
        axes[0].plot(minutes, [c['mlm_loss'] for c in r['curve']], 'o-',
                     label=f'{r["recipe"]}: valid MLM loss')
        axes[1].plot(minutes, [c['nsp_accuracy'] for c in r['curve']], 'o-',
                     label=f'{r["recipe"]}: valid NSP accuracy')
        axes[1].plot(minutes, [c['mlm_accuracy'] for c in r['curve']], 's--',
                     label=f'{r["recipe"]}: valid MLM accuracy')
    axes[0].axhline(5.715, color='gray', ls=':',
                    label='earlier d2l draft, 4k steps on 2 GPUs')
    axes[0].set_ylabel('loss')
    axes[1].set_ylabel('accuracy')
    for ax in axes:
        ax.set_xlabel('wall-clock minutes (this 2-core CPU)')
        ax.grid(True)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def report(results, minutes):
    lines = [f'Held-out (valid split) after {minutes:g} minutes of training '
             'on this machine:', '',
             '| recipe | steps | pairs | pairs/sec | valid MLM loss | MLM '
             'accuracy | NSP loss | NSP accuracy | crane cosine |',
             '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |']
    for r in results:
        f = r['final']
        lines.append(
            f'| {r["recipe"]} | {r["steps"]} | {r["pairs"]} | '
            f'{r["pairs_per_sec"]:.0f} | {f["mlm_loss"]:.3f} | '
            f'{f["mlm_accuracy"]:.3f} | {f["nsp_loss"]:.3f} | '
            f'{f["nsp_accuracy"]:.3f} | {r["crane_cosine"]:.3f} |')
    for name, *cells in REFERENCES:
        lines.append(f'| {name} | | | | {" | ".join(cells)} | |')
    lines += ['', 'The curve (valid split, minutes of wall clock):', '',
              '| recipe | minutes | step | MLM loss | MLM accuracy | NSP loss '
              '| NSP accuracy |', '| --- | ---: | ---: | ---: | ---: | ---: '
              '| ---: |']
    for r in results:
        for c in r['curve']:
            lines.append(
                f'| {r["recipe"]} | {c["minutes"]:.1f} | {c["step"]} | '
                f'{c["mlm_loss"]:.3f} | {c["mlm_accuracy"]:.3f} | '
                f'{c["nsp_loss"]:.3f} | {c["nsp_accuracy"]:.3f} |')
    return '\n'.join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--minutes', type=float, default=30)
    p.add_argument('--recipes', default='bert,book')
    p.add_argument('--data-dir', default=None)
    p.add_argument('--out', default=os.path.join('runs', 'bench_learning'))
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    results = [run_recipe(r, args.minutes, args.data_dir, args.out)
               for r in args.recipes.split(',')]
    with open(os.path.join(args.out, 'learning.json'), 'w') as f:
        json.dump(results, f, indent=1)
    plot(results, os.path.join(args.out, 'learning_curve.png'))
    print(report(results, args.minutes))
    print(f'\nWrote {args.out}/learning.json and learning_curve.png')


if __name__ == '__main__':
    main()

"""Does our pretraining help? SST-2 fine-tuning from three starting points.

    python benchmarks/bench_finetune.py [--seeds 0 1 2] [--inits random book50 bert] [--lr 1e-4]

Each run is ``python -m gluon_bert.finetune --task sst2`` with its default
settings (the book's: Adam 1e-4, batch 512, 5 epochs, max_len 128, dropout
0.1; best dev epoch kept, then scored on test), in its own process, one after
the other:

* random   ``--init random``: the same classifier, nothing pretrained (the
           control; N(0, 0.02) weights, the WikiText-2 vocabulary)
* book50   the guide's model: ``python -m gluon_bert.pretrain --steps 50``
           (trained here first if --book50 is missing)
* bert     the ``bert`` recipe's 30-minute model of
           ``benchmarks/bench_learning.py`` (--bert, default
           runs/bench_learning/bert)

``--lr`` changes the learning rate of every run (a second point of a grid:
the control gets the same grid as the pretrained starts).  Every finished
run is added to ``--results`` (JSON) at once, so a long
benchmark interrupted keeps what it measured, and a second call skips the
runs already there.  Prints each run's dev and test accuracy and time, then
the mean and spread per starting point beside the anchors: the majority
class (50.9 % of dev) and BERT-Tiny (same shape, 1M steps on Wikipedia +
BooksCorpus: 83.2 on the GLUE test set).
"""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time


def run(cmd):
    print('$', ' '.join(cmd), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sst2', default='../shared/data/sst-2')
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    parser.add_argument('--bert', default='runs/bench_learning/bert')
    parser.add_argument('--book50', default='runs/bench_finetune/book50')
    parser.add_argument('--out', default='runs/bench_finetune')
    parser.add_argument('--results',
                        default='benchmarks/results/finetune.json')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--inits', nargs='+', default=['random', 'book50',
                                                       'bert'])
    parser.add_argument('--lr', type=float, default=1e-4)
    parser.add_argument('--finetune-args', default='',
                        help='more flags for every gluon_bert.finetune run, '
                             "e.g. '--schedule linear' (a grid point)")
    args = parser.parse_args(argv)
    extra = shlex.split(args.finetune_args)
    tag = ' '.join(extra)
    results = []
    if os.path.isfile(args.results):
        with open(args.results) as f:
            results = json.load(f)
    done = {(r['name'], r['seed'], r.get('lr', 1e-4), r.get('args', ''))
            for r in results}
    if 'book50' in args.inits and not os.path.isfile(
            os.path.join(args.book50, 'model.params')):
        run([sys.executable, '-m', 'gluon_bert.pretrain', '--steps', '50',
             '--data-dir', args.data_dir, '--save-dir', args.book50,
             '--log-every', '0'])
    models = {'random': args.bert, 'book50': args.book50, 'bert': args.bert}
    for seed in args.seeds:
        for name in args.inits:
            if (name, seed, args.lr, tag) in done:
                continue
            save = os.path.join(args.out, f'{name}-seed{seed}' + (
                f'-lr{args.lr:g}' if args.lr != 1e-4 else '') + ''.join(
                    '-' + a.lstrip('-') for a in extra))
            cmd = [sys.executable, '-m', 'gluon_bert.finetune', '--task',
                   'sst2', '--data-dir', args.sst2, '--model-dir',
                   models[name], '--save-dir', save, '--seed', str(seed),
                   '--lr', str(args.lr), '--log-every', '0'] + extra
            if name == 'random':
                cmd += ['--init', 'random']
            start = time.perf_counter()
            run(cmd)
            minutes = (time.perf_counter() - start) / 60
            with open(os.path.join(save, 'results.json')) as f:
                r = json.load(f)
            results.append(dict(name=name, seed=seed, lr=args.lr,
                                **({'args': tag} if tag else {}),
                                model=models[name], minutes=minutes,
                                dev_acc=r['dev_acc'], test_acc=r['test_acc'],
                                best_epoch=r['best_epoch'],
                                dev_by_epoch=r['history']['dev_acc'],
                                train_acc_by_epoch=r['history']['train_acc'],
                                unk_share=r['unk_share']))
            os.makedirs(os.path.dirname(os.path.abspath(args.results)),
                        exist_ok=True)
            with open(args.results + '.tmp', 'w') as f:
                json.dump(results, f, indent=2)
            os.replace(args.results + '.tmp', args.results)
            print(f'{name} seed {seed} lr {args.lr:g} {tag}: dev '
                  f'{r["dev_acc"]:.3f}, test '
                  f'{r["test_acc"]:.3f} (epoch {r["best_epoch"]}), '
                  f'{minutes:.1f} min', flush=True)
    print(f'\n{"start":<8}{"lr":>8}{"seeds":>6}{"dev acc":>18}'
          f'{"test acc":>18}{"minutes/run":>13}  settings')

    def group(r):
        return r['name'], r.get('lr', 1e-4), r.get('args', '')
    groups = sorted({group(r) for r in results},
                    key=lambda g: (['random', 'book50', 'bert'].index(g[0]),
                                   g[2], g[1]))
    for name, lr, tag in groups:
        rows = [r for r in results if group(r) == (name, lr, tag)]

        def stat(key):
            values = [100 * r[key] for r in rows]
            spread = (f' ± {statistics.stdev(values):.1f}'
                      if len(values) > 1 else '')
            return f'{statistics.mean(values):.1f}{spread}'
        print(f'{name:<8}{lr:>8g}{len(rows):>6}{stat("dev_acc"):>18}'
              f'{stat("test_acc"):>18}'
              f'{statistics.mean(r["minutes"] for r in rows):>13.1f}  '
              f'{tag or "book"}')
    print('anchors: majority class 50.9 (dev); BERT-Tiny 83.2 (GLUE test)')


if __name__ == '__main__':
    main()

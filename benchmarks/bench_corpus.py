"""`pretrain --corpus` at 1x, 10x and 50x WikiText-2's size, and the
Hugging Face route on the same files.

The corpora are generated from WikiText-2's training lines drawn with
replacement (no larger real corpus is on the machines here; 50x is about
540 MB, WikiText-103's size): their text is WikiText-2's, so these figures
say how preparation and training scale, not what a larger corpus teaches.
For each size, each in processes of its own, alone:

* preparation (``gluon_bert.corpus.prepare_corpus``, both cores): seconds,
  tokens/s and the peak RSS of the whole process tree;
* a second run (``pretrain --corpus``, the shards reused): seconds from the
  command's start to its first step, the training pairs/s and peak RSS;
* at the same settings, the WikiText-2 run (``pretrain --data-dir``): pairs/s
  (the corpora's word vocabularies are capped with ``--max-words`` at
  WikiText-2's size, so that both train the same model);
* the Hugging Face route ``run_mlm.py`` takes on the same file: ``datasets``
  ``load_dataset('text')``, ``map`` tokenizing with a ``tokenizers`` word
  tokenizer of the same vocabulary, ``map`` grouping the texts into blocks
  of 64 (``--hf-python``: an interpreter with ``datasets`` and
  ``transformers``, which need a newer NumPy than MXNet 1.9.1 allows).

    python benchmarks/bench_corpus.py --hf-python /path/to/venv/bin/python
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_shard_format import corpus_parser, generate_corpus  # noqa: E402

HF_ROUTE = r'''
import json, os, sys
import datasets, tokenizers
from tokenizers import models, pre_tokenizers
from transformers import PreTrainedTokenizerFast
datasets.disable_progress_bars()
corpus, vocab_file, cache = sys.argv[1:4]
with open(vocab_file) as f:
    vocab = {t: i for i, t in enumerate(json.load(f)['idx_to_token'])}
tok = tokenizers.Tokenizer(models.WordLevel(vocab, unk_token='<unk>'))
tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token='<unk>')
raw = datasets.load_dataset('text', data_files={'train': corpus},
                            cache_dir=cache)
def tokenize(batch):
    return tokenizer([t.lower() for t in batch['text']],
                     return_special_tokens_mask=True)
ids = raw.map(tokenize, batched=True, num_proc=2, remove_columns=['text'])
def group(batch, size=64):
    joined = {k: sum(batch[k], []) for k in batch}
    total = len(joined['input_ids']) // size * size
    return {k: [v[i:i + size] for i in range(0, total, size)]
            for k, v in joined.items()}
grouped = ids.map(group, batched=True, num_proc=2)
print(json.dumps({'blocks': len(grouped['train'])}))
'''


def _tree_rss_kb(pid):
    """RSS of a process and all its descendants, in kB."""
    total, stack = 0, [pid]
    while stack:
        p = stack.pop()
        try:
            with open(f'/proc/{p}/status') as f:
                for line in f:
                    if line.startswith('VmRSS:'):
                        total += int(line.split()[1])
            for task in os.listdir(f'/proc/{p}/task'):
                with open(f'/proc/{p}/task/{task}/children') as f:
                    stack += [int(c) for c in f.read().split()]
        except (OSError, ValueError):
            pass
    return total


def run(argv, env=None, until=None):
    """Run a command alone; (seconds, peak tree RSS in MB, stdout, seconds
    to the first line matching the pattern ``until``)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    peak, first, lines = [0], [None], []

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss_kb(proc.pid))
            time.sleep(0.1)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    for line in proc.stdout:
        lines.append(line)
        if until and first[0] is None and re.search(until, line):
            first[0] = time.perf_counter() - start
    proc.wait()
    sampler.join()
    out = ''.join(lines)
    if proc.returncode:
        raise SystemExit(f'{argv} failed:\n{out[-3000:]}')
    return time.perf_counter() - start, peak[0] / 1024, out, first[0]


def pairs_per_sec(save_dir, skip=5):
    """Training pairs/s of a run after its first ``skip`` steps (the first
    builds the graph), from its history.json."""
    with open(os.path.join(save_dir, 'history.json')) as f:
        h = json.load(f)
    return ((h['pairs'][-1] - h['pairs'][skip - 1])
            / (h['seconds'][-1] - h['seconds'][skip - 1]))


def wikitext2_run(args, work, env):
    """The book's WikiText-2 path (examples in memory) at the same
    settings: its pairs/s."""
    save = os.path.join(work, 'wiki')
    run([sys.executable, '-m', 'gluon_bert.pretrain', '--data-dir',
         args.data_dir, '--steps', str(args.steps), '--save-dir', save,
         '--overwrite', '--log-every', '0'], env)
    return pairs_per_sec(save)


def measure(times, args, work, env):
    corpus = generate_corpus(os.path.join(args.data_dir, 'wiki.train.tokens'),
                             os.path.join(work, f'corpus{times}x.txt'), times)
    cache = os.path.join(work, f'cache{times}')
    py = sys.executable
    prep = (f'import json; from gluon_bert.corpus import prepare_corpus; '
            f'c = prepare_corpus([{corpus!r}], cache_dir={cache!r}, '
            f'max_words={args.max_words}); '
            f'print(json.dumps(c.manifest["tokens"])); '
            f'c.vocab.save({os.path.join(work, "vocab.json")!r})')
    seconds, prep_rss, out, _ = run([py, '-c', prep], env)
    tokens = int(out.strip().splitlines()[-1])
    train = [py, '-m', 'gluon_bert.pretrain', '--corpus', corpus,
             '--cache-dir', cache, '--steps', str(args.steps),
             '--max-words', str(args.max_words),
             '--log-every', '1', '--save-dir', os.path.join(work, 'run')]
    total, train_rss, out, first = run(train + ['--overwrite'], env,
                                       until=r'^step +1/')
    pairs = pairs_per_sec(os.path.join(work, 'run'))
    row = dict(times=times, mb=os.path.getsize(corpus) / 2 ** 20,
               tokens=tokens, prepare_s=seconds,
               tokens_per_s=tokens / seconds, prepare_rss_mb=prep_rss,
               first_step_s=first, train_rss_mb=train_rss,
               pairs_per_s=pairs,
               wiki_pairs_per_s=wikitext2_run(args, work, env))
    if args.hf_python:
        hf_cache = os.path.join(work, 'hf')
        row['hf_s'], row['hf_rss_mb'], _, _ = run(
            [args.hf_python, '-c', HF_ROUTE, corpus,
             os.path.join(work, 'vocab.json'), hf_cache], env)
        shutil.rmtree(hf_cache, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    os.remove(corpus)
    return row


def format_table(record):
    """The results as the studies page shows them (report.py kind
    ``corpus``)."""
    lines = [
        '| corpus | text | tokens | prepare | tokens/s | peak RSS, '
        'prepare | 2nd run: to 1st step | peak RSS, training | pairs/s '
        '(of WikiText-2 in memory beside it) | Hugging Face route | its '
        'peak RSS |', '|' + ' --- |' * 3 + ' ---: |' * 8]
    for r in record['rows']:
        hf = (f'{r["hf_s"]:.1f} s | {r["hf_rss_mb"]:,.0f} MB' if 'hf_s' in r
              else '- | -')
        share = 100 * r['pairs_per_s'] / r['wiki_pairs_per_s']
        lines.append(
            f'| {r["times"]}x WikiText-2 | {r["mb"]:,.0f} MB | '
            f'{r["tokens"] / 1e6:.1f}M | {r["prepare_s"]:.1f} s | '
            f'{r["tokens_per_s"] / 1e6:.2f}M | {r["prepare_rss_mb"]:,.0f} MB '
            f'| {r["first_step_s"]:.1f} s | {r["train_rss_mb"]:,.0f} MB | '
            f'{r["pairs_per_s"]:.0f} ({share:.0f} % of '
            f'{r["wiki_pairs_per_s"]:.0f}) '
            f'| {hf} |')
    return '\n'.join(lines)


def main():
    p = corpus_parser(__doc__, 'corpus.json')
    p.add_argument('--times', type=int, nargs='+', default=[1, 10, 50])
    p.add_argument('--steps', type=int, default=30,
                   help='training steps of each run (batch 512, the book\'s)')
    args = p.parse_args()
    work = tempfile.mkdtemp(dir=args.work)
    env = dict(os.environ, GLUON_BERT_CACHE=os.path.join(work, 'c'))
    try:
        # The corpora's word vocabularies are capped at WikiText-2's size,
        # so that every run trains the same model (a larger corpus has more
        # words seen 5 times, and a larger MLM output layer)
        wikitext2_run(args, work, env)
        with open(os.path.join(work, 'wiki', 'vocab.json')) as f:
            args.max_words = len(json.load(f)['idx_to_token']) - 4
        rows = []
        for times in args.times:
            rows.append(measure(times, args, work, env))
            print(json.dumps(rows[-1]), flush=True)
        record = dict(
            steps=args.steps, rows=rows, max_words=args.max_words,
            corpus='generated from WikiText-2 training lines drawn with '
                   'replacement', cpus=os.cpu_count(),
            note='each command alone on the machine, in order; pairs/s '
                 'after the first 5 steps, each corpus run followed by the '
                 'WikiText-2 run at the same settings')
        with open(args.out + '.tmp', 'w') as f:
            json.dump(record, f, indent=1)
        os.replace(args.out + '.tmp', args.out)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == '__main__':
    main()

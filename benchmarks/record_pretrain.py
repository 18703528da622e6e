"""Record what a finished time-budget pretraining reached, from its own files.

    python benchmarks/record_pretrain.py bert runs/bert30 --command "python -m gluon_bert.pretrain ..."
    python benchmarks/record_pretrain.py electra runs/electra30 --command "python benchmarks/pretrain_electra.py ..."

Reads the model directory's ``history.json`` (written by ``gluon_bert.
pretrain`` or ``benchmarks/pretrain_electra.py``) and adds one record to
``benchmarks/results/pretrain_30min.json`` (replacing one of the same name):
steps, minutes and pairs/sec reached, and the held-out evaluation of the
last step where the run made one (``--eval-every``), else the training
figures of its last 100 steps.  The README's headline and the transfer
study read their pretraining figures from there, with the GEMM peak
measured beside them (``bench_pretrain.py --gemm-only``), because these
machines differ by 2x from one session to the next.
"""
import argparse
import json
import os
import statistics


def record(name, model_dir, command, gemm, note=None):
    with open(os.path.join(model_dir, 'history.json')) as f:
        h = json.load(f)
    with open(os.path.join(model_dir, 'config.json')) as f:
        config = json.load(f)
    steps = int(h['step'][-1])
    seconds = (h.get('wall') or h['seconds'])[-1]
    r = dict(name=name, model_dir=model_dir, command=command, steps=steps,
             minutes=round(seconds / 60, 2), gemm_gflops=gemm, note=note,
             batch_size=config['train'].get('batch_size') or config[
                 'train'].get('config', {}).get('batch_size'))
    r['pairs_per_sec'] = round(r['batch_size'] * steps / h['seconds'][-1], 1)
    if h.get('eval'):
        last = h['eval'][-1]
        r.update(valid_mlm=last['mlm_loss'], valid_mlm_acc=last['mlm_accuracy'],
                 valid_nsp=last['nsp_loss'],
                 valid_nsp_acc=last['nsp_accuracy'])
    for key in ('mlm', 'nsp', 'disc', 'disc_acc', 'replaced', 'nsp_acc'):
        values = [v for v in h.get(key + '_step', h.get(key, []))[-100:]
                  if v is not None]
        if values:
            r[f'train_{key}_last100'] = round(statistics.mean(values), 4)
    return r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('name')
    p.add_argument('model_dir')
    p.add_argument('--command', required=True,
                   help='the command that trained it, for the record')
    p.add_argument('--gemm', type=float, default=None,
                   help='GEMM peak (GFLOP/s) measured beside the run')
    p.add_argument('--note', default=None,
                   help='anything that bears on the figures (a shared CPU)')
    p.add_argument('--results',
                   default='benchmarks/results/pretrain_30min.json')
    args = p.parse_args(argv)
    rows = []
    if os.path.isfile(args.results):
        with open(args.results) as f:
            rows = [r for r in json.load(f) if r['name'] != args.name]
    rows.append(record(args.name, args.model_dir, args.command, args.gemm,
                       args.note))
    with open(args.results + '.tmp', 'w') as f:
        json.dump(rows, f, indent=2)
    os.replace(args.results + '.tmp', args.results)
    print(json.dumps(rows[-1], indent=2))


if __name__ == '__main__':
    main()

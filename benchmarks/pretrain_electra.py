"""Pretrain the book's BERT as ELECTRA's discriminator, for a time budget.

    python benchmarks/pretrain_electra.py --max-minutes 30 --save-dir runs/electra30

The transfer study's ELECTRA lever (``benchmarks/bench_transfer.py``): the
``bert`` recipe's optimizer, schedule, clipping, batch and resampled
examples, with :class:`gluon_bert.electra.ElectraPretrainLoss` as the
objective (a one-block generator sharing the token embedding, the book's
model as discriminator, detection weight 50 as in ELECTRA).  One flat loop;
the discriminator is written as a model directory that ``gluon_bert.
finetune`` and ``encode`` load like any other (its MLM head is untrained:
held-out MLM figures mean nothing for it).  An experiment, not yet a
recipe of ``gluon_bert.pretrain``: no checkpoints or resume.
"""
import argparse
import json
import os
import time


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    p.add_argument('--save-dir', default='runs/electra30')
    p.add_argument('--max-minutes', type=float, default=30.0)
    p.add_argument('--steps', type=int, default=None,
                   help='stop after this many steps (and plan the schedule '
                        'for them) instead of the clock')
    p.add_argument('--batch-size', type=int, default=128)
    p.add_argument('--max-len', type=int, default=64)
    p.add_argument('--lr', type=float, default=3e-3)
    p.add_argument('--warmup', type=float, default=0.05)
    p.add_argument('--weight-decay', type=float, default=0.01)
    p.add_argument('--clip-norm', type=float, default=1.0)
    p.add_argument('--dropout', type=float, default=0.1)
    p.add_argument('--disc-weight', type=float, default=50.0)
    p.add_argument('--gen-blks', type=int, default=1)
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--log-every', type=int, default=100)
    p.add_argument('--replacements', choices=('generator', 'unigram'),
                   default='generator',
                   help="generator: ELECTRA's; unigram: every masked slot "
                        "gets a token drawn from the training text's unigram "
                        'distribution, no generator (the diagnostic: can the '
                        'discriminator learn at all?)')
    p.add_argument('--visible-masks', action='store_true',
                   help='a check of the detection pipeline, not a recipe: '
                        "the discriminator reads the masked text (the "
                        "<mask> tokens visible) instead of the generator's "
                        'draws, so its targets are easy to learn')
    return p.parse_args(argv)


def _show_masks(electra):
    """--visible-masks: the discriminator's input is the masked text."""
    draws = electra.replaced_targets

    def visible(F, tokens, *args):
        _, replaced = draws(F, tokens, *args)
        return tokens.astype('int32'), replaced
    electra.replaced_targets = visible


def planned_steps(args, step, elapsed, first):
    """Steps the schedule plans for: --steps, or what fits the budget at
    the speed measured since the first step (which builds the graph)."""
    if args.steps:
        return args.steps
    if first is None or step - first[0] < 5:
        return 10 ** 9
    per_step = (elapsed - first[1]) / (step - first[0])
    return step + max(0, int((60 * args.max_minutes - elapsed) / per_step))


def main(argv=None):
    args = parse_args(argv)
    import mxnet as mx
    import numpy as onp
    from mxnet import autograd, npx

    from gluon_bert import checkpoint, dataset, model, trainer
    from electra import (ElectraPretrainLoss, make_generator,
                         pack_electra_shards, unigram_cdf)
    from gluon_bert.packing import host_fields
    from gluon_bert.pretrain import seed_everything
    from gluon_bert.recipe import learning_rate
    from gluon_bert.threads import set_cpu_threads_for

    if args.visible_masks:
        import electra
        _show_masks(electra)
    seed_everything(args.seed)
    devices = [mx.cpu()]
    set_cpu_threads_for(devices)
    data, vocab = dataset.load_data_wiki(args.batch_size, args.max_len,
                                         data_dir=args.data_dir)
    resample = dataset.ResampledEpochs(dataset.resolve_data_dir(
        args.data_dir), args.max_len, vocab, args.seed)
    data = dataset.DataIter(data.dataset, args.batch_size, resample=resample,
                            drop_last=True)
    net = model.get_bert_model(len(vocab), dropout=args.dropout)
    cdf = None
    if args.replacements == 'unigram':  # no generator: the diagnostic
        generator = None
        cdf = unigram_cdf(data.dataset.arrays['tokens'], len(vocab), [
            vocab[t] for t in dataset.RESERVED_TOKENS])
        unused = (net.mlm,)
    else:
        generator = make_generator(net, num_blks=args.gen_blks)
        unused = (net.mlm, generator.nsp, generator.hidden)
    objective = ElectraPretrainLoss(net, generator)
    # What the objective never reads gets no gradient
    for block in unused:
        block.collect_params().setattr('grad_req', 'null')
    trainer.init_bert(objective, devices, 'normal')
    objective.hybridize(static_alloc=True, static_shape=True)
    opt = trainer.make_trainer(objective, args.lr, 'device', 'adamw',
                               args.weight_decay)
    rng = onp.random.RandomState(args.seed)
    batches = trainer._batches(data, None)
    history = {k: [] for k in ('step', 'mlm', 'disc', 'nsp', 'disc_acc',
                               'replaced', 'nsp_acc', 'lr', 'seconds')}
    start, first, step = time.perf_counter(), None, 0
    while True:
        elapsed = time.perf_counter() - start
        if (args.steps and step >= args.steps) or (
                not args.steps and elapsed >= 60 * args.max_minutes):
            break
        total = planned_steps(args, step, elapsed, first)
        rate = learning_rate(step + 1, total, args.lr, 'linear', args.warmup)
        opt.set_learning_rate(rate)
        batch, _ = next(batches)
        host = host_fields(batch)
        pairs, slots = len(host[0]), float(host[4].sum())
        tokens = float(host[2].sum())
        shards = pack_electra_shards(host, devices, net.config['num_heads'],
                                     rng, cdf)
        mx.random.seed(trainer.step_seed(args.seed, step + 1))
        with autograd.record():
            outs = [objective(*shard) for shard in shards]
            ls = [mlm / slots + args.disc_weight * disc / tokens
                  + nsp / pairs for mlm, disc, nsp, *_ in outs]
        for l in ls:
            l.backward()
        trainer.apply_gradients(opt, objective, devices, args.clip_norm)
        npx.waitall()
        step += 1
        if first is None:
            first = (step, time.perf_counter() - start)
        sums = onp.sum([[float(x) for x in out] for out in outs], axis=0)
        mlm, disc, nsp, mlm_hits, nsp_hits, disc_hits, replaced = sums
        for key, value in (('step', step), ('mlm', mlm / slots),
                           ('disc', disc / tokens), ('nsp', nsp / pairs),
                           ('disc_acc', disc_hits / tokens),
                           ('replaced', replaced / tokens),
                           ('nsp_acc', nsp_hits / pairs), ('lr', rate),
                           ('seconds', time.perf_counter() - start)):
            history[key].append(float(value))
        if args.log_every and step % args.log_every == 0:
            recent = {k: onp.mean(history[k][-args.log_every:])
                      for k in ('mlm', 'disc', 'nsp', 'disc_acc', 'replaced',
                                'nsp_acc')}
            print(f'step {step}/{total if total < 10 ** 9 else "?"}  '
                  f'gen mlm {recent["mlm"]:.3f}  disc {recent["disc"]:.4f} '
                  f'(acc {recent["disc_acc"]:.3f}, replaced '
                  f'{recent["replaced"]:.3f})  nsp {recent["nsp"]:.3f} '
                  f'(acc {recent["nsp_acc"]:.3f})  lr {rate:.2e}  '
                  f'{pairs * step / history["seconds"][-1]:.1f} pairs/sec',
                  flush=True)
    config = dict(vars(args), recipe='electra', steps=step)
    checkpoint.save_model_dir(args.save_dir, net, vocab, train_config=config)
    with open(os.path.join(args.save_dir, 'history.json'), 'w') as f:
        json.dump(history, f)
    print(f'{step} steps in {history["seconds"][-1] / 60:.1f} min; the '
          f'discriminator is in {args.save_dir}')


if __name__ == '__main__':
    main()

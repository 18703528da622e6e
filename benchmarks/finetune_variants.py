"""Fine-tuning variants that are not package options: questions asked of SST-2.

    python benchmarks/finetune_variants.py VARIANT [gluon_bert.finetune flags]

Runs ``python -m gluon_bert.finetune`` with one thing changed, so that the
same command with and without ``--init random`` says whether the change helps
the pretrained start more than the control:

* ``embedding-lr``   the token, segment and position embeddings learn at
                     10x the learning rate (pretrained embeddings are ~5x
                     larger than N(0, 0.02) ones, so Adam's steps move them
                     relatively less)
* ``mean-pool``      the classifier reads the mean of the valid tokens'
                     encodings instead of ``<cls>``'s (padded batches)
* ``shrink-perturb`` (``--shrink L``, default 0.5) the pretrained weights
                     mixed with the control's fresh ones before fine-tuning,
                     ``L * pretrained + sqrt(1 - L^2) * N(0, 0.02)``
                     (LayerNorm kept): Ash & Adams's remedy for warm starts
                     that generalize worse than fresh ones
* ``wikitext-tokens`` SST-2's Penn-Treebank tokens rewritten in WikiText-2's
                     conventions before the vocabulary lookup: ``does n't``
                     -> ``doesn 't``, ``old-fashioned`` -> ``old @-@
                     fashioned``, PTB quotes -> ``"``, ``--`` -> ``—``

benchmarks/README.md's fine-tuning section gives the runs and their results.
"""
import re
import sys

VARIANTS = ('embedding-lr', 'mean-pool', 'shrink-perturb',
            'wikitext-tokens')


def wikitext_tokens(text):
    """SST-2's PTB tokenization in WikiText-2's conventions."""
    text = text.replace(" n't", "n 't")   # does n't -> doesn 't, ca n't -> can 't
    text = text.replace('``', '"').replace("''", '"').replace('`', "'")
    text = re.sub(r'(?<=\s)--(?=\s)', '—', text)
    text = text.replace('-lrb-', '(').replace('-rrb-', ')')
    return re.sub(r'(?<=\w)-(?=\w)', ' @-@ ', text)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in VARIANTS:
        sys.exit(f'usage: finetune_variants.py {{{",".join(VARIANTS)}}} '
                 '[gluon_bert.finetune flags]')
    variant, flags = argv[0], argv[1:]
    from gluon_bert import finetune, model, tasks
    if variant == 'embedding-lr':
        train = finetune.finetune

        def finetune_with_fast_embeddings(net, *args, **kwargs):
            for name, param in net.collect_params('.*embedding.*').items():
                param.lr_mult = 10.0
            return train(net, *args, **kwargs)
        finetune.finetune = finetune_with_fast_embeddings
    elif variant == 'mean-pool':
        def hybrid_forward(self, F, tokens, segments, valid_lens, *packed):
            X = self.encoder(tokens, segments, valid_lens)
            # (batch size, no. of tokens, num_hiddens), padding set to 0
            X = F.npx.sequence_mask(X, valid_lens, use_sequence_length=True,
                                    value=0, axis=1)
            pooled = X.sum(axis=1) / F.np.expand_dims(valid_lens, -1)
            return self.output(self.hidden(pooled))
        model.BERTClassifier.hybrid_forward = hybrid_forward
        flags.append('--padded')
    elif variant == 'shrink-perturb':
        shrink = 0.5
        if '--shrink' in flags:
            i = flags.index('--shrink')
            shrink = float(flags[i + 1])
            del flags[i:i + 2]
        load_bert = finetune._load_bert

        def load_shrunk_bert(args, device):
            from gluon_bert.model import BERTModel
            from gluon_bert.trainer import init_bert
            bert, vocab, config = load_bert(args, device)
            fresh = init_bert(BERTModel(**config), [device], 'normal')
            for (name, old), new in zip(bert.collect_params().items(),
                                        fresh.collect_params().values()):
                if not name.endswith(('gamma', 'beta')):
                    old.set_data(shrink * old.data()
                                 + (1 - shrink ** 2) ** 0.5 * new.data())
            print(f'shrink-perturb: {shrink} * pretrained + '
                  f'{(1 - shrink ** 2) ** 0.5:.3f} * N(0, 0.02)',
                  file=sys.stderr)
            return bert, vocab, config
        finetune._load_bert = load_shrunk_bert
    else:
        read_task = tasks.read_task

        def read_task_in_wikitext_tokens(*args, **kwargs):
            a, b, labels, num_classes = read_task(*args, **kwargs)
            return ([wikitext_tokens(s) for s in a],
                    None if b is None else [wikitext_tokens(s) for s in b],
                    labels, num_classes)
        tasks.read_task = read_task_in_wikitext_tokens
    return finetune.main(flags)


if __name__ == '__main__':
    sys.exit(main())

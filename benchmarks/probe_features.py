"""What does pretraining put into the features?  A linear probe on SST-2.

    python benchmarks/probe_features.py [--model-dir runs/pretrain30_v2]

Encodes SST-2 sentences with a pretrained model and with the same model
freshly initialized (N(0, 0.02), the fine-tuning control), both frozen, and
fits a logistic regression (full-batch Adam, L2 1e-3, standardized features)
on four 128-d views: the ``<cls>`` encoding, the ``<cls>`` hidden layer, the
mean of the valid tokens' encodings, the mean of their token embeddings.
Prints train and dev accuracy for each; the gap between the two starts is
what pretraining adds to features that fine-tuning starts from.  First, the
SST-2 training words most often missing from the model's vocabulary,
SST-2's sentence lengths, the share of padding in a fine-tuning epoch's
batches and the spread of both starts' token embeddings.
"""
import argparse
import collections
import os
import sys

import numpy as onp


def features(net, dataset, batch_size=512):
    from mxnet import np
    out = {'<cls> encoding': [], '<cls> hidden layer': [],
           'mean encoding': [], 'mean token embedding': []}
    for start in range(0, len(dataset), batch_size):
        idx = onp.arange(start, min(start + batch_size, len(dataset)))
        tokens, segments, valid_lens, _ = dataset.batch(idx)
        encoded = net.encoder(np.array(tokens), np.array(segments),
                              np.array(valid_lens))
        mask = (onp.arange(tokens.shape[1]) < valid_lens[:, None])[..., None]

        def mean(x):
            return (x * mask).sum(1) / mask.sum(1)
        e = encoded.asnumpy()
        out['<cls> encoding'].append(e[:, 0])
        out['<cls> hidden layer'].append(
            net.hidden(encoded[:, 0]).asnumpy())
        out['mean encoding'].append(mean(e))
        out['mean token embedding'].append(mean(
            net.encoder.token_embedding(np.array(tokens)).asnumpy()))
    return {k: onp.concatenate(v) for k, v in out.items()}


def logistic_regression(X, y, X_dev, y_dev, l2=1e-3, steps=2000, lr=0.05):
    """Train and dev accuracy of an L2-regularized logistic regression."""
    mu, sd = X.mean(0), X.std(0) + 1e-6
    X, X_dev = (X - mu) / sd, (X_dev - mu) / sd
    w, b = onp.zeros(X.shape[1]), 0.0
    m, v, mb, vb = onp.zeros_like(w), onp.zeros_like(w), 0.0, 0.0
    for t in range(1, steps + 1):
        p = 1 / (1 + onp.exp(-(X @ w + b)))
        g, gb = X.T @ (p - y) / len(y) + l2 * w, (p - y).mean()
        m, v = 0.9 * m + 0.1 * g, 0.999 * v + 0.001 * g * g
        mb, vb = 0.9 * mb + 0.1 * gb, 0.999 * vb + 0.001 * gb * gb
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        w -= lr * (m / c1) / (onp.sqrt(v / c2) + 1e-8)
        b -= lr * (mb / c1) / (onp.sqrt(vb / c2) + 1e-8)
    return (((X @ w + b > 0) == y).mean(),
            ((X_dev @ w + b > 0) == y_dev).mean())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--model-dir', default='runs/pretrain30_v2')
    parser.add_argument('--sst2', default='../shared/data/sst-2')
    parser.add_argument('--train-examples', type=int, default=20000)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    # gluon_bert first: it sets the CPU threads before MXNet loads
    from gluon_bert.checkpoint import MODEL_KEYS, load_pretrained
    import mxnet as mx
    from mxnet import npx

    from gluon_bert.model import BERTModel
    from gluon_bert.tasks import ClassificationDataset, read_task
    from gluon_bert.trainer import init_bert
    npx.set_np()
    bert, vocab, config = load_pretrained(args.model_dir, mx.cpu())
    mx.random.seed(args.seed)
    control = init_bert(BERTModel(**{k: config['model'][k]
                                     for k in MODEL_KEYS}),
                        [mx.cpu()], 'normal')
    control.hybridize()
    a, _, y, _ = read_task('sst2', args.sst2, 'train')
    unknown = collections.Counter(w for s in a for w in s.lower().split()
                                  if w not in vocab)
    print('the most frequent SST-2 training words not in the vocabulary '
          '(times): ' + ', '.join(f'{w} ({n})'
                                  for w, n in unknown.most_common(40)))
    for split in ('train', 'dev', 'test'):
        words = [len(s.split()) for s in read_task('sst2', args.sst2,
                                                   split)[0]]
        print(f'SST-2 {split}: {len(words)} sentences, '
              f'{onp.mean(words):.1f} words on average, '
              f'{100 * onp.mean(onp.array(words) <= 5):.0f} % of them five '
              'or fewer')
    everything = ClassificationDataset(a, None, y, vocab, 128)
    order = onp.random.RandomState(args.seed).permutation(len(a))
    padded = sum(everything.batch(order[i:i + 512])[0].size
                 for i in range(0, len(a), 512))
    print(f'padding in an epoch of fine-tuning batches (512, padded to the '
          f'longest rounded up to 8): '
          f'{100 * (1 - everything.valid_lens.sum() / padded):.1f} %')
    idx = order[:args.train_examples]
    train = ClassificationDataset([a[i] for i in idx], None,
                                  [y[i] for i in idx], vocab, 128)
    a, _, y, _ = read_task('sst2', args.sst2, 'dev')
    dev = ClassificationDataset(a, None, y, vocab, 128)
    for name, net in (('pretrained', bert), ('control', control)):
        print(f'{name}: standard deviation of the token embeddings ' + str(
            round(float(net.encoder.token_embedding.weight.data().std()), 3)))
    print(f'{len(train)} SST-2 training sentences, {len(dev)} dev; '
          f'frozen encoders; logistic regression on 128-d features')
    print(f'{"features":<24}{"pretrained train/dev %":>24}'
          f'{"control train/dev %":>22}')
    got = {}
    for name, net in (('pretrained', bert), ('control', control)):
        f_train, f_dev = features(net, train), features(net, dev)
        for view in f_train:
            got[name, view] = logistic_regression(
                f_train[view], train.labels, f_dev[view], dev.labels)
    for view in f_train:
        cols = [f'{100 * got[n, view][0]:.1f} / {100 * got[n, view][1]:.1f}'
                for n in ('pretrained', 'control')]
        print(f'{view:<24}{cols[0]:>24}{cols[1]:>22}')


if __name__ == '__main__':
    main()

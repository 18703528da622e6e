"""Encoding a file of sentences: encode_texts against the guide's function.

    python benchmarks/bench_encode.py [--data-dir DIR] [--lines 10000]

The first ``--lines`` sentences of WikiText-2's validation text (each line
split at ' . ' as the book splits paragraphs, lower-cased; it has 8,057, so
10,000 go on into the test text), encoded with the
guide's small BERT (WikiText-2 vocabulary, freshly initialized: the speed
does not depend on the weights) on this machine's CPU, in one process:

* one ``get_bert_encoding`` call per sentence, then its ``<cls>`` vector
  copied to NumPy (the guide's function, as a user would loop over it);
* ``encode_texts(..., pool='cls')`` (batches of 64 grouped by length);
* the same through ONNX Runtime (what ``encode --backend onnxruntime``
  runs): the model exported by ``gluon_bert.interop.export_onnx``, when the
  ``[onnx]`` extra is installed (``--no-onnx`` skips it).

Both run on the same hybridized model (``load_pretrained`` hybridizes with
``static_alloc``); prints the wall-clock time of each, the ratio, and the
largest difference between the two sets of vectors.
"""
import argparse
import os
import time


def read_sentences(data_dir, count):
    sentences = []
    for split in ('valid', 'test'):
        with open(os.path.join(data_dir, f'wiki.{split}.tokens'),
                  encoding='utf-8') as f:
            for line in f:
                line = line.strip()
                if not line or line.startswith('='):
                    continue
                sentences += [s.strip() for s in line.lower().split(' . ')
                              if s.strip()]
    if len(sentences) < count:
        raise SystemExit(f'only {len(sentences)} sentences in the '
                         'validation and test text')
    return sentences[:count]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--data-dir', default=os.environ.get(
        'GLUON_BERT_DATA', '../shared/data/wikitext-2'))
    parser.add_argument('--lines', type=int, default=10000)
    parser.add_argument('--batch-size', type=int, default=64)
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip the ONNX Runtime row')
    args = parser.parse_args(argv)

    import mxnet as mx
    import numpy as onp
    from mxnet import npx

    from gluon_bert.dataset import load_dataset
    from gluon_bert.encoder import encode_texts, get_bert_encoding
    from gluon_bert.model import get_bert_model
    from gluon_bert.threads import set_cpu_threads
    npx.set_np()
    set_cpu_threads()
    sentences = read_sentences(args.data_dir, args.lines)
    vocab = load_dataset(64, args.data_dir).vocab
    mx.random.seed(0)
    net = get_bert_model(len(vocab))
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True)
    lengths = [len(s.split()) for s in sentences]
    print(f'{len(sentences)} sentences of WikiText-2 valid (then test), '
          f'{sum(lengths)} '
          f'words, {min(lengths)}-{max(lengths)} per sentence; the small '
          f'BERT, vocabulary {len(vocab)}, cpu')

    start = time.perf_counter()
    one_by_one = onp.stack([
        get_bert_encoding(net, vocab, s.split()).asnumpy()[0, 0]
        for s in sentences])
    slow = time.perf_counter() - start

    start = time.perf_counter()
    batched = encode_texts(net, vocab, sentences,
                           batch_size=args.batch_size, pool='cls')
    fast = time.perf_counter() - start

    print(f'get_bert_encoding, one call per sentence: {slow:7.1f} s '
          f'({len(sentences) / slow:7.1f} sentences/sec)')
    print(f'encode_texts, batches of {args.batch_size:<3}           : '
          f'{fast:7.1f} s ({len(sentences) / fast:7.1f} sentences/sec)')
    print(f'speed-up: {slow / fast:.1f}x; output {batched.shape}; largest '
          f'difference {float(onp.abs(batched - one_by_one).max()):.1e}')
    if not args.no_onnx:
        _onnx_row(net, vocab, sentences, args.batch_size, batched, fast)


def _onnx_row(net, vocab, sentences, batch_size, batched, fast):
    """The same encode_texts call through ONNX Runtime."""
    import importlib.util
    import tempfile

    import numpy as onp

    from gluon_bert import interop
    from gluon_bert.encoder import encode_texts
    missing = [m for m in ('torch', 'onnx', 'onnxruntime')
               if importlib.util.find_spec(m) is None]
    if missing:
        print(f'ONNX Runtime: not measured ({", ".join(missing)} not '
              "installed: pip install 'gluon_bert[onnx]')")
        return
    import onnxruntime
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, 'bert.onnx')
        interop.export_onnx(interop.torch_model(net, {'model': net.config}),
                            path)
        encoder = interop.OnnxEncoder(path, net.config)
        start = time.perf_counter()
        vectors = encode_texts(encoder, vocab, sentences,
                               batch_size=batch_size, pool='cls')
        onnx = time.perf_counter() - start
    print(f'encode_texts, ONNX Runtime {onnxruntime.__version__:<10}  : '
          f'{onnx:7.1f} s ({len(sentences) / onnx:7.1f} sentences/sec)')
    print(f'ONNX Runtime against MXNet: {fast / onnx:.2f}x the speed; '
          f'largest difference {float(onp.abs(vectors - batched).max()):.1e}')


if __name__ == '__main__':
    main()

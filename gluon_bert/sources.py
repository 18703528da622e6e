"""What a pretraining run reads: its text, its vocabulary, its first weights.

``python -m gluon_bert.pretrain`` trains on WikiText-2 as the book does
(:func:`~gluon_bert.dataset.load_data_wiki`), or on ``--corpus``, prepared
into shards (:mod:`gluon_bert.corpus`) and read as a stream
(:mod:`gluon_bert.stream`); its held-out text is scored by
:func:`valid_evaluator`; with ``--init-from`` it starts from a saved model's
weights, size and vocabulary (:func:`from_model`, :func:`model_vocab`).
"""
import dataclasses
import os
import time

from .utils import GluonBertError

__all__ = ['training_data', 'valid_evaluator', 'corpus_streams',
           'from_model', 'model_vocab', 'sampling_of', 'subword_vocab',
           'EVAL_PAIRS']


#: What --init-from takes from the model: (setting, its key in config.json).
_MODEL_SETTINGS = (('num_hiddens', 'num_hiddens'),
                   ('ffn_num_hiddens', 'ffn_num_hiddens'),
                   ('num_heads', 'num_heads'), ('num_blks', 'num_blks'),
                   ('pos_len', 'max_len'), ('tie_output', 'tie_output'))


def from_model(config, given):
    """``config`` with the size and vocabulary of --init-from's model; a
    flag given that contradicts them is refused."""
    from .checkpoint import pretrained_source
    model, vocab, _ = pretrained_source(config.init_from, config.init_step)
    sizes = {k: model.get(key, False) for k, key in _MODEL_SETTINGS}
    for name, value in dict(sizes, vocab=vocab.kind).items():
        if name in given and given[name] != value:
            raise GluonBertError(
                f'{name} {given[name]} differs from the model of init_from '
                f'({value}): drop it, the model\'s is taken', [name])
    for name in ('vocab_size', 'max_words'):
        if name in given:
            raise GluonBertError(
                f'{name} sets a vocabulary to build; init_from trains with '
                'the model\'s: drop it', [name, 'init_from'])
    if os.path.realpath(config.save_dir) == os.path.realpath(
            config.init_from):
        raise GluonBertError('save_dir is the init_from folder, which is '
                             'only read: write the new run into another '
                             'save_dir', ['save_dir', 'init_from'])
    whole_word = config.whole_word and (vocab.kind == 'wordpiece'
                                        or 'whole_word' in given)
    return dataclasses.replace(config, vocab=vocab.kind,
                               whole_word=whole_word, **sizes)


def model_vocab(config):
    """The vocabulary --init-from trains with: the model's (the run's own
    copy, vocab.json, on --resume)."""
    from . import checkpoint, vocab
    saved = os.path.join(config.save_dir, checkpoint.VOCAB)
    if config.resume and os.path.isfile(saved):
        return vocab.Vocab.load(saved)
    return checkpoint.pretrained_source(config.init_from)[1]


def valid_evaluator(config, vocab, train_iter):
    """``evaluate(net)`` on the valid split, as ``gluon_bert.evaluate`` does
    with its defaults (:func:`~gluon_bert.dataset.load_heldout`), so the
    last figures equal its output; with --corpus, on its held-out text."""
    from . import dataset, trainer
    if config.corpus:
        batches = list(train_iter.held_out.held_out_batches(
            dataset.EVAL_BATCH_SIZE, EVAL_PAIRS))
        return lambda net: trainer.evaluate_bert(net, batches, len(vocab))
    data_iter = dataset.load_heldout(config.max_len, vocab, 'valid',
                                     config.data_dir,
                                     cache_dir=config.cache_dir,
                                     use_cache=not config.no_cache)
    return lambda net: trainer.evaluate_bert(net, data_iter, len(vocab))


def sampling_of(config):
    """How the run draws its pairs and masks."""
    from . import dataset
    return dataset.Sampling(mask_prob=config.mask_prob,
                            next_prob=1.0 if config.no_nsp else 0.5,
                            whole_word=config.whole_word)


def subword_vocab(config, say):
    """The run's WordPiece vocabulary: the saved one on --resume, else
    learnt from the training split now."""
    from . import checkpoint, dataset, vocab
    saved = os.path.join(config.save_dir, checkpoint.VOCAB)
    if config.resume and os.path.isfile(saved):
        return vocab.Vocab.load(saved)
    start = time.perf_counter()
    data_dir = dataset.resolve_data_dir(config.data_dir)
    learnt = vocab.train_wordpiece(dataset.wiki_sentences(data_dir),
                                   config.vocab_size,
                                   dataset.RESERVED_TOKENS)
    say(f'WordPiece vocabulary of {len(learnt)} learnt in '
        f'{time.perf_counter() - start:.1f} s', flush=True)
    return learnt


def training_data(config, rank, workers, say):
    """The examples (this worker's share of them) and the vocabulary."""
    from . import dataset
    if config.corpus:
        expect = None
        if config.resume:
            from .checkpoint import load_config
            expect = load_config(config.save_dir)['train'].get('corpus')
        train_iter, train_iter.held_out = corpus_streams(
            config, rank, workers, say, expect, bool(config.eval_every),
            vocab=model_vocab(config) if config.init_from else None)
        return train_iter, train_iter.vocab
    if config.init_from:
        subwords = model_vocab(config)
    elif config.vocab == 'wordpiece':
        subwords = subword_vocab(config, say)
    else:
        subwords = None
    start = time.perf_counter()
    train_iter, vocab = dataset.load_data_wiki(
        config.batch_size, config.max_len, data_dir=config.data_dir,
        vocab=subwords, cache_dir=config.cache_dir,
        use_cache=not config.no_cache, sampling=sampling_of(config))
    say(f'{len(train_iter.dataset)} sentence pairs, vocabulary of '
        f'{len(vocab)}, ready in {time.perf_counter() - start:.1f} s',
        flush=True)
    # Each worker reads its own share of the examples; with --resample,
    # epochs 1, 2, ... draw new pairs and masks
    resample = dataset.ResampledEpochs(
        dataset.resolve_data_dir(config.data_dir), config.max_len, vocab,
        config.seed, sampling=sampling_of(config)) if config.resample else None
    train_iter = dataset.DataIter(
        train_iter.dataset, config.batch_size,
        shard=(rank, workers) if workers > 1 else None, resample=resample,
        drop_last=config.resample)
    if workers > 1:
        say(f'{workers} workers, {len(train_iter.indices)} pairs each; a '
            f'step sees {workers} x {config.batch_size} pairs', flush=True)
    return train_iter, vocab


#: Held-out pairs evaluated by ``pretrain --eval-every`` on a corpus.
EVAL_PAIRS = 8192


def corpus_streams(config, rank=0, workers=1, say=print, expect_key=None,
                   held_out=True, eval_seed=None, vocab=None):
    """The training stream (this worker's) and the held-out stream (None
    unless ``held_out``) of ``config.corpus`` (a
    :class:`~gluon_bert.config.PretrainConfig`), preparing the shards first
    if no earlier run did.  ``expect_key``: the corpus key a resumed run
    recorded (a corpus changed since is refused before anything is
    prepared).  The held-out pairs are drawn with the book's sampling,
    seeded by ``eval_seed`` (default :data:`~gluon_bert.dataset.EVAL_SEED`),
    as the book's held-out splits are, whatever the run's masking;
    ``vocab``, a model's vocabulary to cut the text into (``--init-from``)."""
    from .corpus import prepare_corpus
    from .text import valid_files
    from .stream import CorpusStream
    from .dataset import EVAL_SEED
    start = time.perf_counter()
    settings = dict(corpus_format=config.corpus_format, kind=config.vocab,
                    vocab_size=config.vocab_size, max_words=config.max_words,
                    cache_dir=config.cache_dir, say=say)
    prepared = prepare_corpus(config.corpus, expect_key=expect_key,
                              vocab=vocab, **settings)
    valid = config.valid_corpus or valid_files(config.corpus)
    train = CorpusStream(prepared, config.batch_size, config.max_len,
                         config.seed, sampling_of(config),
                         shard=(rank, workers) if workers > 1 else None,
                         part='all' if valid else 'train')
    # Held-out pairs are drawn as the book's held-out splits are
    # (dataset.load_heldout): its sampling, EVAL_SEED
    common = dict(max_len=config.max_len,
                  seed=EVAL_SEED if eval_seed is None else eval_seed)
    held = None
    if valid and held_out:
        settings.update(say=lambda *a, **k: None)
        held = CorpusStream(prepare_corpus(valid, vocab=prepared.vocab,
                                           **settings), 1, part='all',
                            **common)
    elif held_out:
        held = CorpusStream(prepared, 1, part='held_out', **common)
    say(f'{train.num_pairs:,} sentence pairs a pass'
        + (f', {held.num_pairs:,} held out' if held else '')
        + f'; {prepared.describe()}; ready in '
        f'{time.perf_counter() - start:.1f} s', flush=True)
    if workers > 1:
        say(f'{workers} workers, {len(train)} batches each a pass; a step '
            f'sees {workers} x {config.batch_size} pairs', flush=True)
    return train, held

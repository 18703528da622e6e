"""One typed configuration per job: every setting, its default and its help.

:class:`PretrainConfig` is the only place a pretraining setting is defined:
the command's flags are generated from it (:mod:`gluon_bert.flags`), a
recipe is a named set of its values (:data:`RECIPES`), config.json stores
it and ``--resume`` restores it.  Each field says how a resumed run treats
it: ``same`` (must not change), ``limit`` (the saved value unless given
again) or ``free`` (this command's: devices, output, logging).
"""
import argparse
import dataclasses

from .tasks import TASKS
from .utils import (GluonBertError, checked_type, max_len_arg, parse_gpu_ids,
                    positive_int)

__all__ = ['PretrainConfig', 'FinetuneConfig', 'RECIPES', 'RECIPE_KEYS',
           'describe_recipe', 'LOG_LEVELS', 'GLUE_SETTINGS',
           'finetune_recipe', 'GUIDE_STEPS']


def _gpus(text):
    try:
        parse_gpu_ids(text)
    except GluonBertError as e:
        raise argparse.ArgumentTypeError(e.worded()) from None
    return text


_non_negative_int = checked_type(int, lambda v: v >= 0, '0 or more')
_positive_float = checked_type(float, lambda v: 0 < v < float('inf'),
                               'a positive number')
_non_negative_float = checked_type(float, lambda v: 0 <= v < float('inf'),
                                   '0 or more')
_unit_interval = checked_type(float, lambda v: 0 <= v < 1, 'in [0, 1)')
_share = checked_type(float, lambda v: 0 < v < 1, 'in (0, 1)')
_vocab_size = checked_type(int, lambda v: v >= 300, '300 or more (the '
                           'characters of WikiText-2 alone take ~250)')


#: --log-level's choices; -q and -v are short for the first and the last.
LOG_LEVELS = ('warning', 'info', 'debug')


def setting(default, help, group, type=None, choices=None, resume='same',
            flag=True, negation=None, negation_help=None, required=False,
            nargs=None):
    """A field of a configuration, with what its flag needs (``negation``:
    a second flag that sets a boolean field to False; ``required``: the
    command line must give it, a library caller need not; ``nargs``: '+'
    for a list of values)."""
    return dataclasses.field(default=default, metadata=dict(
        help=help, group=group, type=type, choices=choices, resume=resume,
        flag=flag, negation=negation, negation_help=negation_help,
        required=required, nargs=nargs))


def _log_level():
    """The --log-level field every job's configuration has."""
    return setting(
        'info', 'what the library reports: warning (only problems; -q), info '
        '(progress and results), debug (also each phase of the work with its '
        'time, such as the shutdown of a distributed job; -v)', 'output',
        choices=LOG_LEVELS, resume='free')


class _Config:
    """What every job's configuration can do: become a dict (config.json)
    and come back from one."""

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values):
        """A configuration from saved values; unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise GluonBertError(f'unknown settings {", ".join(unknown)}: '
                                 'the configuration was written by another '
                                 'version of gluon_bert')
        return cls(**values)


#: The guide's number of pretraining steps (``--steps`` by default).
GUIDE_STEPS = 50


@dataclasses.dataclass
class PretrainConfig(_Config):
    """Every setting of ``python -m gluon_bert.pretrain``; the defaults are
    the guide's (the ``book`` recipe)."""
    # -- devices
    gpus: str = setting(
        None, 'GPUs to shard each batch across, e.g. 0,1; on a machine '
        'without GPUs training runs on cpu(0) (default: all GPUs, else '
        'cpu(0))', 'devices', _gpus, resume='free')
    cpus: int = setting(None, 'shard each batch across N CPU contexts '
                        'instead', 'devices', positive_int, resume='free')
    kvstore: str = setting(
        'device', 'how gradients are summed: across the devices of this '
        'process (device, local) or across the workers of a job started by '
        'python -m gluon_bert.launch (dist_sync; dist_device_sync for GPUs)',
        'devices', choices=('device', 'local', 'dist_sync',
                            'dist_device_sync'), resume='free')
    # -- data
    data_dir: str = setting(
        None, 'folder with wiki.train.tokens (default: $GLUON_BERT_DATA, '
        'then ../data/wikitext-2, then a download)', 'data')
    corpus: list = setting(
        None, 'pretrain on these text files, folders or globs (plain or '
        '.gz) instead of WikiText-2: prepared once into shards on disk '
        '(--cache-dir) that later runs reuse, read as a stream, so memory '
        'does not grow with the corpus. A folder holding wiki.train.tokens '
        '(WikiText-103) is read as WikiText-2 is, its wiki.valid.tokens '
        'held out; see --corpus-format for the layouts. TASK:FOLDER is a '
        "fine-tuning task's training text (e.g. qnli:../shared/data/qnli-"
        'small; labels, dev and test never read): each sentence pair a '
        "two-sentence document, a single-sentence task's sentences four to "
        'a document, words split as finetune splits them', 'data',
        nargs='+')
    valid_corpus: list = setting(
        None, "held-out text for --eval-every, in --corpus's layout "
        '(default: wiki.valid.tokens of a WikiText folder, else 1 %% of '
        "--corpus's paragraphs, every 100th, never trained on)", 'data',
        nargs='+')
    corpus_format: str = setting(
        'auto', 'the layout of --corpus: wikitext (a paragraph a line, '
        "sentences separated by ' . ', as WikiText); documents (a sentence "
        "a line, a blank line between documents: BERT's and GluonNLP's "
        'create_pretraining_data.py); lines (running text, a paragraph a '
        'line, cut into sentences after . ! ?); auto: wikitext for '
        "wiki.*.tokens or lines holding ' . ', documents for one-sentence "
        'lines with blank lines between, else lines. Paragraphs of one '
        'sentence make no sentence pair and are dropped; a corpus that '
        'would lose most of its text is refused', 'data',
        choices=('auto', 'documents', 'lines', 'wikitext'))
    max_words: int = setting(
        None, "with --corpus and --vocab word, keep only the N most "
        'frequent words; without it a word vocabulary over 50,000 entries '
        "(WikiText-103's has about 267,000 at the book's min_freq 5: an "
        'MLM output layer of 34M parameters) is refused: use --vocab '
        'wordpiece instead, or this cap', 'data', positive_int)
    cache_dir: str = setting(
        None, 'where prepared examples and corpus shards are cached '
        '(default: $GLUON_BERT_CACHE or ~/.cache/gluon_bert)', 'data',
        resume='free')
    no_cache: bool = setting(False, 'always rebuild the examples', 'data',
                             resume='free')
    batch_size: int = setting(
        512, 'sentence pairs per batch, over all devices of a process (per '
        'worker with --kvstore dist_*)', 'data', positive_int)
    max_len: int = setting(64, 'tokens per example, <cls> and <sep> '
                           'included', 'data', max_len_arg)
    vocab: str = setting(
        'word', "word: the book's vocabulary, the words seen 5 times or "
        'more (the rest are <unk>); wordpiece: subwords learnt from the '
        'training text with Hugging Face tokenizers (pip install '
        "'gluon_bert[subword]'), so that a rare or unseen word is spelt in "
        'pieces (play ##ing) instead of being <unk>; vocab.json keeps it, '
        'and every command splits text with it', 'data',
        choices=('word', 'wordpiece'))
    vocab_size: int = setting(
        10000, 'entries of a --vocab wordpiece vocabulary, special tokens '
        'included', 'data', _vocab_size)
    whole_word: bool = setting(
        False, 'with --vocab wordpiece, predict whole words (every piece of '
        'a chosen word) instead of single pieces', 'data')
    mask_prob: float = setting(
        0.15, "share of each sequence's tokens the MLM task predicts (80 %% "
        'of them become <mask>, 10 %% stay, 10 %% become a random token)',
        'data', _share)
    # -- model
    preset: str = setting(
        None, "a named size: small (the guide's), d2l-small (d2l's "
        'bert.small), base (BERT_BASE), large (BERT_LARGE); the four size '
        'flags below override it', 'model', choices=(
            'base', 'd2l-small', 'large', 'small'), resume='free')
    init_from: str = setting(
        None, "start from this pretrained model's weights instead of random "
        'ones: a folder written by pretrain, or d2l:bert.small. Its size and '
        'vocabulary are taken (flags that contradict them are refused), the '
        'training settings are this run\'s (recipe, rate, warm-up, steps, '
        '--corpus: a task\'s own text, say), and the folder is only read: '
        'the new run goes to --save-dir', 'model')
    init_step: int = setting(
        None, 'with --init-from a pretraining run, start from its kept '
        'checkpoint of this step (in its checkpoints/; --keep-checkpoints 0 '
        'keeps every one) instead of its final model', 'model',
        positive_int)
    num_hiddens: int = setting(128, 'size of every token representation',
                               'model', positive_int)
    ffn_num_hiddens: int = setting(
        256, 'hidden size of the position-wise feed-forward networks',
        'model', positive_int)
    num_heads: int = setting(2, 'attention heads; must divide --num-hiddens',
                             'model', positive_int)
    num_blks: int = setting(2, 'Transformer encoder blocks', 'model',
                            positive_int)
    dropout: float = setting(0.2, 'dropout in every block', 'model',
                             _unit_interval)
    pos_len: int = setting(
        1000, "length of the learnable position embedding (the book's "
        'max_len=1000); --max-len may not exceed it', 'model', positive_int)
    tie_output: bool = setting(
        False, "the MLM output layer shares the token embedding's weight, "
        "as BERT's does (the book's has its own matrix: most of the small "
        "model's parameters, learnt from the masked slots only); export "
        "still gives the book's PyTorch model, the matrix copied", 'model')
    # -- training
    recipe: str = setting(
        'book', "book: the guide's training, the book's numbers (default); "
        'bert: warm-up then linear decay of the learning rate, AdamW with '
        'weight decay except on LayerNorm and biases, gradient clipping, new '
        'NSP pairs and MLM masks every epoch: a model that keeps learning; '
        'bert-wp: bert with a WordPiece vocabulary learnt from the text and '
        'whole-word masking (needs tokenizers): the one that transfers best '
        '(benchmarks/README.md, "Transfer")', 'training',
        choices=('bert', 'bert-wp', 'book'))
    steps: int = setting(
        None, f'optimizer steps (default: {GUIDE_STEPS}; with --max-minutes, '
        'no limit but the clock)', 'training', positive_int, resume='free')
    max_minutes: float = setting(
        None, 'train for this wall-clock budget (evaluations included), then '
        'save as at the end of a normal run. A decaying schedule ends with '
        'the budget: the number of steps is estimated from the speed '
        'measured so far (re-estimated every step, kept in history.csv as '
        '"total"). With --steps too, whichever comes first', 'training',
        _positive_float, resume='limit')
    lr: float = setting(0.01, '(peak) learning rate', 'training',
                        _positive_float)
    optimizer: str = setting(
        'adam', "adam (the book's), adamw (Adam with decoupled weight decay, "
        'none on LayerNorm and biases) or sgd', 'training',
        choices=('adam', 'adamw', 'sgd'))
    schedule: str = setting(
        'constant', 'learning rate over the steps: constant (the book); '
        'linear: warm-up then linear decay to zero; wsd: warm-up, then '
        'constant, then a linear decay over the last --cooldown share (with '
        '--cooldown 0 a long run that --branch-from ends at any budget)',
        'training', choices=('constant', 'linear', 'wsd'))
    warmup: float = setting(0.0, 'share of the steps spent warming up, with '
                            '--schedule linear or wsd', 'training',
                            _unit_interval)
    warmup_steps: int = setting(
        None, 'warm up over this many steps instead of the --warmup share '
        '(so that runs of different lengths share their warm-up)',
        'training', positive_int)
    cooldown: float = setting(
        0.0, 'with --schedule wsd: the share of --steps over which the rate '
        'decays linearly to zero (0: none)', 'training', _unit_interval,
        resume='limit')
    weight_decay: float = setting(0.0, 'weight decay', 'training',
                                  _non_negative_float)
    clip_norm: float = setting(0.0, 'clip the gradients to this global norm, '
                               '0 for no clipping', 'training',
                               _non_negative_float)
    resample: bool = setting(
        False, 'draw new NSP pairs and MLM masks for every epoch (the book '
        'draws them once); the last, smaller batch of each epoch is then '
        'left out, so that the graph sees few input shapes', 'training',
        negation='no_resample',
        negation_help='draw the examples once, as the book')
    no_nsp: bool = setting(
        False, 'pretrain on MLM alone (RoBERTa): every pair is the true next '
        'sentence, and the NSP loss is left out of the loss minimized (it '
        'is still printed)', 'training')
    init: str = setting(
        'xavier', "initial weights: xavier (the book's) or normal (BERT's "
        'N(0, 0.02^2))', 'training', choices=('normal', 'xavier'))
    eval_every: int = setting(
        0, 'every N steps (and at the end) print MLM/NSP loss and accuracy '
        'on the valid split (as python -m gluon_bert.evaluate --split valid '
        'computes them), keep them in history.csv and draw them in loss.png '
        '(0: never)', 'training', _non_negative_int, resume='limit')
    accumulate: int = setting(
        1, 'batches per optimizer step (gradient accumulation): a step on K '
        'x --batch-size pairs in the memory of one batch', 'training',
        positive_int)
    no_memory_check: bool = setting(
        False, 'train even when the memory estimate says it will not fit',
        'training', resume='free')
    seed: int = setting(0, 'seeds Python, NumPy and MXNet for a reproducible '
                        'run', 'training', int)
    loss: str = setting(
        'fused', 'fused: model and both losses in one hybridized graph that '
        'skips padded tokens and MLM slots (faster); book: the book\'s '
        'get_batch_loss_bert on the model\'s outputs. The same losses (with '
        '--dropout 0 equal to 1e-4; dropout draws differ)', 'training',
        choices=('book', 'fused'))
    no_hybridize: bool = setting(
        False, 'run the model imperatively (slower; for debugging)',
        'training')
    log_every: int = setting(10, 'progress line every N steps (0: none)',
                             'training', _non_negative_int, resume='free')
    # -- output
    save_dir: str = setting(
        'runs/pretrain', 'model directory to write: model.params, '
        'vocab.json, config.json, trainer.states, state.json, history.csv, '
        'loss.png', 'output', resume='free')
    checkpoint_every: int = setting(
        0, 'also save a checkpoint every N steps (0: only at the end and on '
        'Ctrl-C or SIGTERM)', 'output', _non_negative_int, resume='limit')
    keep_checkpoints: int = setting(
        2, 'how many of the newest checkpoints to keep (each in '
        'SAVE_DIR/checkpoints/ with its state); 0 keeps all, for a long '
        'wsd run that --branch-from ends at several budgets', 'output',
        _non_negative_int, resume='limit')
    resume: bool = setting(
        False, 'continue the run saved in --save-dir from its last '
        'checkpoint, with its settings, up to --steps', 'output',
        resume='free')
    branch_from: str = setting(
        None, 'start --save-dir (a new folder) as a copy of the run in this '
        'folder at --branch-step, and continue it there with its settings '
        'and this command\'s --steps and --cooldown: the cooldown branch of a '
        'long --schedule wsd run, which is left as it was', 'output',
        resume='free')
    branch_step: int = setting(
        None, 'the step of --branch-from to start from (one of its kept '
        'checkpoints)', 'output', positive_int, resume='free')
    overwrite: bool = setting(
        False, 'start a new run in a --save-dir that holds a run of other '
        'settings or more steps (refused otherwise); the earlier run is kept '
        'in SAVE_DIR/previous/', 'output', resume='free')
    log_level: str = _log_level()

    def with_default_steps(self):
        """Itself, ``steps`` set to :data:`GUIDE_STEPS` unless a time budget
        is given."""
        if self.steps is None and self.max_minutes is None:
            self.steps = GUIDE_STEPS
        return self


#: ``finetune --recipe glue``: per GLUE task, the batch and peak rate at
#: which pretraining paid in the transfer studies (the pretrained start's
#: best of 1e-4, 3e-4, 1e-3; the book's 1e-4 and batch 512 hid most of it).
GLUE_SETTINGS = {
    'sst2': dict(lr=1e-3, batch_size=512),
    'mrpc': dict(lr=3e-4, batch_size=64),
    'rte': dict(lr=1e-3, batch_size=64),
    'qnli': dict(lr=3e-4, batch_size=64),
    'sts-b': dict(lr=3e-4, batch_size=64),
}


def finetune_recipe(task, recipe='auto'):
    """The settings ``finetune --recipe`` gives ``task`` (before the flags
    given, which win): nothing for ``book``, :data:`GLUE_SETTINGS` for
    ``glue``; ``auto`` is ``glue`` for the GLUE tasks."""
    if recipe == 'auto':
        recipe = 'glue' if task in GLUE_SETTINGS else 'book'
    if recipe == 'glue' and task not in GLUE_SETTINGS:
        raise GluonBertError(f'recipe glue has settings for '
                             f'{", ".join(GLUE_SETTINGS)}, not task {task}: '
                             'pass lr and batch_size, or recipe book',
                             ['recipe', 'task', 'lr', 'batch_size'])
    return dict(GLUE_SETTINGS[task]) if recipe == 'glue' else {}


@dataclasses.dataclass
class FinetuneConfig(_Config):
    """Every setting of ``python -m gluon_bert.finetune``; the defaults are
    the book's (d2l's "Natural Language Inference: Fine-Tuning BERT")."""
    model_dir: str = setting(
        None, 'the pretrained model: a directory written by '
        'gluon_bert.pretrain, or d2l:bert.small', 'model and data',
        required=True)
    data_dir: str = setting(None, "the task's folder", 'model and data',
                            required=True)
    task: str = setting('sst2', '; '.join(f'{k}: {t.help}'
                                          for k, t in TASKS.items()),
                        'model and data', choices=tuple(TASKS))
    recipe: str = setting(
        'auto', "book: d2l's fine-tuning settings (Adam at 1e-4, batch "
        '512); glue: the batch and rate that paid on each GLUE task in '
        'benchmarks/bench_transfer.py and bench_finetune.py ('
        + '; '.join(f'{t} lr {v["lr"]:g}, batch {v["batch_size"]}'
                    for t, v in GLUE_SETTINGS.items())
        + "); auto: glue for the GLUE tasks, book for the book's snli (and "
        'snli-small) and tsv. --lr and --batch-size given win',
        'training', choices=('auto', 'book', 'glue'))
    save_dir: str = setting('runs/finetune', 'where the best-dev model and '
                            'results.json go', 'output', resume='free')
    resume: bool = setting(
        False, 'continue the run stopped by Ctrl-C or SIGTERM in --save-dir '
        'exactly where it stopped (give the same flags again)', 'output',
        resume='free')
    overwrite: bool = setting(
        False, 'start a new run in a --save-dir that holds a fine-tuned '
        'model of other settings (refused otherwise); the earlier one is '
        'kept in SAVE_DIR/previous/', 'output', resume='free')
    log_level: str = _log_level()
    init: str = setting('pretrained', 'random: the same classifier from '
                        'freshly initialized weights (the control)',
                        'model and data', choices=('pretrained', 'random'))
    tokenizer: str = setting(
        'auto', "how raw text becomes the vocabulary's words: wikitext "
        "rewrites it in WikiText-2's conventions (doesn 't, role @-@ "
        'playing, 1 @,@ 000, punctuation split off); split lower-cases and '
        "splits on whitespace (the book's); auto: split for the book's snli, "
        'wikitext for the rest', 'model and data',
        choices=('auto', 'wikitext', 'split'))
    max_len: int = setting(128, 'longest input, <cls> and <sep> included; '
                           'longer ones are cut', 'model and data',
                           max_len_arg)
    max_examples: int = setting(None, 'train on the first N training '
                                'examples only (a quick trial)',
                                'model and data', positive_int)
    epochs: int = setting(5, 'passes over the training examples', 'training',
                          positive_int)
    lr: float = setting(1e-4, 'the (peak) learning rate of Adam (default: '
                        'from --recipe; book 1e-4)', 'training',
                        _positive_float)
    schedule: str = setting(
        'constant', 'constant: the book; linear: warm up over --warmup of the '
        'steps, then decay linearly to zero (BERT)', 'training',
        choices=('constant', 'linear'))
    warmup: float = setting(0.1, 'share of the steps to warm up over (with '
                            '--schedule linear)', 'training', _unit_interval)
    weight_decay: float = setting(
        0.0, '> 0: AdamW, decoupled weight decay (none on LayerNorm and '
        'biases)', 'training', _non_negative_float)
    batch_size: int = setting(512, 'examples per batch (default: from '
                              '--recipe; book 512)', 'training',
                              positive_int)
    dropout: float = setting(0.1, 'dropout in every block', 'training',
                             _unit_interval)
    padded: bool = setting(
        False, "feed padded batches, as the book does (slower); by default "
        "each batch's valid tokens are packed so the per-token layers skip "
        'the padding: the same scores and gradients, other dropout draws',
        'training')
    seed: int = setting(0, 'seeds the initialization, dropout and the '
                        'order of the examples', 'training', int)
    log_every: int = setting(50, 'print a progress line every N batches (0: '
                             'never)', 'training', _non_negative_int,
                             resume='free')
    gpus: str = setting(None, 'GPUs to shard each batch across, e.g. 0,1',
                        'devices', _gpus, resume='free')
    cpus: int = setting(None, 'shard each batch across N CPU contexts',
                        'devices', positive_int, resume='free')


#: Named presets: the fields each recipe sets (``book`` is the defaults).
#: A flag given on the command line wins.
_TUNED = {
    # Chosen by measurement (see benchmarks/bench_learning.py)
    'bert': dict(optimizer='adamw', lr=3e-3, batch_size=128, dropout=0.1,
                 schedule='linear', warmup=0.05, weight_decay=0.01,
                 clip_norm=1.0, resample=True, init='normal'),
}
# Chosen by what it transfers (benchmarks/bench_levers.py, bench_transfer.py)
_TUNED['bert-wp'] = dict(_TUNED['bert'], vocab='wordpiece', whole_word=True)
#: Every field some recipe sets.
RECIPE_KEYS = tuple(dict.fromkeys(k for r in _TUNED.values() for k in r))
_BOOK = {f.name: f.default for f in dataclasses.fields(PretrainConfig)
         if f.name in RECIPE_KEYS}
RECIPES = {
    # The guide's: Adam 0.01, constant, examples drawn once
    'book': _BOOK,
    **{name: {**_BOOK, **values} for name, values in _TUNED.items()},
}


def describe_recipe(name):
    """One line: what recipe ``name`` sets, for ``--help`` (``book``: its
    values of every recipe field; another: where it differs from
    ``book``)."""
    return ', '.join(f'{k}={RECIPES[name][k]}' for k in RECIPE_KEYS
                     if name == 'book' or RECIPES[name][k] != _BOOK[k])

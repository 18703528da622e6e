"""ELECTRA's replaced-token detection, with the book's BERT as discriminator.

A study, kept in benchmarks/ (run by ``pretrain_electra.py``): in 2,483
steps its discriminator never left the prior and it fine-tuned at or below
the control (benchmarks/README.md), so it is not part of the package.

BERT learns from the 15 % of tokens it masks; ELECTRA (Clark et al., 2020)
learns from every token.  A small generator BERT fills the masked slots with
tokens drawn from its own MLM predictions; the discriminator — the book's
``BERTModel``, the model that is kept and fine-tuned — reads the corrupted
text and says, for every token, whether it was replaced:

    loss = generator MLM loss + disc_weight * replaced-token detection loss
           (+ the book's NSP loss, on the discriminator's ``<cls>``)

The generator shares the discriminator's token embedding (ELECTRA ties
them), so its MLM loss also trains the embedding the discriminator reads.
The draw is not differentiated (ELECTRA does not backpropagate through the
sampling either).  Everything runs in one hybridized graph on the packed
batch of :func:`~gluon_bert.packing.pack_batch`, plus three inputs
:func:`electra_extras` makes on the host.
"""
import mxnet as mx
import numpy as onp
from mxnet import gluon
from mxnet.gluon import nn

from gluon_bert.loss import MLMSlotLoss, _no_grad
from gluon_bert.packing import pack_batch, split_and_pack
from gluon_bert.model import BERTModel

__all__ = ['ElectraPretrainLoss', 'make_generator', 'electra_extras',
           'pack_electra_shards', 'replaced_targets', 'unigram_cdf',
           'unigram_draws']


def make_generator(disc, num_blks=1, ffn_num_hiddens=None, num_heads=None):
    """A smaller BERT over the same vocabulary and width as ``disc``, whose
    token embedding *is* ``disc``'s (one Parameter, shared).

    ELECTRA finds generators 1/4 to 1/2 the discriminator's size work best;
    with the width tied by the shared embedding, this one is smaller in
    depth (``num_blks``).
    """
    c = disc.config
    gen = BERTModel(c['vocab_size'], c['num_hiddens'],
                    ffn_num_hiddens or c['ffn_num_hiddens'],
                    num_heads or c['num_heads'], num_blks, c['dropout'],
                    c['max_len'], prefix='generator_')
    # The same Block (and so the same Parameter) in both models
    gen.encoder.token_embedding = disc.encoder.token_embedding
    return gen


def electra_extras(mlm_rows, mlm_weights, num_rows, num_valid):
    """The host-side inputs of :class:`ElectraPretrainLoss` for one shard.

    Parameters
    ----------
    mlm_rows : (K,) int, the packed row of every MLM slot
    mlm_weights : (K,), 0 for padded slots
    num_rows : int, T, the packed rows (valid and padding)
    num_valid : int, the valid rows (they come first)

    Returns
    -------
    slot_of_row : (T,) int32
        The slot of every row that is a weighted MLM slot, else K (which
        reads the appended dummy slot).
    slot_mask : (T,) float32, 1 at the weighted slots' rows
    row_weights : (T,) float32, 1 at valid rows, 0 at padding rows
    """
    k = len(mlm_rows)
    slot_of_row = onp.full(num_rows, k, dtype='int32')
    weighted = onp.nonzero(mlm_weights > 0)[0]
    slot_of_row[mlm_rows[weighted]] = weighted
    slot_mask = (slot_of_row < k).astype('float32')
    row_weights = (onp.arange(num_rows) < num_valid).astype('float32')
    return slot_of_row, slot_mask, row_weights


def unigram_cdf(token_ids, vocab_size, exclude=()):
    """The cumulative unigram distribution of ``token_ids`` (the training
    text), the ids in ``exclude`` (padding, the special tokens) left out:
    (vocab_size,) float64, ending at 1."""
    counts = onp.bincount(onp.asarray(token_ids, dtype='int64').ravel(),
                          minlength=vocab_size)[:vocab_size].astype('float64')
    counts[list(exclude)] = 0
    return onp.cumsum(counts) / counts.sum()


def unigram_draws(uniforms, cdf):
    """One token per slot from the unigram distribution ``cdf`` (inverse
    CDF of each slot's uniform): (K,) int32.  ELECTRA's ablation without a
    generator: if the discriminator cannot learn to spot these easy
    replacements, its setup is at fault, not the generator."""
    return onp.minimum(onp.searchsorted(cdf, uniforms, side='right'),
                       len(cdf) - 1).astype('int32')


def pack_electra_shards(host, devices, num_heads, rng, cdf=None):
    """:func:`~gluon_bert.packing.pack_shards` plus the ELECTRA inputs
    (:func:`electra_extras` and one uniform per slot from ``rng``, a NumPy
    RandomState; given a unigram ``cdf``, the slot's draw instead), per
    device, in the order of :class:`ElectraPretrainLoss`'s inputs."""
    def pack(shard):
        packed = pack_batch(shard, num_heads)
        tokens, mlm_rows, mlm_weights = packed[0], packed[7], packed[8]
        num_valid = int(onp.asarray(shard[2]).sum())
        extras = electra_extras(mlm_rows, mlm_weights, len(tokens),
                                num_valid)
        uniforms = rng.random_sample(len(mlm_rows)).astype('float32')
        draws = uniforms if cdf is None else unigram_draws(uniforms, cdf)
        return packed + extras + (draws,)
    return split_and_pack(host, devices, pack)


def replaced_targets(F, tokens, samples, mlm_labels, slot_of_row, slot_mask):
    """The discriminator's input and targets from the generator's draws.

    Returns ``(disc_tokens, replaced)``, both (T,): the packed tokens with
    every weighted slot's row holding its draw, and 1.0 where that draw
    differs from the original token (a draw equal to it counts as
    original, as in ELECTRA).
    """
    # (K + 1, 2): draw and original token of every slot, then a dummy slot
    # K that the rows which are not slots read; no gradient flows here
    pairs = F.np.stack([samples, mlm_labels.astype('int32')], axis=1)
    pairs = _no_grad(F, F.np.concatenate(
        [pairs, F.np.zeros_like(F.npx.slice(pairs, begin=(0,), end=(1,)))]))
    # (T, 2)
    rows = F.np.take(pairs, slot_of_row, axis=0)
    row_sample = F.npx.reshape(F.npx.slice(rows, begin=(None, 0),
                                           end=(None, 1)), (-1,))
    row_label = F.npx.reshape(F.npx.slice(rows, begin=(None, 1),
                                          end=(None, 2)), (-1,))
    disc_tokens = F.np.where(slot_mask > 0, row_sample,
                             tokens.astype('int32'))
    replaced = slot_mask * (row_sample != row_label).astype('float32')
    return disc_tokens, replaced


def softmax_draws(F, scores, uniforms, vocab_size):
    """A token drawn from each slot's softmax by inverse CDF: (K,) int32, the
    count of tokens whose cumulative probability stays below the slot's
    uniform.  ``scores``: (K, vocab_size); ``uniforms``: (K,) in [0, 1)."""
    below = F.np.cumsum(F.npx.softmax(scores), axis=1) < F.np.expand_dims(
        uniforms, -1)
    return F.np.minimum(F.np.sum(below, axis=1), vocab_size - 1).astype(
        'int32')


class _GeneratorLoss(nn.HybridBlock):
    """The generator's MLM sum and hits over the slots, and its draws."""

    def __init__(self, generator, ce, num_chunks, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            # The parts the generator's loss reads (not its NSP head)
            self.encoder, self.mlm = generator.encoder, generator.mlm
            self.mlm_loss = MLMSlotLoss(generator.mlm.decoder, ce, num_chunks)

    def hybrid_forward(self, F, tokens, segments, positions, valid_lens,
                       head_index, merge_index, mlm_rows, mlm_weights,
                       mlm_labels, uniforms):
        # (T, num_hiddens), then (K, num_hiddens) at the slots
        X = self.encoder(tokens, segments, valid_lens, positions, head_index,
                         merge_index)
        hiddens = self.mlm.slot_hiddens(F, X, mlm_rows)
        mlm_sum, mlm_hits = self.mlm_loss(hiddens, mlm_labels, mlm_weights)
        scores = _no_grad(F, self.mlm.decoder(hiddens))
        return mlm_sum, mlm_hits, softmax_draws(
            F, scores, uniforms, self.mlm_loss.vocab_size)


class _DiscriminatorLoss(nn.HybridBlock):
    """Replaced-token detection and NSP on the generator's corrupted text."""

    def __init__(self, net, ce, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            # The parts the detection reads (not the MLM head)
            self.encoder, self.hidden, self.nsp = (net.encoder, net.hidden,
                                                   net.nsp)
            self.ce = ce
            units = net.config['num_hiddens']
            # ELECTRA's discriminator head: a hidden layer, then one score
            self.head = nn.HybridSequential()
            self.head.add(nn.Dense(units, activation='relu', flatten=False,
                                   in_units=units))
            self.head.add(nn.Dense(1, flatten=False, in_units=units))

    def hybrid_forward(self, F, tokens, segments, positions, valid_lens,
                       head_index, merge_index, nsp_rows, mlm_labels,
                       nsp_labels, slot_of_row, slot_mask, row_weights,
                       samples):
        disc_tokens, replaced = replaced_targets(
            F, tokens, samples, mlm_labels, slot_of_row, slot_mask)
        # (T, num_hiddens) of the corrupted text, then (T,) scores
        X = self.encoder(disc_tokens, segments, valid_lens, positions,
                         head_index, merge_index)
        logits = F.npx.reshape(self.head(X), (-1,))
        # Binary cross-entropy with logits, in its stable form
        bce = (F.npx.relu(logits) - logits * replaced
               + F.np.log1p(F.np.exp(-F.np.abs(logits))))
        disc_sum = F.np.sum(bce * row_weights)
        disc_hits = F.np.sum(((logits > 0).astype('float32') == replaced)
                             * row_weights)
        # NSP from the <cls> rows, as BERTModel.next_sentence_logits_at
        nsp_Y_hat = self.nsp(self.hidden(F.np.take(X, nsp_rows, axis=0)))
        nsp_sum = F.np.sum(self.ce(nsp_Y_hat, nsp_labels))
        nsp_hits = F.np.sum((F.np.argmax(nsp_Y_hat, axis=-1).astype('int32')
                             == nsp_labels.astype('int32')).astype('float32'))
        return (disc_sum, nsp_sum, nsp_hits, disc_hits,
                F.np.sum(replaced * row_weights))


class ElectraPretrainLoss(nn.Block):
    """Generator MLM, replaced-token detection and NSP sums over a shard.

    Two hybridized graphs, the generator's and the discriminator's, run one
    after the other (the draws pass from the first to the second).

    Parameters
    ----------
    net : BERTModel
        The discriminator (the model that is saved and fine-tuned).
    generator : BERTModel or None
        From :func:`make_generator`; its MLM head draws the replacements.
        None: the last input holds the draws (:func:`unigram_draws`), and
        the generator's sums are 0.
    num_chunks : int
        As :class:`~gluon_bert.loss.BERTPretrainLoss`.

    Inputs
    ------
    The eleven packed inputs of :func:`~gluon_bert.packing.pack_batch`, then
    slot_of_row (T,), slot_mask (T,), row_weights (T,) of
    :func:`electra_extras` and uniforms (K,).

    Outputs
    -------
    mlm_sum : () the generator's sum over slots of weight x cross-entropy
    disc_sum : () sum over valid rows of the detection's binary
        cross-entropy
    nsp_sum : () sum over examples of the discriminator's NSP cross-entropy
    mlm_hits, nsp_hits : () as :class:`~gluon_bert.loss.BERTPretrainLoss`
        (the generator's MLM, the discriminator's NSP)
    disc_hits : () valid rows whose replaced/original call is right
    replaced_rows : () valid rows the generator replaced
    """

    def __init__(self, net, generator, num_chunks=8, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.net, self.generator = net, generator
            ce = gluon.loss.SoftmaxCELoss()
            self.generator_loss = (None if generator is None else
                                   _GeneratorLoss(generator, ce, num_chunks))
            self.discriminator_loss = _DiscriminatorLoss(net, ce)

    def hybridize(self, active=True, **kwargs):
        if self.generator_loss is not None:
            self.generator_loss.hybridize(active, **kwargs)
        self.discriminator_loss.hybridize(active, **kwargs)

    def forward(self, tokens, segments, positions, valid_lens, head_index,
                merge_index, nsp_rows, mlm_rows, mlm_weights, mlm_labels,
                nsp_labels, slot_of_row, slot_mask, row_weights, uniforms):
        packed = (tokens, segments, positions, valid_lens, head_index,
                  merge_index)
        if self.generator_loss is None:  # the draws came from the host
            samples, mlm_sum = uniforms, mx.np.zeros((), ctx=tokens.ctx)
            mlm_hits = mlm_sum
        else:
            mlm_sum, mlm_hits, samples = self.generator_loss(
                *packed, mlm_rows, mlm_weights, mlm_labels, uniforms)
        disc_sum, nsp_sum, nsp_hits, disc_hits, replaced = (
            self.discriminator_loss(*packed, nsp_rows, mlm_labels,
                                    nsp_labels, slot_of_row, slot_mask,
                                    row_weights, samples.detach()))
        return (mlm_sum, disc_sum, nsp_sum, mlm_hits, nsp_hits, disc_hits,
                replaced)

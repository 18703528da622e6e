"""BERT as Gluon HybridBlocks, with the book's math.

Components (:mod:`gluon_bert.layers`), then the full model, then a factory::

    MultiHeadAttention, PositionWiseFFN, AddNorm -> TransformerEncoderBlock
    -> BERTEncoder, MaskLM, NextSentencePred -> BERTModel -> get_bert_model

The math is ``d2l.BERTModel``'s.  Unlike the book's Blocks, nothing reads
``.shape`` or branches on data, so every Block hybridizes: masks and
indices are built with ``F`` operators, as GluonNLP does.  All Blocks run
in MXNet's NumPy mode (``npx.set_np()``).
"""
from mxnet import ndarray, npx, symbol
from mxnet.gluon import nn

# The Transformer's parts (gluon_bert.layers), and the sizes of a model
# without building it (gluon_bert.sizes), importable from here as the book's
# model module offers them
from .layers import (MATRIX_LAYERNORM_WIDTHS, AddNorm, LayerNorm,
                     MultiHeadAttention, PositionWiseFFN,
                     TransformerEncoderBlock, use_matrix_layernorm)
from .sizes import PRESETS, estimate_memory, parameter_count

__all__ = ['MultiHeadAttention', 'PositionWiseFFN', 'LayerNorm', 'AddNorm',
           'TransformerEncoderBlock', 'BERTEncoder', 'MaskLM',
           'NextSentencePred', 'BERTModel', 'BERTClassifier', 'PRESETS',
           'cls_encoding', 'get_bert_model',
           'count_parameters', 'parameter_count', 'estimate_memory',
           'net_device', 'MATRIX_LAYERNORM_WIDTHS',
           'use_matrix_layernorm']

npx.set_np()


class BERTEncoder(nn.HybridBlock):
    """Token, segment and position embeddings, then Transformer blocks.

    Parameters
    ----------
    vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout
        As in the book.
    max_len : int
        Length of the position embedding (1, max_len, num_hiddens).

    Inputs
    ------
    tokens : (batch size, no. of tokens) int
    segments : (batch size, no. of tokens) int, 0 or 1
    valid_lens : (batch size,) or None
    positions, head_index, merge_index : optional, packed input
        With ``positions`` (T,), ``tokens`` and ``segments`` are (T,): the
        batch's valid tokens one after another
        (:func:`gluon_bert.packing.pack_batch`); see
        :class:`MultiHeadAttention`.

    Outputs
    -------
    (batch size, no. of tokens, num_hiddens), or (T, num_hiddens) packed
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                 num_blks, dropout, max_len=1000, **kwargs):
        super().__init__(**kwargs)
        self.max_len, self._num_hiddens = max_len, num_hiddens
        with self.name_scope():
            # In BERT, positional embeddings are learnable, thus we create a
            # parameter of positional embeddings that are long enough
            self.pos_embedding = self.params.get(
                'pos_embedding', shape=(1, max_len, num_hiddens))
            self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
            self.segment_embedding = nn.Embedding(2, num_hiddens)
            self.blks = nn.HybridSequential()
            for _ in range(num_blks):
                # The book's BERT asks for biases in the attention layers
                self.blks.add(TransformerEncoderBlock(
                    num_hiddens, ffn_num_hiddens, num_heads, dropout, True))

    def hybrid_forward(self, F, tokens, segments, valid_lens=None,
                       positions=None, head_index=None, merge_index=None,
                       pos_embedding=None):
        # (batch size, no. of tokens, num_hiddens), or (T, num_hiddens)
        X = self.token_embedding(tokens) + self.segment_embedding(segments)
        packed = ()
        if positions is None:
            # (batch size, no. of tokens): positions 0, 1, ... in every row
            positions = (F.np.zeros_like(tokens, dtype='int32')
                         + F.npx.arange_like(tokens, axis=1).astype('int32'))
        else:
            if valid_lens is None:
                # Packed tokens need the lengths to mask the gathered padding
                raise ValueError('packed input (positions given) needs '
                                 'valid_lens: pass the batch\'s lengths, as '
                                 'gluon_bert.packing.pack_batch returns them')
            packed = (head_index, merge_index)
        # The position embedding of every token, looked up like a word's.
        # Adding the first no.-of-tokens rows with broadcasting, as the book
        # does, gives the same numbers, but its gradient is a reduction over
        # the batch, far slower on CPUs than the embedding's gradient
        X = X + F.npx.embedding(
            positions, F.npx.reshape(pos_embedding, (-3, -2, -2)),
            input_dim=self.max_len, output_dim=self._num_hiddens)
        for blk in self.blks:
            X = blk(X, valid_lens, *packed)
        return X


class MaskLM(nn.HybridBlock):
    """The masked language model head: an MLP at the predicted positions.

    ``tied``: an ``nn.Embedding`` whose weight the output layer shares (the
    book's head has an output matrix of its own).

    Inputs
    ------
    X : (batch size, no. of tokens, num_hiddens)
    pred_positions : (batch size, no. of predictions) int

    Outputs
    -------
    (batch size, no. of predictions, vocab_size)
    """

    def __init__(self, vocab_size, num_hiddens, tied=None, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.mlp = nn.HybridSequential()
            self.mlp.add(nn.Dense(num_hiddens, flatten=False,
                                  activation='relu', in_units=num_hiddens))
            self.mlp.add(LayerNorm(num_hiddens))
            # tied: the output layer's weight (vocab_size, num_hiddens) is
            # the token embedding's, as BERT ties them (GluonNLP's way: the
            # Dense takes the embedding's parameters); its bias is its own
            self.mlp.add(nn.Dense(vocab_size, flatten=False,
                                  in_units=num_hiddens,
                                  params=tied.collect_params() if tied
                                  else None))

    @staticmethod
    def gather(F, X, pred_positions):
        """X[i, pred_positions[i, j]] for every i, j, without reading shapes.

        (batch size, no. of tokens, num_hiddens) ->
        (batch size, no. of predictions, num_hiddens)
        """
        pred_positions = pred_positions.astype('int32')
        # (batch size, 1): 0, 1, ..., batch size - 1
        batch_idx = F.np.expand_dims(
            F.npx.arange_like(pred_positions, axis=0).astype('int32'), -1)
        # (batch size, no. of predictions): the batch index of every slot
        batch_idx = batch_idx + F.np.zeros_like(pred_positions)
        indices = F.np.stack([batch_idx, pred_positions])
        return F.npx.gather_nd(X, indices)

    def hybrid_forward(self, F, X, pred_positions):
        return self.mlp(self.gather(F, X, pred_positions))

    def slot_hiddens(self, F, X, rows):
        """The MLP's hidden layer (before :attr:`decoder`) at the rows ``rows``
        (K,) of a packed encoding ``X`` (T, num_hiddens): (K, num_hiddens), for
        :class:`gluon_bert.loss.BERTPretrainLoss`, which applies the decoder.
        """
        hidden = F.np.take(X, rows, axis=0)
        for layer in list(self.mlp)[:-1]:
            hidden = layer(hidden)
        return hidden

    @property
    def decoder(self):
        """The output layer: num_hiddens -> vocab_size scores."""
        return self.mlp[-1]


class NextSentencePred(nn.HybridBlock):
    """The next sentence prediction head: two classes.

    Inputs
    ------
    X : (batch size, num_hiddens) or (batch size, 1, num_hiddens)

    Outputs
    -------
    (batch size, 2)
    """

    def __init__(self, num_inputs=0, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.output = nn.Dense(2, in_units=num_inputs)

    def hybrid_forward(self, F, X):
        return self.output(X)


class BERTModel(nn.HybridBlock):
    """The BERT model of the book: encoder, MLM head and NSP head.

    Parameters
    ----------
    vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks : int
    dropout : float
    max_len : int
        Length of the position embedding (1000 in the book).
    tie_output : bool
        The MLM output layer shares the token embedding's weight (BERT's; the
        book's has its own).

    Inputs
    ------
    tokens : (batch size, no. of tokens) int
    segments : (batch size, no. of tokens) int
    valid_lens : (batch size,) or None
    pred_positions : (batch size, no. of predictions) or None

    Outputs
    -------
    encoded_X : (batch size, no. of tokens, num_hiddens)
    mlm_Y_hat : (batch size, no. of predictions, vocab_size), or None without
        ``pred_positions``
    nsp_Y_hat : (batch size, 2)
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                 num_blks, dropout, max_len=1000, tie_output=False, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(vocab_size=vocab_size, num_hiddens=num_hiddens,
                           ffn_num_hiddens=ffn_num_hiddens,
                           num_heads=num_heads, num_blks=num_blks,
                           dropout=dropout, max_len=max_len)
        if tie_output:  # the book's model (and its config.json) without
            self.config['tie_output'] = True
        with self.name_scope():
            self.encoder = BERTEncoder(vocab_size, num_hiddens,
                                       ffn_num_hiddens, num_heads, num_blks,
                                       dropout, max_len)
            self.hidden = nn.Dense(num_hiddens, activation='tanh',
                                   in_units=num_hiddens)
            self.mlm = MaskLM(vocab_size, num_hiddens, tied=(
                self.encoder.token_embedding if tie_output else None))
            self.nsp = NextSentencePred(num_hiddens)

    def forward(self, tokens, segments, valid_lens=None, pred_positions=None):
        # A hybridized Gluon 1.x Block keeps one trace for one structure of
        # its arguments and refuses another, so the optional inputs are
        # settled here.  Without valid_lens every token is valid: lengths
        # equal to the sequence length give the same attention.  The book
        # calls the model with pred_positions to train and without them for
        # encodings; the second call runs the encoder and the NSP head
        # instead, Blocks with traces of their own, leaving the MLM head out.
        F = symbol if isinstance(tokens, symbol.Symbol) else ndarray
        if valid_lens is None:
            valid_lens = F.np.ones_like(tokens).sum(axis=1).astype('float32')
        if pred_positions is None:
            encoded_X = self.encoder(tokens, segments, valid_lens)
            return encoded_X, None, self.next_sentence_logits(F, encoded_X)
        return super().forward(tokens, segments, valid_lens, pred_positions)

    def hybrid_forward(self, F, tokens, segments, valid_lens, pred_positions):
        encoded_X = self.encoder(tokens, segments, valid_lens)
        mlm_Y_hat = self.mlm(encoded_X, pred_positions)
        nsp_Y_hat = self.next_sentence_logits(F, encoded_X)
        return encoded_X, mlm_Y_hat, nsp_Y_hat

    def encode(self, tokens, segments, valid_lens=None):
        """The encoder's output, (batch size, no. of tokens, num_hiddens)."""
        return self.encoder(tokens, segments, valid_lens)

    def encode_packed(self, tokens, segments, positions, valid_lens,
                      head_index, merge_index):
        """The encoder's output for a packed batch: (T, num_hiddens).

        See :class:`BERTEncoder` and :func:`gluon_bert.packing.pack_batch`.
        """
        return self.encoder(tokens, segments, valid_lens, positions,
                            head_index, merge_index)

    def next_sentence_logits_at(self, F, X, rows):
        """NSP scores from the rows of ``<cls>`` in a packed encoding ``X``
        (T, num_hiddens): (batch size, 2)."""
        return self.nsp(self.hidden(cls_encoding(F, X, rows)))

    def next_sentence_logits(self, F, encoded_X):
        """NSP scores from the encoding of ``<cls>``: (batch size, 2)."""
        # The hidden layer of the MLP classifier for next sentence prediction
        return self.nsp(self.hidden(cls_encoding(F, encoded_X)))


class BERTClassifier(nn.HybridBlock):
    """The book's fine-tuning model (d2l's ``BERTClassifier``): a pretrained
    BERT's encoder and ``<cls>`` hidden layer, then a new output layer.

    Parameters
    ----------
    bert : BERTModel
        Its ``encoder`` and ``hidden`` layer are fine-tuned (no heads).
    num_classes : int

    Inputs
    ------
    tokens, segments : (batch size, no. of tokens) int
    valid_lens : (batch size,)
    positions, head_index, merge_index, cls_rows : optional
        A packed batch instead (:func:`gluon_bert.packing.pack_tokens`; tokens,
        segments, positions (T,), cls_rows (batch size,)): the same scores,
        the per-token layers skip the padding.

    Outputs
    -------
    (batch size, num_classes) scores
    """

    def __init__(self, bert, num_classes=3, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        # For packing batches (gluon_bert.packing.pack_tokens)
        self.num_heads = bert.config['num_heads']
        with self.name_scope():
            self.encoder = bert.encoder
            self.hidden = bert.hidden
            self.output = nn.Dense(num_classes,
                                   in_units=bert.config['num_hiddens'])

    def hybrid_forward(self, F, tokens, segments, valid_lens, positions=None,
                       head_index=None, merge_index=None, cls_rows=None):
        encoded_X = self.encoder(tokens, segments, valid_lens, positions,
                                 head_index, merge_index)
        return self.output(self.hidden(cls_encoding(F, encoded_X, cls_rows)))


def cls_encoding(F, encoded_X, cls_rows=None):
    """The encoding of every example's ``<cls>``: from a padded encoding
    (batch size, no. of tokens, num_hiddens), (batch size, 1, num_hiddens),
    which the (flattening) Dense layers read as (batch size, num_hiddens);
    from a packed one (T, num_hiddens), its ``cls_rows``: (batch size,
    num_hiddens)."""
    if cls_rows is None:
        # 0 is the index of the '<cls>' token
        return F.npx.slice(encoded_X, begin=(None, 0, None),
                           end=(None, 1, None))
    return F.np.take(encoded_X, cls_rows, axis=0)


def get_bert_model(vocab_size, num_hiddens=128, ffn_num_hiddens=256,
                   num_heads=2, num_blks=2, dropout=0.2, max_len=1000,
                   tie_output=False):
    """The book's small BERT by default; see :data:`PRESETS` for others."""
    return BERTModel(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                     num_blks, dropout, max_len, tie_output)


def count_parameters(net):
    """Number of scalar parameters (all shapes must be known)."""
    total = 0
    for param in net.collect_params().values():
        size = 1
        for dim in param.shape:
            size *= dim
        total += size
    return total


def net_device(net):
    """The device of ``net``'s first parameter (where it was loaded)."""
    return next(iter(net.collect_params().values())).list_ctx()[0]

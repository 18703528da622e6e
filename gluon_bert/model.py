"""BERT as Gluon HybridBlocks, with the book's math.

Components first, then the full model, then a factory::

    MultiHeadAttention, PositionWiseFFN, AddNorm -> TransformerEncoderBlock
    -> BERTEncoder, MaskLM, NextSentencePred -> BERTModel -> get_bert_model

The math is d2l's (``d2l.BERTModel``): attention over the valid keys only
(the padded keys' scores are set to -1e6 before the softmax, as the book's
``masked_softmax`` does with ``sequence_mask``), dropout on the attention
weights, LayerNorm after residual +
dropout, a ReLU feed-forward network, learnable position embeddings and a tanh
hidden layer on ``<cls>`` before next-sentence prediction.  Unlike the book's
Blocks, nothing here reads ``.shape`` or branches on data, so every Block
hybridizes: masks and indices are built with ``F`` operators
(``arange_like``, ``gather_nd``) as GluonNLP does.

All Blocks run in MXNet's NumPy mode (``npx.set_np()``).
"""
import math

from mxnet import ndarray, npx, symbol
from mxnet.gluon import nn

__all__ = ['MultiHeadAttention', 'PositionWiseFFN', 'LayerNorm', 'AddNorm',
           'TransformerEncoderBlock', 'BERTEncoder', 'MaskLM',
           'NextSentencePred', 'BERTModel', 'BERTClassifier', 'PRESETS',
           'get_bert_model',
           'count_parameters', 'parameter_count', 'estimate_memory',
           'net_device', 'MATRIX_LAYERNORM_WIDTHS',
           'use_matrix_layernorm']

npx.set_np()


class MultiHeadAttention(nn.HybridBlock):
    """Multi-head scaled dot-product self-attention (d2l's math).

    Parameters
    ----------
    num_hiddens : int
        Size of queries, keys, values and output; divisible by ``num_heads``.
    num_heads : int
    dropout : float
        Dropout on the attention weights.
    use_bias : bool
        Bias in the four projections; the book's attention has none, its
        ``BERTEncoder`` asks for it.

    Inputs
    ------
    X : (batch size, no. of tokens, num_hiddens)
        Or, packed, (T, num_hiddens): the batch's valid tokens one after
        another (see :func:`gluon_bert.packing.pack_batch`), with
    valid_lens : (batch size,) or None
        Keys at positions >= valid length get no attention.
    head_index : (batch size * num_heads, no. of tokens) int, packed only
        For every example, head and position, the row of the packed
        (T * num_heads, num_hiddens / num_heads) heads that sits there (any
        row at padded positions: they are masked or unused).
    merge_index : (T, num_heads) int, packed only
        For every packed token and head, its row in the attention output
        (batch size * num_heads * no. of tokens, num_hiddens / num_heads).

    Outputs
    -------
    (batch size, no. of tokens, num_hiddens), or (T, num_hiddens) packed
    """

    def __init__(self, num_hiddens, num_heads, dropout, use_bias=False,
                 **kwargs):
        super().__init__(**kwargs)
        if num_hiddens % num_heads:
            raise ValueError(f'num_hiddens={num_hiddens} is not divisible by '
                             f'num_heads={num_heads}')
        self.num_heads = num_heads
        self._sqrt_d = math.sqrt(num_hiddens // num_heads)
        with self.name_scope():
            # Self-attention: inputs have num_hiddens features too (shapes
            # are given, so nothing waits for a first batch to be known)
            self.W_q = nn.Dense(num_hiddens, use_bias=use_bias, flatten=False,
                                in_units=num_hiddens)
            self.W_k = nn.Dense(num_hiddens, use_bias=use_bias, flatten=False,
                                in_units=num_hiddens)
            self.W_v = nn.Dense(num_hiddens, use_bias=use_bias, flatten=False,
                                in_units=num_hiddens)
            self.W_o = nn.Dense(num_hiddens, use_bias=use_bias, flatten=False,
                                in_units=num_hiddens)
            self.dropout = nn.Dropout(dropout)

    def _split_heads(self, F, X):
        # (batch size, no. of tokens, num_hiddens) ->
        # (batch size * num_heads, no. of tokens, num_hiddens / num_heads)
        X = F.npx.reshape(X, (-2, -2, self.num_heads, -1))
        X = F.np.transpose(X, (0, 2, 1, 3))
        return F.npx.reshape(X, (-5, -2, -2))

    def _merge_heads(self, F, X):
        # The inverse of `_split_heads`
        X = F.npx.reshape(X, (-6, -1, self.num_heads, -2, -2))
        X = F.np.transpose(X, (0, 2, 1, 3))
        return F.npx.reshape(X, (-2, -2, -5))

    def _gather_heads(self, F, X, head_index):
        # Packed (T, num_hiddens) -> (T * num_heads, num_hiddens / num_heads)
        # -> (batch size * num_heads, no. of tokens, num_hiddens / num_heads):
        # one gather does the padding, the head split and the transposition
        X = F.npx.reshape(X, (-2, self.num_heads, -1))
        return F.np.take(F.npx.reshape(X, (-5, -2)), head_index, axis=0)

    def _gather_tokens(self, F, X, merge_index):
        # The inverse of `_gather_heads`, for the packed tokens only:
        # (batch size * num_heads, no. of tokens, num_hiddens / num_heads)
        # -> (T, num_heads, num_hiddens / num_heads) -> (T, num_hiddens)
        X = F.np.take(F.npx.reshape(X, (-5, -2)), merge_index, axis=0)
        return F.npx.reshape(X, (-2, -5))

    def hybrid_forward(self, F, X, valid_lens=None, head_index=None,
                       merge_index=None):
        if head_index is None:
            def split(Y):
                return self._split_heads(F, Y)

            def merge(Y):
                return self._merge_heads(F, Y)
        else:
            def split(Y):
                return self._gather_heads(F, Y, head_index)

            def merge(Y):
                return self._gather_tokens(F, Y, merge_index)
        # The queries scaled by 1 / sqrt(d) here rather than the scores (or a
        # softmax `temperature`, which takes MXNet off oneDNN's softmax):
        # (batch size * num_heads, no. of tokens, num_hiddens / num_heads)
        queries = split(self.W_q(X) / self._sqrt_d)
        keys = split(self.W_k(X))
        values = split(self.W_v(X))
        # (batch size * num_heads, no. of queries, no. of keys)
        scores = F.npx.batch_dot(queries, keys, transpose_b=True)
        if valid_lens is not None:
            # The book's masked softmax: the scores of keys at positions >=
            # the valid length are set to -1e6, whose exponentiation is 0.
            # On axis 0, copy each valid length for num_heads times, then for
            # every query: (batch size * num_heads * no. of queries,)
            valid_lens = F.np.repeat(valid_lens, self.num_heads, axis=0)
            queries_pos = F.npx.arange_like(scores, axis=1)
            length = (F.np.expand_dims(valid_lens, -1)
                      + F.np.expand_dims(queries_pos, 0) * 0)
            # (batch size * num_heads * no. of queries, no. of keys)
            masked = F.npx.sequence_mask(
                F.npx.reshape(scores, (-5, -2)), F.npx.reshape(length, (-1,)),
                use_sequence_length=True, value=-1e6, axis=1)
            scores = F.npx.reshape_like(masked, scores)
        attention_weights = F.npx.softmax(scores, axis=-1)
        output = F.npx.batch_dot(self.dropout(attention_weights), values)
        # (batch size, no. of queries, num_hiddens), or (T, num_hiddens)
        return self.W_o(merge(output))


class PositionWiseFFN(nn.HybridBlock):
    """Two Dense layers with a ReLU between, applied at every position.

    Inputs
    ------
    X : (batch size, no. of tokens, any)

    Outputs
    -------
    (batch size, no. of tokens, ffn_num_outputs)
    """

    def __init__(self, ffn_num_hiddens, ffn_num_outputs, num_inputs=0,
                 **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dense1 = nn.Dense(ffn_num_hiddens, flatten=False,
                                   activation='relu', in_units=num_inputs)
            self.dense2 = nn.Dense(ffn_num_outputs, flatten=False,
                                   in_units=ffn_num_hiddens)

    def hybrid_forward(self, F, X):
        return self.dense2(self.dense1(X))


#: The widths whose LayerNorm runs as matrix products on CPUs: where
#: benchmarks/bench_layernorm.py measured that form faster than MXNet's kernel
#: (benchmarks/results/layernorm.json); other widths use MXNet's.
MATRIX_LAYERNORM_WIDTHS = range(1, 257)


def use_matrix_layernorm(width):
    """Whether a CPU LayerNorm of ``width`` features uses the matrix form."""
    return width in MATRIX_LAYERNORM_WIDTHS


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis, with matrix products on CPUs.

    The same parameters (``gamma``, ``beta``) and the same numbers, to float
    rounding, as MXNet's LayerNorm.  On CPUs every reduction -- the mean and
    variance over the features, and in the backward pass gamma's and beta's
    gradients over all positions -- is a matrix product (``FullyConnected``),
    which oneDNN runs faster than MXNet's generic reduction kernels at the
    widths :data:`MATRIX_LAYERNORM_WIDTHS` lists (measured by
    ``benchmarks/bench_layernorm.py``).  At other widths, and on GPUs,
    MXNet's own kernel runs.

    Parameters
    ----------
    num_hiddens : int
        Size of the last axis (0: inferred from the first input).

    Inputs
    ------
    data : (..., num_hiddens)

    Outputs
    -------
    (..., num_hiddens)
    """

    def __init__(self, num_hiddens=0, **kwargs):
        super().__init__(in_channels=num_hiddens, **kwargs)

    def hybrid_forward(self, F, data, gamma, beta):
        n = self.gamma.shape[0]  # unknown (0 or -1) while deferred
        if n <= 0 or not self._on_cpu() or not use_matrix_layernorm(n):
            return super().hybrid_forward(F, data, gamma, beta)

        def dense(x, weight, bias=None, units=n):  # x weight^T + bias
            return F.npx.fully_connected(x, weight, bias, num_hidden=units,
                                         no_bias=bias is None, flatten=False)
        eye = F.np.eye(n)
        # x - mean(x) = x (I - 1/n): (..., n)
        centered = dense(data, eye - 1.0 / n)
        # The variance, mean((x - mean(x))^2): (..., 1)
        var = dense(centered * centered, F.np.ones((1, n)) / n, units=1)
        # 1 / sqrt(variance + eps), repeated over the features: (..., n)
        scale = dense(F.np.power(var + self._epsilon, -0.5), F.np.ones((n, 1)))
        # gamma * normalized + beta = normalized diag(gamma) + beta
        return dense(centered * scale, eye * gamma, beta)

    def _on_cpu(self):
        try:
            return all(c.device_type == 'cpu' for c in self.gamma.list_ctx())
        except RuntimeError:  # not initialized yet: MXNet's kernel
            return False


class AddNorm(nn.HybridBlock):
    """Residual connection after dropout, then layer normalization.

    Inputs
    ------
    X : (batch size, no. of tokens, num_hiddens)
        The residual.
    Y : (batch size, no. of tokens, num_hiddens)
        The sub-layer's output.

    Outputs
    -------
    (batch size, no. of tokens, num_hiddens)
    """

    def __init__(self, dropout, num_hiddens=0, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.dropout = nn.Dropout(dropout)
            self.ln = LayerNorm(num_hiddens)

    def hybrid_forward(self, F, X, Y):
        return self.ln(self.dropout(Y) + X)


class TransformerEncoderBlock(nn.HybridBlock):
    """Self-attention and a position-wise FFN, each followed by AddNorm.

    Inputs
    ------
    X : (batch size, no. of tokens, num_hiddens), or packed (T, num_hiddens)
    valid_lens : (batch size,) or None
    head_index, merge_index : packed only, see :class:`MultiHeadAttention`

    Outputs
    -------
    the shape of X
    """

    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout,
                 use_bias=False, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.attention = MultiHeadAttention(num_hiddens, num_heads,
                                                dropout, use_bias)
            self.addnorm1 = AddNorm(dropout, num_hiddens)
            self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens,
                                       num_hiddens)
            self.addnorm2 = AddNorm(dropout, num_hiddens)

    def hybrid_forward(self, F, X, valid_lens=None, *packed):
        # packed: () or (head_index, merge_index)
        Y = self.addnorm1(X, self.attention(X, valid_lens, *packed))
        return self.addnorm2(Y, self.ffn(Y))


class BERTEncoder(nn.HybridBlock):
    """Token + segment + learnable position embeddings, then Transformer blocks.

    Parameters
    ----------
    vocab_size, num_hiddens, ffn_num_hiddens, num_heads, num_blks, dropout
        As in the book.
    max_len : int
        Length of the learnable position embedding ``pos_embedding``
        (shape (1, max_len, num_hiddens)); inputs may not be longer.

    Inputs
    ------
    tokens : (batch size, no. of tokens) int
    segments : (batch size, no. of tokens) int, 0 or 1
    valid_lens : (batch size,) or None
    positions, head_index, merge_index : optional, packed input
        With ``positions`` (T,), ``tokens`` and ``segments`` are (T,) too:
        the valid tokens of the batch one after another, each at its
        position, as :func:`gluon_bert.packing.pack_batch` makes them; padded
        positions then cost nothing outside attention.  See
        :class:`MultiHeadAttention` for the two indices.

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

    Inputs
    ------
    X : (batch size, no. of tokens, num_hiddens)
    pred_positions : (batch size, no. of predictions) int

    Outputs
    -------
    (batch size, no. of predictions, vocab_size)
    """

    def __init__(self, vocab_size, num_hiddens, **kwargs):
        super().__init__(**kwargs)
        with self.name_scope():
            self.mlp = nn.HybridSequential()
            self.mlp.add(nn.Dense(num_hiddens, flatten=False,
                                  activation='relu', in_units=num_hiddens))
            self.mlp.add(LayerNorm(num_hiddens))
            self.mlp.add(nn.Dense(vocab_size, flatten=False,
                                  in_units=num_hiddens))

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
        """The MLP's hidden layer (before :attr:`decoder`) at packed slots.

        ``X`` (T, num_hiddens) is a packed encoding and ``rows`` (K,) int
        its rows to predict (see :func:`gluon_bert.packing.pack_batch`).
        Returns (K, num_hiddens), for a loss that applies the decoder itself
        (:class:`gluon_bert.loss.BERTPretrainLoss`).
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
    vocab_size : int
    num_hiddens : int
    ffn_num_hiddens : int
    num_heads : int
    num_blks : int
    dropout : float
    max_len : int
        Length of the position embedding (1000 in the book).

    Inputs
    ------
    tokens : (batch size, no. of tokens) int
    segments : (batch size, no. of tokens) int
    valid_lens : (batch size,) or None
    pred_positions : (batch size, no. of predictions) or None

    Outputs
    -------
    encoded_X : (batch size, no. of tokens, num_hiddens)
    mlm_Y_hat : (batch size, no. of predictions, vocab_size), or None when
        ``pred_positions`` is None
    nsp_Y_hat : (batch size, 2)
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                 num_blks, dropout, max_len=1000, **kwargs):
        super().__init__(**kwargs)
        self.config = dict(vocab_size=vocab_size, num_hiddens=num_hiddens,
                           ffn_num_hiddens=ffn_num_hiddens,
                           num_heads=num_heads, num_blks=num_blks,
                           dropout=dropout, max_len=max_len)
        with self.name_scope():
            self.encoder = BERTEncoder(vocab_size, num_hiddens,
                                       ffn_num_hiddens, num_heads, num_blks,
                                       dropout, max_len)
            self.hidden = nn.Dense(num_hiddens, activation='tanh',
                                   in_units=num_hiddens)
            self.mlm = MaskLM(vocab_size, num_hiddens)
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
        return self.nsp(self.hidden(F.np.take(X, rows, axis=0)))

    def next_sentence_logits(self, F, encoded_X):
        """NSP scores from the encoding of ``<cls>``: (batch size, 2)."""
        # The hidden layer of the MLP classifier for next sentence prediction.
        # 0 is the index of the '<cls>' token: (batch size, 1, num_hiddens),
        # which the (flattening) Dense reads as (batch size, num_hiddens)
        cls = F.npx.slice(encoded_X, begin=(None, 0, None),
                          end=(None, 1, None))
        return self.nsp(self.hidden(cls))


class BERTClassifier(nn.HybridBlock):
    """The book's fine-tuning model: a pretrained BERT's encoder and ``<cls>``
    hidden layer, then a new output layer (d2l's ``BERTClassifier``).

    Parameters
    ----------
    bert : BERTModel
        Its ``encoder`` and ``hidden`` layer are used (and fine-tuned); the
        pretraining heads are left out.
    num_classes : int
        3 for the book's SNLI, 2 for SST-2.

    Inputs
    ------
    tokens : (batch size, no. of tokens) int
    segments : (batch size, no. of tokens) int
    valid_lens : (batch size,)
    positions, head_index, merge_index, cls_rows : optional
        A packed batch instead (:func:`gluon_bert.packing.pack_tokens`):
        tokens and segments are then (T,), positions (T,), head_index
        (batch size * num_heads, max_len), merge_index (T, num_heads) and
        cls_rows (batch size,), the packed row of each ``<cls>``.  The
        scores are the padded batch's; the per-token layers skip the padding.

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
        if cls_rows is None:
            # The <cls> token's encoding: (batch size, 1, num_hiddens), which
            # the (flattening) Dense layers read as (batch size, num_hiddens)
            cls = F.npx.slice(encoded_X, begin=(None, 0, None),
                              end=(None, 1, None))
        else:
            # Packed: the <cls> rows of (T, num_hiddens)
            cls = F.np.take(encoded_X, cls_rows, axis=0)
        return self.output(self.hidden(cls))


#: Named model sizes: (num_hiddens, ffn_num_hiddens, num_heads, num_blks).
PRESETS = {
    'small': (128, 256, 2, 2),       # the guide's model
    'd2l-small': (256, 512, 4, 2),   # d2l's pretrained 'bert.small'
    'base': (768, 3072, 12, 12),     # BERT_BASE
    'large': (1024, 4096, 16, 24),   # BERT_LARGE
}


def get_bert_model(vocab_size, num_hiddens=128, ffn_num_hiddens=256,
                   num_heads=2, num_blks=2, dropout=0.2, max_len=1000):
    """The book's small BERT by default; see :data:`PRESETS` for others."""
    return BERTModel(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                     num_blks, dropout, max_len)


def parameter_count(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                    num_blks, max_len=1000):
    """Scalar parameters of a BERTModel, computed without building it."""
    h, f = num_hiddens, ffn_num_hiddens
    block = (4 * (h * h + h)         # W_q, W_k, W_v, W_o with biases
             + 2 * 2 * h             # two LayerNorms
             + h * f + f + f * h + h)  # the FFN
    embeddings = vocab_size * h + 2 * h + max_len * h
    heads = ((h * h + h) * 2         # NSP hidden layer, MLM first layer
             + 2 * h                 # MLM LayerNorm
             + h * vocab_size + vocab_size  # MLM output layer
             + h * 2 + 2)            # NSP output layer
    return embeddings + num_blks * block + heads


def estimate_memory(vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                    num_blks, max_len, batch_size, num_devices=1,
                    pos_len=1000, mlm_chunks=8):
    """Rough training memory per device, in bytes, for the fused loss.

    Returns a dict: ``parameters`` (count), ``state`` (weights, gradients and
    Adam's two moments: 16 bytes a parameter), ``activations`` (what one
    device keeps for the backward pass of its share of ``batch_size``) and
    ``per_example`` (activations of one example).  The constants were fitted
    to the small model on a CPU; treat the result as an estimate, not a
    promise.
    """
    count = parameter_count(vocab_size, num_hiddens, ffn_num_hiddens,
                            num_heads, num_blks, pos_len)
    # Per token and block: ~16 hidden-sized tensors (projections, head
    # transposes, dropout masks, residuals, LayerNorm), 4 attention-score
    # rows per head (scores, softmax, dropout mask and output) and 3
    # FFN-sized tensors
    per_token = num_blks * (16 * num_hiddens + 4 * num_heads * max_len
                            + 3 * ffn_num_hiddens)
    # MLM head: log-softmax kept for every slot, plus the backward buffers
    # of one chunk (15 % of the tokens are predicted)
    slots = 0.15 * max_len
    mlm = slots * vocab_size * (1 + 3 / mlm_chunks)
    per_example = 4 * (max_len * per_token + mlm)
    share = -(-batch_size // num_devices)
    return {'parameters': count, 'state': 16 * count,
            'activations': per_example * share, 'per_example': per_example}


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

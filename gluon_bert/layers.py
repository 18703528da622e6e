"""The Transformer's parts as Gluon HybridBlocks with the book's math:
attention over the valid keys, the position-wise FFN, LayerNorm and the
residual AddNorm, assembled into one encoder block.  Shapes are (batch size,
no. of tokens, num_hiddens) unless a Block says otherwise; nothing reads
``.shape`` or branches on data.  All Blocks run in NumPy mode.
"""
import math

from mxnet import npx
from mxnet.gluon import nn

__all__ = ['MultiHeadAttention', 'PositionWiseFFN', 'LayerNorm', 'AddNorm',
           'TransformerEncoderBlock', 'MATRIX_LAYERNORM_WIDTHS',
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
        Bias in the four projections (the book's ``BERTEncoder`` asks for it).

    Inputs
    ------
    X : (batch size, no. of tokens, num_hiddens), or packed (T, num_hiddens)
        (:func:`gluon_bert.packing.pack_batch`)
    valid_lens : (batch size,) or None
        Keys at positions >= valid length get no attention.
    head_index : (batch size * num_heads, no. of tokens) int, packed only
        The row of the packed (T * num_heads, num_hiddens / num_heads) heads
        at every example, head and position.
    merge_index : (T, num_heads) int, packed only
        Each packed token's row, per head, in the attention output.

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

    The same parameters and numbers (to float rounding) as MXNet's LayerNorm;
    on CPUs, at the widths of :data:`MATRIX_LAYERNORM_WIDTHS`, every reduction
    is a ``FullyConnected``, which oneDNN runs faster (see
    ``benchmarks/bench_layernorm.py``); elsewhere MXNet's own kernel runs.

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

"""The d2l book's BERT in PyTorch, with the book's parameter names.

``BERTModel`` and ``BERTClassifier`` have the blocks and ``state_dict``
names of ``d2l.torch.BERTModel`` and the book's PyTorch ``BERTClassifier``,
so an export loads into either with ``strict=True``.  Unlike the book's,
attention masks with ``torch.where`` and every layer has its sizes (no
``LazyLinear``), as ONNX export needs.  Used through :mod:`gluon_bert.interop`.
"""
import math

import torch
from torch import nn

__all__ = ['masked_softmax', 'MultiHeadAttention', 'AddNorm',
           'PositionWiseFFN', 'TransformerEncoderBlock', 'BERTEncoder',
           'BERTModel', 'BERTClassifier']


def masked_softmax(scores, valid_lens):
    """Softmax over the last axis of ``scores`` (batch size * heads, no. of
    queries, no. of keys), the keys beyond each row's ``valid_lens`` (batch
    size * heads,) set to the book's -1e6 first."""
    keys = torch.arange(scores.shape[-1], device=scores.device)
    mask = keys[None, None, :] < valid_lens[:, None, None]
    return nn.functional.softmax(
        torch.where(mask, scores, torch.full_like(scores, -1e6)), dim=-1)


class MultiHeadAttention(nn.Module):
    """The book's multi-head self-attention (with biases, as BERT's).

    Inputs: ``X`` (batch size, no. of tokens, num_hiddens), ``valid_lens``
    (batch size,).  Output: (batch size, no. of tokens, num_hiddens).
    """

    def __init__(self, num_hiddens, num_heads, dropout):
        super().__init__()
        self.num_heads = num_heads
        self.W_q, self.W_k, self.W_v, self.W_o = (
            nn.Linear(num_hiddens, num_hiddens) for _ in range(4))
        self.dropout = nn.Dropout(dropout)

    def _split(self, X):
        # (batch size, no. of tokens, num_hiddens) -> (batch size *
        # num_heads, no. of tokens, num_hiddens / num_heads)
        b, t = X.shape[0], X.shape[1]
        X = X.reshape(b, t, self.num_heads, -1).permute(0, 2, 1, 3)
        return X.reshape(b * self.num_heads, t, -1)

    def forward(self, X, valid_lens):
        q, k, v = (self._split(W(X)) for W in (self.W_q, self.W_k, self.W_v))
        scores = torch.bmm(q, k.transpose(1, 2)) / math.sqrt(q.shape[-1])
        weights = masked_softmax(scores, torch.repeat_interleave(
            valid_lens, self.num_heads, dim=0))
        out = torch.bmm(self.dropout(weights), v)
        b, t = X.shape[0], X.shape[1]
        out = out.reshape(b, self.num_heads, t, -1).permute(0, 2, 1, 3)
        return self.W_o(out.reshape(b, t, -1))


class AddNorm(nn.Module):
    """Residual connection, then LayerNorm.  Inputs: ``X``, ``Y`` (batch
    size, no. of tokens, num_hiddens); output: the same shape."""

    def __init__(self, num_hiddens, dropout):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.ln = nn.LayerNorm(num_hiddens)

    def forward(self, X, Y):
        return self.ln(self.dropout(Y) + X)


class PositionWiseFFN(nn.Module):
    """Two dense layers with a ReLU between.  Input and output: (batch
    size, no. of tokens, num_hiddens)."""

    def __init__(self, ffn_num_hiddens, num_hiddens):
        super().__init__()
        self.dense1 = nn.Linear(num_hiddens, ffn_num_hiddens)
        self.relu = nn.ReLU()
        self.dense2 = nn.Linear(ffn_num_hiddens, num_hiddens)

    def forward(self, X):
        return self.dense2(self.relu(self.dense1(X)))


class TransformerEncoderBlock(nn.Module):
    """Attention and FFN, each with AddNorm.  Inputs: ``X`` (batch size,
    no. of tokens, num_hiddens), ``valid_lens`` (batch size,); output: the
    shape of ``X``."""

    def __init__(self, num_hiddens, ffn_num_hiddens, num_heads, dropout):
        super().__init__()
        self.attention = MultiHeadAttention(num_hiddens, num_heads, dropout)
        self.addnorm1 = AddNorm(num_hiddens, dropout)
        self.ffn = PositionWiseFFN(ffn_num_hiddens, num_hiddens)
        self.addnorm2 = AddNorm(num_hiddens, dropout)

    def forward(self, X, valid_lens):
        Y = self.addnorm1(X, self.attention(X, valid_lens))
        return self.addnorm2(Y, self.ffn(Y))


class BERTEncoder(nn.Module):
    """Token, segment and learnt position embeddings, then the blocks.

    Inputs: ``tokens``, ``segments`` (batch size, no. of tokens) int64,
    ``valid_lens`` (batch size,).  Output: (batch size, no. of tokens,
    num_hiddens).
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                 num_blks, dropout, max_len=1000):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab_size, num_hiddens)
        self.segment_embedding = nn.Embedding(2, num_hiddens)
        self.blks = nn.Sequential(*(TransformerEncoderBlock(
            num_hiddens, ffn_num_hiddens, num_heads, dropout)
            for _ in range(num_blks)))
        self.pos_embedding = nn.Parameter(torch.zeros(1, max_len,
                                                      num_hiddens))

    def forward(self, tokens, segments, valid_lens):
        X = self.token_embedding(tokens) + self.segment_embedding(segments)
        X = X + self.pos_embedding[:, :X.shape[1], :]
        for blk in self.blks:
            X = blk(X, valid_lens)
        return X


class BERTModel(nn.Module):
    """The book's BERTModel: the encoder, the ``<cls>`` hidden layer, the
    MLM and NSP heads.

    Inputs: ``tokens``, ``segments`` (batch size, no. of tokens),
    ``valid_lens`` (batch size,), ``pred_positions`` (batch size, no. of
    predictions) or None.  Outputs: encodings (batch size, no. of tokens,
    num_hiddens), MLM scores (batch size, no. of predictions, vocab_size)
    or None, NSP scores (batch size, 2).
    """

    def __init__(self, vocab_size, num_hiddens, ffn_num_hiddens, num_heads,
                 num_blks, dropout, max_len=1000):
        super().__init__()
        self.encoder = BERTEncoder(vocab_size, num_hiddens, ffn_num_hiddens,
                                   num_heads, num_blks, dropout, max_len)
        self.hidden = nn.Sequential(nn.Linear(num_hiddens, num_hiddens),
                                    nn.Tanh())
        self.mlm = nn.Module()
        self.mlm.mlp = nn.Sequential(
            nn.Linear(num_hiddens, num_hiddens), nn.ReLU(),
            nn.LayerNorm(num_hiddens), nn.Linear(num_hiddens, vocab_size))
        self.nsp = nn.Module()
        self.nsp.output = nn.Linear(num_hiddens, 2)

    def forward(self, tokens, segments, valid_lens, pred_positions=None):
        encoded_X = self.encoder(tokens, segments, valid_lens)
        mlm_Y_hat = None
        if pred_positions is not None:
            # (batch size, no. of predictions, num_hiddens)
            index = pred_positions.long()[:, :, None].expand(
                -1, -1, encoded_X.shape[-1])
            mlm_Y_hat = self.mlm.mlp(torch.gather(encoded_X, 1, index))
        # 0 is the index of the '<cls>' token
        nsp_Y_hat = self.nsp.output(self.hidden(encoded_X[:, 0, :]))
        return encoded_X, mlm_Y_hat, nsp_Y_hat


class BERTClassifier(nn.Module):
    """The book's fine-tuned classifier: the encoder, the ``<cls>`` hidden
    layer and a new output layer.  Inputs as the encoder's; output
    (batch size, num_classes)."""

    def __init__(self, bert, num_classes):
        super().__init__()
        self.encoder = bert.encoder
        self.hidden = bert.hidden
        self.output = nn.Linear(bert.hidden[0].out_features, num_classes)

    def forward(self, tokens, segments, valid_lens):
        encoded_X = self.encoder(tokens, segments, valid_lens)
        return self.output(self.hidden(encoded_X[:, 0, :]))

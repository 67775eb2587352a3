"""The Set-Transformer self-attention block (SAB) used as Meta-GMVAE's set encoder.

Not ``nn.TransformerEncoderLayer`` (docs/official-code.md §2.2 and §9.7): the residual adds the
*projected* queries, the softmax is scaled by 1/sqrt(d_model) (not 1/sqrt(d_head)), there is no
output projection W_O, the feed-forward part is one linear layer with ReLU and a residual, and
there is no LayerNorm, dropout or positional encoding.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class SelfAttentionBlock(nn.Module):
    """One SAB over a set of tokens: ``[B, M, d] -> [B, M, d]``, permutation-equivariant in M."""

    def __init__(self, dim: int = 256, heads: int = 4):
        super().__init__()
        if dim % heads:
            raise ValueError(f"set-encoder width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(dim, dim)
        self.to_v = nn.Linear(dim, dim)
        self.ff = nn.Linear(dim, dim)
        self.scale = 1.0 / math.sqrt(dim)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, m, d = x.shape
        return x.view(b, m, self.heads, d // self.heads).transpose(1, 2)  # [B, h, M, d_h]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.to_q(x)), self._split(self.to_k(x)), self._split(self.to_v(x))
        o = q + F.scaled_dot_product_attention(q, k, v, scale=self.scale)
        o = o.transpose(1, 2).reshape(x.shape)
        return o + F.relu(self.ff(o))


class SetEncoder(nn.Sequential):
    """A stack of :class:`SelfAttentionBlock` (two in the paper): ``[B, M, d] -> [B, M, d]``."""

    def __init__(self, dim: int = 256, heads: int = 4, blocks: int = 2):
        super().__init__(*[SelfAttentionBlock(dim, heads) for _ in range(blocks)])

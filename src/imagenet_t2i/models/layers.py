"""Building blocks shared by DiT-I and CAD-I: sinusoidal embedding, multi-head attention, MLP."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SinusoidalEmbedding(nn.Module):
    """``[cos(x f), sin(x f)]`` with ``f_i = 10000^(-i / (dim/2))`` (the ADM / EDM / PixArt convention).

    ``freqs`` is a persistent buffer because the released CAD-I checkpoint stores it.
    """

    def __init__(self, dim: int, max_period: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"SinusoidalEmbedding needs an even width, got {dim}")
        half = dim // 2
        self.register_buffer("freqs", max_period ** (-torch.arange(half, dtype=torch.float32) / half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        args = x.float()[:, None] * self.freqs.float()[None]  # (N, dim/2)
        return torch.cat([args.cos(), args.sin()], dim=-1)  # (N, dim)


def feed_forward(dim: int, hidden_dim: int, out_dim: int | None = None, approximate: str = "none") -> nn.Sequential:
    """Linear -> GELU -> Linear. Slot 2 is empty (a dropout in the official CAD code) so that the
    weights are named ``0`` and ``3`` as in the released CAD-I checkpoint."""
    return nn.Sequential(
        nn.Linear(dim, hidden_dim),
        nn.GELU(approximate=approximate),
        nn.Identity(),
        nn.Linear(hidden_dim, out_dim or dim),
    )


class Attention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``.

    Self-attention (``dim_kv is None``) projects with one ``qkv`` linear; cross-attention with
    ``q`` (from the queries) and ``kv`` (from the context); both end with ``out``. Heads split the
    inner width as ``(heads, head_dim)``, q/k/v are consecutive chunks: the layout of the official
    CAD code, so its weights load unchanged.
    """

    def __init__(self, dim_q: int, num_heads: int, dim_kv: int | None = None, inner_dim: int | None = None):
        super().__init__()
        inner_dim = inner_dim or dim_q
        if inner_dim % num_heads:
            raise ValueError(f"attention width {inner_dim} is not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.is_self_attention = dim_kv is None
        if self.is_self_attention:
            self.qkv = nn.Linear(dim_q, 3 * inner_dim)
        else:
            self.q = nn.Linear(dim_q, inner_dim)
            self.kv = nn.Linear(dim_kv, 2 * inner_dim)
        self.out = nn.Linear(inner_dim, dim_q)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        return x.view(n, t, self.num_heads, -1).transpose(1, 2)  # (N, H, T, d)

    def forward(
        self,
        x: torch.Tensor,  # (N, Tq, dim_q)
        context: torch.Tensor | None = None,  # (N, Tk, dim_kv); None for self-attention
        key_mask: torch.Tensor | None = None,  # (N, Tk) bool, True = attend
    ) -> torch.Tensor:
        if self.is_self_attention:
            q, k, v = self.qkv(x).chunk(3, dim=-1)
        else:
            q = self.q(x)
            k, v = self.kv(context).chunk(2, dim=-1)
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (N, 1, 1, Tk)
        y = F.scaled_dot_product_attention(self._heads(q), self._heads(k), self._heads(v), attn_mask=mask)
        return self.out(y.transpose(1, 2).flatten(2))  # (N, Tq, dim_q)

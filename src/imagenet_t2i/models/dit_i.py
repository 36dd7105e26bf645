"""DiT-I: a PixArt-alpha-style diffusion transformer with text cross-attention (paper-spec section 4).

The paper never released DiT-I; this follows PixArt-alpha (Chen et al. 2023): patchify conv, fixed
2D sin-cos positions, caption MLP projection, blocks of self-attention / cross-attention to the text /
MLP x4 (GELU tanh), adaLN-single (one shared noise embedding -> 6 x width modulation, plus a learned
per-block shift/scale table), and PixArt's initialisation (zero cross-attention output and final
linear). Epsilon prediction only, so the output has ``in_channels`` channels.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from imagenet_t2i.models.base import T2IModel, records_config
from imagenet_t2i.models.layers import Attention, SinusoidalEmbedding, feed_forward

LN_EPS = 1e-6
FREQ_DIM = 256  # sinusoid width of the noise embedding (PixArt / DiT)


def sincos_2d(dim: int, grid: int, base_size: int | None = None) -> torch.Tensor:
    """Fixed 2D sin-cos positions (MAE/DiT/PixArt), (grid*grid, dim). ``base_size`` rescales the grid
    coordinates to ``[0, base_size)`` (PixArt's interpolation for higher resolutions)."""
    if dim % 4:
        raise ValueError(f"2D sin-cos positions need a width divisible by 4, got {dim}")
    coords = torch.arange(grid, dtype=torch.float64) * ((base_size or grid) / grid)
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))  # (dim/4,)

    def embed(pos: torch.Tensor) -> torch.Tensor:  # (grid*grid,) -> (grid*grid, dim/2)
        args = pos[:, None] * omega[None]
        return torch.cat([args.sin(), args.cos()], dim=1)

    ys, xs = torch.meshgrid(coords, coords, indexing="ij")  # row-major token order
    return torch.cat([embed(xs.flatten()), embed(ys.flatten())], dim=1).float()


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class TimestepEmbedder(nn.Module):
    """gamma*1000 -> sinusoid (256) -> Linear, SiLU, Linear."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.freq = SinusoidalEmbedding(FREQ_DIM)
        self.mlp = nn.Sequential(nn.Linear(FREQ_DIM, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, gamma: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, D)
        return self.mlp(self.freq(gamma * 1000.0).to(self.mlp[0].weight.dtype))


class DiTBlock(nn.Module):
    """adaLN-single block: modulated self-attention, plain cross-attention to text, modulated MLP."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=LN_EPS)
        self.attn = Attention(hidden_size, num_heads)
        self.cross_attn = Attention(hidden_size, num_heads, dim_kv=hidden_size)
        self.norm2 = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=LN_EPS)
        self.mlp = feed_forward(hidden_size, int(hidden_size * mlp_ratio), approximate="tanh")
        self.scale_shift_table = nn.Parameter(torch.randn(6, hidden_size) / hidden_size**0.5)

    def forward(
        self,
        x: torch.Tensor,  # (N, L, D)
        t0: torch.Tensor,  # (N, 6D) shared modulation
        y: torch.Tensor,  # (N, T, D) projected text
        y_mask: torch.Tensor,  # (N, T) bool
    ) -> torch.Tensor:
        mod = self.scale_shift_table[None] + t0.view(t0.shape[0], 6, -1)  # (N, 6, D)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = mod.unsqueeze(2).unbind(1)  # (N, 1, D)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa))
        x = x + self.cross_attn(x, y, key_mask=y_mask)
        return x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))


class FinalLayer(nn.Module):
    """LayerNorm modulated by the noise embedding and a learned table, then Linear to patches."""

    def __init__(self, hidden_size: int, out_dim: int):
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden_size, elementwise_affine=False, eps=LN_EPS)
        self.linear = nn.Linear(hidden_size, out_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(2, hidden_size) / hidden_size**0.5)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # (N, L, D), (N, D)
        shift, scale = (self.scale_shift_table[None] + t[:, None]).chunk(2, dim=1)  # (N, 1, D)
        return self.linear(modulate(self.norm_final(x), shift, scale))  # (N, L, out_dim)


class DiTI(T2IModel):
    """Text-conditioned DiT: ``model(x, gamma, text, text_mask, prev_latents=None) -> (eps, None)``.

    Every sample needs at least one real text token (an all-False mask row gives NaN attention).
    The constructor kwargs are ``model.build_kwargs``; ``DiTIModel`` (`imagenet_t2i.models.diffusers_models`) is the
    diffusers model.
    """

    arch = "dit_i"

    @records_config
    def __init__(
        self,
        in_channels: int,
        input_size: int,
        patch_size: int,
        hidden_size: int,
        depth: int,
        num_heads: int,
        text_dim: int,
        mlp_ratio: float = 4.0,
        pos_base_size: int | None = None,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not a multiple of patch_size {patch_size}")
        self.in_channels, self.input_size, self.patch_size = in_channels, input_size, patch_size
        grid = input_size // patch_size

        self.x_embedder = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_2d(hidden_size, grid, pos_base_size))  # (L, D)
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.y_embedder = feed_forward(text_dim, hidden_size, hidden_size, approximate="tanh")
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size**2 * in_channels)
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """PixArt-alpha init: xavier-uniform linears with zero bias, patch conv as a linear, N(0, 0.02)
        noise/caption MLPs and adaLN-single, zero cross-attention output and final linear."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.weight
        bound = math.sqrt(6.0 / (w.shape[0] + w[0].numel()))  # xavier on the (D, C*p*p) view
        nn.init.uniform_(w, -bound, bound)
        nn.init.zeros_(self.x_embedder.bias)
        small_normal = (
            self.t_embedder.mlp[0], self.t_embedder.mlp[2], self.t_block[1], self.y_embedder[0], self.y_embedder[3]
        )
        for linear in small_normal:
            nn.init.normal_(linear.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.cross_attn.out.weight)
            nn.init.zeros_(block.cross_attn.out.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)

    def forward(
        self,
        x: torch.Tensor,  # (N, C, H, W) noisy latent
        gamma: torch.Tensor,  # (N,) signal variance in [0, 1]
        text: torch.Tensor,  # (N, T, text_dim)
        text_mask: torch.Tensor,  # (N, T) bool, True = real token
        prev_latents: torch.Tensor | None = None,  # ignored (no self-conditioning)
    ) -> tuple[torch.Tensor, None]:
        n, c, h, w = x.shape
        if (c, h, w) != (self.in_channels, self.input_size, self.input_size):
            raise ValueError(
                f"DiT-I built for ({self.in_channels}, {self.input_size}, {self.input_size}) inputs got {(c, h, w)}"
            )
        dtype = self.x_embedder.weight.dtype
        tokens = self.x_embedder(x.to(dtype)).flatten(2).transpose(1, 2) + self.pos_embed  # (N, L, D)
        t = self.t_embedder(gamma)  # (N, D)
        t0 = self.t_block(t)  # (N, 6D)
        y = self.y_embedder(text.to(dtype))  # (N, T, D)
        mask = text_mask.bool()
        for block in self.blocks:
            tokens = block(tokens, t0, y, mask)
        out = self.final_layer(tokens, t)  # (N, L, p*p*C)
        p, g = self.patch_size, h // self.patch_size
        eps = out.view(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)  # (p1 p2 c) order
        return eps, None

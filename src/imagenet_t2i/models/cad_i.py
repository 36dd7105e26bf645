"""CAD-I: a Recurrent Interface Network (RIN) with text cross-attention (paper-spec section 4).

Module and parameter names follow the official code (``CADRINTextCond`` / ``RINTextCond`` of
lucasdegeorge/T2I-ImageNet), so the state dict of the L configuration has exactly the keys and
shapes of the released checkpoint and ``load_state_dict`` reads it directly.

Per RIN block, in execution order: latents read the text context, latents read the data tokens,
``num_processing_layers`` self-attention layers on latents, data tokens read the latents.
"""
from __future__ import annotations

import torch
from torch import nn

from imagenet_t2i.models.base import T2IModel, records_config
from imagenet_t2i.models.layers import Attention, SinusoidalEmbedding, feed_forward

LN_EPS = 1e-6
LAYER_SCALE = 0.1  # LayerScale init of the text self-attention blocks


class TimeEmbedder(nn.Module):
    """Scalar in [0, 1] -> x1000 -> sinusoid (dim/4) -> per-sample standardisation -> MLP to ``dim``."""

    def __init__(self, dim: int, scale: float = 1000.0):
        super().__init__()
        self.scale = scale
        self.encode_time = SinusoidalEmbedding(dim // 4)
        self.map_time = nn.Sequential(nn.Linear(dim // 4, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, value: torch.Tensor) -> torch.Tensor:  # (N,) -> (N, dim)
        emb = self.encode_time(value * self.scale)  # (N, dim/4)
        emb = (emb - emb.mean(-1, keepdim=True)) / emb.std(-1, keepdim=True)
        return self.map_time(emb.to(self.map_time[0].weight.dtype))


class MaskDummy(nn.Module):
    """Holds the 1x1 ``attention_mask_dummy`` that every official attention block stores."""

    def __init__(self):
        super().__init__()
        # Unused in computation; kept so released checkpoints load with strict=True.
        self.register_buffer("attention_mask_dummy", torch.ones(1, 1, dtype=torch.bool))


class SelfAttentionBlock(MaskDummy):
    """Pre-LN self-attention + MLP, optionally with LayerScale on both residual branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: int, layer_scale: float | None = None):
        super().__init__()
        self.initial_ln = nn.LayerNorm(dim, eps=LN_EPS)
        self.sa = Attention(dim, num_heads)
        self.middle_ln = nn.LayerNorm(dim, eps=LN_EPS)
        self.ffn = feed_forward(dim, dim * mlp_ratio)
        self.use_layer_scale = layer_scale is not None
        if self.use_layer_scale:
            self.layer_scale_1 = nn.Parameter(torch.full((dim,), layer_scale))
            self.layer_scale_2 = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # (N, T, D)
        attn = self.sa(self.initial_ln(x), key_mask=mask)
        if self.use_layer_scale:
            x = x + self.layer_scale_1 * attn
            return x + self.layer_scale_2 * self.ffn(self.middle_ln(x))
        x = x + attn
        return x + self.ffn(self.middle_ln(x))


class CrossAttentionBlock(MaskDummy):
    """Queries (LayerNormed) read an unnormalised context at width min(dim_q, dim_kv), then an MLP."""

    def __init__(self, dim_q: int, dim_kv: int, num_heads: int, mlp_ratio: int):
        super().__init__()
        self.initial_to_ln = nn.LayerNorm(dim_q, eps=LN_EPS)
        self.ca = Attention(dim_q, num_heads, dim_kv=dim_kv, inner_dim=min(dim_q, dim_kv))
        self.middle_ln = nn.LayerNorm(dim_q, eps=LN_EPS)
        self.ffn = feed_forward(dim_q, dim_q * mlp_ratio)

    def forward(
        self,
        x: torch.Tensor,  # (N, Tq, dim_q)
        context: torch.Tensor,  # (N, Tk, dim_kv)
        context_mask: torch.Tensor | None = None,  # (N, Tk) bool
    ) -> torch.Tensor:
        x = x + self.ca(self.initial_to_ln(x), context, key_mask=context_mask)
        return x + self.ffn(self.middle_ln(x))


class RINBlock(nn.Module):
    """Text read, data read, latent processing, data write (the official ``RINBlockCond``)."""

    def __init__(
        self,
        data_dim: int,
        latents_dim: int,
        num_processing_layers: int,
        read_write_heads: int,
        compute_heads: int,
        mlp_ratio: int,
    ):
        super().__init__()
        self.retriever_ca = CrossAttentionBlock(latents_dim, data_dim, read_write_heads, mlp_ratio)
        self.processer_sa = nn.ModuleList(
            SelfAttentionBlock(latents_dim, compute_heads, mlp_ratio) for _ in range(num_processing_layers)
        )
        self.writer_ca = CrossAttentionBlock(data_dim, latents_dim, read_write_heads, mlp_ratio)
        self.retrieve_cond = CrossAttentionBlock(latents_dim, latents_dim, read_write_heads, mlp_ratio)

    def forward(
        self,
        data: torch.Tensor,  # (N, L, data_dim)
        latents: torch.Tensor,  # (N, M, latents_dim)
        context: torch.Tensor,  # (N, S, latents_dim)
        context_mask: torch.Tensor,  # (N, S) bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        latents = self.retrieve_cond(latents, context, context_mask)
        latents = self.retriever_ca(latents, data)
        for layer in self.processer_sa:
            latents = layer(latents)
        data = self.writer_ca(data, latents)
        return data, latents


class CADI(T2IModel):
    """RIN text-to-image denoiser: ``model(x, gamma, text, text_mask, prev_latents) -> (eps, latents)``.

    ``coherence=True`` builds the released variant (``CADRINTextCond``): a coherence token, embedded
    like the noise level plus a learned position vector, precedes the text registers. Training
    feeds coherence 1 for kept captions and 0 for dropped ones; guidance contrasts 1 (conditional
    branch) with 0 (unconditional branch). The constructor kwargs are ``model.build_kwargs``; ``CADIModel``
    (`imagenet_t2i.models.diffusers_models`) is the diffusers model.
    """

    arch = "cad_i"

    @records_config
    def __init__(
        self,
        in_channels: int,
        input_size: int,
        patch_size: int,
        data_dim: int,
        num_latents: int,
        latents_dim: int,
        num_blocks: int,
        num_processing_layers: int,
        compute_heads: int,
        text_dim: int,
        coherence: bool = False,
        num_text_registers: int = 16,
        num_text_layers: int = 2,
        text_heads: int = 16,
        read_write_heads: int = 16,
        mlp_ratio: int = 4,
    ):
        super().__init__()
        if input_size % patch_size:
            raise ValueError(f"input_size {input_size} is not a multiple of patch_size {patch_size}")
        if latents_dim % 8:
            raise ValueError(f"latents_dim {latents_dim} must be a multiple of 8 (noise embedding width latents_dim/4)")
        self.in_channels, self.input_size, self.patch_size = in_channels, input_size, patch_size
        self.num_latents, self.latents_dim = num_latents, latents_dim
        self.coherence = coherence
        num_patches = (input_size // patch_size) ** 2

        # Registration order reproduces the released state dict's key order.
        self.patch_extractor = nn.Conv2d(in_channels, data_dim, patch_size, stride=patch_size)
        self.data_pos_embedding = nn.Parameter(torch.empty(num_patches, data_dim))
        self.data_ln = nn.LayerNorm(data_dim, eps=LN_EPS)
        self.latents = nn.Parameter(torch.empty(num_latents, latents_dim))
        self.time_embedder = TimeEmbedder(latents_dim)
        self.transformers_blocks = nn.ModuleList(
            SelfAttentionBlock(latents_dim, text_heads, mlp_ratio, layer_scale=LAYER_SCALE)
            for _ in range(num_text_layers)
        )
        if coherence:
            self.coherence_embedder = TimeEmbedder(latents_dim)
            self.coherence_positional_embedding = nn.Parameter(torch.empty(latents_dim))
        self.map_text_tokens = nn.Linear(text_dim, latents_dim)
        self.text_registers = nn.Parameter(torch.empty(num_text_registers, latents_dim))
        self.linear_previous = nn.Sequential(
            nn.LayerNorm(latents_dim, eps=LN_EPS), feed_forward(latents_dim, latents_dim * mlp_ratio)
        )
        self.ln_previous = nn.LayerNorm(latents_dim, eps=LN_EPS)
        self.rin_blocks = nn.ModuleList(
            RINBlock(data_dim, latents_dim, num_processing_layers, read_write_heads, compute_heads, mlp_ratio)
            for _ in range(num_blocks)
        )
        self.map_tokens_to_patches = nn.Sequential(
            nn.LayerNorm(data_dim, eps=LN_EPS), nn.Linear(data_dim, in_channels * patch_size**2)
        )
        if coherence:
            # All-True masks of [coherence; registers] and [time; coherence; registers]; unused in
            # computation, kept so the released checkpoint loads with strict=True.
            self.register_buffer("registers_coherence_mask", torch.ones(num_text_registers + 1, dtype=torch.bool))
            self.register_buffer("cond_mask", torch.ones(num_text_registers + 2, dtype=torch.bool))
        self.initialize_weights()

    def initialize_weights(self) -> None:
        """Official init: xavier-uniform weights and zero biases for every Linear/Conv, truncated
        normal (std 0.02) learned embeddings, zero LayerNorm on the self-conditioning path."""
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        embeddings = [self.data_pos_embedding, self.latents, self.text_registers]
        if self.coherence:
            embeddings.append(self.coherence_positional_embedding)
        for p in embeddings:
            nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(self.ln_previous.weight)
        nn.init.zeros_(self.ln_previous.bias)

    def text_context(
        self,
        text: torch.Tensor,  # (N, T, text_dim)
        text_mask: torch.Tensor,  # (N, T) bool
        coherence: torch.Tensor | float | None = None,  # (N,) or scalar; None = 1.0 (coherence variant only)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The text side of the forward: [(coherence;) registers; text] after the text self-attention blocks, and its
        mask, (N, P + T, D) and (N, P + T). It depends on neither x nor gamma: the samplers compute it once per batch
        and hand it to every step (``forward(..., context=)``)."""
        n = text.shape[0]
        tokens = self.map_text_tokens(text.to(self.map_text_tokens.weight.dtype))  # (N, T, D)
        prefix = [self.text_registers.expand(n, -1, -1)]  # (N, R, D)
        if self.coherence:
            value = torch.as_tensor(1.0 if coherence is None else coherence, device=text.device, dtype=torch.float32)
            coh = self.coherence_embedder(value.expand(n)) + self.coherence_positional_embedding  # (N, D)
            prefix.insert(0, coh[:, None])
        seq = torch.cat([*prefix, tokens], dim=1)  # (N, P + T, D)
        ones = torch.ones(n, seq.shape[1] - tokens.shape[1], dtype=torch.bool, device=text.device)
        mask = torch.cat([ones, text_mask.bool()], dim=1)  # (N, P + T)
        for block in self.transformers_blocks:
            seq = block(seq, mask)
        return seq, mask

    def _denoise(
        self,
        data: torch.Tensor,  # (N, L, d) embedded patches
        latents: torch.Tensor,  # (N, M, D) initial latents (noise level and previous latents added)
        context: torch.Tensor,  # (N, 1 + P + T, D) [time; text context]
        context_mask: torch.Tensor,  # (N, 1 + P + T) bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The RIN blocks and the patch head. -> (N, L, p*p*C) patches, (N, M, D) latents."""
        for block in self.rin_blocks:
            data, latents = block(data, latents, context, context_mask)
        return self.map_tokens_to_patches(data), latents

    def _with_previous(self, latents: torch.Tensor, prev_latents: torch.Tensor | None) -> torch.Tensor:
        """Initial latents (N, M, D) plus the self-conditioning input (None = zeros)."""
        if prev_latents is None:
            prev_latents = torch.zeros_like(latents)
        return latents + self.ln_previous(prev_latents + self.linear_previous(prev_latents))

    def forward(
        self,
        x: torch.Tensor,  # (N, C, H, W) noisy latent
        gamma: torch.Tensor,  # (N,) signal variance in [0, 1]
        text: torch.Tensor,  # (N, T, text_dim)
        text_mask: torch.Tensor,  # (N, T) bool, True = real token
        prev_latents: torch.Tensor | None = None,  # (N, M, latents_dim) self-conditioning, None = zeros
        coherence: torch.Tensor | float | None = None,  # (N,) or scalar; None = 1.0 (coherence variant only)
        context: tuple[torch.Tensor, torch.Tensor] | None = None,  # `text_context` of (text, text_mask, coherence)
        self_condition: torch.Tensor | None = None,  # (N,) 1 = self-conditioned, 0 = not (training)
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``-> (eps, latents)``. ``context``: `text_context` of the same text, mask and coherence, computed here when
        None. ``self_condition`` (training, instead of ``prev_latents``): RIN self-conditioning in this one call: a
        no-grad pass without previous latents gives latents, fed back to the samples where ``self_condition`` is 1
        (zeros elsewhere); both passes share the patch embedding and the text context, which depend on neither."""
        n, c, h, w = x.shape
        if (c, h, w) != (self.in_channels, self.input_size, self.input_size):
            raise ValueError(
                f"CAD-I built for ({self.in_channels}, {self.input_size}, {self.input_size}) inputs got {(c, h, w)}"
            )
        if self_condition is not None and prev_latents is not None:
            raise ValueError("give CAD-I prev_latents or self_condition, not both")
        data = self.patch_extractor(x.to(self.patch_extractor.weight.dtype)).flatten(2).transpose(1, 2)  # (N, L, d)
        data = self.data_ln(data) + self.data_pos_embedding
        noise = self.time_embedder(gamma)  # (N, D)
        latents = self.latents + noise[:, None]  # (N, M, D)
        seq, seq_mask = context if context is not None else self.text_context(text, text_mask, coherence)
        context_seq = torch.cat([noise[:, None], seq], dim=1)  # (N, 1 + P + T, D)
        context_mask = torch.cat([torch.ones(n, 1, dtype=torch.bool, device=seq_mask.device), seq_mask], dim=1)
        if self_condition is not None:
            with torch.no_grad():
                _, first = self._denoise(data, self._with_previous(latents, None), context_seq, context_mask)
            prev_latents = first * self_condition.to(first.dtype).view(-1, 1, 1)
        out, latents = self._denoise(data, self._with_previous(latents, prev_latents), context_seq, context_mask)
        p, g = self.patch_size, h // self.patch_size
        eps = out.view(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, h, w)  # (p1 p2 c) order
        return eps, latents

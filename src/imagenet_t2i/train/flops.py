"""Model FLOPs per image of DiT-I and CAD-I, counted as ``docs/performance.md`` (shared docs) counts them.

A linear layer mapping ``n`` tokens from width ``a`` to width ``b`` costs ``2 n a b``; attention of ``q`` queries over
``k`` keys at inner width ``w`` costs ``4 q k w`` (scores and weighted sum). Embeddings, norms, adaLN modulation and
the output projection are left out (almost no FLOPs). A training image costs 3 forward passes (forward + backward),
plus one more for CAD-I's self-conditioning pass when it is on.
"""
from __future__ import annotations

H100_BF16_PEAK = 989e12  # H100 SXM dense bf16 FLOP/s: the MFU denominator


def _attention(q: int, k: int, dim_q: int, dim_kv: int, inner: int) -> int:
    """Q/O projections on the queries, K/V projections on the keys, scores + AV."""
    return 2 * q * 2 * dim_q * inner + 2 * k * 2 * dim_kv * inner + 4 * q * k * inner


def _self_attention(n: int, dim: int) -> int:
    return _attention(n, n, dim, dim, dim)


def _mlp(n: int, dim: int, ratio: float) -> int:
    return int(2 * n * 2 * dim * dim * ratio)


def dit_forward_flops(image_tokens: int, text_tokens: int, hidden_size: int, depth: int, mlp_ratio: float = 4.0) -> int:
    """DiT-I forward FLOPs per image: per block self-attention, cross-attention to the text, MLP."""
    n, t, d = image_tokens, text_tokens, hidden_size
    block = _self_attention(n, d) + _attention(n, t, d, d, d) + _mlp(n, d, mlp_ratio)
    return depth * block


def cad_forward_flops(image_tokens: int, text_tokens: int, data_dim: int, num_latents: int, latents_dim: int,
                      num_blocks: int, num_processing_layers: int, coherence: bool = False, num_text_registers: int = 16,
                      num_text_layers: int = 2, mlp_ratio: int = 4) -> int:
    """CAD-I forward FLOPs per image: every attention and MLP over its latent, context and data tokens.

    Context = [noise; (coherence;) registers; text] after ``num_text_layers`` self-attention blocks; per RIN block the
    latents read the context and the data, ``num_processing_layers`` self-attention layers run on the latents, the data
    reads the latents; cross-attention runs at width min(dim_q, dim_kv).
    """
    n, m, dd, ld = image_tokens, num_latents, data_dim, latents_dim
    seq = num_text_registers + int(coherence) + text_tokens  # text self-attention tokens
    ctx = 1 + seq  # + the noise token
    text = num_text_layers * (_self_attention(seq, ld) + _mlp(seq, ld, mlp_ratio))
    prev = _mlp(m, ld, mlp_ratio)  # self-conditioning input MLP on the latents
    inner = min(dd, ld)
    block = (_attention(m, ctx, ld, ld, ld) + _mlp(m, ld, mlp_ratio)  # latents read the context
             + _attention(m, n, ld, dd, inner) + _mlp(m, ld, mlp_ratio)  # latents read the data
             + num_processing_layers * (_self_attention(m, ld) + _mlp(m, ld, mlp_ratio))
             + _attention(n, m, dd, ld, inner) + _mlp(n, dd, mlp_ratio))  # data reads the latents
    return text + prev + num_blocks * block


def forward_flops(arch: str, model_cfg: dict, text_tokens: int) -> int:
    """Forward FLOPs per image of a model given its constructor kwargs (``SIZES`` entries, ``model.config``)."""
    image_tokens = (model_cfg["input_size"] // model_cfg["patch_size"]) ** 2
    if arch == "dit_i":
        return dit_forward_flops(image_tokens, text_tokens, model_cfg["hidden_size"], model_cfg["depth"],
                                 model_cfg.get("mlp_ratio", 4.0))
    if arch == "cad_i":
        keys = ("data_dim", "num_latents", "latents_dim", "num_blocks", "num_processing_layers", "coherence",
                "num_text_registers", "num_text_layers", "mlp_ratio")
        return cad_forward_flops(image_tokens, text_tokens, **{k: model_cfg[k] for k in keys if k in model_cfg})
    raise ValueError(f"no FLOP count for arch {arch!r}")


def training_flops(forward: int, self_conditioning: bool = False) -> int:
    """FLOPs per training image: forward + backward (3 x forward), + one no-grad forward for self-conditioning."""
    return forward * (4 if self_conditioning else 3)


def mfu(images_per_s: float, flops_per_image: float, peak: float = H100_BF16_PEAK) -> float:
    """Model FLOP utilisation: achieved model FLOP/s over the peak."""
    return images_per_s * flops_per_image / peak

"""The paper's training objective: epsilon prediction with CutMix/Crop swaps, CFG dropout, self-conditioning."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from imagenet_t2i.diffusion.schedule import add_noise, flow_gamma, linear_gamma
from imagenet_t2i.models import unwrap_model


@dataclass
class Batch:
    """One training batch of latents and padded text."""

    x0: torch.Tensor  # (N, C, h, w) scaled latents
    text: torch.Tensor  # (N, T, D)
    mask: torch.Tensor  # (N, T) bool, True = real token


@dataclass
class AugmentSource:
    """An image-augmentation set mixed into training: swap iff t > tau and u < p."""

    batch: Batch
    tau: float
    p: float


def _rand(shape: tuple[int, ...] | int, generator: torch.Generator, device: torch.device, normal: bool = False) -> torch.Tensor:
    """Draw on the CPU generator (reproducible on any device), then move."""
    shape = (shape,) if isinstance(shape, int) else shape
    return (torch.randn if normal else torch.rand)(shape, generator=generator).to(device, non_blocking=True)


# Per-sample decisions (which samples are swapped, dropped, self-conditioned) are taken on the CPU, where their
# draws are made, and only the masks move to the device: no GPU->host synchronisation in a training step.


def pad_to(text: torch.Tensor, mask: torch.Tensor, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-pad (N, T, D) text and its (N, T) mask to ``length`` tokens."""
    extra = length - text.shape[1]
    if extra <= 0:
        return text, mask
    return F.pad(text, (0, 0, 0, extra)), F.pad(mask, (0, extra), value=False)


def mix_batches(base: Batch, t: torch.Tensor, sources: list[AugmentSource], generator: torch.Generator) -> tuple[Batch, torch.Tensor]:
    """Replace samples by their augmented counterparts (latent AND caption) by the timestep rule.

    Sources are tried in order; a sample swapped by one source is not swapped again. ``t`` is (N,) on the
    CPU (the draw the timesteps came from). Returns the mixed batch and the (N,) long CPU tensor of the
    source index used (0 = base, i + 1 = sources[i]).
    """
    n, device = t.shape[0], base.x0.device
    chosen = torch.zeros(n, dtype=torch.long)
    x0, text, mask = base.x0, base.text, base.mask
    for i, src in enumerate(sources):
        u = torch.rand(n, generator=generator)  # (N,) CPU
        swap = (t > src.tau) & (u < src.p) & (chosen == 0)
        if not swap.any():
            continue
        length = max(text.shape[1], src.batch.text.shape[1])
        text, mask = pad_to(text, mask, length)
        s_text, s_mask = pad_to(src.batch.text, src.batch.mask, length)
        on = swap.to(device, non_blocking=True)
        x0 = torch.where(on.view(-1, 1, 1, 1), src.batch.x0, x0)
        text = torch.where(on.view(-1, 1, 1), s_text, text)
        mask = torch.where(on.view(-1, 1), s_mask, mask)
        chosen[swap] = i + 1
    return Batch(x0, text, mask), chosen


def drop_captions(
    batch: Batch, uncond: torch.Tensor, p: float, generator: torch.Generator
) -> tuple[Batch, torch.Tensor]:
    """Classifier-free guidance training: replace the caption by the unconditional one with probability p.

    ``uncond`` is the (L0, D) encoding of the empty caption; its mask is True on its L0 tokens.
    Returns the batch and the (N,) bool tensor of dropped samples (on the batch's device).
    """
    n, device = batch.x0.shape[0], batch.x0.device
    drop_host = torch.rand(n, generator=generator) < p  # (N,) CPU
    drop = drop_host.to(device, non_blocking=True)
    if not drop_host.any():
        return batch, drop
    length = max(batch.text.shape[1], uncond.shape[0])
    text, mask = pad_to(batch.text, batch.mask, length)
    u_text = F.pad(uncond, (0, 0, 0, length - uncond.shape[0])).to(text)  # (T, D)
    u_mask = torch.arange(length, device=mask.device) < uncond.shape[0]  # (T,)
    text = torch.where(drop.view(-1, 1, 1), u_text.expand_as(text), text)
    mask = torch.where(drop.view(-1, 1), u_mask.expand_as(mask), mask)
    return Batch(batch.x0, text, mask), drop


def diffusion_loss(
    model: torch.nn.Module,
    base: Batch,
    sources: list[AugmentSource],
    uncond: torch.Tensor,
    generator: torch.Generator,
    cfg_dropout: float = 0.1,
    self_cond_rate: float = 0.0,
    objective: str = "eps",
) -> tuple[torch.Tensor, dict]:
    """One training loss: the paper's eps-prediction MSE (gamma = 1 - t, unweighted) by default.

    Order (official): draw t, swap in CutMix/Crop samples by the timestep rule, drop captions for
    CFG, noise, then (``self_cond_rate > 0``) RIN self-conditioning: each sample is fed back, with
    probability ``self_cond_rate``, the latents of a no-grad pass without previous latents (zeros, the
    no-self-conditioning input, otherwise); the model runs both passes in one call (CAD-I's
    ``self_condition``). A model with a coherence token (CAD-I ``coherence=True``) gets coherence 1 for
    kept captions and 0 for dropped ones.
    ``objective="flow"`` (an extension, not the paper) trains rectified flow instead:
    x_t = (1 - t) x0 + t eps, target v = eps - x0, the network still conditioned on the signal
    variance gamma = (1 - t)^2 / ((1 - t)^2 + t^2).
    """
    n, device = base.x0.shape[0], base.x0.device
    t_host = torch.rand(n, generator=generator)  # (N,) CPU: the same draw _rand makes
    t = t_host.to(device, non_blocking=True)
    batch, chosen = mix_batches(base, t_host, sources, generator)
    batch, dropped = drop_captions(batch, uncond, cfg_dropout, generator)
    eps = _rand(tuple(batch.x0.shape), generator, device, normal=True)
    if objective == "flow":
        gamma = flow_gamma(t)
        tv = t.view(-1, 1, 1, 1)
        x_t, target = (1 - tv) * batch.x0 + tv * eps, eps - batch.x0
    else:
        gamma = linear_gamma(t)
        x_t, target = add_noise(batch.x0, eps, gamma), eps
    kwargs = {"coherence": (~dropped).float()} if getattr(unwrap_model(model), "coherence", False) else {}
    if self_cond_rate > 0:
        feed = torch.rand(n, generator=generator) < self_cond_rate  # (N,) on the CPU: one draw per sample
        if feed.any():  # the model's no-grad first pass feeds its latents back where feed is 1
            kwargs["self_condition"] = feed.to(device=device, dtype=torch.float32, non_blocking=True)
    pred, _ = model(x_t, gamma, batch.text, batch.mask, **kwargs)
    loss = F.mse_loss(pred.float(), target)
    stats = {f"frac_source_{i}": (chosen == i).float().mean().item() for i in range(1, len(sources) + 1)}
    return loss, stats

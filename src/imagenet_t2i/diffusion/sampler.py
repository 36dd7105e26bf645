"""DDIM sampling with the cosine inference schedule, classifier-free guidance and the x0 clamp."""
from __future__ import annotations

import torch
from tqdm import tqdm

from imagenet_t2i.diffusion.objective import pad_to
from imagenet_t2i.diffusion.schedule import cosine_gamma, flow_gamma
from imagenet_t2i.models import unwrap_model


def guided_inputs(
    model: torch.nn.Module,
    text: torch.Tensor,  # (N, T, D)
    mask: torch.Tensor,  # (N, T)
    uncond: torch.Tensor,  # (L0, D)
) -> dict[str, torch.Tensor | tuple[torch.Tensor, torch.Tensor]]:
    """The text inputs of a guided batch of 2N, the same at every sampling step: conditional half, then unconditional.

    ``text`` / ``text_mask``, and for CAD-I ``coherence`` (1 for the conditional half, 0 for the other) and
    ``context``: its text context (`CADI.text_context`), computed once here instead of at every step.
    """
    n = text.shape[0]
    length = max(text.shape[1], uncond.shape[0])
    text, mask = pad_to(text, mask, length)
    u_text = torch.zeros(n, length, text.shape[2], dtype=text.dtype, device=text.device)
    u_text[:, : uncond.shape[0]] = uncond
    u_mask = (torch.arange(length, device=mask.device) < uncond.shape[0]).expand(n, length)
    inputs = {"text": torch.cat([text, u_text]), "text_mask": torch.cat([mask, u_mask])}
    network = unwrap_model(model)
    if getattr(network, "coherence", False):
        inputs["coherence"] = torch.cat([torch.ones(n, device=text.device), torch.zeros(n, device=text.device)])  # (2N,)
    if hasattr(network, "text_context"):
        inputs["context"] = network.text_context(inputs["text"], inputs["text_mask"], inputs.get("coherence"))
    return inputs


def guided_eps(
    model: torch.nn.Module,
    x: torch.Tensor,  # (N, C, h, w)
    gamma: torch.Tensor,  # (N,)
    inputs: dict,  # `guided_inputs`
    guidance: float,
    prev_latents: torch.Tensor | None,  # (2N, L, d) or None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """eps = eps_u + s (eps_c - eps_u), conditional and unconditional halves in one batch of 2N."""
    text, mask = inputs["text"], inputs["text_mask"]
    extra = {k: v for k, v in inputs.items() if k not in ("text", "text_mask")}
    eps, latents = model(torch.cat([x, x]), torch.cat([gamma, gamma]), text, mask, prev_latents=prev_latents, **extra)
    eps_c, eps_u = eps.chunk(2)
    eps_c, eps_u = eps_c.float(), eps_u.float()
    return eps_u + guidance * (eps_c - eps_u), latents


@torch.no_grad()
def ddim_sample(
    model: torch.nn.Module,
    text: torch.Tensor,  # (N, T, D)
    mask: torch.Tensor,  # (N, T) bool
    uncond: torch.Tensor,  # (L0, D)
    shape: tuple[int, int, int],  # (C, h, w)
    steps: int = 250,
    guidance: float = 9.0,
    clamp: float | None = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    noise: torch.Tensor | None = None,  # (N, C, h, w) x_T; drawn with ``generator`` when None
) -> torch.Tensor:
    """Deterministic DDIM from t = 1 to t = 0; returns x0 (N, C, h, w) in latent scale.

    At each step: predict eps (guided), recover x0, clamp it to +-clamp, recompute eps from the
    clamped x0, then move to the next gamma. CAD-I's latents are carried between steps
    (self-conditioning at inference).
    """
    n = text.shape[0]
    x = (torch.randn((n, *shape), generator=generator) if noise is None else noise).to(text.device)
    ts = torch.linspace(1.0, 0.0, steps + 1, device=text.device)
    prev = None
    inputs = guided_inputs(model, text, mask, uncond)
    for i in tqdm(range(steps), disable=not progress, desc="ddim", leave=False):
        g = cosine_gamma(ts[i]).expand(n)
        g_next = cosine_gamma(ts[i + 1]).expand(n)
        eps, prev = guided_eps(model, x, g, inputs, guidance, prev)
        gv, gnv = g.view(-1, 1, 1, 1), g_next.view(-1, 1, 1, 1)
        x0 = (x - (1 - gv).sqrt() * eps) / gv.sqrt()
        if clamp is not None:
            x0 = x0.clamp(-clamp, clamp)
            eps = (x - gv.sqrt() * x0) / (1 - gv).sqrt()
        x = gnv.sqrt() * x0 + (1 - gnv).sqrt() * eps
    return x0


@torch.no_grad()
def flow_sample(
    model: torch.nn.Module,
    text: torch.Tensor,  # (N, T, D)
    mask: torch.Tensor,  # (N, T) bool
    uncond: torch.Tensor,  # (L0, D)
    shape: tuple[int, int, int],  # (C, h, w)
    steps: int = 50,
    guidance: float = 5.0,
    clamp: float | None = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    noise: torch.Tensor | None = None,  # (N, C, h, w) x_T; drawn with ``generator`` when None
) -> torch.Tensor:
    """Euler integration of a rectified-flow model (the `flow` extension) from t = 1 to t = 0, guided velocity."""
    n = text.shape[0]
    x = (torch.randn((n, *shape), generator=generator) if noise is None else noise).to(text.device)
    ts = torch.linspace(1.0, 0.0, steps + 1, device=text.device)
    prev = None
    inputs = guided_inputs(model, text, mask, uncond)
    for i in tqdm(range(steps), disable=not progress, desc="flow", leave=False):
        v, prev = guided_eps(model, x, flow_gamma(ts[i]).expand(n), inputs, guidance, prev)
        x = x + (ts[i + 1] - ts[i]) * v
    return x.clamp(-clamp, clamp) if clamp is not None else x


SAMPLERS = {"eps": ddim_sample, "flow": flow_sample}

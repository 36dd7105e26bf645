"""DDIM and DDPM sampling with classifier-free guidance and the x0 clamp, on the cosine inference schedule (the
official sampler's) or the linear one (the released CAD-I pipeline's); rectified-flow Euler sampling."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from tqdm import tqdm

from imagenet_t2i.diffusion.objective import pad_to
from imagenet_t2i.diffusion.schedule import cosine_gamma, flow_gamma, linear_gamma
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


SCHEDULES = {"cosine": cosine_gamma, "linear": linear_gamma}


def _x0_and_eps(x: torch.Tensor, eps: torch.Tensor, g: torch.Tensor,
                clamp: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """x0 from x_t and eps at gamma g (N, 1, 1, 1); with ``clamp``: x0 clamped to +-clamp and eps recomputed."""
    x0 = (x - (1 - g).sqrt() * eps) / g.sqrt()
    if clamp is not None:
        x0 = x0.clamp(-clamp, clamp)
        eps = (x - g.sqrt() * x0) / (1 - g).sqrt()
    return x0, eps


def _eps(model: torch.nn.Module, x: torch.Tensor, g: torch.Tensor, inputs: dict, guidance: float,
         prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The guided eps of an eps-prediction model at x, gamma g (N, 1, 1, 1)."""
    return guided_eps(model, x, g.view(-1), inputs, guidance, prev)


def _flow_eps(model: torch.nn.Module, x: torch.Tensor, g: torch.Tensor, inputs: dict, guidance: float,
              prev: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """eps of a rectified-flow model at the variance-preserving point x = sqrt(g) x0 + sqrt(1 - g) eps.

    The flow path x_t = (1 - t) x0 + t eps is that point scaled by s = 1 / (sqrt(g) + sqrt(1 - g)); with the
    guided velocity v = eps - x0 there, eps = x_t + (1 - t) v and 1 - t = sqrt(g) s (g (N, 1, 1, 1))."""
    scale = 1 / (g.sqrt() + (1 - g).sqrt())
    x_t = x * scale
    v, prev = guided_eps(model, x_t, g.view(-1), inputs, guidance, prev)
    return x_t + g.sqrt() * scale * v, prev


def _denoise(model: torch.nn.Module, text: torch.Tensor, mask: torch.Tensor, uncond: torch.Tensor,
             shape: tuple[int, int, int], steps: int, guidance: float, clamp: float | None,
             generator: torch.Generator | None, progress: bool, noise: torch.Tensor | None, schedule: str,
             unguided_steps: int, desc: str,
             step: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
             objective: str = "eps") -> torch.Tensor:
    """The loop DDIM and DDPM share, t = 1 -> 0 on ``schedule``: guided eps (conditional only for the first
    ``unguided_steps`` steps), x0 recovered and clamped, eps recomputed, then ``step(i, x, x0, eps, g, g_next)``
    (gammas (N, 1, 1, 1)) gives the next x. CAD-I's latents are carried between steps. -> the last x0.

    ``objective`` flow: the model predicts the rectified-flow velocity; it is read at the flow path's point and time
    of each gamma (`_flow_eps`), and ``schedule`` is ignored for the flow's own, gamma = `flow_gamma` (t)."""
    n = text.shape[0]
    x = (torch.randn((n, *shape), generator=generator) if noise is None else noise).to(text.device)  # (N, C, h, w)
    ts = torch.linspace(1.0, 0.0, steps + 1, device=text.device)
    gamma = flow_gamma if objective == "flow" else SCHEDULES[schedule]
    predict = _flow_eps if objective == "flow" else _eps
    prev = None
    inputs = guided_inputs(model, text, mask, uncond)
    for i in tqdm(range(steps), disable=not progress, desc=desc, leave=False):
        g, g_next = (gamma(ts[j]).expand(n).view(-1, 1, 1, 1) for j in (i, i + 1))
        eps, prev = predict(model, x, g, inputs, 1.0 if i < unguided_steps else guidance, prev)
        x0, eps = _x0_and_eps(x, eps, g, clamp)
        x = step(i, x, x0, eps, g, g_next)
    return x0


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
    schedule: str = "cosine",
    unguided_steps: int = 0,
    step_generators: list[torch.Generator] | None = None,  # unused: DDIM is deterministic
) -> torch.Tensor:
    """Deterministic DDIM from t = 1 to t = 0; returns x0 (N, C, h, w) in latent scale.

    At each step: predict eps (guided; the first ``unguided_steps`` steps conditional only, as the released
    pipeline's step 0), recover x0, clamp it to +-clamp, recompute eps from the clamped x0, then move to the next
    gamma of ``schedule``. CAD-I's latents are carried between steps (self-conditioning at inference).
    """
    def step(i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, g: torch.Tensor,
             g_next: torch.Tensor) -> torch.Tensor:
        return g_next.sqrt() * x0 + (1 - g_next).sqrt() * eps

    return _denoise(model, text, mask, uncond, shape, steps, guidance, clamp, generator, progress, noise, schedule,
                    unguided_steps, "ddim", step)


@torch.no_grad()
def ddpm_sample(
    model: torch.nn.Module,
    text: torch.Tensor,  # (N, T, D)
    mask: torch.Tensor,  # (N, T) bool
    uncond: torch.Tensor,  # (L0, D)
    shape: tuple[int, int, int],  # (C, h, w)
    steps: int = 1000,
    guidance: float = 9.0,
    clamp: float | None = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    noise: torch.Tensor | None = None,  # (N, C, h, w) x_T; drawn with ``generator`` when None
    schedule: str = "cosine",
    unguided_steps: int = 0,
    step_generators: list[torch.Generator] | None = None,  # one per sample: its step noise (batch-size invariant)
    objective: str = "eps",
) -> torch.Tensor:
    """Ancestral DDPM from t = 1 to t = 0 (the official test sampler, 1,000 steps); returns x0 (N, C, h, w).
    ``objective`` flow: a rectified-flow model sampled the same way on its own path (`_denoise`), a stochastic
    alternative to its Euler ODE (`flow_sample`).

    At each step: guided eps, x0 recovered and clamped as in DDIM, then x_next drawn from the posterior
    q(x_next | x_t, x0): with a = g / g_next, mean = sqrt(g_next) (1 - a) / (1 - g) x0
    + sqrt(a) (1 - g_next) / (1 - g) x_t and variance (1 - g_next) / (1 - g) (1 - a); no noise at the last step.
    Sample n's step noise comes from ``step_generators[n]`` (else ``generator``), on the CPU.
    """
    def step(i: int, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor, g: torch.Tensor,
             g_next: torch.Tensor) -> torch.Tensor:
        a = g / g_next
        mean = g_next.sqrt() * (1 - a) / (1 - g) * x0 + a.sqrt() * (1 - g_next) / (1 - g) * x
        if i == steps - 1:
            return mean
        if step_generators is not None:
            z = torch.cat([torch.randn((1, *shape), generator=gen) for gen in step_generators])
        else:
            z = torch.randn(x.shape, generator=generator)
        return mean + ((1 - g_next) / (1 - g) * (1 - a)).sqrt() * z.to(x.device)

    return _denoise(model, text, mask, uncond, shape, steps, guidance, clamp, generator, progress, noise, schedule,
                    unguided_steps, "ddpm", step, objective)


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
    schedule: str = "cosine",  # unused: the flow's own time
    unguided_steps: int = 0,
    step_generators: list[torch.Generator] | None = None,  # unused: deterministic
) -> torch.Tensor:
    """Euler integration of a rectified-flow model (the `flow` extension) from t = 1 to t = 0, guided velocity."""
    n = text.shape[0]
    x = (torch.randn((n, *shape), generator=generator) if noise is None else noise).to(text.device)
    ts = torch.linspace(1.0, 0.0, steps + 1, device=text.device)
    prev = None
    inputs = guided_inputs(model, text, mask, uncond)
    for i in tqdm(range(steps), disable=not progress, desc="flow", leave=False):
        v, prev = guided_eps(model, x, flow_gamma(ts[i]).expand(n), inputs, 1.0 if i < unguided_steps else guidance,
                             prev)
        x = x + (ts[i + 1] - ts[i]) * v
    return x.clamp(-clamp, clamp) if clamp is not None else x


SAMPLERS = {("eps", "ddim"): ddim_sample, ("eps", "ddpm"): ddpm_sample, ("flow", "ddim"): flow_sample,
            ("flow", "ddpm"): partial(ddpm_sample, objective="flow")}

"""Denoising profile: how well a model recovers x0 from one noisy input, per noise level, beside trivial baselines.

A cheap check of a checkpoint (seconds on a CPU at tiny size, one forward pass per sample and level on a GPU at
paper scale) that the training loss hides: an eps error is an x0 error divided by (1 - gamma) / gamma, so a
model that is worse than predicting zero at low gamma (the first sampling steps) can still show a small loss,
and its samples are noise. For each signal variance gamma:

    x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps,   x0_hat = (x_t - sqrt(1 - gamma) eps_hat) / sqrt(gamma)

(a ``flow`` model sees the same point of its own path, x_t scaled by (1 - t) / sqrt(gamma), and
x0_hat = x_t - t v_hat), with the sample's caption, one pass, no self-conditioning input (CAD-I's first
sampling step), coherence 1. Reported: the mean squared error of x0_hat over every latent element, and of the
two trivial predictions, zero (= E[x0^2]) and x_t / sqrt(gamma) (= (1 - gamma) / gamma E[eps^2]). The samples,
their posterior draws and the noise are fixed by ``seed``: two models profiled on one shard set see the same
x_t, so their numbers compare pairwise.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from imagenet_t2i.diffusion.schedule import add_noise
from imagenet_t2i.io import read_json
from imagenet_t2i.models import unwrap_model
from imagenet_t2i.shards.reader import ShardStream
from imagenet_t2i.shards.writer import MANIFEST

GAMMAS = (0.9, 0.5, 0.2, 0.05, 0.01)
BASELINES = ("predict_zero", "predict_scaled_xt")


def fixed_samples(shard_dir: str | os.PathLike, num_samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The first ``num_samples`` of the shard set in the stream order of ``seed``, z drawn from the stored posterior
    and scaled. -> x0 (N, C, h, w), text (N, T, D), mask (N, T); fewer samples than asked when the set is smaller."""
    manifest = read_json(Path(shard_dir) / MANIFEST)
    n = min(num_samples, sum(int(e["num_samples"]) for e in manifest["shards"]))
    with ShardStream(shard_dir, n, seed=seed, prefetch=0) as stream:
        raw = next(iter(stream))
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(raw["mean"].shape, generator=generator)
    x0 = (raw["mean"].float() + raw["std"].float() * noise) * manifest["autoencoder"]["scale_factor"]
    return x0, raw["text"].float(), raw["mask"]


def _point(x0: torch.Tensor, eps: torch.Tensor, gamma: float, objective: str) -> tuple[torch.Tensor, float]:
    """The model input at signal variance ``gamma`` on ``objective``'s path. -> x_t, t (flow) or nan."""
    x_vp = add_noise(x0, eps, torch.full((x0.shape[0],), gamma))
    if objective == "flow":
        t = 1.0 / (1.0 + math.sqrt(gamma / (1.0 - gamma)))  # flow_gamma(t) = gamma
        return x_vp * ((1.0 - t) / math.sqrt(gamma)), t
    return x_vp, math.nan


@torch.no_grad()
def denoise_profile(model: torch.nn.Module, x0: torch.Tensor, text: torch.Tensor, mask: torch.Tensor,
                    gammas: Sequence[float] = GAMMAS, objective: str = "eps", seed: int = 0, batch_size: int = 256,
                    device: str | torch.device = "cpu") -> dict:
    """x0-prediction MSE of ``model`` and of the trivial predictions at every gamma (module docstring).

    x0 (N, C, h, w), text (N, T, D), mask (N, T). The noise of level k is drawn from ``seed`` and k only.
    Returns {"gammas", "x0_mse": {"model", "predict_zero", "predict_scaled_xt"} (one value per gamma), "num_samples"}.
    """
    if objective not in ("eps", "flow"):
        raise ValueError(f"unknown objective {objective!r} (eps | flow)")
    device = torch.device(device)
    model = model.to(device).eval()
    kwargs = {"coherence": torch.ones(x0.shape[0])} if getattr(unwrap_model(model), "coherence", False) else {}
    result = {name: [] for name in ("model", *BASELINES)}
    for k, gamma in enumerate(gammas):
        if not 0 < gamma < 1:
            raise ValueError(f"noise level gamma={gamma} must lie in (0, 1)")
        eps = torch.randn(x0.shape, generator=torch.Generator().manual_seed(int(seed) * 1000 + k))  # (N, C, h, w)
        x_t, t = _point(x0, eps, gamma, objective)
        g = float(gamma)
        err = 0.0
        for s in range(0, x0.shape[0], batch_size):
            sl = slice(s, s + batch_size)
            n = x_t[sl].shape[0]
            extra = {key: v[sl].to(device) for key, v in kwargs.items()}
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out, _ = model(x_t[sl].to(device), torch.full((n,), g, device=device), text[sl].to(device),
                               mask[sl].to(device), **extra)
            out = out.float().cpu()
            x_hat = x_t[sl] - t * out if objective == "flow" else (x_t[sl] - math.sqrt(1 - g) * out) / math.sqrt(g)
            err += float(((x_hat - x0[sl]) ** 2).sum())
        size = x0.numel()
        result["model"].append(err / size)
        result["predict_zero"].append(float((x0**2).sum()) / size)
        result["predict_scaled_xt"].append(float((((1 - g) / g) * eps**2).sum()) / size)
    return {"gammas": [float(g) for g in gammas], "x0_mse": result, "num_samples": int(x0.shape[0])}


def format_profile(profile: dict) -> str:
    """A printable table: gamma, model, both baselines, model / best baseline."""
    lines = [f"{'gamma':>7} {'model':>10} {'predict 0':>10} {'x_t/sqrt(g)':>12} {'model/best':>10}"]
    mse = profile["x0_mse"]
    for i, g in enumerate(profile["gammas"]):
        best = min(mse[b][i] for b in BASELINES)
        lines.append(f"{g:>7.3g} {mse['model'][i]:>10.4g} {mse['predict_zero'][i]:>10.4g} "
                     f"{mse['predict_scaled_xt'][i]:>12.4g} {mse['model'][i] / max(best, 1e-12):>10.3f}")
    return "\n".join(lines)


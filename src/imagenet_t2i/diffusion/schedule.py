"""Noise schedules, written as gamma(t) = signal variance at time t in [0, 1]."""
from __future__ import annotations

import math

import torch

GAMMA_MIN = 1e-9


def linear_gamma(t: torch.Tensor) -> torch.Tensor:
    """Training schedule of the paper: gamma = 1 - t, clamped to >= 1e-9."""
    return (1.0 - t).clamp(min=GAMMA_MIN)


def cosine_gamma(t: torch.Tensor, start: float = 2e-4, tau: float = 2.5e-4) -> torch.Tensor:
    """Inference schedule of the official sampler: cos^2(((t + 2e-4) / (1 + 2.5e-4)) * pi / 2)."""
    return torch.cos((t + start) / (1.0 + tau) * math.pi / 2).pow(2).clamp(min=GAMMA_MIN)


def add_noise(x0: torch.Tensor, eps: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps, gamma per sample (N,)."""
    g = gamma.view(-1, *([1] * (x0.dim() - 1)))
    return g.sqrt() * x0 + (1.0 - g).sqrt() * eps


def flow_gamma(t: torch.Tensor) -> torch.Tensor:
    """Signal variance of the rectified-flow path x_t = (1 - t) x0 + t eps (the `flow` extension)."""
    a, b = (1 - t) ** 2, t**2
    return (a / (a + b)).clamp(min=GAMMA_MIN)

"""Autoencoders that map images to the latent space the diffusion models train in.

Tiny scale uses `PixelAutoencoder` (identity: the "latent" is the image itself); paper scale uses
`SDVAE`, the Stable Diffusion KL-f8 VAE. Both store the posterior mean and std; training samples
``z = mean + std * noise`` and multiplies by ``scale_factor``; `decode` takes the unscaled ``z``.
"""
from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

PAPER_VAE = "stabilityai/sd-vae-ft-ema"


@runtime_checkable
class Autoencoder(Protocol):
    latent_channels: int
    downsample: int
    scale_factor: float

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, H, W) in [-1, 1] -> posterior (mean, std), each (N, C, H/downsample, W/downsample) float32."""
        ...

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Unscaled latents (N, C, h, w) -> images (N, 3, h*downsample, w*downsample) float32 in [-1, 1]."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the autoencoder (goes into shard manifests and provenance)."""
        ...


class PixelAutoencoder:
    """Identity autoencoder: the latent is the image, with a zero posterior std."""

    latent_channels = 3
    downsample = 1
    scale_factor = 1.0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = x.float()  # (N, 3, H, W)
        return mean, torch.zeros_like(mean)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z.float().clamp(-1.0, 1.0)

    def describe(self) -> dict[str, Any]:
        return {"backend": "pixel", "latent_channels": 3, "downsample": 1, "scale_factor": 1.0}


class SDVAE:
    """A diffusers `AutoencoderKL` (SD KL-f8 at paper scale: 256x256x3 -> 4x32x32), fp32 (the paper) or bf16."""

    def __init__(self, path_or_id: str = PAPER_VAE, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32):
        from diffusers import AutoencoderKL  # slow import, only when this backend is used

        self.path = str(path_or_id)
        self.device = torch.device(device)
        self.dtype = dtype
        self.vae = AutoencoderKL.from_pretrained(self.path, dtype=dtype).to(self.device).eval()
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed batch shapes: let cuDNN pick the fastest convolutions
        cfg = self.vae.config
        self.latent_channels = int(cfg.latent_channels)
        self.downsample = 2 ** (len(cfg.block_out_channels) - 1)
        self.scale_factor = float(cfg.scaling_factor)

    @torch.inference_mode()
    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        posterior = self.vae.encode(to_device(x, self.device, self.dtype)).latent_dist
        return posterior.mean.float(), posterior.std.float()  # (N, C, h, w) each, on self.device

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        x = self.vae.decode(to_device(z, self.device, self.dtype)).sample  # (N, 3, H, W)
        return x.float().clamp(-1.0, 1.0)

    def describe(self) -> dict[str, Any]:
        return {"backend": "sd_vae", "path": self.path, "dtype": str(self.dtype).removeprefix("torch."),
                "latent_channels": self.latent_channels, "downsample": self.downsample,
                "scale_factor": self.scale_factor}


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def to_device(x: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``x`` on ``device`` (cast there, to ``dtype``); a host tensor goes to a GPU from pinned memory, without
    blocking the host, so the copy overlaps with the work queued before it."""
    if device.type == "cuda" and x.device.type == "cpu":
        x = x.pin_memory().to(device, non_blocking=True)
    return x.to(device, dtype)


def parse_dtype(name: str, allowed: tuple[str, ...], key: str) -> torch.dtype:
    """The torch dtype called ``name`` (config key ``key``), one of ``allowed``."""
    if name not in allowed:
        raise ValueError(f"config key {key!r}: dtype {name!r} is not supported here; use one of {list(allowed)}")
    return getattr(torch, name)


def make_autoencoder(cfg: dict[str, Any], device: str | None = None) -> Autoencoder:
    """Build from config: ``{"backend": "pixel"}`` or ``{"backend": "sd_vae", "path": ..., "dtype": "float32"}``.

    ``dtype``: float32 (default, as the paper) or bfloat16 (faster on a GPU, latents differ slightly).
    """
    backend = cfg.get("backend")
    if backend == "pixel":
        return PixelAutoencoder()
    if backend == "sd_vae":
        dtype = parse_dtype(cfg.get("dtype", "float32"), ("float32", "bfloat16"), "encode.autoencoder.dtype")
        return SDVAE(cfg.get("path", PAPER_VAE), device=device or default_device(), dtype=dtype)
    raise ValueError(f"unknown autoencoder backend {backend!r} in {cfg}; use 'pixel' or 'sd_vae'")

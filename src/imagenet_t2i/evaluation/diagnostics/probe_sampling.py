"""Sample the colour probe's prompts into PNG files (prompts whose files exist are kept) and read them back."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imagenet_t2i.encode.autoencoder import Autoencoder
from imagenet_t2i.encode.text import TextEncoder
from imagenet_t2i.sampling.sample import prompt_paths, sample_pngs


def sample_colour_probe(model_dir: str | Path, rows: list[dict], out_dir: str | Path, autoencoder: Autoencoder,
                        text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict,
                        samples_per_prompt: int, batch_size: int = 64) -> np.ndarray:
    """Sample every colour-probe prompt ``samples_per_prompt`` times into ``<out>/<prompt:03d>_<sample:02d>.png``
    (prompts whose files exist are kept) and read them back, prompt-major. -> (N, H, W, 3) uint8."""
    paths = prompt_paths(out_dir, len(rows), samples_per_prompt)
    sample_pngs(model_dir, out_dir, autoencoder, text_encoder, uncond, [row["prompt"] for row in rows], paths,
                sample_cfg, sample_cfg["seed"] + 2, batch_size)
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for per_prompt in paths for p in per_prompt])

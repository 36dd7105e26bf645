"""Sample a trained model for a list of prompts: PNG files and a labelled grid."""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .diffusion.sampler import SAMPLERS
from .encode.autoencoder import Autoencoder
from .encode.images import to_uint8
from .encode.text import TextEncoder
from .io import read_json
from .loader import pad_text
from .models import load_pretrained

OBJECTIVE_FILE = "objective.json"


def model_objective(model_dir: str | Path) -> str:
    """The objective a model folder was trained with (``eps`` when unrecorded, e.g. released weights)."""
    path = Path(model_dir) / OBJECTIVE_FILE
    return read_json(path)["objective"] if path.exists() else "eps"


@torch.no_grad()
def generate(model: torch.nn.Module, autoencoder: Autoencoder, text_encoder: TextEncoder, uncond: torch.Tensor,
             prompts: list[str], sample_cfg: dict, seed: int, objective: str = "eps", batch_size: int = 64,
             progress: bool = False) -> np.ndarray:
    """Images (len(prompts), H, W, 3) uint8, one per prompt, from noise seeded by ``seed``."""
    model.eval()
    cfg = model.config
    shape = (cfg["in_channels"], cfg["input_size"], cfg["input_size"])
    generator = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(prompts), batch_size):
        chunk = prompts[i : i + batch_size]
        text, mask = pad_text(text_encoder.encode(chunk))
        z = SAMPLERS[objective](model, text, mask, uncond, shape, steps=sample_cfg["steps"], guidance=sample_cfg["guidance"],
                        clamp=sample_cfg["clamp"], generator=generator, progress=progress)
        out.append(to_uint8(autoencoder.decode(z / autoencoder.scale_factor)))
    return np.concatenate(out)


def sample_prompts(model_dir: str | Path, autoencoder: Autoencoder, text_encoder: TextEncoder, uncond: torch.Tensor,
                   prompts: list[str], sample_cfg: dict, out_dir: str | Path, progress: bool = True) -> list[Path]:
    """Write ``samples_per_prompt`` PNGs per prompt as ``<out>/<prompt:03d>_<sample:02d>.png``."""
    model = load_pretrained(model_dir)
    k = sample_cfg["samples_per_prompt"]
    flat = [p for p in prompts for _ in range(k)]
    images = generate(model, autoencoder, text_encoder, uncond, flat, sample_cfg, sample_cfg["seed"],
                      model_objective(model_dir), progress=progress)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, img in enumerate(images):
        path = out_dir / f"{n // k:03d}_{n % k:02d}.png"
        Image.fromarray(img).save(path)
        paths.append(path)
    return paths


def make_grid(images: list[np.ndarray], prompts: list[str], per_row: int, cell: int = 96, label_w: int = 260) -> Image.Image:
    """Rows = prompts (labelled on the left), columns = samples; cells upscaled with nearest neighbour."""
    rows = len(prompts)
    grid = Image.new("RGB", (label_w + per_row * (cell + 4), rows * (cell + 4)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for r, prompt in enumerate(prompts):
        lines = textwrap.wrap(prompt, 40)[:4]
        top = r * (cell + 4) + cell // 2 - 6 * len(lines)
        for j, line in enumerate(lines):
            draw.text((4, top + 12 * j), line, fill="black", font=font)
        for c in range(per_row):
            tile = Image.fromarray(images[r * per_row + c]).resize((cell, cell), Image.NEAREST)
            grid.paste(tile, (label_w + c * (cell + 4), r * (cell + 4)))
    return grid

"""Evaluation stages: sample a model into the GenEval / DPG / FD layouts and run tiny-world perception.

Perception writes raw files (detections, answers); scoring (evaluation/*_score.py) reads them, so a
rescore never needs a model. The paper-scale perception models (Mask2Former + CLIP, mPLUG,
Inception/DINOv2/CLIP) plug in behind the same file formats.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .encode.autoencoder import Autoencoder
from .encode.text import TextEncoder
from .evaluation.dpg_score import make_grid as dpg_grid
from .evaluation.geneval_prompts import prepare_layout
from .io import atomic_write, read_jsonl
from .models import load_pretrained
from .sample import generate, model_objective


def _save_png(img: np.ndarray, path: Path) -> None:
    with atomic_write(path, "wb") as f:
        Image.fromarray(img).save(f, format="PNG")


def _generate(model_dir: str | Path, autoencoder: Autoencoder, text_encoder: TextEncoder, uncond: torch.Tensor,
              prompts: list[str], sample_cfg: dict, seed: int) -> np.ndarray:
    model = load_pretrained(model_dir)
    return generate(model, autoencoder, text_encoder, uncond, prompts, sample_cfg, seed, model_objective(model_dir),
                    batch_size=128)


def sample_geneval(model_dir: str | Path, prompts_path: str | Path, out_root: str | Path, autoencoder: Autoencoder,
                   text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict, samples_per_prompt: int) -> int:
    """Write ``<out>/<00000>/metadata.jsonl`` + ``samples/<0000>.png`` for every GenEval prompt."""
    rows = read_jsonl(prompts_path)
    paths = prepare_layout(out_root, rows, samples_per_prompt)
    flat = [row["prompt"] for row in rows for _ in range(samples_per_prompt)]
    images = _generate(model_dir, autoencoder, text_encoder, uncond, flat, sample_cfg, sample_cfg["seed"])
    for img, path in zip(images, (p for per_prompt in paths for p in per_prompt)):
        _save_png(img, path)
    return len(images)


def sample_dpg(model_dir: str | Path, prompts_path: str | Path, out_dir: str | Path, autoencoder: Autoencoder,
               text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict) -> int:
    """One 2x2 grid ``<item_id>.png`` of four samples per DPG prompt (cells TL, TR, BL, BR)."""
    rows = read_jsonl(prompts_path)
    flat = [row["prompt"] for row in rows for _ in range(4)]
    images = _generate(model_dir, autoencoder, text_encoder, uncond, flat, sample_cfg, sample_cfg["seed"])
    out_dir = Path(out_dir)
    for i, row in enumerate(rows):
        grid = dpg_grid([Image.fromarray(img) for img in images[4 * i : 4 * i + 4]])
        with atomic_write(out_dir / f"{row['item_id']}.png", "wb") as f:
            grid.save(f, format="PNG")
    return len(rows)


def sample_colour_probe(model_dir: str | Path, rows: list[dict], out_dir: str | Path, autoencoder: Autoencoder,
                        text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict,
                        samples_per_prompt: int) -> np.ndarray:
    """Sample every colour-probe prompt ``samples_per_prompt`` times, prompt-major; also written as
    ``<out>/<prompt:03d>_<sample:02d>.png``. -> (N, H, W, 3) uint8."""
    flat = [row["prompt"] for row in rows for _ in range(samples_per_prompt)]
    images = _generate(model_dir, autoencoder, text_encoder, uncond, flat, sample_cfg, sample_cfg["seed"] + 2)
    for n, img in enumerate(images):
        _save_png(img, Path(out_dir) / f"{n // samples_per_prompt:03d}_{n % samples_per_prompt:02d}.png")
    return images


def sample_captions(model_dir: str | Path, captions_path: str | Path, num: int, autoencoder: Autoencoder,
                    text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict) -> torch.Tensor:
    """One sample per caption for the first ``num`` captions (FD against the images they describe), (N, 3, H, W)."""
    rows = read_jsonl(captions_path)[:num]
    images = _generate(model_dir, autoencoder, text_encoder, uncond, [r["caption"] for r in rows], sample_cfg,
                       sample_cfg["seed"] + 1)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0

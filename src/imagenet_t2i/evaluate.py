"""Evaluation stages: sample a model into the GenEval / DPG / FD layouts and run tiny-world perception.

Perception writes raw files (detections, answers); scoring (evaluation/*_score.py) reads them, so a
rescore never needs a model. The paper-scale perception models (Mask2Former + CLIP, mPLUG,
Inception/DINOv2/CLIP) plug in behind the same file formats. The samplers write one file (or folder)
per prompt and keep the prompts an earlier, killed run completed (`imagenet_t2i.sample.sample_missing`).
"""
from __future__ import annotations

from collections.abc import Iterator
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
from .sample import generate, model_objective, prompt_paths, sample_missing, sample_pngs, sample_seed


def sample_geneval(model_dir: str | Path, prompts_path: str | Path, out_root: str | Path, autoencoder: Autoencoder,
                   text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict, samples_per_prompt: int,
                   batch_size: int = 64) -> int:
    """Write ``<out>/<00000>/metadata.jsonl`` + ``samples/<0000>.png`` for every GenEval prompt; returns the
    number of samples written (prompts with all their samples already there are kept)."""
    rows = read_jsonl(prompts_path)
    paths = prepare_layout(out_root, rows, samples_per_prompt)
    done = sample_pngs(model_dir, out_root, autoencoder, text_encoder, uncond, [row["prompt"] for row in rows], paths,
                       sample_cfg, sample_cfg["seed"], batch_size)
    return len(done) * samples_per_prompt


def sample_dpg(model_dir: str | Path, prompts_path: str | Path, out_dir: str | Path, autoencoder: Autoencoder,
               text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict, batch_size: int = 64) -> int:
    """One 2x2 grid ``<item_id>.png`` of four samples per DPG prompt (cells TL, TR, BL, BR); returns the
    number of grids written (existing grids are kept)."""
    rows = read_jsonl(prompts_path)
    paths = [Path(out_dir) / f"{row['item_id']}.png" for row in rows]

    def write(i: int, images: np.ndarray) -> None:
        with atomic_write(paths[i], "wb") as f:
            dpg_grid([Image.fromarray(img) for img in images]).save(f, format="PNG")

    done = sample_missing(model_dir, out_dir, autoencoder, text_encoder, uncond, [row["prompt"] for row in rows], 4,
                          sample_cfg, sample_cfg["seed"], lambda i: paths[i].is_file(), write, batch_size)
    return len(done)


def sample_colour_probe(model_dir: str | Path, rows: list[dict], out_dir: str | Path, autoencoder: Autoencoder,
                        text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict,
                        samples_per_prompt: int, batch_size: int = 64) -> np.ndarray:
    """Sample every colour-probe prompt ``samples_per_prompt`` times into ``<out>/<prompt:03d>_<sample:02d>.png``
    (prompts whose files exist are kept) and read them back, prompt-major. -> (N, H, W, 3) uint8."""
    paths = prompt_paths(out_dir, len(rows), samples_per_prompt)
    sample_pngs(model_dir, out_dir, autoencoder, text_encoder, uncond, [row["prompt"] for row in rows], paths,
                sample_cfg, sample_cfg["seed"] + 2, batch_size)
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for per_prompt in paths for p in per_prompt])


def caption_samples(model_dir: str | Path, captions_path: str | Path, num: int, autoencoder: Autoencoder,
                    text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict,
                    batch_size: int = 64) -> tuple[Iterator[np.ndarray], list[str]]:
    """One sample per caption for the first ``num`` captions, streamed as uint8 batches (B, H, W, 3), and the
    captions; caption i is sample 0 of prompt i under seed ``sample.seed + 1``."""
    captions = [r["caption"] for r in read_jsonl(captions_path)[:num]]
    seeds = [sample_seed(sample_cfg["seed"] + 1, i, 0) for i in range(len(captions))]
    batches = generate(load_pretrained(model_dir), autoencoder, text_encoder, uncond, captions, seeds, sample_cfg,
                       model_objective(model_dir), batch_size, progress=True)
    return batches, captions


def sample_captions(model_dir: str | Path, captions_path: str | Path, num: int, autoencoder: Autoencoder,
                    text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict,
                    batch_size: int = 64) -> torch.Tensor:
    """`caption_samples` all at once (the tiny world's FD), (N, 3, H, W) in [-1, 1]."""
    batches, _ = caption_samples(model_dir, captions_path, num, autoencoder, text_encoder, uncond, sample_cfg,
                                 batch_size)
    images = np.concatenate(list(batches))  # (N, H, W, 3)
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0

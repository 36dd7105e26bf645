"""Sample a model into DPG-Bench's layout: one 2x2 grid of four samples per prompt (grids an earlier, killed run
wrote are kept)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from imagenet_t2i.encode.autoencoder import Autoencoder
from imagenet_t2i.encode.text import TextEncoder
from imagenet_t2i.evaluation.dpg.score import make_grid as dpg_grid
from imagenet_t2i.io import atomic_write, read_jsonl
from imagenet_t2i.sampling.sample import sample_missing


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

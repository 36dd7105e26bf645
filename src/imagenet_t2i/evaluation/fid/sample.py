"""One sample per val caption, the images FD / FID and friends compare with the val images."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from imagenet_t2i.encode.autoencoder import Autoencoder
from imagenet_t2i.encode.text import TextEncoder
from imagenet_t2i.io import read_jsonl
from imagenet_t2i.models import load_pretrained
from imagenet_t2i.sampling.sample import generate, model_objective, sample_seed


def caption_samples(model_dir: str | Path, captions_path: str | Path, num: int, autoencoder: Autoencoder,
                    text_encoder: TextEncoder, uncond: torch.Tensor, sample_cfg: dict, batch_size: int = 64,
                    items: range | None = None) -> tuple[Iterator[np.ndarray], list[str]]:
    """One sample per caption for the first ``num`` captions (images dropped for an empty caption do not count; or
    those of ``items``, one chunk of them), streamed
    as uint8 batches (B, H, W, 3), and the captions; caption i is sample 0 of prompt i under seed
    ``sample.seed + 1``, whichever chunk samples it."""
    rows = [r for r in read_jsonl(captions_path) if r["caption"] is not None][:num]  # dropped images have none
    items = range(len(rows)) if items is None else items
    if items.stop > len(rows):
        raise ValueError(f"{captions_path}: {len(rows)} captions, fewer than the {items.stop} asked for")
    captions = [rows[i]["caption"] for i in items]
    seeds = [sample_seed(sample_cfg["seed"] + 1, i, 0) for i in items]
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

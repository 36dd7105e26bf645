"""Sample a model into GenEval's official folder layout (one folder per prompt; prompts an earlier, killed run
completed are kept: `imagenet_t2i.sampling.sample.sample_missing`)."""
from __future__ import annotations

from pathlib import Path

import torch

from imagenet_t2i.encode.autoencoder import Autoencoder
from imagenet_t2i.encode.text import TextEncoder
from imagenet_t2i.evaluation.geneval.prompts import prepare_layout
from imagenet_t2i.io import read_jsonl
from imagenet_t2i.sampling.sample import sample_pngs


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

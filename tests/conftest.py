"""Shared test set-up: offline hub, one thread, repository paths."""
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures"  # copies of the reference files the tests compare with (tests/fixtures/README.md)


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(1)


TINY_MODELS = {
    "dit_i": {"arch": "dit_i", "patch_size": 4, "hidden_size": 32, "depth": 2, "num_heads": 2},
    "cad_i": {"arch": "cad_i", "patch_size": 4, "data_dim": 32, "num_latents": 8, "latents_dim": 32, "num_blocks": 1,
              "num_processing_layers": 1, "compute_heads": 2, "text_heads": 2},
}


@pytest.fixture(scope="session")
def tiny_shards(tmp_path_factory):
    """A real miniature pipeline: rendered world, CutMix set, TA captions, MiniLM shards (train_ta, cutmix_all_ta), and
    the same images and composites re-made at 64 px with the same captions (train_64px_ta, cutmix_all_64px_ta)."""
    from imagenet_t2i.augment import build_cutmix_set, build_rescaled_set
    from imagenet_t2i.captions import SceneCaptioner, write_captions
    from imagenet_t2i.encode.autoencoder import PixelAutoencoder
    from imagenet_t2i.encode.text import MiniLMEncoder
    from imagenet_t2i.io import read_jsonl
    from imagenet_t2i.shards.writer import write_shards
    from imagenet_t2i.world.build import build_split, rescale_split

    root = tmp_path_factory.mktemp("tiny")
    build_split(root / "data" / "train", "train", 40, seed=0, size=32, progress=False)
    build_cutmix_set(root / "data" / "train", root / "augment" / "cutmix_all", "all", seed=0, progress=False)
    encoder = MiniLMEncoder(max_tokens=64)
    for name, folder in (("train", root / "data" / "train"), ("cutmix_all", root / "augment" / "cutmix_all")):
        captions = root / "captions" / f"{name}_ta.jsonl"
        write_captions(read_jsonl(folder / "scenes.jsonl"), SceneCaptioner(seed=0), captions)
        write_shards(folder, captions, root / "shards" / f"{name}_ta", PixelAutoencoder(), encoder, 32,
                     shard_size=16, batch_size=16, progress=False)
    rescale_split(root / "data" / "train", root / "data" / "train_64px", 64, progress=False)
    build_rescaled_set(root / "augment" / "cutmix_all", root / "data" / "train_64px", root / "augment" / "cutmix_all_64px",
                       64, progress=False)
    for name, folder in (("train", root / "data" / "train_64px"), ("cutmix_all", root / "augment" / "cutmix_all_64px")):
        write_shards(folder, root / "captions" / f"{name}_ta.jsonl", root / "shards" / f"{name}_64px_ta",
                     PixelAutoencoder(), encoder, 64, shard_size=16, batch_size=16, progress=False)
    return root / "shards"


def tiny_run(model: str = "dit_i", augment: str = "cutmix", steps: int = 8, **train) -> dict:
    """A resolved run config (as config.resolve_run returns) for a very small model."""
    cfg = {"steps": steps, "batch_size": 4, "threads": 1, "log_every": 1, "checkpoint_every": 3,
           "eval_checkpoints": [4], "grad_clip": 2.0, "cfg_dropout": 0.1, "self_cond_rate": 0.9, "max_nonfinite": 5,
           "objective": "eps", "ema": {"decay": 0.9}, "cutmix": {"tau": 0.4, "p": 0.5}, "crop": {"tau": 0.0, "p": 0.3},
           "optimizer": {"name": "adamw" if model == "dit_i" else "lamb", "lr": 1e-3, "betas": [0.9, 0.999],
                         "eps": 1e-8, "weight_decay": 0.01, "warmup": 2, "cosine_fraction": 0.7}}
    cfg.update(train)
    return {"name": f"{model}_test", "seed": 0, "model": dict(TINY_MODELS[model]), "model_name": model,
            "captions": "ta", "augment": augment, "pattern": "all", "train": cfg, "resolution": 32}

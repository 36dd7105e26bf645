"""The tiny world's aesthetic scorer: the FD feature net's CNN with one head, trained by the pipeline on the training
split to tell images with the world's aesthetic property (`imagenet_t2i.world.aesthetic`) from the rest; an image's
score is the probability it gives the property."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch

from imagenet_t2i.evaluation.fid.tiny_net import load_feature_net, load_images, train_feature_net
from imagenet_t2i.io import read_jsonl
from imagenet_t2i.world.aesthetic import is_aesthetic

HEAD, LABELS = "aesthetic", ("no", "yes")


def aesthetic_labels(split_dir: str | os.PathLike) -> dict[str, list[str]]:
    """``{"aesthetic": ["yes" | "no", ...]}`` in index.jsonl order, from the split's scene records."""
    split_dir = Path(split_dir)
    scenes = {s["key"]: s for s in read_jsonl(split_dir / "scenes.jsonl")}
    return {HEAD: [LABELS[is_aesthetic(scenes[row["key"]])] for row in read_jsonl(split_dir / "index.jsonl")]}


def train_world_scorer(train_dir: str | os.PathLike, out_dir: str | os.PathLike, val_dir: str | os.PathLike,
                       seed: int = 0, epochs: int = 6) -> dict:
    """Train the scorer (`train_feature_net` with the aesthetic labels) into ``out_dir``; its metrics."""
    return train_feature_net(train_dir, out_dir, seed=seed, epochs=epochs, val_dir=val_dir, labels=aesthetic_labels)


@torch.no_grad()
def world_scores(net_dir: str | os.PathLike, images: Sequence[str | os.PathLike]) -> list[float]:
    """The scorer's probability of the aesthetic property for each image (PNG paths, one size)."""
    model = load_feature_net(net_dir)
    labels = model.config["heads"][HEAD]
    logits = model.logits(load_images(images))[HEAD]  # (N, 2)
    return logits.softmax(-1)[:, labels.index("yes")].tolist()

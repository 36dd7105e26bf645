"""One scorer's scores of a run's T-AES samples, as ``eval/<run>/aesthetic/<scorer>.json``."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from imagenet_t2i.io import write_json


def write_scores(images_dir: str | os.PathLike, scorer: str, score: Callable[[Sequence[Path]], list[float]],
                 out: str | os.PathLike) -> dict:
    """Score every PNG of ``images_dir`` (sorted by name) with ``score``; write and return
    ``{"scorer", "mean", "std", "n", "images": {name: score}}``."""
    paths = sorted(Path(images_dir).glob("*.png"))
    if not paths:
        raise FileNotFoundError(f"{images_dir}: no PNG samples to score; sample the run's aesthetic prompts first")
    values = score(paths)
    result = {"scorer": scorer, "mean": float(np.mean(values)), "std": float(np.std(values)), "n": len(values),
              "images": {p.name: float(v) for p, v in zip(paths, values)}}
    write_json(out, result)
    return result

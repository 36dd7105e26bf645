"""Paper-scale FID and friends wired to the config: the extractors of ``eval.fid``, the val reference images, and
the flat score file the tables read (``eval/<run>/fd/<ckpt>.json``, the tiny world's keys plus the paper's).

``fd`` is the FID (Inception, torch-fidelity's weights), precision / recall / density / coverage are k-NN on the
Inception features [our choice: the classic PRDC feature space], ``fd_dinov2`` / ``fd_clip`` the FD in DINOv2 /
CLIP ViT-L/14 space, ``inception_score`` the IS, ``clip_score`` the CLIPScore of each sample against its caption.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from imagenet_t2i.encode.images import CorruptImageError, load_rgb, preprocess
from imagenet_t2i.io import read_jsonl
from imagenet_t2i.weights import weights_file, weights_location


def load_extractors(config: dict, device: str = "cpu") -> tuple[list, object | None]:
    """The feature extractors of ``eval.fid`` (Inception always; DINOv2 and CLIP when named) and the CLIPScore
    model (the CLIP entry's), loaded from the weights folders."""
    from imagenet_t2i.evaluation.fid.clip_score import load_clip_scorer
    from imagenet_t2i.evaluation.fid.feature_nets import load_dinov2
    from imagenet_t2i.evaluation.fid.inception import load_inception

    fid = config["eval"]["fid"]
    extractors = [load_inception(weights_file(config, fid["inception"]), device=device)]
    if fid.get("dinov2"):
        extractors.append(load_dinov2(weights_location(config, fid["dinov2"]), device=device))
    scorer = None
    if fid.get("clip"):  # one CLIP model serves FD-CLIP and CLIPScore
        scorer = load_clip_scorer(weights_location(config, fid["clip"]), device=device)
        extractors.append(scorer.image_features)
    return extractors, scorer


def reference_images(split_dir: str | os.PathLike, resolution: int, resize: str = "bicubic") -> Iterator[np.ndarray]:
    """The val images as the models are trained to make them (resize + centre crop, (R, R, 3) uint8), index
    order; an unreadable image is reported and skipped (the count is in the reference statistics)."""
    split_dir = Path(split_dir)
    for row in read_jsonl(split_dir / "index.jsonl"):
        try:
            yield preprocess(load_rgb(split_dir / row["path"]), resolution, resize)
        except CorruptImageError as e:
            print(f"reference: skipping {row['key']}: {e.reason}", flush=True)


def flat_scores(report: dict) -> dict:
    """The table metrics of a `fid_report` (keys of the tiny world's fd file where they mean the same), plus the
    full report under ``report``."""
    inc = report["inception"]
    out = {"fd": inc["fd"], "precision": inc["precision"], "recall": inc["recall"], "density": inc["density"],
           "coverage": inc["coverage"], "inception_score": inc.get("is_mean"), "num_fake": inc["num_samples"],
           "num_real": inc["num_reference"]}
    for name in ("dinov2", "clip"):
        if name in report:
            out[f"fd_{name}"] = report[name]["fd"]
    if "clip_score" in report:
        out["clip_score"] = report["clip_score"]["clip_score"]
        out["clip_score_truncated"] = report["clip_score"]["num_truncated"]
    return {**out, "report": report}

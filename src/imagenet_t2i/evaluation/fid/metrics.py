"""Paper-scale image metrics in one streaming pass: FD, precision / recall / density / coverage and the
Inception Score per feature network (Inception-v3, DINOv2, CLIP), plus CLIPScore when prompts are given.

Images are uint8 RGB arrays, each one image (H, W, 3) or a batch (B, H, W, 3) (``generate`` yields such
batches; ``iter_image_folder`` reads a folder). Every result records the network (weights hash, resize
filter, input size), the reference set and the sample counts: FD numbers are only comparable when all agree,
and ``fid_report`` refuses reference statistics computed with another network or preprocessing.
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from imagenet_t2i.evaluation.fid.clip_score import ClipScorer, ClipScoreTotals
from imagenet_t2i.evaluation.fid.fd import frechet_distance, prdc
from imagenet_t2i.evaluation.fid.feature_stats import (SAMPLE_CAP, ReferenceStats, Reservoir, RunningStats,
                                                       inception_score, load_reference_stats, save_reference_stats)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
# Description keys that must agree between a reference cache and the extractor (the weights path may not).
COMPARABLE_KEYS = ("network", "weights_sha256", "manifest_sha256", "resize", "input_size", "feature", "feature_dim")


class FeatureExtractor(Protocol):
    """uint8 images (B, 3, H, W) -> named outputs (B, ...); ``feature_key`` names the FD / PRDC features and
    an optional ``logits_unbiased`` output feeds the Inception Score."""

    name: str
    feature_key: str

    def parameters(self) -> Iterator[torch.nn.Parameter]: ...

    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]: ...

    def describe(self) -> dict: ...


def iter_image_folder(folder: str | os.PathLike) -> Iterator[np.ndarray]:
    """RGB uint8 images (H, W, 3) of every image file under ``folder``, in sorted path order."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise FileNotFoundError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    for path in paths:
        with Image.open(path) as im:
            yield np.asarray(im.convert("RGB"))


def image_batches(images: Iterable[np.ndarray], batch_size: int) -> Iterator[torch.Tensor]:
    """Regroup images (H, W, 3) or batches (B, H, W, 3), uint8, into batches (<= batch_size, 3, H, W); a
    batch ends early where the image size changes."""
    pending: list[np.ndarray] = []
    for item in images:
        arr = np.asarray(item)
        if arr.dtype != np.uint8 or arr.ndim not in (3, 4) or arr.shape[-1] != 3:
            raise ValueError(f"image_batches: expected uint8 (H, W, 3) or (B, H, W, 3), got {arr.dtype} {arr.shape}")
        for img in arr if arr.ndim == 4 else arr[None]:
            if pending and (img.shape != pending[0].shape or len(pending) == batch_size):
                yield torch.from_numpy(np.stack(pending)).permute(0, 3, 1, 2)
                pending = []
            pending.append(img)
    if pending:
        yield torch.from_numpy(np.stack(pending)).permute(0, 3, 1, 2)


class FeatureAccumulator:
    """Per extractor: running mean / covariance of its features, a PRDC reservoir and, when the extractor
    gives them, the Inception logits (float32, 4 KB per image: 200 MB at 50k; the IS shuffles all of them)."""

    def __init__(self, extractor: FeatureExtractor, sample_cap: int, seed: int) -> None:
        self.extractor, self.stats, self.sample = extractor, RunningStats(), Reservoir(sample_cap, seed)
        self.logits: list[np.ndarray] = []

    @torch.no_grad()
    def update(self, images: torch.Tensor) -> None:
        param = next(iter(self.extractor.parameters()), None)  # extractors are nn.Modules
        out = self.extractor(images.to(param.device) if param is not None else images)
        feats = out[self.extractor.feature_key].float().cpu().numpy()  # (B, F)
        self.stats.update(feats)
        self.sample.update(feats)
        if "logits_unbiased" in out:
            self.logits.append(out["logits_unbiased"].float().cpu().numpy())  # (B, 1008)

    def reference(self, reference_set: str) -> ReferenceStats:
        meta = {**self.extractor.describe(), "reference_set": reference_set, "sample_cap": self.sample.cap}
        return ReferenceStats(self.stats.mean, self.stats.cov, self.stats.count, self.sample.sample, meta)


def accumulate(images: Iterable[np.ndarray], extractors: Sequence[FeatureExtractor], batch_size: int = 64,
               sample_cap: int = SAMPLE_CAP, seed: int = 0, prompts: Iterable[str] | None = None,
               clip_scorer: ClipScorer | None = None) -> tuple[dict[str, FeatureAccumulator], ClipScoreTotals | None]:
    """One pass over ``images`` feeding every extractor (and CLIPScore with ``prompts``, one per image)."""
    accs = {e.name: FeatureAccumulator(e, sample_cap, seed) for e in extractors}
    if len(accs) != len(extractors):
        raise ValueError(f"accumulate: extractor names must differ, got {[e.name for e in extractors]}")
    if (prompts is None) != (clip_scorer is None):
        raise ValueError("accumulate: CLIPScore needs both prompts and clip_scorer")
    totals = ClipScoreTotals() if clip_scorer is not None else None
    prompt_iter = iter(prompts) if prompts is not None else None
    for batch in image_batches(images, batch_size):
        for acc in accs.values():
            acc.update(batch)
        if clip_scorer is not None:
            texts = [next(prompt_iter, None) for _ in range(len(batch))]
            if None in texts:
                raise ValueError("accumulate: fewer prompts than images")
            with torch.no_grad():
                totals.update(*clip_scorer(batch, texts))
    if prompt_iter is not None and next(prompt_iter, None) is not None:
        raise ValueError("accumulate: more prompts than images")
    return accs, totals


def write_reference_stats(images: Iterable[np.ndarray], extractors: Sequence[FeatureExtractor], reference_set: str,
                          out_dir: str | os.PathLike, batch_size: int = 64, sample_cap: int = SAMPLE_CAP,
                          seed: int = 0) -> dict[str, Path]:
    """Reference statistics of ``images`` for every extractor, one pass: ``<out_dir>/<name>.npz`` + ``.json``
    (``reference_set`` says which images they are, e.g. "imagenet val 50k, centre crop 256")."""
    accs, _ = accumulate(images, extractors, batch_size, sample_cap, seed)
    paths = {}
    for name, acc in accs.items():
        paths[name] = Path(out_dir) / f"{name}.npz"
        save_reference_stats(paths[name], acc.reference(reference_set))
    return paths


def _check_comparable(name: str, ref: ReferenceStats, network: dict) -> None:
    diff = {k: (ref.meta.get(k), network.get(k)) for k in COMPARABLE_KEYS if ref.meta.get(k) != network.get(k)}
    if diff:
        raise ValueError(f"{name}: reference statistics were computed differently (reference, now): {diff}; "
                         "recompute them with this network and preprocessing")


def fid_report(images: Iterable[np.ndarray], extractors: Sequence[FeatureExtractor],
               reference: Mapping[str, str | os.PathLike | ReferenceStats | None], k: int = 3, batch_size: int = 64,
               sample_cap: int = SAMPLE_CAP, seed: int = 0, prompts: Iterable[str] | None = None,
               clip_scorer: ClipScorer | None = None) -> dict:
    """Every metric of the generated ``images`` in one streaming pass. Per extractor (keyed by its name):
    FD against ``reference[name]`` (a stats file or loaded stats), PRDC with k-NN on the bounded samples,
    the Inception Score where the extractor gives logits, the network description, reference set and counts.
    ``reference[name] = None`` asks for no reference metrics (the IS alone). With ``prompts`` and
    ``clip_scorer``: "clip_score" as well."""
    refs: dict[str, ReferenceStats | None] = {}
    for e in extractors:
        if e.name not in reference:
            raise ValueError(f"fid_report: no reference statistics for {e.name!r} (given: {sorted(reference)}); "
                             "pass None for metrics without a reference")
        ref = reference[e.name]
        refs[e.name] = ref if ref is None or isinstance(ref, ReferenceStats) else load_reference_stats(ref)
        if refs[e.name] is not None:
            _check_comparable(e.name, refs[e.name], e.describe())
    accs, totals = accumulate(images, extractors, batch_size, sample_cap, seed, prompts, clip_scorer)
    report: dict = {}
    for name, acc in accs.items():
        entry: dict = {"network": acc.extractor.describe(), "num_samples": acc.stats.count}
        ref = refs[name]
        if ref is not None:
            entry.update({"fd": frechet_distance(acc.stats.mean, acc.stats.cov, ref.mu, ref.sigma),
                          **prdc(ref.sample, acc.sample.sample, k=k),
                          "reference_set": ref.meta.get("reference_set"), "num_reference": ref.count,
                          "reference": None if isinstance(reference[name], ReferenceStats) else str(reference[name]),
                          "prdc": {"k": k, "num_fake": len(acc.sample.sample), "num_real": len(ref.sample),
                                   "cap": sample_cap}})
        if acc.logits:
            entry.update(inception_score(np.concatenate(acc.logits)), is_splits=10)
        report[name] = entry
    if totals is not None:
        report["clip_score"] = totals.result(clip_scorer)
    return report

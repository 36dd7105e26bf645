"""Paper-scale image metrics: FD, precision / recall / density / coverage and the Inception Score per feature
network (Inception-v3, DINOv2, CLIP), plus CLIPScore when prompts are given.

The samples of a FID are sampled in chunks; each chunk keeps its images' features (`write_features`) and
`fid_report_from_features` merges them. The val reference statistics are one streaming pass
(`write_reference_stats`). Images are uint8 RGB arrays, each one image (H, W, 3) or a batch (B, H, W, 3)
(``generate`` yields such batches; ``iter_image_folder`` reads a folder). Every result records the network (weights
hash, resize filter, input size), the reference set and the sample counts: FD numbers are only comparable when all
agree, and reference statistics computed with another network or preprocessing are refused.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from imagenet_t2i.evaluation.fid.clip_score import ClipScorer, ClipScoreTotals
from imagenet_t2i.evaluation.fid.fd import PRDC_SPLIT_MAX, PRDC_SPLITS, frechet_distance, prdc_splits
from imagenet_t2i.evaluation.fid.feature_stats import (ReferenceStats, Reservoir, RunningStats, inception_score,
                                                       load_reference_stats, save_reference_stats)
from imagenet_t2i.io import atomic_write

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


class ReferenceAccumulator:
    """The reference statistics of one feature network, fed batch by batch: running mean / covariance and a
    seeded sample of at most ``sample_cap`` rows (every row, in order, while they fit: what PRDC's paired splits
    read)."""

    def __init__(self, network: dict, sample_cap: int, seed: int) -> None:
        self.network, self.stats, self.sample = network, RunningStats(), Reservoir(sample_cap, seed)

    def add(self, feats: np.ndarray) -> None:
        """One batch of features (B, F)."""
        self.stats.update(feats)
        self.sample.update(feats)

    def reference(self, reference_set: str) -> ReferenceStats:
        meta = {**self.network, "reference_set": reference_set, "sample_cap": self.sample.cap}
        return ReferenceStats(self.stats.mean, self.stats.cov, self.stats.count, self.sample.sample, meta)


@torch.no_grad()
def extract(extractor: FeatureExtractor, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray | None]:
    """uint8 images (B, 3, H, W) -> float32 features (B, F) and the Inception logits (B, 1008) or None."""
    param = next(iter(extractor.parameters()), None)  # extractors are nn.Modules
    out = extractor(images.to(param.device) if param is not None else images)
    logits = out.get("logits_unbiased")
    return (out[extractor.feature_key].float().cpu().numpy(),
            None if logits is None else logits.float().cpu().numpy())


def _check_prompts(prompts: Iterable[str] | None, clip_scorer: ClipScorer | None) -> Iterator[str] | None:
    if (prompts is None) != (clip_scorer is None):
        raise ValueError("CLIPScore needs both prompts and clip_scorer")
    return iter(prompts) if prompts is not None else None


def _batch_prompts(prompt_iter: Iterator[str], n: int) -> list[str]:
    texts = [next(prompt_iter, None) for _ in range(n)]
    if None in texts:
        raise ValueError("fewer prompts than images")
    return texts


def _check_names(extractors: Sequence[FeatureExtractor]) -> None:
    if len({e.name for e in extractors}) != len(extractors):
        raise ValueError(f"extractor names must differ, got {[e.name for e in extractors]}")


def write_features(images: Iterable[np.ndarray], extractors: Sequence[FeatureExtractor], path: str | os.PathLike,
                   batch_size: int = 64, prompts: Iterable[str] | None = None, clip_scorer: ClipScorer | None = None,
                   meta: dict | None = None) -> int:
    """Every image's features (and Inception logits, CLIPScore and truncation flag) in one ``.npz``, written
    atomically: one chunk of a FID sampled by several jobs, merged by `fid_report_from_features`. Returns the
    image count. About 20 KB per image with Inception, DINOv2 and CLIP (1 GB for FID-50k)."""
    _check_names(extractors)
    prompt_iter = _check_prompts(prompts, clip_scorer)
    parts: dict[str, list[np.ndarray]] = {}
    for batch in image_batches(images, batch_size):
        for e in extractors:
            feats, logits = extract(e, batch)
            parts.setdefault(f"{e.name}.features", []).append(feats)
            if logits is not None:
                parts.setdefault(f"{e.name}.logits", []).append(logits)
        if clip_scorer is not None:
            with torch.no_grad():
                scores, truncated = clip_scorer(batch, _batch_prompts(prompt_iter, len(batch)))
            parts.setdefault("clip_score.scores", []).append(scores.double().numpy())
            parts.setdefault("clip_score.truncated", []).append(truncated.numpy().astype(bool))
    if prompt_iter is not None and next(prompt_iter, None) is not None:
        raise ValueError("more prompts than images")
    if not parts:
        raise ValueError(f"{path}: no images to extract features from")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    networks = {e.name: e.describe() for e in extractors}
    if clip_scorer is not None:
        networks["clip_score"] = clip_scorer.describe()
    header = {"networks": networks, "count": len(next(iter(arrays.values()))), **(meta or {})}
    with atomic_write(path, "wb") as f:
        np.savez(f, header=np.array(json.dumps(header, sort_keys=True)), **arrays)
    return header["count"]


def read_features(paths: Sequence[str | os.PathLike]) -> tuple[dict[str, np.ndarray], dict]:
    """The chunks of `write_features`, concatenated in the given order, and the networks they were made with
    (every chunk must name the same networks: a chunk made with other weights or preprocessing is refused)."""
    arrays: dict[str, list[np.ndarray]] = {}
    networks = None
    for path in paths:
        with np.load(path) as data:
            header = json.loads(str(data["header"]))
            if networks is not None and header["networks"] != networks:
                raise ValueError(f"{path}: its features were made with other networks than {paths[0]}'s; "
                                 "delete the chunk files made with old settings and sample them again")
            networks = header["networks"]
            for key in data.files:
                if key != "header":
                    arrays.setdefault(key, []).append(data[key])
    if networks is None:
        raise ValueError("read_features: no chunk files")
    return {k: np.concatenate(v) for k, v in arrays.items()}, networks


def fid_report_from_features(paths: Sequence[str | os.PathLike],
                             reference: Mapping[str, str | os.PathLike | ReferenceStats | None], k: int = 3,
                             batch_size: int = 64) -> dict:
    """Every metric of the images whose features the chunk files hold, in order. Per network (keyed by its name):
    FD against ``reference[name]`` (a stats file or loaded stats; None: no reference metrics), PRDC as the paper's
    code (the mean over five paired disjoint splits, `prdc_splits`: the reference must keep its first 50k rows in
    order, as `fd reference` writes them), the Inception Score where the network gives logits, the network
    description, reference set and counts; "clip_score" when the chunks hold CLIPScores.

    Features are fed to the running mean / covariance in batches of ``batch_size`` across chunk boundaries, so the
    report does not depend on the chunking (the features themselves can differ in the last bits where a chunk cuts
    a batch differently: GPU kernels, CLIP's padding of a batch's prompts)."""
    arrays, networks = read_features(paths)
    clip_network = networks.pop("clip_score", None)
    report: dict = {}
    for name, network in networks.items():
        ref = _load_reference(name, network, reference)
        feats = arrays[f"{name}.features"]  # (N, F)
        stats = RunningStats()
        for start in range(0, len(feats), batch_size):
            stats.update(feats[start:start + batch_size])
        entry: dict = {"network": network, "num_samples": stats.count}
        if ref is not None:
            split = prdc_splits(ref.sample, feats, k=k)
            entry.update({"fd": frechet_distance(stats.mean, stats.cov, ref.mu, ref.sigma),
                          **{m: v for m, v in split.items() if m != "prdc_splits"},
                          "prdc": {"k": k, "num_fake": len(feats), "num_real": len(ref.sample),
                                   **split["prdc_splits"]},
                          "reference_set": ref.meta.get("reference_set"), "num_reference": ref.count,
                          "reference": None if isinstance(reference[name], ReferenceStats) else str(reference[name])})
        if f"{name}.logits" in arrays:
            entry.update(inception_score(arrays[f"{name}.logits"]), is_splits=10)
        report[name] = entry
    if clip_network is not None:
        totals = ClipScoreTotals()
        for start in range(0, len(arrays["clip_score.scores"]), batch_size):
            rows = slice(start, start + batch_size)
            totals.update(torch.from_numpy(arrays["clip_score.scores"][rows]),
                          torch.from_numpy(arrays["clip_score.truncated"][rows]))
        report["clip_score"] = totals.result(clip_network)
    return report


def write_reference_stats(images: Iterable[np.ndarray], extractors: Sequence[FeatureExtractor], reference_set: str,
                          out_dir: str | os.PathLike, batch_size: int = 64,
                          sample_cap: int = PRDC_SPLITS * PRDC_SPLIT_MAX,
                          seed: int = 0) -> dict[str, Path]:
    """Reference statistics of ``images`` for every extractor, one pass: ``<out_dir>/<name>.npz`` + ``.json``
    (``reference_set`` says which images they are, e.g. "imagenet val 50k, centre crop 256")."""
    _check_names(extractors)
    accs = {e.name: ReferenceAccumulator(e.describe(), sample_cap, seed) for e in extractors}
    for batch in image_batches(images, batch_size):
        for e in extractors:
            accs[e.name].add(extract(e, batch)[0])
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


def _load_reference(name: str, network: dict,
                    reference: Mapping[str, str | os.PathLike | ReferenceStats | None]) -> ReferenceStats | None:
    if name not in reference:
        raise ValueError(f"no reference statistics for {name!r} (given: {sorted(reference)}); pass None for metrics "
                         "without a reference")
    ref = reference[name]
    ref = ref if ref is None or isinstance(ref, ReferenceStats) else load_reference_stats(ref)
    if ref is None:
        return None
    _check_comparable(name, ref, network)
    if len(ref.sample) < min(ref.count, PRDC_SPLITS * PRDC_SPLIT_MAX):
        raise ValueError(f"{name}: the reference statistics keep {len(ref.sample)} of {ref.count} rows (a "
                         f"{ref.meta.get('sample_cap')}-row reservoir); PRDC over paired splits needs the first "
                         f"{PRDC_SPLITS * PRDC_SPLIT_MAX:,} in order: recompute them with 'imagenet-t2i fd reference'")
    return ref

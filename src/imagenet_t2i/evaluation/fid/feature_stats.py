"""Streaming feature statistics for FID and friends: running mean / covariance, a bounded PRDC sample,
the Inception Score, and the reference-statistics cache.

Reference features arrive batch by batch (50k images are never in memory at once). The Fréchet distance
itself is ``fd.frechet_distance`` on (mu, sigma); PRDC (``fd.prdc_splits``) needs the features themselves, so the
reference keeps a seeded sample of at most ``cap`` rows: every row, in order, while they fit (`Reservoir`; the
paper's PRDC pairs the first 50k: 50k x 2048 float32 is 410 MB for Inception).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from imagenet_t2i.io import atomic_write, read_json, sha256_file, write_json


def _rows(feats: np.ndarray | torch.Tensor) -> np.ndarray:
    x = feats.detach().cpu().numpy() if isinstance(feats, torch.Tensor) else np.asarray(feats)
    if x.ndim != 2:
        raise ValueError(f"expected features (B, F), got shape {x.shape}")
    return x


class RunningStats:
    """Mean (F,) and unbiased covariance (F, F) of features fed as batches (B, F), in float64.

    Each batch's mean and centred co-moment are merged into the totals (Chan, Golub and LeVeque's pairwise
    update), which avoids the cancellation of sum(x x^T) - n mu mu^T when the mean is large.
    """

    def __init__(self) -> None:
        self.count = 0
        self._mean: np.ndarray | None = None  # (F,)
        self._comoment: np.ndarray | None = None  # (F, F): sum of (x - mean)(x - mean)^T

    def update(self, feats: np.ndarray | torch.Tensor) -> None:
        x = _rows(feats).astype(np.float64)  # (B, F)
        if len(x) == 0:
            return
        if self._mean is not None and x.shape[1] != self._mean.shape[0]:
            raise ValueError(f"RunningStats: feature size changed from {self._mean.shape[0]} to {x.shape[1]}")
        b, mean_b = len(x), x.mean(axis=0)
        centred = x - mean_b
        comoment_b = centred.T @ centred  # (F, F)
        if self._mean is None:
            self.count, self._mean, self._comoment = b, mean_b, comoment_b
            return
        n = self.count + b
        delta = mean_b - self._mean
        self._mean = self._mean + delta * (b / n)
        self._comoment += comoment_b + np.outer(delta, delta) * (self.count * b / n)
        self.count = n

    @property
    def mean(self) -> np.ndarray:
        if self._mean is None:
            raise ValueError("RunningStats: no features yet")
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        if self.count < 2:
            raise ValueError(f"RunningStats: covariance needs at least 2 features, have {self.count}")
        return self._comoment / (self.count - 1)


class Reservoir:
    """A uniform random sample of at most ``cap`` rows of a stream of batches (B, F) (Algorithm R with a
    seeded generator: the same stream and seed give the same sample), stored as float32."""

    def __init__(self, cap: int, seed: int = 0) -> None:
        if cap < 1:
            raise ValueError(f"Reservoir: cap must be >= 1, got {cap}")
        self.cap, self.seen = cap, 0
        self._rng = np.random.default_rng(seed)
        self._rows: np.ndarray | None = None  # (cap, F)

    def update(self, feats: np.ndarray | torch.Tensor) -> None:
        x = _rows(feats).astype(np.float32)  # (B, F)
        if self._rows is None:
            self._rows = np.empty((self.cap, x.shape[1]), np.float32)
        take = min(len(x), max(self.cap - self.seen, 0))  # filling phase
        self._rows[self.seen:self.seen + take] = x[:take]
        rest = x[take:]
        if len(rest):
            seen_before = self.seen + take + np.arange(len(rest))  # rows already seen before each row
            slots = self._rng.integers(0, seen_before + 1)  # uniform in [0, seen_before]
            for row, slot in zip(rest[slots < self.cap], slots[slots < self.cap]):  # in order: later rows win
                self._rows[slot] = row
        self.seen += len(x)

    @property
    def sample(self) -> np.ndarray:
        """The kept rows (min(cap, seen), F)."""
        if self._rows is None:
            raise ValueError("Reservoir: no features yet")
        return self._rows[:min(self.cap, self.seen)].copy()


def inception_score(logits: np.ndarray | torch.Tensor, splits: int = 10, shuffle: bool = True,
                    seed: int = 2020) -> dict[str, float]:
    """Inception Score of logits (N, C) as torch-fidelity computes it: rows shuffled with
    ``np.random.RandomState(seed).permutation(N)``, cut into ``splits`` chunks [i N / s, (i + 1) N / s), and
    per chunk exp(mean_i KL(p_i || mean p)) in float64; returns the mean and (population) std over chunks."""
    x = torch.as_tensor(_rows(logits)).double()  # (N, C)
    n = len(x)
    if n < splits:
        raise ValueError(f"inception_score: need at least {splits} samples for {splits} splits, got {n}")
    if shuffle:
        x = x[torch.from_numpy(np.random.RandomState(seed).permutation(n))]
    log_p = torch.log_softmax(x, dim=1)  # (N, C)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits:(i + 1) * n // splits]  # (n_i, C)
        log_q = torch.logsumexp(chunk, dim=0) - np.log(len(chunk))  # log of the chunk's mean p, (C,)
        kl = (chunk.exp() * (chunk - log_q)).sum(dim=1)  # (n_i,)
        scores.append(float(kl.mean().exp()))
    return {"is_mean": float(np.mean(scores)), "is_std": float(np.std(scores))}


@dataclass
class ReferenceStats:
    """Cached statistics of a reference image set in one feature space: mean (F,), covariance (F, F), image
    count, a PRDC sample (M, F) and what they depend on (``meta``: network description, reference set)."""

    mu: np.ndarray
    sigma: np.ndarray
    count: int
    sample: np.ndarray
    meta: dict = field(default_factory=dict)


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON description beside a stats file: ``<name>.npz`` -> ``<name>.json``."""
    return Path(path).with_suffix(".json")


def save_reference_stats(path: str | os.PathLike, stats: ReferenceStats) -> None:
    """Write ``path`` (npz: mu, sigma, count, sample) and its JSON sidecar (``stats.meta`` plus count, sample
    size and the npz's sha256), each atomically, the npz first."""
    with atomic_write(path, "wb") as f:
        np.savez(f, mu=stats.mu, sigma=stats.sigma, count=np.int64(stats.count), sample=stats.sample)
    write_json(sidecar_path(path), {**stats.meta, "count": int(stats.count), "sample_size": len(stats.sample),
                                    "npz_sha256": sha256_file(path)})


def load_reference_stats(path: str | os.PathLike) -> ReferenceStats:
    """A stats file written by ``save_reference_stats``; its sidecar must describe this very npz."""
    path, side = Path(path), sidecar_path(path)
    for p in (path, side):
        if not p.is_file():
            raise FileNotFoundError(f"{p} is missing; compute the reference statistics first")
    meta = read_json(side)
    digest = sha256_file(path)
    if meta.get("npz_sha256") != digest:
        raise ValueError(f"{side} describes another npz (sha256 {meta.get('npz_sha256')}, file has {digest}); "
                         "recompute the reference statistics")
    with np.load(path) as z:
        stats = ReferenceStats(z["mu"], z["sigma"], int(z["count"]), z["sample"],
                               {k: v for k, v in meta.items() if k not in ("count", "sample_size", "npz_sha256")})
    if stats.count != meta.get("count"):
        raise ValueError(f"{side}: count {meta.get('count')} differs from the npz's {stats.count}")
    return stats

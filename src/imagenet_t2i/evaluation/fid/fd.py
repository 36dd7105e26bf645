"""Fréchet distance and precision/recall/density/coverage over features from any extractor.

The extractor is injected (Inception, CLIP, DINOv2 on the cluster; a small module offline): a
callable mapping images (N, 3, H, W) in [-1, 1] to features (N, F). A result is only comparable
with others that used the same feature network, resize filter and reference set.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import torch
from scipy import linalg

Extractor = Callable[[torch.Tensor], torch.Tensor]


def _as_features(x: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"{name}: expected features (N, F) with N >= 2, got shape {x.shape}")
    return x.astype(np.float64)


def feature_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and unbiased covariance (F, F) of features (N, F)."""
    x = _as_features(features, "feature_stats")
    return x.mean(axis=0), np.cov(x, rowvar=False)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)); adds eps I to both covariances when the
    product's square root is not finite, and drops a negligible imaginary part."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    f = mu1.shape[0]
    if mu2.shape != (f,) or sigma1.shape != (f, f) or sigma2.shape != (f, f):
        raise ValueError(
            f"frechet_distance: shapes disagree: mu {mu1.shape}/{mu2.shape}, sigma {sigma1.shape}/{sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(f) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            worst = np.abs(np.diagonal(covmean).imag).max()
            raise ValueError(f"frechet_distance: sqrt of S1 S2 has imaginary diagonal up to {worst:.3g}")
        covmean = covmean.real
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def compute_fd(real_feats: np.ndarray | torch.Tensor, fake_feats: np.ndarray | torch.Tensor) -> float:
    """Fréchet distance between two feature sets (N, F) and (M, F)."""
    return frechet_distance(*feature_stats(real_feats), *feature_stats(fake_feats))


def _distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances (n, m) between rows of a (n, F) and b (m, F)."""
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0))


def _row_chunks(n_rows: int, n_cols: int, max_elems: int) -> Iterable[slice]:
    step = max(1, max_elems // max(n_cols, 1))
    return (slice(i, min(i + step, n_rows)) for i in range(0, n_rows, step))


def _kth_neighbour_radii(x: np.ndarray, k: int, max_elems: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row (the row itself is neighbour 0)."""
    radii = np.empty(len(x))
    for rows in _row_chunks(len(x), len(x), max_elems):
        d = _distances(x[rows], x)  # (r, N)
        d[np.arange(d.shape[0]), np.arange(rows.start, rows.stop)] = 0.0
        radii[rows] = np.partition(d, k, axis=1)[:, k]
    return radii


def prdc(
    real_feats: np.ndarray | torch.Tensor,
    fake_feats: np.ndarray | torch.Tensor,
    k: int = 3,
    max_elems: int = 1 << 25,
) -> dict[str, float]:
    """Precision, recall, density and coverage (Naeem et al. 2020) with k-NN balls; distances are
    computed in row chunks of at most ``max_elems`` entries."""
    real, fake = _as_features(real_feats, "prdc real"), _as_features(fake_feats, "prdc fake")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"prdc: feature sizes differ: real {real.shape}, fake {fake.shape}")
    if min(len(real), len(fake)) <= k:
        raise ValueError(f"prdc: need more than k={k} samples per set, got {len(real)} real, {len(fake)} fake")
    real_r = _kth_neighbour_radii(real, k, max_elems)  # (N,)
    fake_r = _kth_neighbour_radii(fake, k, max_elems)  # (M,)
    inside = np.zeros(len(fake), dtype=np.int64)  # per fake: real balls containing it
    recalled = np.zeros(len(real), dtype=bool)
    covered = np.zeros(len(real), dtype=bool)
    for rows in _row_chunks(len(real), len(fake), max_elems):
        d = _distances(real[rows], fake)  # (r, M)
        inside += (d < real_r[rows, None]).sum(axis=0)
        recalled[rows] = (d < fake_r[None, :]).any(axis=1)
        covered[rows] = d.min(axis=1) < real_r[rows]
    return {
        "precision": float((inside > 0).mean()),
        "recall": float(recalled.mean()),
        "density": float(inside.mean() / k),
        "coverage": float(covered.mean()),
    }


PRDC_SPLITS, PRDC_SPLIT_MAX = 5, 10_000  # the paper's code: five paired splits of 10k


def prdc_splits(real_feats: np.ndarray, fake_feats: np.ndarray, k: int = 3, splits: int = PRDC_SPLITS,
                max_size: int = PRDC_SPLIT_MAX) -> dict:
    """PRDC averaged over ``splits`` paired disjoint splits, as the paper's code computes it: split i pairs rows
    [i s, (i + 1) s) of the real and of the fake features (both in caption order: fake i was sampled from the
    caption of real image i), s = min(max_size, n // splits), n = the smaller set. Where s <= k (a toy set), one
    split of all n rows. Returns the means and ``prdc_splits`` = {"splits", "size", per-split values}."""
    n = min(len(real_feats), len(fake_feats))
    size = min(max_size, n // splits)
    splits, size = (splits, size) if size > k else (1, n)
    per = [prdc(real_feats[i * size:(i + 1) * size], fake_feats[i * size:(i + 1) * size], k=k) for i in range(splits)]
    means = {m: float(np.mean([p[m] for p in per])) for m in per[0]}
    return {**means, "prdc_splits": {"splits": splits, "size": size, "per_split": per}}


@torch.no_grad()
def extract_features(
    extractor: Extractor,
    images: torch.Tensor | np.ndarray | Iterable[torch.Tensor | np.ndarray],
    batch_size: int = 64,
) -> np.ndarray:
    """Features (N, F) from images in [-1, 1]: one array/tensor (N, 3, H, W) cut into batches, or
    an iterable of such batches. Runs on the extractor's device when it has parameters."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        batches: Iterable = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
    else:
        batches = images
    params = list(extractor.parameters()) if isinstance(extractor, torch.nn.Module) else []
    device = params[0].device if params else torch.device("cpu")
    out = []
    for batch in batches:
        x = torch.as_tensor(batch, dtype=torch.float32).to(device)  # (B, 3, H, W)
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"extract_features: expected image batches (B, 3, H, W), got {tuple(x.shape)}")
        if x.numel() and (x.min() < -1.0 - 1e-3 or x.max() > 1.0 + 1e-3):
            raise ValueError(f"extract_features: images must lie in [-1, 1], got [{x.min():.3g}, {x.max():.3g}]")
        feats = extractor(x)
        if feats.ndim != 2 or feats.shape[0] != x.shape[0]:
            raise ValueError(
                f"extract_features: extractor must return (B, F), got {tuple(feats.shape)} for B={x.shape[0]}"
            )
        out.append(feats.float().cpu().numpy())
    if not out:
        raise ValueError("extract_features: no images")
    return np.concatenate(out).astype(np.float64)

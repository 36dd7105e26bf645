"""Fréchet distance, PRDC and feature extraction against independent computations."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist

from imagenet_t2i.evaluation.fid.fd import compute_fd, extract_features, feature_stats, frechet_distance, prdc


def fd_eigen(mu1, s1, mu2, s2) -> float:
    """Tr((S1 S2)^1/2) = sum sqrt(eig(S1^1/2 S2 S1^1/2)), via symmetric eigendecompositions."""
    w, v = np.linalg.eigh(s1)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    eig = np.linalg.eigvalsh(root1 @ s2 @ root1)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def test_fd_matches_eigen_formula():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 16)) @ rng.standard_normal((16, 16))
    b = rng.standard_normal((400, 16)) @ rng.standard_normal((16, 16)) + 0.3
    mu1, s1 = feature_stats(a)
    mu2, s2 = feature_stats(b)
    assert np.allclose(mu1, a.mean(0)) and np.allclose(s1, np.cov(a.T))
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(fd_eigen(mu1, s1, mu2, s2), rel=1e-8)
    assert compute_fd(a, b) == pytest.approx(ours, rel=1e-12)
    assert compute_fd(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(ours, rel=1e-6)


def test_fd_analytic_gaussians():
    # N(0, I) vs N(1, 4I) in 4 dims: |mu|^2 = 4, Tr(I + 4I - 2 * 2I) = 4.
    assert frechet_distance(np.zeros(4), np.eye(4), np.ones(4), 4 * np.eye(4)) == pytest.approx(8.0, abs=1e-10)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((200_000, 4))
    y = 1.0 + 2.0 * rng.standard_normal((200_000, 4))
    assert compute_fd(x, y) == pytest.approx(8.0, abs=0.1)
    assert compute_fd(x, x) == pytest.approx(0.0, abs=1e-8)


def test_fd_rank_deficient_is_finite():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((10, 32)), rng.standard_normal((12, 32)) + 1.0
    value = compute_fd(a, b)
    assert np.isfinite(value) and value > 32  # the mean gap alone contributes |1|^2 x 32
    with pytest.raises(ValueError, match="shapes disagree"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def prdc_reference(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """Naeem et al. 2020 definitions on full distance matrices (scipy cdist)."""
    rr, ff, rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_rad = np.sort(rr, axis=1)[:, k]
    f_rad = np.sort(ff, axis=1)[:, k]
    inside = rf < r_rad[:, None]  # (N, M)
    return {"precision": inside.any(0).mean(), "recall": (rf < f_rad[None, :]).any(1).mean(),
            "density": inside.sum(0).mean() / k, "coverage": (rf.min(1) < r_rad).mean()}


def test_prdc_hand_case_1d():
    real = np.arange(5.0)[:, None]                # k = 1 radii: 1 each
    fake = np.array([[0.5], [10.0], [10.2]])
    with pytest.raises(ValueError, match="more than k=3"):
        prdc(real, fake, k=3)                     # k must stay below each set's size
    got = prdc(real, fake, k=1)
    # precision: 0.5 lies in the balls of 0 and 1; 10 and 10.2 in none -> 1/3; density = 2 / 3.
    # fake radii (k=1): 9.5, 0.2, 0.2 -> every real within 9.5 of 0.5 -> recall 1.
    # coverage: reals 0 and 1 have a fake closer than 1 -> 2/5.
    assert got == pytest.approx({"precision": 1 / 3, "recall": 1.0, "density": 2 / 3, "coverage": 0.4})


def test_prdc_identical_disjoint_and_reference():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((300, 8))
    same = prdc(real, real.copy(), k=3)
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0 and same["density"] >= 1.0
    far = prdc(real, rng.standard_normal((200, 8)) + 100.0, k=3)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    fake = 0.8 * rng.standard_normal((250, 8)) + 0.3
    ref = prdc_reference(real, fake, 3)
    assert prdc(real, fake, k=3) == pytest.approx(ref)
    assert prdc(real, fake, k=3, max_elems=1000) == pytest.approx(ref)  # 4-row chunks


class PoolLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = torch.nn.Linear(3, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 5)
        return self.proj(x.mean(dim=(2, 3)))


def test_extract_features_batches_and_checks():
    torch.manual_seed(0)
    net = PoolLinear()
    images = torch.rand(7, 3, 8, 8) * 2 - 1
    full = net(images).detach().numpy()
    assert np.allclose(extract_features(net, images, batch_size=3), full, atol=1e-6)
    assert np.allclose(extract_features(net, images.numpy(), batch_size=100), full, atol=1e-6)
    assert np.allclose(extract_features(net, iter([images[:2], images[2:]])), full, atol=1e-6)
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        extract_features(net, images * 3)
    with pytest.raises(ValueError, match=r"\(B, F\)"):
        extract_features(lambda x: x.mean(dim=(2, 3))[:, :, None], images)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        extract_features(net, torch.zeros(2, 1, 8, 8))

"""Streaming statistics, IS, the reference cache, DINOv2 / CLIP features and the report of chunked features,
against all-at-once and independent computations (random-init networks built from configs)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.special import log_softmax, softmax

from imagenet_t2i.evaluation.fid.fd import compute_fd, frechet_distance, prdc, prdc_splits
from imagenet_t2i.evaluation.fid.feature_nets import (IMAGENET_MEAN, IMAGENET_STD, clip_pixels, hub_position_embeddings,
                                                      load_clip_image, load_dinov2, resize_bicubic)
from imagenet_t2i.evaluation.fid.feature_stats import (ReferenceStats, Reservoir, RunningStats, inception_score,
                                                       load_reference_stats, save_reference_stats, sidecar_path)
from imagenet_t2i.evaluation.fid.inception import load_inception
from imagenet_t2i.evaluation.fid.metrics import (fid_report_from_features, image_batches, iter_image_folder,
                                                  write_features, write_reference_stats)
from imagenet_t2i.evaluation.fid.tiny_models import save_random_inception, save_tiny_clip, save_tiny_dinov2
from imagenet_t2i.io import read_json


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    save_tiny_dinov2(root / "dinov2")
    save_tiny_clip(root / "clip")
    save_random_inception(root / "weights-inception-2015-12-05-6726825d.pth")
    return {"dinov2": load_dinov2(root / "dinov2", sha256="ab" * 32), "clip": load_clip_image(root / "clip"),
            "inception": load_inception(root / "weights-inception-2015-12-05-6726825d.pth"), "root": root}


def uint8_images(n: int, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    """Smooth random images (n, h, w, 3): low-frequency noise upsampled, plus a little pixel noise."""
    rng = np.random.default_rng(seed)
    low = torch.from_numpy(rng.random((n, 3, 4, 4), dtype=np.float32))
    up = torch.nn.functional.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)
    x = up.permute(0, 2, 3, 1).numpy() * 230 + rng.random((n, h, w, 3)) * 25
    return x.astype(np.uint8)


def test_running_stats_equal_all_at_once():
    rng = np.random.default_rng(0)
    x = 1e4 + rng.standard_normal((1037, 7)) @ rng.standard_normal((7, 7))  # large mean: cancellation check
    stats = RunningStats()
    for a, b in ((0, 1), (1, 51), (51, 351), (351, 351), (351, 1037)):
        stats.update(x[a:b])
    assert stats.count == 1037
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)
    with pytest.raises(ValueError, match="feature size changed"):
        stats.update(np.zeros((2, 3)))


def fd_numpy(mu1, s1, mu2, s2) -> float:
    """Independent FD: Tr((S1 S2)^1/2) as the sum of square roots of the (real, >= 0) eigenvalues of S1 S2."""
    eig = np.linalg.eigvals(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.sqrt(np.clip(eig, 0, None)).sum())


def streamed(x: np.ndarray, batch: int) -> RunningStats:
    stats = RunningStats()
    for i in range(0, len(x), batch):
        stats.update(torch.from_numpy(x[i:i + batch]))
    return stats


def test_fd_from_streamed_stats():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((600, 12)) @ rng.standard_normal((12, 12))
    b = rng.standard_normal((500, 12)) @ rng.standard_normal((12, 12)) + 0.5
    sa, sb = streamed(a, 64), streamed(b, 100)
    ours = frechet_distance(sa.mean, sa.cov, sb.mean, sb.cov)
    assert ours == pytest.approx(fd_numpy(a.mean(0), np.cov(a.T), b.mean(0), np.cov(b.T)), rel=1e-8)
    assert ours == pytest.approx(compute_fd(a, b), rel=1e-10)
    # Analytic: N(0, I) vs N(1, 4I) in 4 dimensions is |1|^2 * 4 + Tr(I + 4I - 2 * 2I) = 8.
    assert frechet_distance(np.zeros(4), np.eye(4), np.ones(4), 4 * np.eye(4)) == pytest.approx(8.0, abs=1e-10)
    x, y = rng.standard_normal((100_000, 4)), 1.0 + 2.0 * rng.standard_normal((100_000, 4))
    sx, sy = streamed(x, 4096), streamed(y, 5000)
    assert frechet_distance(sx.mean, sx.cov, sy.mean, sy.cov) == pytest.approx(8.0, abs=0.1)
    assert frechet_distance(sx.mean, sx.cov, sx.mean, sx.cov) == pytest.approx(0.0, abs=1e-6)


def test_reservoir_bounded_uniform_deterministic():
    x = np.arange(200, dtype=np.float32)[:, None].repeat(3, 1)  # row i holds i
    full = Reservoir(cap=500, seed=0)
    for i in range(0, 200, 33):
        full.update(x[i:i + 33])
    np.testing.assert_array_equal(full.sample, x)  # under the cap: every row, in order
    hits = np.zeros(200)
    for seed in range(300):
        res = Reservoir(cap=20, seed=seed)
        for i in range(0, 200, 16):
            res.update(x[i:i + 16])
        rows = res.sample[:, 0].astype(int)
        assert res.sample.shape == (20, 3) and res.seen == 200 and len(set(rows)) == 20
        hits[rows] += 1
    inclusion = hits / 300  # each row should be kept with probability 20 / 200
    assert inclusion[:100].mean() == pytest.approx(0.1, abs=0.01)
    assert inclusion[100:].mean() == pytest.approx(0.1, abs=0.01)
    again = [Reservoir(cap=20, seed=7) for _ in range(2)]
    for r in again:
        r.update(x)
    np.testing.assert_array_equal(again[0].sample, again[1].sample)


def is_numpy(logits: np.ndarray, splits: int, seed: int) -> tuple[float, float]:
    """Independent IS: exp(H(mean p) - mean H(p)) per split, torch-fidelity's shuffle and split bounds."""
    x = logits[np.random.RandomState(seed).permutation(len(logits))].astype(np.float64)
    n, scores = len(x), []
    for i in range(splits):
        chunk = x[i * n // splits:(i + 1) * n // splits]
        p, log_p = softmax(chunk, axis=1), log_softmax(chunk, axis=1)
        q = p.mean(0)
        scores.append(np.exp(-(q * np.log(q)).sum() + (p * log_p).sum(1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


def test_inception_score():
    rng = np.random.default_rng(2)
    logits = (3 * rng.standard_normal((503, 1008))).astype(np.float32)
    ours = inception_score(logits)
    mean, std = is_numpy(logits, 10, 2020)
    assert ours["is_mean"] == pytest.approx(mean, rel=1e-9) and ours["is_std"] == pytest.approx(std, rel=1e-6)
    # Confident, evenly spread predictions over 10 classes in every split: IS = 10; uniform predictions: 1.
    onehot = 50.0 * np.eye(10)[np.arange(100) % 10]
    assert inception_score(onehot, shuffle=False)["is_mean"] == pytest.approx(10.0, rel=1e-9)
    assert inception_score(np.zeros((40, 1008)))["is_mean"] == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 10"):
        inception_score(logits[:9])


def test_reference_stats_cache(tmp_path):
    rng = np.random.default_rng(3)
    ref = ReferenceStats(rng.random(5), np.eye(5), 1234, rng.random((7, 5)).astype(np.float32),
                         {"network": "n", "weights_sha256": "h", "resize": "r", "reference_set": "imagenet val"})
    path = tmp_path / "ref" / "inception.npz"
    save_reference_stats(path, ref)
    side = read_json(sidecar_path(path))
    assert side["count"] == 1234 and side["sample_size"] == 7 and side["reference_set"] == "imagenet val"
    back = load_reference_stats(path)
    np.testing.assert_array_equal(back.mu, ref.mu)
    np.testing.assert_array_equal(back.sigma, ref.sigma)
    np.testing.assert_array_equal(back.sample, ref.sample)
    assert back.count == 1234 and back.meta == ref.meta
    save_reference_stats(tmp_path / "other.npz", ReferenceStats(ref.mu, ref.sigma, 5, ref.sample))
    path.write_bytes((tmp_path / "other.npz").read_bytes())  # npz replaced, sidecar stale
    with pytest.raises(ValueError, match="describes another npz"):
        load_reference_stats(path)
    sidecar_path(path).unlink()
    with pytest.raises(FileNotFoundError):
        load_reference_stats(path)


def test_resize_matches_pil():
    rng = np.random.default_rng(4)
    for (h, w), (oh, ow) in (((64, 80), (224, 224)), ((300, 260), (224, 224)), ((256, 256), (224, 224))):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pil = np.asarray(Image.fromarray(img).resize((ow, oh), Image.BICUBIC)).astype(np.float32)
        ours = resize_bicubic(torch.from_numpy(img).permute(2, 0, 1)[None], (oh, ow))[0].permute(1, 2, 0).numpy()
        diff = np.abs(ours - pil)
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01  # PIL's fixed-point coefficients flip a few roundings


def test_dinov2_features(nets):
    dino = nets["dinov2"]
    imgs = uint8_images(3, 40, 48)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2)
    with torch.no_grad():
        out = dino(x)["dinov2"]
        again = dino(x)["dinov2"]
        single = dino(x[1:2])["dinov2"]
        # dgm-eval's pipeline: PIL bicubic to 224 x 224, /255, ImageNet normalisation, CLS after final norm.
        pil = np.stack([np.asarray(Image.fromarray(im).resize((224, 224), Image.BICUBIC)) for im in imgs])
        pixels = (torch.from_numpy(pil).permute(0, 3, 1, 2).float() / 255
                  - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]
        reference = dino.model(pixel_values=pixels).last_hidden_state[:, 0]
    assert out.shape == (3, 32) and torch.equal(out, again)
    torch.testing.assert_close(single[0], out[1], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, reference, rtol=1e-3, atol=2e-3)
    info = dino.describe()
    assert info["weights_sha256"] == "ab" * 32 and info["input_size"] == 224 and "bicubic" in info["resize"]
    assert info["feature_dim"] == 32


def test_dinov2_position_embeddings_resampled_as_torch_hub(nets):
    from transformers import Dinov2Model

    fresh = Dinov2Model.from_pretrained(nets["root"] / "dinov2")
    native = fresh.embeddings.position_embeddings.detach().clone()  # (1, 1 + 37 * 37, 32)
    ours = nets["dinov2"].model.embeddings.position_embeddings.detach()  # (1, 1 + 16 * 16, 32)
    assert native.shape == (1, 1 + 37 * 37, 32) and ours.shape == (1, 1 + 16 * 16, 32)
    assert torch.equal(ours[:, 0], native[:, 0])  # the CLS position is not resampled
    hf = fresh.embeddings.interpolate_pos_encoding(torch.zeros(1, 257, 32), 224, 224)  # transformers' own way
    assert not torch.allclose(ours, hf, atol=1e-6)
    # A ramp along the columns, resampled: each output column d must equal 1-D cubic convolution (a = -0.75,
    # torch's bicubic, border taps clamped) of the ramp at the hub's source point (d + 0.5) * 37 / 16.1 - 0.5.
    ramp = torch.arange(37.0).repeat(37)[None, :, None].expand(1, 37 * 37, 32)
    with torch.no_grad():
        fresh.embeddings.position_embeddings.copy_(torch.cat([native[:, :1], ramp], 1))
    hub_position_embeddings(fresh, 224)
    table = fresh.embeddings.position_embeddings.detach()[0, 1:, 0].reshape(16, 16)
    torch.testing.assert_close(table[5], torch.tensor(cubic_resample_1d(np.arange(37.0), 16, 37 / 16.1)),
                               rtol=0, atol=1e-4)


def cubic_resample_1d(values: np.ndarray, n_out: int, step: float, a: float = -0.75) -> np.ndarray:
    """Keys cubic convolution of ``values`` at (d + 0.5) * step - 0.5, d < n_out, indices clamped."""
    def keys(x: float) -> float:
        x = abs(x)
        return ((a + 2) * x - (a + 3)) * x * x + 1 if x <= 1 else (((x - 5) * x + 8) * x - 4) * a if x < 2 else 0.0

    out = []
    for d in range(n_out):
        src = (d + 0.5) * step - 0.5
        i = int(np.floor(src))
        out.append(sum(values[min(max(j, 0), len(values) - 1)] * keys(src - j) for j in range(i - 1, i + 3)))
    return np.array(out, dtype=np.float32)


def test_clip_image_features_match_transformers_pipeline(nets):
    """FD-CLIP as the paper's code: CLIPVisionModel's last_hidden_state[:, 0] (before the final LayerNorm); the
    projected embedding beside it for CLIPScore."""
    from transformers import CLIPImageProcessor, CLIPModel, CLIPVisionModel

    imgs = uint8_images(2, 48, 64, seed=5)
    processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    with torch.no_grad():
        ours = nets["clip"](torch.from_numpy(imgs).permute(0, 3, 1, 2))
        pixels = processor(images=[Image.fromarray(im) for im in imgs], return_tensors="pt")["pixel_values"]
        vision = CLIPVisionModel.from_pretrained(nets["root"] / "clip")  # the paper's code's model class
        theirs = vision(pixel_values=pixels).last_hidden_state[:, 0]
        model = CLIPModel.from_pretrained(nets["root"] / "clip")
        embeds = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
    np.testing.assert_allclose(clip_pixels(torch.from_numpy(imgs).permute(0, 3, 1, 2), 224).numpy(), pixels.numpy(),
                               atol=0.05)  # a few +-1 levels of 255 from PIL's fixed point, / std 0.26
    hidden = model.config.vision_config.hidden_size
    assert ours["clip"].shape == (2, hidden) and nets["clip"].describe()["feature_dim"] == hidden
    torch.testing.assert_close(ours["clip"], theirs, rtol=1e-3, atol=2e-3)
    assert not torch.allclose(ours["clip"], vision(pixel_values=pixels).pooler_output, atol=1e-2)  # pre-LayerNorm
    torch.testing.assert_close(ours["clip_embeds"], embeds, rtol=1e-3, atol=2e-3)


def test_image_batches_regroups_and_splits_on_size(tmp_path):
    a, b = uint8_images(5, 8, 8), uint8_images(2, 8, 12)
    items = [a[0], a[1:4], a[4], b]
    batches = list(image_batches(items, batch_size=3))
    assert [tuple(t.shape) for t in batches] == [(3, 3, 8, 8), (2, 3, 8, 8), (2, 3, 8, 12)]
    np.testing.assert_array_equal(batches[1][1].permute(1, 2, 0).numpy(), a[4])
    with pytest.raises(ValueError, match="uint8"):
        list(image_batches([a.astype(np.float32)], 4))
    (tmp_path / "sub").mkdir()
    for i, path in enumerate(["b.png", "a.png", "sub/c.jpg"]):
        Image.fromarray(a[i]).save(tmp_path / path, quality=100)
    (tmp_path / "notes.txt").write_text("not an image")
    read = list(iter_image_folder(tmp_path))
    assert len(read) == 3 and read[0].dtype == np.uint8 and read[0].shape == (8, 8, 3)
    np.testing.assert_array_equal(read[0], a[1])  # sorted paths: a.png, b.png, sub/c.jpg
    np.testing.assert_array_equal(read[1], a[0])


def test_fid_report_of_chunked_features_against_direct_computations(nets, tmp_path):
    """FID sampled by several jobs: each writes its images' features, the merge gives FD, PRDC over paired splits,
    the IS and the counts as computed directly on all images, and does not depend on the chunking."""
    inception, dino = nets["inception"], nets["dinov2"]
    real, fake = uint8_images(10, seed=10), uint8_images(11, seed=11)
    paths = write_reference_stats([real[:4], real[4:]], [inception, dino], "test real set", tmp_path / "ref",
                                  batch_size=4)
    # Inception without a reference (IS only): a 2048-d FD's sqrtm takes ~40 s on one CPU thread.
    reference = {"inception": None, "dinov2": paths["dinov2"]}
    whole = tmp_path / "whole.npz"
    write_features([fake[:3], *fake[3:]], [inception, dino], whole, batch_size=4)  # a batch, then single images
    chunks = [tmp_path / f"{i}.npz" for i in range(3)]
    for path, part in zip(chunks, (fake[:3], fake[3:7], fake[7:])):  # boundaries off the batch size
        write_features([part], [inception, dino], path, batch_size=4, meta={"captions": "test"})
    report = fid_report_from_features([whole], reference, k=3, batch_size=4)
    assert fid_report_from_features(chunks, reference, k=3, batch_size=4) == report  # bit for bit
    with torch.no_grad():
        r_inc, f_inc = (inception(torch.from_numpy(x).permute(0, 3, 1, 2)) for x in (real, fake))
        rf, ff = (dino(torch.from_numpy(x).permute(0, 3, 1, 2))["dinov2"].numpy() for x in (real, fake))
    cached = load_reference_stats(paths["inception"])
    np.testing.assert_allclose(cached.mu, r_inc["pool3"].double().mean(0).numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(cached.sigma, np.cov(r_inc["pool3"].double().numpy().T), rtol=1e-3, atol=1e-6)
    assert cached.count == 10 and cached.meta["reference_set"] == "test real set" and len(cached.sample) == 10
    assert cached.meta["network"] == inception.describe()["network"]
    entry = report["dinov2"]
    assert entry["fd"] == pytest.approx(compute_fd(rf, ff), rel=1e-4)
    # PRDC over paired splits of every row (here 10 // 5 = 2 <= k rows a split, so one split of all 10 pairs)
    for key, value in prdc(rf, ff[:10], k=3).items():
        assert entry[key] == pytest.approx(value)
    assert entry["num_samples"] == 11 and entry["num_reference"] == 10 and entry["reference_set"] == "test real set"
    assert entry["network"] == dino.describe() and entry["reference"] == str(paths["dinov2"])
    assert {k: entry["prdc"][k] for k in ("k", "num_fake", "num_real", "splits", "size")} == \
        {"k": 3, "num_fake": 11, "num_real": 10, "splits": 1, "size": 10}
    assert "is_mean" not in entry
    inc = report["inception"]
    assert inc["is_mean"] == pytest.approx(inception_score(f_inc["logits_unbiased"])["is_mean"], rel=1e-4)
    assert inc["num_samples"] == 11 and "fd" not in inc and inc["network"]["weights_sha256"] is not None
    with pytest.raises(ValueError, match="computed differently"):
        fid_report_from_features([whole], {"inception": None, "dinov2": paths["inception"]})
    with pytest.raises(ValueError, match="no reference statistics"):
        fid_report_from_features([whole], {"dinov2": paths["dinov2"]})
    small = write_reference_stats([real], [dino], "a 5-row reservoir", tmp_path / "small", sample_cap=5)
    with pytest.raises(ValueError, match="keep 5 of 10 rows"):
        fid_report_from_features([whole], {"inception": None, "dinov2": small["dinov2"]})
    write_features([fake[7:]], [dino], chunks[2], batch_size=4)  # a chunk made with other networks
    with pytest.raises(ValueError, match=r"2\.npz: its features were made with other networks"):
        fid_report_from_features(chunks, reference)


def test_prdc_over_five_paired_splits_as_the_papers_code():
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(60, 4)), rng.normal(0.3, 1.0, size=(64, 4))
    out = prdc_splits(real, fake, k=3)
    assert out["prdc_splits"]["splits"] == 5 and out["prdc_splits"]["size"] == 12  # min(10k, 60 // 5)
    per = [prdc(real[i * 12:(i + 1) * 12], fake[i * 12:(i + 1) * 12], k=3) for i in range(5)]
    for metric in ("precision", "recall", "density", "coverage"):
        assert out[metric] == pytest.approx(np.mean([p[metric] for p in per]))
    assert out["prdc_splits"]["per_split"] == per
    assert prdc_splits(real[:10], fake[:10], k=3)["prdc_splits"] == {"splits": 1, "size": 10,
                                                                     "per_split": [prdc(real[:10], fake[:10], k=3)]}

"""The inception-v3-compat network (random init): torch-fidelity's state-dict layout, TF1 resize, outputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from imagenet_t2i.evaluation.fid.inception import InceptionV3FID, load_inception, tf1_resize_bilinear
from imagenet_t2i.evaluation.fid.tiny_models import save_random_inception
from imagenet_t2i.io import sha256_file


def expected_convs() -> dict[str, tuple[int, ...]]:
    """Conv weight shapes (out, in, kh, kw) per BasicConv2d, read off torch-fidelity's
    feature_extractor_inceptionv3.py and its TF->torch name map (utils/util_convert_inception_weights.py)."""
    convs = {"Conv2d_1a_3x3": (32, 3, 3, 3), "Conv2d_2a_3x3": (32, 32, 3, 3), "Conv2d_2b_3x3": (64, 32, 3, 3),
             "Conv2d_3b_1x1": (80, 64, 1, 1), "Conv2d_4a_3x3": (192, 80, 3, 3)}
    for block, c, pool in (("Mixed_5b", 192, 32), ("Mixed_5c", 256, 64), ("Mixed_5d", 288, 64)):
        convs.update({f"{block}.branch1x1": (64, c, 1, 1), f"{block}.branch5x5_1": (48, c, 1, 1),
                      f"{block}.branch5x5_2": (64, 48, 5, 5), f"{block}.branch3x3dbl_1": (64, c, 1, 1),
                      f"{block}.branch3x3dbl_2": (96, 64, 3, 3), f"{block}.branch3x3dbl_3": (96, 96, 3, 3),
                      f"{block}.branch_pool": (pool, c, 1, 1)})
    convs.update({"Mixed_6a.branch3x3": (384, 288, 3, 3), "Mixed_6a.branch3x3dbl_1": (64, 288, 1, 1),
                  "Mixed_6a.branch3x3dbl_2": (96, 64, 3, 3), "Mixed_6a.branch3x3dbl_3": (96, 96, 3, 3)})
    for block, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        convs.update({f"{block}.branch1x1": (192, 768, 1, 1), f"{block}.branch7x7_1": (c7, 768, 1, 1),
                      f"{block}.branch7x7_2": (c7, c7, 1, 7), f"{block}.branch7x7_3": (192, c7, 7, 1),
                      f"{block}.branch7x7dbl_1": (c7, 768, 1, 1), f"{block}.branch7x7dbl_2": (c7, c7, 7, 1),
                      f"{block}.branch7x7dbl_3": (c7, c7, 1, 7), f"{block}.branch7x7dbl_4": (c7, c7, 7, 1),
                      f"{block}.branch7x7dbl_5": (192, c7, 1, 7), f"{block}.branch_pool": (192, 768, 1, 1)})
    convs.update({"Mixed_7a.branch3x3_1": (192, 768, 1, 1), "Mixed_7a.branch3x3_2": (320, 192, 3, 3),
                  "Mixed_7a.branch7x7x3_1": (192, 768, 1, 1), "Mixed_7a.branch7x7x3_2": (192, 192, 1, 7),
                  "Mixed_7a.branch7x7x3_3": (192, 192, 7, 1), "Mixed_7a.branch7x7x3_4": (192, 192, 3, 3)})
    for block, c in (("Mixed_7b", 1280), ("Mixed_7c", 2048)):
        convs.update({f"{block}.branch1x1": (320, c, 1, 1), f"{block}.branch3x3_1": (384, c, 1, 1),
                      f"{block}.branch3x3_2a": (384, 384, 1, 3), f"{block}.branch3x3_2b": (384, 384, 3, 1),
                      f"{block}.branch3x3dbl_1": (448, c, 1, 1), f"{block}.branch3x3dbl_2": (384, 448, 3, 3),
                      f"{block}.branch3x3dbl_3a": (384, 384, 1, 3), f"{block}.branch3x3dbl_3b": (384, 384, 3, 1),
                      f"{block}.branch_pool": (192, c, 1, 1)})
    return convs


def expected_state_shapes() -> dict[str, tuple[int, ...]]:
    """Every key the converted weights file holds, with its shape (BatchNorm step counters excluded)."""
    shapes = {}
    for prefix, shape in expected_convs().items():
        shapes[f"{prefix}.conv.weight"] = shape
        for stat in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.bn.{stat}"] = (shape[0],)
    shapes.update({"fc.weight": (1008, 2048), "fc.bias": (1008,)})
    return shapes


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    path = tmp_path_factory.mktemp("inception") / "weights-inception-2015-12-05-6726825d.pth"
    save_random_inception(path)  # He-scaled random init in the converter's file format
    return path


@pytest.fixture(scope="module")
def model(weights) -> InceptionV3FID:
    return load_inception(weights)


def images(n: int, h: int = 40, w: int = 56, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (n, 3, h, w), dtype=np.uint8))


def tf1_bilinear_numpy(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Independent TF 1.x resize_bilinear (align_corners=False, no half-pixel centres) of img (H, W), float64."""
    h, w = img.shape
    out = np.empty((out_h, out_w))
    for i in range(out_h):
        sy = i * h / out_h
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, h - 1), sy - y0
        for j in range(out_w):
            sx = j * w / out_w
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, w - 1), sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def test_state_dict_matches_torch_fidelity_layout():
    expected = expected_state_shapes()
    assert len(expected_convs()) == 94
    fresh = InceptionV3FID().state_dict()
    ours = {k: tuple(v.shape) for k, v in fresh.items() if not k.endswith("num_batches_tracked")}
    assert sorted(ours) == sorted(expected)
    assert ours == expected


def test_load_converted_weights_file(tmp_path, weights, model):
    # The converter writes a plain dict without BatchNorm step counters; it loads as is, values unchanged.
    state = torch.load(weights, weights_only=True)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_state_shapes()
    ours = model.state_dict()
    assert all(torch.equal(ours[k], v) for k, v in state.items())
    info = model.describe()
    assert info["weights_sha256"] == sha256_file(weights) and info["input_size"] == 299
    assert "tf1-bilinear" in info["resize"] and info["weights"] == str(weights)
    state["Mixed_5b.branch1x1.conv.kernel"] = state.pop("Mixed_5b.branch1x1.conv.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(ValueError, match="not an inception-v3-compat state dict"):
        load_inception(tmp_path / "renamed.pth")
    with pytest.raises(FileNotFoundError):
        load_inception(tmp_path / "absent.pth")


def test_tf1_resize_against_numpy():
    rng = np.random.default_rng(3)
    for (h, w), (oh, ow) in (((5, 7), (299, 299)), ((13, 11), (4, 6)), ((8, 8), (8, 8))):
        img = rng.integers(0, 256, (h, w)).astype(np.float32)
        ours = tf1_resize_bilinear(torch.from_numpy(img)[None, None], (oh, ow))[0, 0].numpy()
        assert ours.shape == (oh, ow)
        np.testing.assert_allclose(ours, tf1_bilinear_numpy(img.astype(np.float64), oh, ow), atol=2e-4)
    # Hand-worked: [0, 10] -> 4 samples at 0, 0.5, 1, 1.5 (clamped) of the source.
    row = tf1_resize_bilinear(torch.tensor([[[[0.0, 10.0]]]]), (1, 4))
    assert row.flatten().tolist() == [0.0, 5.0, 10.0, 10.0]
    # Not torch's half-pixel bilinear.
    x = torch.from_numpy(rng.random((1, 1, 5, 7)).astype(np.float32))
    assert not torch.allclose(tf1_resize_bilinear(x, (299, 299)),
                              F.interpolate(x, (299, 299), mode="bilinear", align_corners=False), atol=1e-3)


def test_outputs_shapes_determinism_batch_independence(model):
    x = images(3)
    with torch.no_grad():
        out = model(x)
        again = model(x)
        singles = [model(x[i:i + 1]) for i in range(3)]
    assert out["pool3"].shape == (3, 2048) and out["logits_unbiased"].shape == (3, 1008)
    assert out["pool3"].dtype == torch.float32
    assert torch.equal(out["pool3"], again["pool3"]) and torch.equal(out["logits_unbiased"], again["logits_unbiased"])
    assert (out["pool3"] >= 0).all() and out["pool3"].std() > 1e-3  # post-ReLU means, not collapsed
    stacked = torch.cat([s["pool3"] for s in singles])
    torch.testing.assert_close(out["pool3"], stacked, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["logits_unbiased"], out["pool3"] @ model.fc.weight.T)
    assert not torch.allclose(out["pool3"][0], out["pool3"][1])
    with pytest.raises(ValueError, match="uint8"):
        model(x.float())

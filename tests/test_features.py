"""The tiny world's feature net: deterministic training, accuracy on rendered images, FD / PRDC."""
from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from imagenet_t2i.evaluation.fid.fd import extract_features, feature_stats, frechet_distance
from imagenet_t2i.evaluation.fid.tiny_net import (evaluate_feature_net, fd_report, load_feature_net, load_images,
                                                  split_labels, train_feature_net)
from imagenet_t2i.io import read_json, sha256_file
from imagenet_t2i.world import build_split


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Rendered train / val splits, a single-colour val split and a net trained on train."""
    root = tmp_path_factory.mktemp("world")
    build_split(root / "train", "train", 1500, seed=0, size=32, progress=False)
    build_split(root / "val", "val", 240, seed=0, size=32, progress=False)
    build_split(root / "val_other", "val", 240, seed=1, size=32, progress=False)
    build_split(root / "val_red", "val", 240, seed=2, size=32, colors=["red"], progress=False)
    metrics = train_feature_net(root / "train", root / "net", seed=0, epochs=8, threads=1, val_dir=root / "val")
    return root, metrics


def test_trains_to_high_accuracy_and_saves(world):
    root, metrics = world
    acc = metrics["val_accuracy"]
    # chance: 1/6 classes, 1/10 colours, 1/3 sizes
    assert acc["class"] > 0.8 and acc["color"] > 0.95 and acc["size"] > 0.8, acc
    assert read_json(root / "net" / "metrics.json") == metrics
    assert metrics["num_train"] == 1500 and metrics["num_val"] == 240
    assert 50_000 <= metrics["num_parameters"] <= 200_000 and metrics["feature_dim"] == 128
    assert metrics["feature_net"]["sha256"] == sha256_file(root / "net" / "model.safetensors")
    config = read_json(root / "net" / "config.json")
    assert config["heads"]["class"] == sorted(read_json(root / "train" / "classes.json"))
    assert len(config["heads"]["color"]) == 10 and config["heads"]["size"] == ["large", "medium", "small"]


def test_load_round_trip_gives_identical_model(world):
    root, metrics = world
    net = load_feature_net(root / "net")
    assert not net.training
    assert net.description == metrics["feature_net"]
    assert evaluate_feature_net(net, root / "val") == metrics["val_accuracy"]  # same weights, same predictions
    images = load_images(root / "val")
    feats = extract_features(net, images, batch_size=100)
    again = extract_features(load_feature_net(root / "net"), images, batch_size=240)
    assert feats.shape == (240, 128)
    np.testing.assert_allclose(feats, again, rtol=1e-5, atol=1e-6)


def test_training_is_deterministic(world, tmp_path):
    root, _ = world
    small = tmp_path / "small"
    build_split(small, "train", 120, seed=3, size=32, progress=False)
    runs = {name: tmp_path / name for name in ("a", "b", "c")}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        train_feature_net(small, runs[name], seed=seed, epochs=1, threads=1, batch_size=32)
    weights = {name: (folder / "model.safetensors").read_bytes() for name, folder in runs.items()}
    assert weights["a"] == weights["b"]
    assert weights["a"] != weights["c"]


def test_fd_separates_real_from_wrong_sets(world):
    root, _ = world
    net = load_feature_net(root / "net")
    val = load_images(root / "val")  # (240, 3, 32, 32)
    same = fd_report(net, val, val)
    assert abs(same["fd"]) < 1e-6
    assert same["precision"] == same["recall"] == same["density"] == same["coverage"] == 1.0
    other = fd_report(net, val, load_images(root / "val_other"))
    one_colour = fd_report(net, val, load_images(root / "val_red"))
    noise = torch.rand(val.shape, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dead ReLU features on noise make its covariance singular
        noisy = fd_report(net, val, noise)
    assert 0 < other["fd"] < 0.2 * one_colour["fd"] and one_colour["fd"] < 0.1 * noisy["fd"]
    assert other["precision"] > 0.8 and other["recall"] > 0.8 and other["coverage"] > 0.6
    assert one_colour["coverage"] < 0.4 and one_colour["recall"] < 0.4  # one colour misses most of the modes
    assert noisy["precision"] == noisy["coverage"] == 0.0
    upsampled = fd_report(net, val, torch.nn.functional.interpolate(val, scale_factor=2))  # resized back to 32
    assert upsampled["fd"] < 0.2 * one_colour["fd"] and upsampled["precision"] > 0.8, upsampled


def test_fd_report_takes_any_extractor_and_batches(world):
    root, _ = world
    real, fake = load_images(root / "val"), load_images(root / "val_other")

    def colour_moments(x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, 6)
        return torch.cat([x.mean(dim=(2, 3)), x.std(dim=(2, 3))], dim=1)

    report = fd_report(colour_moments, real.split(100), fake, k=5)
    assert set(report) == {"fd", "precision", "recall", "density", "coverage", "num_real", "num_fake", "feature_net"}
    assert report["num_real"] == report["num_fake"] == 240
    assert report["feature_net"].endswith("colour_moments")
    expected = frechet_distance(*feature_stats(colour_moments(real)), *feature_stats(colour_moments(fake)))
    assert report["fd"] == pytest.approx(expected, rel=1e-6)
    assert all(0.0 <= report[m] <= 1.0 for m in ("precision", "recall", "coverage"))


def test_load_images_split_and_paths(world):
    root, _ = world
    from_split = load_images(root / "val_red")
    paths = sorted((root / "val_red" / "images").glob("*.png"))
    from_paths = load_images(paths)
    assert from_split.shape == (240, 3, 32, 32) and from_split.dtype == torch.float32
    assert torch.equal(from_split, from_paths)
    pixel = np.asarray(Image.open(paths[5]))[7, 11]  # (3,) uint8
    assert torch.allclose(from_split[5, :, 7, 11], torch.from_numpy(pixel / 127.5 - 1).float())
    assert from_split.min() >= -1 and from_split.max() <= 1
    assert set(split_labels(root / "val_red")["color"]) == {"red"}


def test_class_only_split_and_clear_errors(world, tmp_path):
    root, _ = world
    plain = tmp_path / "plain"  # ImageNet-like: index.jsonl without scenes.jsonl
    shutil.copytree(root / "val", plain)
    (plain / "scenes.jsonl").unlink()
    metrics = train_feature_net(plain, tmp_path / "net", epochs=1, threads=1)
    assert set(metrics["val_accuracy"]) == {"class"} and metrics["num_train"] + metrics["num_val"] == 240
    with pytest.raises(ValueError, match="has no 'color' labels"):
        evaluate_feature_net(load_feature_net(root / "net"), plain)
    with pytest.raises(FileNotFoundError, match="index.jsonl"):
        load_images(tmp_path)
    with pytest.raises(FileNotFoundError, match="train_feature_net"):
        load_feature_net(tmp_path / "missing")
    Image.new("RGB", (16, 16)).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="small.png: size"):
        load_images([plain / "images" / "val_000000.png", tmp_path / "small.png"])

"""The tiny world's Inception: a small CNN whose pooled penultimate activations are FD / PRDC features.

It is trained on the source train split to classify each image's shape class and, where
``scenes.jsonl`` gives them, the object's colour and size (one linear head each on the pooled
features), so the features separate what GenEval checks. Any extractor mapping images
(N, 3, H, W) in [-1, 1] to features (N, F) (Inception, CLIP, DINOv2 at paper scale) plugs into
``fd_report`` the same way.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save
from torch import nn

from imagenet_t2i.evaluation.fid.fd import Extractor, compute_fd, extract_features, prdc
from imagenet_t2i.io import atomic_write, read_json, read_jsonl, write_json

ARCH = "tiny_feature_cnn"
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
METRICS_NAME = "metrics.json"
RESIZE_FILTER = "bilinear-antialias"  # applied when inputs are not input_size x input_size
# Channels per stage (conv 3x3 -> BN -> ReLU -> 2x2 max pool): 32x32 -> 4x4, 96k parameters, F = 128.
DEFAULT_WIDTHS: tuple[int, ...] = (32, 64, 128)


class FeatureNet(nn.Module):
    """Stages of conv-BN-ReLU-maxpool -> global average pool -> features (N, F); ``logits`` adds
    one linear head per label kind ("class", "color", "size") on those features."""

    arch = ARCH

    def __init__(
        self,
        heads: dict[str, list[str]],
        widths: Sequence[int] = DEFAULT_WIDTHS,
        input_size: int = 32,
    ) -> None:
        super().__init__()
        self.config = {"heads": {k: list(v) for k, v in heads.items()},
                       "widths": [int(w) for w in widths], "input_size": int(input_size)}
        body, c_in = [], 3
        for c_out in widths:
            body += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                     nn.MaxPool2d(2)]
            c_in = c_out
        self.body = nn.Sequential(*body)
        self.feature_dim = c_in
        self.input_size = int(input_size)
        self.heads = nn.ModuleDict({name: nn.Linear(c_in, len(labels)) for name, labels in heads.items()})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [-1, 1] -> pooled penultimate activations (N, F)."""
        if x.shape[-2:] != (self.input_size, self.input_size):
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear", antialias=True, align_corners=False)
        return self.body(x).mean(dim=(2, 3))  # (N, F)

    def logits(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per head: logits (N, num_labels)."""
        feats = self(x)  # (N, F)
        return {name: head(feats) for name, head in self.heads.items()}

    @property
    def description(self) -> dict:
        """What an FD number depends on: architecture, weights hash, feature size, resize filter."""
        return {"arch": self.arch, "sha256": hashlib.sha256(_state_bytes(self)).hexdigest(),
                "feature_dim": self.feature_dim, "input_size": self.input_size, "resize": RESIZE_FILTER}


def _state_bytes(model: nn.Module) -> bytes:
    """The safetensors serialisation of the model's state, exactly as written to disk."""
    return save({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()})


def _read_png(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))  # (H, W, 3) uint8
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read image ({err}); re-create it or drop it from the list") from err


def _index_paths(split_dir: Path) -> tuple[list[dict], list[Path]]:
    index_path = split_dir / "index.jsonl"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} is missing; a split folder needs index.jsonl (docs/formats.md)")
    rows = read_jsonl(index_path)
    for i, row in enumerate(rows):
        missing = [k for k in ("key", "class", "path") if k not in row]
        if missing:
            raise ValueError(f"{index_path} line {i + 1}: missing keys {missing}; rows need key, class, path")
    return rows, [split_dir / row["path"] for row in rows]


def load_images(source: str | os.PathLike | Iterable[str | os.PathLike]) -> torch.Tensor:
    """Images (N, 3, H, W) float32 in [-1, 1] from a split folder (index.jsonl order) or PNG paths.
    All images must share one size."""
    if isinstance(source, (str, os.PathLike)):
        _, paths = _index_paths(Path(source))
    else:
        paths = [Path(p) for p in source]
    if not paths:
        raise ValueError(f"load_images: no images in {source!r}")
    arrays = [_read_png(p) for p in paths]
    for path, arr in zip(paths, arrays):
        if arr.shape != arrays[0].shape:
            raise ValueError(f"{path}: size {arr.shape[:2]} differs from {paths[0]} {arrays[0].shape[:2]}; "
                             "resize the set to one size first")
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)  # (N, 3, H, W) uint8
    return x.float() / 127.5 - 1.0


def split_labels(split_dir: str | os.PathLike) -> dict[str, list[str]]:
    """Per label kind, one label per image in index.jsonl order: "class" from index.jsonl, and
    "color" / "size" of the first object of each scene when scenes.jsonl exists."""
    split_dir = Path(split_dir)
    rows, _ = _index_paths(split_dir)
    labels = {"class": [row["class"] for row in rows]}
    scenes_path = split_dir / "scenes.jsonl"
    if scenes_path.is_file():
        scenes = {s.get("key"): s for s in read_jsonl(scenes_path)}
        objects = []
        for row in rows:
            scene = scenes.get(row["key"])
            if scene is None or not scene.get("objects"):
                raise ValueError(f"{scenes_path}: key {row['key']!r} from index.jsonl has no scene record with "
                                 "objects; rebuild the split so both files list the same images")
            objects.append(scene["objects"][0])
        labels["color"] = [o["color"] for o in objects]
        labels["size"] = [o["size"] for o in objects]
    return labels


def _targets(labels: dict[str, list[str]], vocab: dict[str, list[str]], where: Path) -> dict[str, torch.Tensor]:
    out = {}
    for name, words in vocab.items():
        if name not in labels:
            raise ValueError(f"{where}: has no {name!r} labels but the feature net has a {name!r} head")
        lookup = {w: i for i, w in enumerate(words)}
        unknown = sorted(set(labels[name]) - set(lookup))
        if unknown:
            raise ValueError(f"{where}: {name} labels {unknown} are not among the trained ones {words}")
        out[name] = torch.tensor([lookup[w] for w in labels[name]])  # (N,)
    return out


@torch.no_grad()
def accuracies(model: FeatureNet, images: torch.Tensor, targets: dict[str, torch.Tensor],
               batch_size: int = 500) -> dict[str, float]:
    """Per head: fraction of images (N, 3, H, W) whose argmax label equals the target (N,)."""
    correct = {name: 0 for name in model.heads}
    for i in range(0, len(images), batch_size):
        for name, logit in model.logits(images[i:i + batch_size]).items():
            correct[name] += int((logit.argmax(1) == targets[name][i:i + batch_size]).sum())
    return {name: c / len(images) for name, c in correct.items()}


def evaluate_feature_net(model: FeatureNet, split_dir: str | os.PathLike) -> dict[str, float]:
    """Per-head accuracy of ``model`` on a split folder."""
    split_dir = Path(split_dir)
    targets = _targets(split_labels(split_dir), model.config["heads"], split_dir)
    return accuracies(model.eval(), load_images(split_dir), targets)


def train_feature_net(
    train_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    seed: int = 0,
    epochs: int = 8,
    threads: int = 1,
    val_dir: str | os.PathLike | None = None,
    val_fraction: float = 0.1,
    batch_size: int = 32,
    lr: float = 4e-3,
    weight_decay: float = 5e-4,
    labels: Callable[[str | os.PathLike], dict[str, list[str]]] | None = None,
) -> dict:
    """Train the feature net on a split folder and write ``model.safetensors``, ``config.json`` and
    ``metrics.json`` (last) to ``out_dir``, each atomically. Accuracy is measured on ``val_dir``
    or, without one, on a held-out ``val_fraction`` of the train split. Same seed and threads give
    the same weights. One thread is the default: on 2 cores shared with other jobs, 2 intra-op
    threads took ~14x the CPU time of one (OpenMP waits). ``labels``: a split folder -> its labels per head
    (default `split_labels`: class, colour, size; the aesthetic scorer gives its own). Returns the metrics."""
    train_dir, out_dir = Path(train_dir), Path(out_dir)
    label_fn = labels or split_labels
    t0 = time.perf_counter()
    images, labels = load_images(train_dir), label_fn(train_dir)  # (N, 3, H, W)
    vocab = {name: sorted(set(words)) for name, words in labels.items()}
    targets = _targets(labels, vocab, train_dir)
    if val_dir is None:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1) when no val_dir is given, got {val_fraction}")
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
        n_val = max(1, round(val_fraction * len(images)))
        val_idx, train_idx = order[:n_val], order[n_val:]
        val_images, val_targets = images[val_idx], {k: v[val_idx] for k, v in targets.items()}
        images, targets = images[train_idx], {k: v[train_idx] for k, v in targets.items()}
    else:
        val_images = load_images(val_dir)
        val_targets = _targets(label_fn(val_dir), vocab, Path(val_dir))
    if images.shape[-2] != images.shape[-1]:
        raise ValueError(f"{train_dir}: images must be square, got {tuple(images.shape[-2:])}")
    load_s = time.perf_counter() - t0

    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t1, c1 = time.perf_counter(), time.process_time()
        torch.manual_seed(seed)
        model = FeatureNet(vocab, input_size=images.shape[-1])
        steps_per_epoch = math.ceil(len(images) / batch_size)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
        gen = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(images), generator=gen)
            for i in range(0, len(images), batch_size):
                idx = perm[i:i + batch_size]
                x = images[idx]  # (B, 3, H, W)
                flip = torch.rand(len(idx), generator=gen) < 0.5  # every shape is mirror-symmetric
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                logits = model.logits(x)
                loss = sum(F.cross_entropy(logits[k], targets[k][idx]) for k in logits)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
        train_s, train_cpu_s = time.perf_counter() - t1, time.process_time() - c1
        model.eval()
        val_acc = accuracies(model, val_images, val_targets)
    finally:
        torch.set_num_threads(old_threads)

    with atomic_write(out_dir / WEIGHTS_NAME, "wb") as f:
        f.write(_state_bytes(model))
    write_json(out_dir / CONFIG_NAME, {"arch": ARCH, **model.config})
    metrics = {
        "val_accuracy": val_acc,
        "val_source": str(val_dir) if val_dir is not None else f"held-out {val_fraction} of {train_dir}",
        "num_train": len(images), "num_val": len(val_images), "epochs": epochs, "seed": seed, "threads": threads,
        "num_parameters": sum(p.numel() for p in model.parameters()), "feature_dim": model.feature_dim,
        "load_s": round(load_s, 3), "train_s": round(train_s, 3), "train_cpu_s": round(train_cpu_s, 3),
        "feature_net": model.description,
    }
    write_json(out_dir / METRICS_NAME, metrics)
    return metrics


def load_feature_net(out_dir: str | os.PathLike) -> FeatureNet:
    """The feature net saved by ``train_feature_net`` in ``out_dir``, in eval mode."""
    out_dir = Path(out_dir)
    config_path, weights_path = out_dir / CONFIG_NAME, out_dir / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; train the feature net with train_feature_net first")
    kwargs = read_json(config_path)
    arch = kwargs.pop("arch", None)
    if arch != ARCH:
        raise ValueError(f"{config_path}: key 'arch' is {arch!r}, expected {ARCH!r}")
    try:
        model = FeatureNet(**kwargs)
    except TypeError as err:
        raise ValueError(f"{config_path}: kwargs do not fit FeatureNet: {err}") from err
    try:
        model.load_state_dict(load_file(weights_path), strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights_path} does not match {config_path}: {err}") from err
    return model.eval()


def describe_extractor(extractor: Extractor) -> dict | str:
    """The extractor's ``description`` attribute, else its qualified name."""
    description = getattr(extractor, "description", None)
    if description is not None:
        return description
    kind = extractor if callable(extractor) and hasattr(extractor, "__qualname__") else type(extractor)
    return f"{kind.__module__}.{kind.__qualname__}"


def fd_report(
    extractor: Extractor,
    real_images: torch.Tensor | np.ndarray | Iterable[torch.Tensor | np.ndarray],
    fake_images: torch.Tensor | np.ndarray | Iterable[torch.Tensor | np.ndarray],
    k: int = 3,
    batch_size: int = 256,
) -> dict:
    """FD and precision / recall / density / coverage (k-NN) between two image sets in [-1, 1],
    each (N, 3, H, W) or an iterable of such batches, in ``extractor``'s feature space."""
    real = extract_features(extractor, real_images, batch_size)  # (N, F)
    fake = extract_features(extractor, fake_images, batch_size)  # (M, F)
    return {"fd": compute_fd(real, fake), **prdc(real, fake, k=k),
            "num_real": len(real), "num_fake": len(fake), "feature_net": describe_extractor(extractor)}

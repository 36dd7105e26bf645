"""The paper-scale source: an index of an ImageNet-1k folder (ILSVRC2012 layout), images left in place.

``train/<wnid>/*.JPEG``; val either sorted the same way or flat as distributed
(``val/ILSVRC2012_val_00000001.JPEG`` ...) with a labels file (`read_val_labels`). Every index row carries
its image's sha256, so ``index.jsonl`` is the split's manifest (`provenance.members`).
"""
from __future__ import annotations

import csv
import os
import re
from pathlib import Path

import numpy as np

from imagenet_t2i.io import write_json, write_jsonl
from imagenet_t2i.provenance import sha256_files

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}
WNID = re.compile(r"n\d{8}")
LABEL_FORMATS = ("Kaggle's LOC_val_solution.csv, the devkit's ILSVRC2012_validation_ground_truth.txt (with its "
                 "data/meta.mat) or one wnid a line (TensorFlow's imagenet_2012_validation_synset_labels.txt)")
MAX_SHOWN = 5


def val_key(n: int) -> str:
    """The file stem of the ``n``-th (1-based) ILSVRC2012 validation image."""
    return f"ILSVRC2012_val_{n:08d}"


def _require(path: Path, what: str) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: {what}")


def read_synset_mapping(path: str | os.PathLike) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` lines "n01440764 tench, Tinca tinca" -> {wnid: names}."""
    _require(Path(path), "source.synset_mapping must name ImageNet's LOC_synset_mapping.txt")
    mapping = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            wnid, _, names = line.partition(" ")
            if not WNID.fullmatch(wnid) or not names:
                raise ValueError(f"{path}:{n}: expected '<wnid> <names>', got {line!r}")
            mapping[wnid] = names
    return mapping


def read_val_labels(path: str | os.PathLike, meta_mat: str | os.PathLike | None = None) -> dict[str, str]:
    """Val image key -> wnid, the format told by the content: Kaggle's CSV (header ``ImageId,PredictionString``;
    the class is the first wnid of the prediction string), the devkit's ground truth (one 1-based ILSVRC2012_ID
    a line, line i = image i; the ID -> wnid map is ``meta_mat``, default ``meta.mat`` beside it) or one wnid
    a line (line i = image i)."""
    path = Path(path)
    _require(path, f"the val labels file (source.val_labels) must be one of {LABEL_FORMATS}")
    lines = [line.strip() for line in path.read_text().splitlines()]
    lines = [line for line in lines if line]
    if lines and lines[0].replace(" ", "").lower() == "imageid,predictionstring":
        return _loc_csv(path)
    if lines and all(line.isdigit() for line in lines):
        return _devkit(path, [int(line) for line in lines], Path(meta_mat) if meta_mat else path.parent / "meta.mat")
    if lines and all(WNID.fullmatch(line) for line in lines):
        return {val_key(i): wnid for i, wnid in enumerate(lines, 1)}
    raise ValueError(f"{path}: not a val labels file I know; expected {LABEL_FORMATS}")


def _loc_csv(path: Path) -> dict[str, str]:
    labels: dict[str, str] = {}
    with open(path, newline="") as f:
        rows = csv.reader(f)
        next(rows)
        for n, row in enumerate(rows, 2):
            if not row:
                continue
            wnid = row[1].split()[0] if len(row) == 2 and row[1].split() else ""
            if not WNID.fullmatch(wnid):
                raise ValueError(f"{path}:{n}: expected '<ImageId>,<wnid> x y x y ...', got {','.join(row)!r}")
            if labels.setdefault(row[0], wnid) != wnid:
                raise ValueError(f"{path}:{n}: {row[0]} is labelled twice with different classes")
    return labels


def _devkit(path: Path, ids: list[int], meta_mat: Path) -> dict[str, str]:
    from scipy.io import loadmat

    _require(meta_mat, f"{path} holds ILSVRC2012_IDs; their wnids are in the devkit's data/meta.mat: keep it beside "
                       f"the ground-truth file (as in ILSVRC2012_devkit_t12/data/) or give its path")
    synsets = np.atleast_1d(loadmat(meta_mat, squeeze_me=True)["synsets"])
    wnids = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets}
    labels = {}
    for n, i in enumerate(ids, 1):
        if i not in wnids:
            raise ValueError(f"{path}:{n}: ILSVRC2012_ID {i} is not in {meta_mat}; use the meta.mat of the same devkit")
        labels[val_key(n)] = wnids[i]
    return labels


def _first(items: list[str]) -> str:
    return ", ".join(sorted(items)[:MAX_SHOWN]) + (" ..." if len(items) > MAX_SHOWN else "")


def _scan(split_dir: Path) -> dict[str, tuple[Path, str | None]]:
    """Image key -> (path, class folder name, or None for an image directly in ``split_dir``)."""
    found: dict[str, tuple[Path, str | None]] = {}

    def add(img: Path, wnid: str | None) -> None:
        if img.stem in found:
            raise ValueError(f"two images share the key {img.stem!r}: {found[img.stem][0]} and {img}; keys are "
                             f"file stems and must be unique, remove one")
        found[img.stem] = (img, wnid)

    entries = sorted(split_dir.iterdir())
    folders = [p for p in entries if p.is_dir()]
    for img in entries:
        if img.suffix.lower() in IMAGE_SUFFIXES and img.is_file():
            add(img, None)
    if found and folders:
        raise ValueError(f"{split_dir} holds both images and class folders ({folders[0].name}, ...); keep one layout")
    for folder in folders:
        for img in sorted(folder.iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES:
                add(img, folder.name)
    return found


def _labelled(found: dict[str, tuple[Path, str | None]], labels: dict[str, str] | None, split_dir: Path,
              labels_path: str | os.PathLike | None) -> dict[str, tuple[Path, str]]:
    """Key -> (path, wnid), from the labels file when there is one, else from the class folders."""
    if labels is None:
        flat = [k for k, (_, wnid) in found.items() if wnid is None]
        if flat:
            raise ValueError(f"{split_dir} holds images directly ({found[flat[0]][0].name}, ...) and no labels file "
                             f"was given: for ImageNet val as distributed set source.val_labels to {LABEL_FORMATS}; "
                             f"otherwise sort the images into <wnid>/ class folders")
        return {k: (p, wnid) for k, (p, wnid) in found.items() if wnid is not None}
    unlabelled = [k for k in found if k not in labels]
    if unlabelled:
        raise ValueError(f"{len(unlabelled)} image(s) of {split_dir} have no label in {labels_path} (first: "
                         f"{_first(unlabelled)}): remove the stray files or use the labels file of this copy of val")
    imageless = [k for k in labels if k not in found]
    if imageless:
        raise ValueError(f"{len(imageless)} label(s) of {labels_path} have no image in {split_dir} (first: "
                         f"{_first(imageless)}): the folder is incomplete; extract val again")
    disagree = [k for k, (_, wnid) in found.items() if wnid is not None and wnid != labels[k]]
    if disagree:
        raise ValueError(f"{len(disagree)} image(s) of {split_dir} sit in another class folder than {labels_path} "
                         f"says (first: {_first(disagree)}): sort val again, or give no labels file")
    return {k: (p, labels[k]) for k, (p, _) in found.items()}


def build_index(root: str | os.PathLike, split: str, synset_mapping: str | os.PathLike, out_dir: str | os.PathLike,
                val_labels: str | os.PathLike | None = None, workers: int = 8,
                meta_mat: str | os.PathLike | None = None) -> int:
    """Write ``index.jsonl`` (``key``, ``class``, absolute ``path``, ``sha256``; sorted by class, then key) and
    ``classes.json`` for ``root/<split>``; returns the number of images.

    ``val_labels`` (used for ``split == "val"`` only) labels a flat val folder, or is checked against a sorted
    one; ``meta_mat`` locates the devkit's meta.mat for its ground-truth format. Images are hashed on
    ``workers`` threads."""
    classes = read_synset_mapping(synset_mapping)
    split_dir = Path(os.path.abspath(Path(root) / split))
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir} does not exist: source.root must hold {split}/ (train/<wnid>/*.JPEG; "
                                f"val/<wnid>/*.JPEG, or val/*.JPEG as distributed with source.val_labels)")
    labels_path = val_labels if split == "val" else None
    labels = read_val_labels(labels_path, meta_mat) if labels_path else None
    images = _labelled(_scan(split_dir), labels, split_dir, labels_path)
    unknown = sorted({wnid for _, wnid in images.values() if wnid not in classes})
    if unknown:
        where = labels_path if labels is not None else f"class folders of {split_dir}"
        raise ValueError(f"{len(unknown)} class(es) of {where} are not in {synset_mapping} (first: {_first(unknown)}): "
                         f"use the synset mapping of the same ImageNet release")
    keys = sorted(images, key=lambda k: (images[k][1], k))
    paths = [images[k][0] for k in keys]
    hashes = sha256_files(paths, workers, desc=f"sha256 {split}")
    gone = [str(p) for p, h in zip(paths, hashes) if h is None]
    if gone:
        raise FileNotFoundError(f"image(s) vanished while indexing: {_first(gone)}")
    rows = [{"key": k, "class": images[k][1], "path": str(p), "sha256": h} for k, p, h in zip(keys, paths, hashes)]
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "index.jsonl", rows)
    write_json(out_dir / "classes.json", classes)
    return len(rows)

"""Build augmented sets (docs/formats.md, "Augmented sets"): one composite per source image.

Unreadable or inconsistent source images are reported in ``skipped.json`` and skipped, never fatal.
Image i of a set uses ``np.random.default_rng([seed, i])``.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imagenet_t2i.augment.crop import apply_crop
from imagenet_t2i.augment.cutmix import apply_cutmix
from imagenet_t2i.augment.geometry import CROP_SCALE, CUTMIX_CHOICES
from imagenet_t2i.augment.images import load_square_rgb
from imagenet_t2i.io import read_json, read_jsonl, write_json, write_jsonl
from imagenet_t2i.world.folder import IMAGE_FORMATS, save_image, staged_folder

PAPER_SIZE = 256  # side of ImageNet sources without scene records (resize 256 + center crop)
MAX_PARTNER_TRIES = 20


class SourceSplit:
    """A source split folder: index rows, optional scene records, image loading with failure log."""

    def __init__(self, source_dir: str | Path, size: int | None) -> None:
        self.dir = Path(source_dir)
        index = self.dir / "index.jsonl"
        if not index.is_file():
            raise FileNotFoundError(f"{index} not found: build the source split first (it needs index.jsonl)")
        self.rows = read_jsonl(index)
        if not self.rows:
            raise ValueError(f"{index} is empty: nothing to augment")
        scenes_path = self.dir / "scenes.jsonl"
        self.scenes = {s["key"]: s for s in read_jsonl(scenes_path)} if scenes_path.is_file() else None
        classes_path = self.dir / "classes.json"
        self.class_names = read_json(classes_path) if classes_path.is_file() else None
        if size is None:
            size = next(iter(self.scenes.values()))["size"] if self.scenes else PAPER_SIZE
        self.size = size
        self.skipped: dict[str, dict] = {}

    def load(self, i: int) -> tuple[np.ndarray, dict] | None:
        """Image i as (R, R, 3) uint8 with its scene record; None (and logged) if unusable."""
        row = self.rows[i]
        key = row.get("key", f"<row {i}>")
        if key in self.skipped:
            return None
        path = self.dir / str(row.get("path", ""))
        try:
            if self.scenes is None:
                scene = {"key": key, "size": self.size, "source": "imagenet", "backgrounds": None,
                         "objects": None, "parents": [], "pattern": None}
                return load_square_rgb(path, self.size), scene
            if key not in self.scenes:
                raise KeyError(f"no record for {key!r} in {self.dir / 'scenes.jsonl'}")
            scene = self.scenes[key]
            img = load_square_rgb(path, scene["size"], exact=True)
            if scene["size"] != self.size:
                raise ValueError(f"scene size {scene['size']} differs from the set's size {self.size}")
            return img, scene
        except Exception as e:  # unreadable, truncated, wrong size, missing record: report, skip
            self.skipped[key] = {"key": key, "path": str(path), "error": f"{type(e).__name__}: {e}"}
            return None


def _write_set(
    source: SourceSplit,
    out_dir: str | Path,
    name: str,
    seed: int,
    image_format: str,
    progress: bool,
    make: Callable[[int, np.ndarray, dict, np.random.Generator], tuple[np.ndarray, dict] | None],
) -> dict:
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {image_format!r}: use one of {sorted(IMAGE_FORMATS)}")
    out_dir = Path(out_dir)
    index, scenes = [], []
    with staged_folder(out_dir / "images") as tmp:
        for i in tqdm(range(len(source.rows)), desc=f"augment {name}", disable=not progress):
            if (loaded := source.load(i)) is None:
                continue
            made = make(i, *loaded, np.random.default_rng([seed, i]))
            if made is None:
                continue
            img, scene = made
            rel = f"images/{scene['key']}.{image_format}"
            save_image(img, tmp / Path(rel).name, image_format)
            index.append({"key": scene["key"], "class": source.rows[i]["class"], "path": rel})
            scenes.append(scene)
    skipped = sorted(source.skipped.values(), key=lambda s: s["key"])
    write_json(out_dir / "skipped.json", skipped)
    write_jsonl(out_dir / "scenes.jsonl", scenes)
    if source.class_names is not None:
        write_json(out_dir / "classes.json", source.class_names)
    write_jsonl(out_dir / "index.jsonl", index)  # last: its presence marks a complete set
    return {"written": len(index), "skipped": len(skipped)}


def build_cutmix_set(
    source_dir: str | Path,
    out_dir: str | Path,
    pattern: str,
    seed: int,
    size: int | None = None,
    image_format: str = "png",
    progress: bool = True,
) -> dict:
    """One CutMix composite per readable source image, key ``cutmix_<key>``.

    The partner is drawn uniformly among the images of the OTHER classes (the official script
    could pick the same class; we do not). An unreadable partner is logged and redrawn.
    Returns ``{"written", "skipped"}``.
    """
    if pattern not in CUTMIX_CHOICES:
        raise ValueError(f"unknown CutMix pattern {pattern!r}: use one of {list(CUTMIX_CHOICES)}")
    source = SourceSplit(source_dir, size)
    classes = np.array([str(r.get("class")) for r in source.rows])
    order = np.argsort(classes, kind="stable")  # indices grouped by class
    names, starts, counts = np.unique(classes[order], return_index=True, return_counts=True)
    if len(names) < 2:
        raise ValueError(f"{source.dir}: CutMix needs images of at least two classes, found {list(names)}")
    block = {n: (int(s), int(c)) for n, s, c in zip(names, starts, counts)}

    def draw_partner(cls: str, rng: np.random.Generator) -> int:
        start, count = block[cls]
        r = int(rng.integers(len(order) - count))
        return int(order[r if r < start else r + count])

    def make(i: int, img: np.ndarray, scene: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict] | None:
        for _ in range(MAX_PARTNER_TRIES):
            j = draw_partner(classes[i], rng)
            if (partner := source.load(j)) is not None:
                return apply_cutmix(img, scene, *partner, pattern, rng)
        key = scene["key"]
        source.skipped[key] = {"key": key, "path": str(source.dir / source.rows[i]["path"]),
                               "error": f"no readable partner in {MAX_PARTNER_TRIES} draws"}
        return None

    return _write_set(source, out_dir, "cutmix", seed, image_format, progress, make)


def build_crop_set(
    source_dir: str | Path,
    out_dir: str | Path,
    scale: tuple[float, float] = CROP_SCALE,
    seed: int = 0,
    size: int | None = None,
    image_format: str = "png",
    progress: bool = True,
) -> dict:
    """One random square crop per readable source image, key ``crop_<key>``; ``{"written", "skipped"}``."""
    source = SourceSplit(source_dir, size)
    scale = (float(scale[0]), float(scale[1]))

    def make(i: int, img: np.ndarray, scene: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        return apply_crop(img, scene, scale, rng)

    return _write_set(source, out_dir, "crop", seed, image_format, progress, make)

"""Making the composites of a range of source rows: what a set is (`SetSpec`) and who makes it (`Worker`).

Image i uses ``np.random.default_rng([seed, i])`` and CutMix partners are drawn from the whole source,
so a composite does not depend on the chunk or the worker that makes it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from imagenet_t2i.augment.crop import apply_crop
from imagenet_t2i.augment.cutmix import apply_cutmix
from imagenet_t2i.augment.released import Released, box_geometry
from imagenet_t2i.augment.rescale import rescaled_maker
from imagenet_t2i.augment.source import SourceSplit
from imagenet_t2i.world.folder import encode_image

MAX_PARTNER_TRIES = 20
FOLDER_SIZE = 1000  # images of source rows [k * 1000, (k + 1) * 1000) go to images/<k:05d>/

Maker = Callable[[int, np.ndarray, dict, np.random.Generator], tuple[np.ndarray, dict] | str]  # str: why skipped


@dataclass(frozen=True)
class SetSpec:
    """An augmented set's recipe."""

    kind: str  # "cutmix" | "crop"
    source_dir: str
    size: int | None
    seed: int
    image_format: str
    pattern: str | None = None  # CutMix
    scale: tuple[float, float] | None = None  # Crop
    from_original: bool = False  # Crop: cut the window from the stored image (no scene records: ImageNet)
    resize: str = "bicubic"  # source.resize ("official": bases cut square, then resized)
    release: tuple[tuple[str, int, int], ...] = ()  # CutMix: the release copy's files (name, bytes, mtime_ns)
    rescale_from: tuple[str, str] = ()  # (base set folder, sha256 of its scenes.jsonl): its composites made again

    def params(self) -> dict:
        extra = {"resize": self.resize} if self.resize != "bicubic" else {}
        if self.rescale_from:
            extra["rescaled_from_scenes_sha256"] = self.rescale_from[1]
        if self.kind == "cutmix":
            return {"pattern": self.pattern, **extra, **({"release": [list(f) for f in self.release]}
                                                        if self.release else {})}
        return {"scale": list(self.scale or ()), **extra, **({"from_original": True} if self.from_original else {})}


class Outcome(NamedTuple):
    """One source row: its index row and scene record, or its ``skipped.json`` entry."""

    row: dict | None
    scene: dict | None
    skipped: dict | None


def image_path(i: int, key: str, image_format: str) -> str:
    """Path of source row i's composite, relative to the set folder."""
    return f"images/{i // FOLDER_SIZE:05d}/{key}.{image_format}"


def cutmix_maker(source: SourceSplit, pattern: str, released: Released | None = None) -> Maker:
    """Paste a partner of another class, drawn uniformly from the whole source; unreadable ones are redrawn.
    Where ``released`` names a composite of the base (`imagenet_t2i.augment.released`), that composite is rebuilt
    instead (its partner and box; its name as the key), if its partner is readable.

    The official script could pick the same class; we do not.
    """
    classes = np.array(source.classes)
    order = np.argsort(classes, kind="stable")  # row indices grouped by class
    names, starts, counts = np.unique(classes[order], return_index=True, return_counts=True)
    if len(names) < 2:
        raise ValueError(f"{source.dir}: CutMix needs images of at least two classes, found {list(names)}")
    block = {str(n): (int(s), int(c)) for n, s, c in zip(names, starts, counts)}
    row_of = {key: i for i, key in enumerate(source.keys)} if released else {}

    def make(i: int, img: np.ndarray, scene: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict] | str:
        for name, partner_key, box in (released or {}).get(source.keys[i], []):
            j = row_of.get(partner_key)
            if j is not None and (partner := source.load(j)) is not None:
                out, rec = apply_cutmix(img, scene, *partner, pattern, rng, geo=box_geometry(box, source.size))
                return out, {**rec, "key": name, "release_name": name,
                             "parent_classes": [source.classes[i], source.classes[j]]}
        start, count = block[source.classes[i]]
        for _ in range(MAX_PARTNER_TRIES):
            r = int(rng.integers(len(order) - count))
            j = int(order[r if r < start else r + count])
            if (partner := source.load(j)) is not None:
                out, rec = apply_cutmix(img, scene, *partner, pattern, rng)
                return out, {**rec, "parent_classes": [source.classes[i], source.classes[j]]}
        return f"no readable partner in {MAX_PARTNER_TRIES} draws"

    return make


def crop_maker(source: SourceSplit, scale: tuple[float, float], from_original: bool = False) -> Maker:
    if from_original and source.scenes is not None:
        raise ValueError(f"{source.dir}: augment.crop.from_original needs stored originals (ImageNet); this set has "
                         "scene records whose boxes refer to its own frame")

    def make(i: int, img: np.ndarray, scene: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        out, rec = apply_crop(img, scene, scale, rng, source.original(i) if from_original else None)
        return out, {**rec, "parent_classes": [source.classes[i]]}

    return make


class Worker:
    """Makes composites of source rows and writes their images under ``stage`` (the future ``images/``).

    ``one`` may run in several threads at once: the heavy steps (decode, resize, PNG/JPEG encode) run
    in Pillow without the GIL, and threads share the source index (1.28M rows at paper scale).
    """

    def __init__(self, spec: SetSpec, source: SourceSplit, released: Released | None = None) -> None:
        self.spec, self.source = spec, source
        if spec.rescale_from:
            self.make = rescaled_maker(self.source, spec.rescale_from[0], spec.from_original)
        elif spec.kind == "cutmix":
            self.make = cutmix_maker(self.source, str(spec.pattern), released)
        else:
            self.make = crop_maker(self.source, tuple(spec.scale or ()), spec.from_original)

    def one(self, i: int, stage: Path) -> Outcome:
        source, fmt = self.source, self.spec.image_format
        if (loaded := source.load(i)) is None:
            return Outcome(None, None, source.skip_entry(i, source.unreadable[i]))
        made = self.make(i, *loaded, np.random.default_rng([self.spec.seed, i]))
        if isinstance(made, str):
            return Outcome(None, None, source.skip_entry(i, made))
        img, scene = made
        data = encode_image(img, fmt)
        rel = image_path(i, scene["key"], fmt)
        path = stage / Path(rel).relative_to("images")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        row = {"key": scene["key"], "class": source.classes[i], "path": rel, "sha256": hashlib.sha256(data).hexdigest()}
        return Outcome(row, scene, None)

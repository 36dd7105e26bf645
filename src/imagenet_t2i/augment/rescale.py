"""An augmented set made again at a larger side (the resolution stage, T-RES): the same composites, so the same
captions apply.

Each composite of the base set (its ``scenes.jsonl``) is rebuilt from the source images at the new side: CutMix
with the same partner, pattern and box (every coordinate times new side / base side, rounded half up: exact at a
multiple of the base side), Crop with the same window (scaled; cut from the original with
``augment.crop.from_original``). The base side is the composites' own: ImageNet's are stored at 256 px whatever
``source.resolution`` is. The key is the base composite's, so the base
set's caption file captions the new one. A source image the base set skipped is skipped again.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np

from imagenet_t2i.augment.crop import apply_crop
from imagenet_t2i.augment.cutmix import apply_cutmix
from imagenet_t2i.augment.geometry import CutMixGeometry
from imagenet_t2i.augment.source import SourceSplit
from imagenet_t2i.io import read_jsonl


def base_records(base_dir: str | Path) -> tuple[str, int, dict[str, dict]]:
    """(set kind, base side, source key -> composite record) of a complete augmented set."""
    path = Path(base_dir) / "scenes.jsonl"
    if not (Path(base_dir) / "index.jsonl").is_file():
        raise FileNotFoundError(f"{base_dir}: not a complete augmented set (no index.jsonl); build it first")
    records = read_jsonl(path)
    if not records:
        raise ValueError(f"{path}: no composites to make again")
    kinds = {r["source"] for r in records}
    if len(kinds) != 1 or not kinds <= {"cutmix", "crop"}:
        raise ValueError(f"{path}: composites of kinds {sorted(kinds)}; expected one of cutmix, crop")
    return kinds.pop(), int(records[0]["size"]), {r["parents"][0]: r for r in records}


def rescale(values: list[int], base: int, size: int) -> list[int]:
    """Pixel coordinates at side ``base`` -> at side ``size`` (half-up rounding, as `geometry.scaled`)."""
    return [int(math.floor(v * size / base + 0.5)) for v in values]


def scaled_geometry(record: dict, size: int) -> CutMixGeometry:
    """A CutMix record's placement (``placed``, ``region``) at side ``size``: the pasted square's side and corner
    scaled, the corner kept inside the frame (rounding at a side that is no multiple of the base can push it out by a
    pixel); the shown region is that square, or for ``half`` the scaled half."""
    base, (x, y, x2, _) = record["size"], record["placed"]
    side = rescale([x2 - x], base, size)[0]
    x, y = (min(v, size - side) for v in rescale([x, y], base, size))
    region = tuple(rescale(record["region"], base, size)) if record["pattern"] == "half" else (x, y, x + side, y + side)
    return CutMixGeometry(record["pattern"], size, side, x, y, region)


def rescaled_maker(source: SourceSplit, base_dir: str | Path,
                   from_original: bool = False) -> Callable[..., tuple[np.ndarray, dict] | str]:
    """Make source row i's composite as the base set made it (module docstring), at ``source.size``."""
    kind, base_size, records = base_records(base_dir)
    row_of = {key: i for i, key in enumerate(source.keys)}

    def make(i: int, img: np.ndarray, scene: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict] | str:
        base = records.get(source.keys[i])
        if base is None:
            return f"not in the base set {base_dir}"
        if kind == "crop":
            x, y, x2, _ = rescale(base["region"], base_size, source.size)
            out, rec = apply_crop(img, scene, (1.0, 1.0), rng, source.original(i) if from_original else None,
                                  window=(x, y, x2 - x))
            return out, {**rec, "key": base["key"], "parent_classes": [source.classes[i]]}
        j = row_of.get(base["parents"][1])
        partner = source.load(j) if j is not None else None
        if partner is None:
            return f"partner {base['parents'][1]} unreadable"
        out, rec = apply_cutmix(img, scene, *partner, base["pattern"], rng, geo=scaled_geometry(base, source.size))
        extra = {"release_name": base["release_name"]} if "release_name" in base else {}
        return out, {**rec, "key": base["key"], **extra, "parent_classes": [source.classes[i], source.classes[j]]}

    return make

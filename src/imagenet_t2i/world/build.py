"""Render a split of the synthetic world into the source-split layout of docs/formats.md."""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from imagenet_t2i.io import read_json, read_jsonl, staged_folder, write_json, write_jsonl
from imagenet_t2i.world.folder import save_image
from imagenet_t2i.world.palette import BACKGROUNDS, COLORS, SIZE_RANGES, check_names
from imagenet_t2i.world.render import render_scene, sample_scene
from imagenet_t2i.world.shapes import DEFAULT_CLASSES, SHAPES


def build_split(
    out_dir: str | Path,
    split: str,
    num_images: int,
    seed: int,
    size: int,
    classes: Sequence[str] = DEFAULT_CLASSES,
    colors: Sequence[str] = tuple(COLORS),
    backgrounds: Sequence[str] = tuple(BACKGROUNDS),
    progress: bool = True,
    antialias: bool = True,
    sizes: Sequence[str] = tuple(SIZE_RANGES),
    placement: str = "random",
) -> list[dict]:
    """Render ``num_images`` scenes into ``out_dir`` and return their scene records (``sizes`` and ``placement`` as
    `sample_scene`).

    Writes ``images/<split>_<i:06d>.png``, ``index.jsonl``, ``scenes.jsonl`` and ``classes.json``.
    Classes cycle in order (balanced, like ImageNet); everything else is drawn from
    ``np.random.default_rng([seed, crc32(split), i])``, so image i does not depend on the others.
    """
    classes = check_names("classes", classes, SHAPES)
    check_names("colors", colors, COLORS)
    check_names("backgrounds", backgrounds, BACKGROUNDS)
    if num_images < 0 or size < 8:
        raise ValueError(f"split {split!r}: need num_images >= 0 and size >= 8, got {num_images}, {size}")
    out_dir = Path(out_dir)
    split_seed = zlib.crc32(split.encode("utf-8"))
    scenes, index = [], []
    with staged_folder(out_dir / "images") as tmp:
        for i in tqdm(range(num_images), desc=f"render {split}", disable=not progress):
            key = f"{split}_{i:06d}"
            rng = np.random.default_rng([seed, split_seed, i])
            scene = sample_scene(rng, key, size, [classes[i % len(classes)]], colors, backgrounds, sizes,
                                 placement)
            save_image(render_scene(scene, antialias=antialias), tmp / f"{key}.png")
            scenes.append(scene)
            index.append({"key": key, "class": scene["objects"][0]["class"], "path": f"images/{key}.png"})
    write_jsonl(out_dir / "scenes.jsonl", scenes)
    write_json(out_dir / "classes.json", {c: c for c in classes})
    write_jsonl(out_dir / "index.jsonl", index)  # last: its presence marks a complete split
    return scenes


def rescale_split(base_dir: str | Path, out_dir: str | Path, size: int, progress: bool = True,
                  antialias: bool = True) -> list[dict]:
    """The scenes of a rendered split (``base_dir``), drawn again at side ``size``: every box scaled by
    size / base side, the same keys, classes, colours and backgrounds (the resolution stage's images: T-RES).

    Writes the layout of `build_split`; returns the scaled scene records.
    """
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    index, scenes = read_jsonl(base_dir / "index.jsonl"), read_jsonl(base_dir / "scenes.jsonl")
    if not scenes:
        raise ValueError(f"{base_dir / 'scenes.jsonl'}: no scene records to draw again")
    factor = size / scenes[0]["size"]
    out = []
    with staged_folder(out_dir / "images") as tmp:
        for row, scene in tqdm(list(zip(index, scenes)), desc=f"render {base_dir.name} at {size} px",
                               disable=not progress):
            objects = [{**o, "box": [round(v * factor, 2) for v in o["box"]]} for o in scene["objects"]]
            scaled = {**scene, "size": size, "objects": objects}
            save_image(render_scene(scaled, antialias=antialias), tmp / Path(row["path"]).relative_to("images"))
            out.append(scaled)
    write_jsonl(out_dir / "scenes.jsonl", out)
    write_json(out_dir / "classes.json", read_json(base_dir / "classes.json"))
    write_jsonl(out_dir / "index.jsonl", index)  # last: its presence marks a complete split
    return out

"""The paper's own CutMix composites, rebuilt from their names in the released captions.

The official CutMix script names a composite ``<base>_<partner>_<x>_<y>_<x2>_<y2>``: the base image, the partner
image and the box (256-px frame, x2 / y2 exclusive) where the partner shows. `captions.backend: released` builds a
CutMix set's composite of a base image from such a name where the release has one of the set's pattern (partner
and box from the name, pixels from our CutMix code), so the composite's key is the release's name and the caption
stage finds the paper's own caption for it; a base without one gets our random composite and a VLM caption.

The pattern follows from the box: a 128 x 256 or 256 x 128 box is ``half`` (the partner resized whole, shown in
that half), a square of side 128 / 85 / 64 is ``quarter`` / ``ninth`` / ``sixteenth`` (the partner resized to the
square); any other box is not ours to rebuild and is left to the VLM path.
"""
from __future__ import annotations

import re
from pathlib import Path

from imagenet_t2i.augment.geometry import PATTERNS, CutMixGeometry, scaled
from imagenet_t2i.captions.released import COLUMNS, release_key, released_files, released_rows

_NAME = re.compile(r"^(?P<base>.+?_\d+)_(?P<partner>.+?_\d+)_(?P<x>\d+)_(?P<y>\d+)_(?P<x2>\d+)_(?P<y2>\d+)$")
Box = tuple[int, int, int, int]
Released = dict[str, list[tuple[str, str, Box]]]  # base key -> [(release name, partner key, box)]
SQUARES = {128: "quarter", 85: "ninth", 64: "sixteenth"}


def parse_composite(name: str) -> tuple[str, str, Box] | None:
    """``n01_12_n02_7_0_0_128_128`` -> ("n01_12", "n02_7", (0, 0, 128, 128)); None for an image that is not one."""
    m = _NAME.match(name)
    if m is None:
        return None
    return m["base"], m["partner"], (int(m["x"]), int(m["y"]), int(m["x2"]), int(m["y2"]))


def box_pattern(box: Box) -> str | None:
    """The CutMix pattern a 256-px box belongs to (module docstring), None when it is none of ours."""
    x, y, x2, y2 = box
    w, h = x2 - x, y2 - y
    if not (0 <= x < x2 <= 256 and 0 <= y < y2 <= 256):
        return None
    if (w, h) in ((128, 256), (256, 128)):
        return "half"
    return SQUARES.get(w) if w == h else None


def box_geometry(box: Box, size: int) -> CutMixGeometry:
    """The placement of a released composite's box at image side ``size`` (256-px lengths scaled as ours)."""
    pattern = box_pattern(box)
    if pattern is None:
        raise ValueError(f"box {box} is no CutMix pattern of ours ({PATTERNS})")
    rect = tuple(scaled(v, size) for v in box)
    if pattern == "half":
        return CutMixGeometry(pattern, size, size, 0, 0, rect)
    return CutMixGeometry(pattern, size, rect[2] - rect[0], rect[0], rect[1], rect)


def released_composites(path: str | Path, patterns: tuple[str, ...],
                        columns: dict[str, str] = COLUMNS) -> Released:
    """base key -> [(release name, partner key, box)] of the release's composites of ``patterns``, sorted by name."""
    out: dict[str, list[tuple[str, str, Box]]] = {}
    for file in released_files(path):
        for image_path, _ in released_rows(file, columns):
            name = release_key(image_path)
            if (parsed := parse_composite(name)) is not None and box_pattern(parsed[2]) in patterns:
                out.setdefault(parsed[0], []).append((name, parsed[1], parsed[2]))
    return {base: sorted(set(found)) for base, found in out.items()}

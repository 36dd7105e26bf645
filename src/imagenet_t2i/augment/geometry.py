"""Where CutMix pastes the partner and where Crop cuts (paper-spec section 3).

Geometry is stated at 256 px in the paper and scaled to the image side R: a length v becomes
round(v * R / 256) (half-up rounding).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PATTERNS = ("half", "quarter", "ninth", "sixteenth")
CUTMIX_CHOICES = (*PATTERNS, "all")
CROP_SCALE = (0.35, 0.80)  # crop side as a fraction of the image side, uniform


def scaled(v: float, size: int) -> int:
    """A 256-px length ``v`` at image side ``size``."""
    return int(math.floor(v * size / 256 + 0.5))


@dataclass(frozen=True)
class CutMixGeometry:
    """Partner resized to ``side`` x ``side``, placed with its top-left at (x, y); the mask M is
    the rectangle ``rect`` = (x1, y1, x2, y2), x2/y2 exclusive, inside the placed partner."""

    pattern: str
    size: int
    side: int
    x: int
    y: int
    rect: tuple[int, int, int, int]

    def mask(self) -> np.ndarray:
        """(size, size) bool mask, True where the partner shows."""
        m = np.zeros((self.size, self.size), dtype=bool)
        x1, y1, x2, y2 = self.rect
        m[y1:y2, x1:x2] = True
        return m


def _overlaps_closed(x: int, y: int, side: int, lo: int, hi: int) -> bool:
    """The official overlap test: the patch [x, x+side] x [y, y+side] touches [lo, hi]^2 (closed)."""
    return not (lo > x + side or x > hi) and not (lo > y + side or y > hi)


def cutmix_geometry(pattern: str, size: int, rng: np.random.Generator) -> CutMixGeometry:
    """Draw the CutMix placement for ``pattern`` at image side ``size``.

    - half: partner at full size; M = right half or bottom half (p = 0.5 each).
    - quarter: partner resized to 128 (scaled); one of the four corners, uniform.
    - ninth: partner resized to 85 (scaled); touches one of the 4 borders (uniform) at a uniform
      offset along it.
    - sixteenth: partner resized to 64 (scaled); top-left (x, y) uniform in [12, 180]^2 (scaled,
      capped so the patch fits), rejection-sampled until the patch does not overlap the central box
      [103, 153]^2 (scaled). Our reading follows the official check: both intervals closed, so a
      patch that merely touches the box is also rejected.
    - all: one of the four above, uniform per image; the result names the pattern actually used.
    """
    if pattern not in CUTMIX_CHOICES:
        raise ValueError(f"unknown CutMix pattern {pattern!r}: use one of {list(CUTMIX_CHOICES)}")
    if size < 8:
        raise ValueError(f"CutMix needs images of at least 8 px, got {size}")
    if pattern == "all":
        pattern = PATTERNS[rng.integers(len(PATTERNS))]
    if pattern == "half":
        h = scaled(128, size)
        rect = (h, 0, size, size) if rng.integers(2) == 0 else (0, h, size, size)
        return CutMixGeometry(pattern, size, size, 0, 0, rect)
    if pattern == "quarter":
        side = scaled(128, size)
        x, y = [(0, 0), (size - side, 0), (0, size - side), (size - side, size - side)][rng.integers(4)]
    elif pattern == "ninth":
        side = scaled(85, size)
        border, offset = rng.integers(4), int(rng.integers(0, size - side + 1))
        x, y = [(0, offset), (offset, 0), (size - side, offset), (offset, size - side)][border]
    else:
        side = scaled(64, size)
        lo, hi = scaled(12, size), min(scaled(180, size), size - side)
        c_lo, c_hi = scaled(103, size), scaled(153, size)
        free = [v for v in range(lo, hi + 1) if not (c_lo <= v + side and v <= c_hi)]
        if not free:
            raise ValueError(f"no 'sixteenth' placement avoids the central box at size {size}")
        while True:
            x, y = (int(v) for v in rng.integers(lo, hi + 1, size=2))
            if not _overlaps_closed(x, y, side, c_lo, c_hi):
                break
    return CutMixGeometry(pattern, size, side, x, y, (x, y, x + side, y + side))


def crop_window(size: int, scale: tuple[float, float], rng: np.random.Generator) -> tuple[int, int, int]:
    """A square crop (x, y, side): side = round(U(scale) * size), top-left uniform inside."""
    lo, hi = scale
    if not 0 < lo <= hi <= 1:
        raise ValueError(f"crop scale must satisfy 0 < lo <= hi <= 1, got {scale}")
    side = min(max(int(round(rng.uniform(lo, hi) * size)), 1), size)
    x, y = (int(v) for v in rng.integers(0, size - side + 1, size=2))
    return x, y, side

"""Shape classes of the synthetic world and their pixel coverage.

Every shape is defined on box-normalised coordinates (u, v) in [-1, 1]^2 (v grows downward) and
touches all four sides of its box, so an object's box is its tight extent.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

ShapeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

CROSS_HALF_WIDTH = 0.34  # half width of a cross arm, in box-normalised units
RING_INNER_RADIUS = 0.5  # hole radius of a ring, in box-normalised units

SHAPES: dict[str, ShapeFn] = {
    "circle": lambda u, v: u * u + v * v <= 1.0,
    "square": lambda u, v: np.ones(np.broadcast_shapes(u.shape, v.shape), dtype=bool),
    "triangle": lambda u, v: v >= 2.0 * np.abs(u) - 1.0,  # apex up, base at the bottom
    "diamond": lambda u, v: np.abs(u) + np.abs(v) <= 1.0,
    "cross": lambda u, v: np.minimum(np.abs(u), np.abs(v)) <= CROSS_HALF_WIDTH,
    "ring": lambda u, v: (u * u + v * v <= 1.0) & (u * u + v * v >= RING_INNER_RADIUS**2),
}
DEFAULT_CLASSES: tuple[str, ...] = tuple(SHAPES)


def coverage_window(
    shape: str, box: Sequence[float], height: int, width: int, antialias: bool = True
) -> tuple[int, int, np.ndarray]:
    """Fraction of each pixel covered by ``shape`` drawn in ``box`` = [x1, y1, x2, y2].

    Returns (x0, y0, cov) where cov (h, w) float32 covers pixels [y0, y0+h) x [x0, x0+w) of an
    image of the given size. Anti-aliasing supersamples 4x4 points per pixel; without it a pixel
    is covered iff its centre is inside.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape class {shape!r}: valid classes are {sorted(SHAPES)}")
    x1, y1, x2, y2 = (float(c) for c in box)
    if not (x2 > x1 and y2 > y1):
        raise ValueError(f"degenerate box {list(box)} for shape {shape!r}")
    x0, y0 = max(int(math.floor(x1)), 0), max(int(math.floor(y1)), 0)
    xe, ye = min(int(math.ceil(x2)), width), min(int(math.ceil(y2)), height)
    if xe <= x0 or ye <= y0:
        return x0, y0, np.zeros((0, 0), dtype=np.float32)
    ss = 4 if antialias else 1
    offsets = (np.arange(ss) + 0.5) / ss
    xs = (np.arange(x0, xe)[:, None] + offsets[None, :]).reshape(-1)  # (w*ss,)
    ys = (np.arange(y0, ye)[:, None] + offsets[None, :]).reshape(-1)  # (h*ss,)
    u = (xs[None, :] - (x1 + x2) / 2) / ((x2 - x1) / 2)  # (1, w*ss)
    v = (ys[:, None] - (y1 + y2) / 2) / ((y2 - y1) / 2)  # (h*ss, 1)
    inside = (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0) & SHAPES[shape](u, v)  # (h*ss, w*ss)
    cov = inside.reshape(ye - y0, ss, xe - x0, ss).mean(axis=(1, 3), dtype=np.float32)
    return x0, y0, cov


def coverage(shape: str, box: Sequence[float], size: int, antialias: bool = True) -> np.ndarray:
    """Full-image (size, size) coverage of ``shape`` in ``box``."""
    out = np.zeros((size, size), dtype=np.float32)
    x0, y0, cov = coverage_window(shape, box, size, size, antialias)
    out[y0 : y0 + cov.shape[0], x0 : x0 + cov.shape[1]] = cov
    return out

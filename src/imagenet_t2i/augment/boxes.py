"""Scene-record bookkeeping for augmented images: moved, clipped and dropped objects.

Visibility is judged on the object's own pixels: its shape is drawn (anti-aliased coverage) in its
transformed box, and the part that stays visible - inside the image and inside (partner) or
outside (base) the pasted rectangle - is measured. An object is kept iff at least ``MIN_VISIBLE``
of its coverage stays visible and the visible part is at least ``MIN_SIDE_PX`` pixels wide and
high. A kept object's box is the tight box of its visible pixels (each side stays the exact float
side unless the visible pixels end more than a pixel inside it); its size category is re-labelled
from the unclipped transformed extent.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from imagenet_t2i.world.palette import size_label
from imagenet_t2i.world.shapes import coverage_window

MIN_VISIBLE = 0.4
MIN_SIDE_PX = 2.0

Box = tuple[float, float, float, float]


def area(box: Sequence[float]) -> float:
    return max(box[2] - box[0], 0.0) * max(box[3] - box[1], 0.0)


def transform_box(box: Sequence[float], scale: float, dx: float, dy: float) -> Box:
    """Scale about the origin, then translate."""
    return (box[0] * scale + dx, box[1] * scale + dy, box[2] * scale + dx, box[3] * scale + dy)


def visible_part(
    cls: str, full: Sequence[float], size: int, rect: Sequence[int], inside: bool
) -> tuple[Box | None, float]:
    """Tight visible box and visible share of the coverage of ``cls`` drawn in ``full``.

    Visible pixels lie in the (size x size) image and inside ``rect`` (``inside=True``) or outside
    it (``inside=False``). The box is None when nothing is visible.
    """
    ox, oy = math.floor(full[0]), math.floor(full[1])  # canvas origin, covering the whole box
    cw, ch = math.ceil(full[2]) - ox, math.ceil(full[3]) - oy
    x0, y0, cov = coverage_window(cls, (full[0] - ox, full[1] - oy, full[2] - ox, full[3] - oy), ch, cw)
    xs = np.arange(cov.shape[1]) + ox + x0  # image column of each coverage column
    ys = np.arange(cov.shape[0]) + oy + y0
    in_x, in_y = (xs >= 0) & (xs < size), (ys >= 0) & (ys < size)
    r_x, r_y = (xs >= rect[0]) & (xs < rect[2]), (ys >= rect[1]) & (ys < rect[3])
    in_rect = r_y[:, None] & r_x[None, :]
    vis = (in_y[:, None] & in_x[None, :]) & (in_rect if inside else ~in_rect)  # (h, w)
    total = float(cov.sum())
    shown = np.where(vis, cov, 0.0)
    if total <= 0 or not (shown > 0).any():
        return None, 0.0
    rows, cols = np.nonzero(shown > 0)
    pixel_box = (xs[cols.min()], ys[rows.min()], xs[cols.max()] + 1, ys[rows.max()] + 1)
    # keep the exact float side unless the visible pixels end more than a pixel inside it
    box = [f if abs(p - f) < 1 else p for f, p in zip(full, pixel_box)]
    lo, hi = ((rect[0], rect[1]), (rect[2], rect[3])) if inside else ((0, 0), (size, size))
    box = (max(box[0], lo[0], 0), max(box[1], lo[1], 0), min(box[2], hi[0], size), min(box[3], hi[1], size))
    return tuple(float(c) for c in box), float(shown.sum()) / total


def keep_object(obj: dict, full: Sequence[float], size: int, rect: Sequence[int], inside: bool) -> dict | None:
    """The object with its visible box and new size label, or None if too little of it shows."""
    visible, share = visible_part(obj["class"], full, size, rect, inside)
    if visible is None or share < MIN_VISIBLE:
        return None
    if visible[2] - visible[0] < MIN_SIDE_PX or visible[3] - visible[1] < MIN_SIDE_PX:
        return None
    extent = max(full[2] - full[0], full[3] - full[1]) / size
    return {**obj, "size": size_label(extent), "box": [round(float(c), 2) for c in visible]}


def merge_backgrounds(weighted: Sequence[tuple[Sequence[str] | None, float]]) -> list[str] | None:
    """Background names ordered by total area; each parent's area is split evenly over its names.

    None when any parent's backgrounds are unknown (e.g. ImageNet sources).
    """
    totals: dict[str, float] = {}
    for names, weight in weighted:
        if names is None:
            return None
        for n in names:
            totals[n] = totals.get(n, 0.0) + weight / max(len(names), 1)
    return [n for n, w in sorted(totals.items(), key=lambda kv: -kv[1]) if w > 0]

"""Image helpers for augmentation: loading sources as square RGB arrays, resizing, checks."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def resize_square(img: np.ndarray, side: int) -> np.ndarray:
    """Resize an (H, W, 3) uint8 image to (side, side, 3), bilinear (antialiased when shrinking)."""
    if img.shape[:2] == (side, side):
        return img
    return np.asarray(Image.fromarray(img).resize((side, side), Image.Resampling.BILINEAR))


def load_square_rgb(path: str | Path, size: int, exact: bool = False, crop_first: bool = False) -> np.ndarray:
    """Read any PIL-readable image as RGB (CMYK, grayscale, palette...), resize its shorter side to
    ``size`` and center-crop to (size, size, 3) uint8 (bilinear); with ``crop_first`` (``source.resize:
    official``) the centre square is cut at full resolution first, then resized, as the official code does.

    With ``exact`` the file must already be size x size (its scene boxes refer to that frame).
    """
    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        if exact and (w, h) != (size, size):
            raise ValueError(f"{path}: image is {w}x{h}, its scene record says {size}x{size}")
        if (w, h) != (size, size) and crop_first:
            side = min(w, h)
            left, top = (w - side) // 2, (h - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.Resampling.BILINEAR)
        elif (w, h) != (size, size):
            s = size / min(w, h)
            nw, nh = max(size, round(w * s)), max(size, round(h * s))
            im = im.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - size) // 2, (nh - size) // 2
            im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8)


def check_image(img: np.ndarray, scene: dict, role: str) -> int:
    """Side of a square (R, R, 3) uint8 image that matches its scene's ``size``."""
    key = scene.get("key")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3 or img.shape[0] != img.shape[1]:
        raise ValueError(f"{role} {key!r}: expected a square (R, R, 3) uint8 image, got {img.shape} {img.dtype}")
    if img.shape[0] != scene.get("size"):
        raise ValueError(f"{role} {key!r}: image is {img.shape[0]} px but its scene says size {scene.get('size')}")
    return img.shape[0]

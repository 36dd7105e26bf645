"""Image reading and preprocessing shared by the encode stage and the samplers.

`load_rgb` copes with everything ImageNet throws at a reader (CMYK and grayscale JPEGs, a PNG
saved as .JPEG, palette/alpha images) and turns unreadable files into `CorruptImageError`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


class CorruptImageError(Exception):
    """An image file that cannot be decoded (missing, truncated, not an image)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"cannot read image {self.path}: {reason} "
            "(re-download the file, or drop it from the folder's index.jsonl)"
        )


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Decode any PIL-readable image file (whatever its extension says) to RGB. -> (H, W, 3) uint8."""
    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncated files fail here, not later
            rgb = im if im.mode == "RGB" else im.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8).copy()
    except FileNotFoundError:
        raise CorruptImageError(path, "file not found") from None
    except UnidentifiedImageError:
        raise CorruptImageError(path, "not a recognised image format") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL reports truncation/bad data as these
        raise CorruptImageError(path, f"{type(e).__name__}: {e}") from None


RESIZE_METHODS = ("bicubic", "official")  # source.resize


def centre_square(img: np.ndarray) -> np.ndarray:
    """The largest centred square of an (H, W, 3) image, at full resolution."""
    h, w = img.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return img[top : top + side, left : left + side]


def preprocess(img: np.ndarray, size: int, method: str = "bicubic") -> np.ndarray:
    """A square training image, (H, W, 3) -> (size, size, 3) uint8. ``bicubic`` (absent ``source.resize``): the
    shorter side resized to ``size`` (bicubic), then a centre crop. ``official`` (paper.yaml): the official code's
    order and filter, the centre square cropped at full resolution, then resized bilinear (antialiased)."""
    if method == "official":
        square = centre_square(img)
        if square.shape[0] == size:
            return np.ascontiguousarray(square)
        return np.asarray(Image.fromarray(np.ascontiguousarray(square)).resize((size, size), Image.Resampling.BILINEAR))
    if method != "bicubic":
        raise ValueError(f"source.resize must be one of {RESIZE_METHODS}, got {method!r}")
    h, w = img.shape[:2]
    if min(h, w) != size:
        scale = size / min(h, w)
        new_w = size if w <= h else max(size, round(w * scale))
        new_h = size if h <= w else max(size, round(h * scale))
        img = np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.Resampling.BICUBIC))
        h, w = new_h, new_w
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def to_tensor(imgs: Sequence[np.ndarray] | np.ndarray) -> torch.Tensor:
    """Stack uint8 images (H, W, 3) into a float batch in [-1, 1]. -> (N, 3, H, W) float32."""
    x = torch.from_numpy(np.stack(list(imgs)))  # (N, H, W, 3) uint8
    return x.permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Inverse of `to_tensor`: (N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8 (values outside are clipped)."""
    x = ((x.detach().float().cpu() + 1.0) * 127.5).round_().clamp_(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()

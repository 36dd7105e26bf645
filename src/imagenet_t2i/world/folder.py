"""Image files of the world and the augmented sets: an (H, W, 3) uint8 array as PNG or JPEG bytes."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}


def encode_image(img: np.ndarray, image_format: str = "png") -> bytes:
    """The file bytes of an (H, W, 3) uint8 array as PNG (lossless) or JPEG (quality 95)."""
    if image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {image_format!r}: use one of {sorted(IMAGE_FORMATS)}")
    kwargs = {"quality": 95} if image_format == "jpg" else {}
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format=IMAGE_FORMATS[image_format], **kwargs)
    return buf.getvalue()


def save_image(img: np.ndarray, path: Path, image_format: str = "png") -> None:
    """Save an (H, W, 3) uint8 array as PNG (lossless) or JPEG (quality 95)."""
    path.write_bytes(encode_image(img, image_format))

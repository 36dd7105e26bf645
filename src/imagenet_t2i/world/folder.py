"""Write an image folder all at once: images go to a staging folder that is renamed at the end."""
from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image

IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}


@contextlib.contextmanager
def staged_folder(final: str | Path) -> Iterator[Path]:
    """Yield an empty temporary folder beside ``final``; it replaces ``final`` if the block succeeds.

    One rename per folder instead of an fsync per file; a crash leaves ``final`` as it was
    (or absent) and a hidden temporary folder that the next run ignores.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    try:
        yield tmp
        if final.exists():
            old = final.with_name(f".{final.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
            tmp.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


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

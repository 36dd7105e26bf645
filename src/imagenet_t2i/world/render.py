"""Sample and render object-centric scenes (one object per image, like ImageNet).

A scene record (docs/formats.md) fully determines its rendered image: the background texture is
seeded by the record's key, objects are drawn in list order (later ones on top).
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from imagenet_t2i.world.palette import BACKGROUNDS, COLORS, SIZE_RANGES, check_names
from imagenet_t2i.world.shapes import SHAPES, coverage_window

GRADIENT_AMPLITUDE = (3.0, 9.0)  # peak gradient offset from the base colour, uniform range
NOISE_STD = 2.5  # per-pixel, per-channel Gaussian noise over the whole image
PLACEMENTS = ("random", "centre")  # where an object sits: anywhere it fits, or in the middle of the frame


def key_seed(key: str) -> int:
    """A stable 32-bit seed derived from a key (independent of PYTHONHASHSEED)."""
    return zlib.crc32(key.encode("utf-8"))


def sample_scene(
    rng: np.random.Generator,
    key: str,
    size: int,
    classes: Sequence[str],
    colors: Sequence[str],
    backgrounds: Sequence[str],
    sizes: Sequence[str] = tuple(SIZE_RANGES),
    placement: str = "random",
) -> dict:
    """Draw one single-object scene record: class, colour, size category (one of ``sizes``), position, background.

    ``placement`` "centre" moves the object to the middle of the frame; every other draw is the same as "random"'s.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"scene {key!r}: unknown placement {placement!r}; valid placements: {list(PLACEMENTS)}")
    classes = check_names("classes", classes, SHAPES)
    colors = check_names("colors", colors, COLORS)
    backgrounds = check_names("backgrounds", backgrounds, BACKGROUNDS)
    sizes = check_names("sizes", sizes, SIZE_RANGES)
    cls = classes[rng.integers(len(classes))]
    color = colors[rng.integers(len(colors))]
    size_name = sizes[rng.integers(len(sizes))]
    lo, hi = SIZE_RANGES[size_name]
    side = float(np.floor(rng.uniform(lo, hi) * size * 100) / 100)  # rounded down to 0.01 px
    x1 = min(round(float(rng.uniform(0, size - side)), 2), size - side)
    y1 = min(round(float(rng.uniform(0, size - side)), 2), size - side)
    if placement == "centre":
        x1 = y1 = round((size - side) / 2, 2)
    return {
        "key": key,
        "size": size,
        "source": "render",
        "backgrounds": [backgrounds[rng.integers(len(backgrounds))]],
        "objects": [
            {
                "class": cls,
                "color": color,
                "size": size_name,
                "box": [round(x1, 2), round(y1, 2), round(x1 + side, 2), round(y1 + side, 2)],
            }
        ],
        "parents": [],
        "pattern": None,
    }


def background_image(name: str, size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) float32 background: base colour plus a soft linear gradient."""
    check_names("backgrounds", [name], BACKGROUNDS)
    angle = rng.uniform(0, 2 * np.pi)
    amplitude = rng.uniform(*GRADIENT_AMPLITUDE)
    t = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1  # (size,) in (-1, 1)
    ramp = (np.cos(angle) * t[None, :] + np.sin(angle) * t[:, None]) / np.sqrt(2)  # (size, size)
    base = np.asarray(BACKGROUNDS[name], dtype=np.float32)
    return base[None, None, :] + (amplitude * ramp)[:, :, None]


def render_scene(scene: dict, antialias: bool = True) -> np.ndarray:
    """Render a scene record to an (H, W, 3) uint8 image.

    The first background fills the frame; every object is drawn in order with its colour.
    Deterministic: texture and noise are seeded by the record's key.
    """
    key, size = scene.get("key"), scene.get("size")
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"scene {key!r}: 'size' must be a positive int, got {size!r}")
    if not scene.get("backgrounds"):
        raise ValueError(f"scene {key!r}: 'backgrounds' is empty; name one of {sorted(BACKGROUNDS)}")
    rng = np.random.default_rng(key_seed(str(key)))
    img = background_image(scene["backgrounds"][0], size, rng)  # (H, W, 3)
    for obj in scene.get("objects") or []:
        if obj["color"] not in COLORS:
            raise ValueError(f"scene {key!r}: unknown colour {obj['color']!r}; valid: {sorted(COLORS)}")
        x0, y0, cov = coverage_window(obj["class"], obj["box"], size, size, antialias)
        h, w = cov.shape
        patch = img[y0 : y0 + h, x0 : x0 + w]
        color = np.asarray(COLORS[obj["color"]], dtype=np.float32)
        patch += cov[:, :, None] * (color[None, None, :] - patch)
    img += rng.normal(0.0, NOISE_STD, size=img.shape).astype(np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)

"""Crop augmentation: a random square crop resized back to the image side ([our choice], paper-spec 3)."""
from __future__ import annotations

import numpy as np

from imagenet_t2i.augment.boxes import keep_object, transform_box
from imagenet_t2i.augment.geometry import crop_window
from imagenet_t2i.augment.images import check_image, resize_square


def apply_crop(
    img: np.ndarray, scene: dict, scale: tuple[float, float], rng: np.random.Generator,
    original: np.ndarray | None = None, window: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, dict]:
    """Crop a square of side U(scale) x R at a uniform position and resize it back to R.

    With ``original`` (the stored image, (H, W, 3); ``augment.crop.from_original``) the same window is cut from
    the original's centre square at full resolution (window x S / R, S = min(H, W)) and resized to R once, so the
    crop keeps the detail the R-pixel image lost (a 35% window of a 500 x 375 photo is 131 px, not 90 upscaled).
    Boxes are mapped into the new frame and clipped; objects mostly outside the crop are dropped
    (see ``augment.boxes``). Backgrounds are kept as listed (their layout is not recorded). The
    record's ``region`` is the crop box in the R-pixel frame, ``scale`` its side / R. ``window`` (x, y, side): that
    crop instead of a drawn one (a set made again at another side, `imagenet_t2i.augment.rescale`).
    """
    size = check_image(img, scene, "image")
    x, y, side = window if window is not None else crop_window(size, scale, rng)
    if original is not None:
        h, w = original.shape[:2]
        s, f = min(h, w), min(h, w) / size
        top, left = (h - s) // 2, (w - s) // 2
        y0, x0, y1, x1 = (top + round(y * f), left + round(x * f), top + round((y + side) * f),
                          left + round((x + side) * f))
        out = resize_square(np.ascontiguousarray(original[y0:y1, x0:x1]), size)
    else:
        out = resize_square(img[y : y + side, x : x + side], size)
    objects = None
    if scene.get("objects") is not None:
        s = size / side
        objects = []
        for obj in scene["objects"]:
            full = transform_box(obj["box"], s, -x * s, -y * s)
            if (kept := keep_object(obj, full, size, (0, 0, size, size), inside=True)) is not None:
                objects.append(kept)
    return out, {
        "key": f"crop_{scene['key']}",
        "size": size,
        "source": "crop",
        "backgrounds": scene.get("backgrounds"),
        "objects": objects,
        "parents": [scene["key"]],
        "pattern": "crop",
        "region": [x, y, x + side, y + side],
        "scale": side / size,
        **({"from_original": [int(v) for v in original.shape[:2]]} if original is not None else {}),
    }

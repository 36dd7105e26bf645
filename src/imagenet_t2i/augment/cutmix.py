"""CutMix composites: base * (1 - M) + resized partner * M, with the composite's scene record."""
from __future__ import annotations

import numpy as np

from imagenet_t2i.augment.boxes import area, keep_object, merge_backgrounds, transform_box
from imagenet_t2i.augment.geometry import CutMixGeometry, cutmix_geometry
from imagenet_t2i.augment.images import check_image, resize_square


def composite_scene(base_scene: dict, partner_scene: dict, geo: CutMixGeometry) -> dict:
    """Scene record of the composite: visible base objects, then the pasted partner's objects.

    ``region`` is the mask M (where the partner shows), ``placed`` the box of the resized partner
    (equal to ``region`` except for ``half``, whose partner is placed whole and shows in one half).
    """
    size = geo.size
    objects = None
    if base_scene.get("objects") is not None and partner_scene.get("objects") is not None:
        objects = []
        for obj in base_scene["objects"]:  # the base shows outside the pasted rectangle
            full = tuple(float(c) for c in obj["box"])
            if (kept := keep_object(obj, full, size, geo.rect, inside=False)) is not None:
                objects.append(kept)
        s = geo.side / partner_scene["size"]
        for obj in partner_scene["objects"]:  # the partner shows inside it
            full = transform_box(obj["box"], s, geo.x, geo.y)
            if (kept := keep_object(obj, full, size, geo.rect, inside=True)) is not None:
                objects.append(kept)
    pasted = area(geo.rect)
    return {
        "key": f"cutmix_{base_scene['key']}",
        "size": size,
        "source": "cutmix",
        "backgrounds": merge_backgrounds(
            [(base_scene.get("backgrounds"), size * size - pasted), (partner_scene.get("backgrounds"), pasted)]
        ),
        "objects": objects,
        "parents": [base_scene["key"], partner_scene["key"]],
        "pattern": geo.pattern,
        "region": list(geo.rect),
        "placed": [geo.x, geo.y, geo.x + geo.side, geo.y + geo.side],
    }


def apply_cutmix(
    base_img: np.ndarray,
    base_scene: dict,
    partner_img: np.ndarray,
    partner_scene: dict,
    pattern: str,
    rng: np.random.Generator,
    geo: CutMixGeometry | None = None,
) -> tuple[np.ndarray, dict]:
    """Paste ``partner_img`` into ``base_img`` with a ``pattern`` drawn from ``rng`` (or at ``geo``, a released
    composite's placement).

    Both images are square uint8 (R, R, 3) matching their scenes' ``size``; the partner is resized
    to the pattern's side. Scenes with ``objects``/``backgrounds`` = None (unknown, e.g. ImageNet)
    give a composite whose objects/backgrounds are None too.
    """
    size = check_image(base_img, base_scene, "base")
    check_image(partner_img, partner_scene, "partner")
    geo = geo if geo is not None else cutmix_geometry(pattern, size, rng)
    placed = np.zeros_like(base_img)  # (R, R, 3) partner in the base frame
    placed[geo.y : geo.y + geo.side, geo.x : geo.x + geo.side] = resize_square(partner_img, geo.side)
    m = geo.mask()[:, :, None]
    out = np.where(m, placed, base_img)  # binary M: base * (1 - M) + partner * M
    return out, composite_scene(base_scene, partner_scene, geo)

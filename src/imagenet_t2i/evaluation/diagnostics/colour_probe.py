"""The colour probe: a tiny-world diagnostic beside GenEval. Does a model paint the prompted colour at all?

GenEval's ``colors`` tag counts an image only when the detector finds an object of the prompted
CLASS in the prompted colour, so a model that paints the right colour in the wrong shape, or a
saturated field of it, scores 0; and the tiny GenEval holds only a handful of colour prompts, with
unbalanced colours. The probe prompts ``a photo of a {colour} {class}`` for every colour x class of
the world (balanced) and asks only for the colour: every pixel takes the nearest of the world's
object colours and backdrops (RGB), and the dominant colour is the object colour most pixels take
(none when fewer than ``MIN_SHARE`` of the pixels take any). A model that ignores the prompt
scores at most 1 / (number of colours): that is chance. Not a paper metric; never reported as one.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from imagenet_t2i.world.palette import BACKGROUNDS, COLORS

MIN_SHARE = 0.02  # share of pixels an object colour needs to count as present
_COLOR_NAMES = list(COLORS)
_REFERENCE = np.array([*COLORS.values(), *BACKGROUNDS.values()], dtype=np.float32)  # (C + B, 3)


def probe_prompts(classes: Sequence[str], colors: Sequence[str]) -> list[dict]:
    """One prompt row ``{"prompt", "color", "class"}`` per colour x class, colour-major."""
    return [{"prompt": f"a photo of a {color} {cls}", "color": color, "class": cls} for color in colors
            for cls in classes]


def dominant_colour(img: np.ndarray) -> str | None:
    """The object colour most pixels of an (H, W, 3) uint8 image are nearest to; None if none is present."""
    x = img.reshape(-1, 3).astype(np.float32)  # (P, 3)
    nearest = ((x[:, None, :] - _REFERENCE[None]) ** 2).sum(-1).argmin(1)  # (P,)
    counts = np.bincount(nearest[nearest < len(_COLOR_NAMES)], minlength=len(_COLOR_NAMES))
    if counts.max() < MIN_SHARE * len(x):
        return None
    return _COLOR_NAMES[int(counts.argmax())]


def config_probe_prompts(config: dict) -> list[dict]:
    """The colour probe's prompts of a config: the synthetic world's colour x class; none at paper scale."""
    src = config["source"]
    return probe_prompts(src["classes"], src["colors"]) if src["backend"] == "synthetic" else []


def probe_accuracy(images: Sequence[np.ndarray], rows: Sequence[dict], samples_per_prompt: int) -> dict:
    """Score samples laid out prompt-major (``samples_per_prompt`` per row) against their prompts' colours.

    -> {"accuracy", "correct", "images", "chance", "per_colour": {colour: accuracy}}"""
    if len(images) != len(rows) * samples_per_prompt or not rows:
        raise ValueError(f"colour probe: {len(images)} images for {len(rows)} prompts x {samples_per_prompt} samples")
    hits: dict[str, list[bool]] = {}
    for i, img in enumerate(images):
        color = rows[i // samples_per_prompt]["color"]
        hits.setdefault(color, []).append(dominant_colour(img) == color)
    flat = [h for per in hits.values() for h in per]
    return {"accuracy": float(np.mean(flat)), "correct": int(sum(flat)), "images": len(flat),
            "chance": 1 / len(hits), "per_colour": {c: float(np.mean(v)) for c, v in hits.items()}}

"""Vocabulary of the synthetic world: colours, backgrounds, size categories.

Object colours are the ten GenEval colour names with fixed RGB values; every pair is at least
~98 apart (Euclidean RGB) and every background is at least ~92 away from every object colour,
so a nearest-colour rule separates objects from backgrounds at any resolution.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 125, 15),
    "yellow": (245, 220, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 220),
    "purple": (130, 50, 180),
    "pink": (245, 110, 190),
    "brown": (130, 70, 20),
    "black": (20, 20, 20),
    "white": (245, 245, 245),
}

BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "gray": (128, 128, 128),
    "light gray": (185, 185, 185),
    "dark gray": (65, 70, 85),
    "beige": (215, 200, 150),
}

# Object extent (side of its square box) as a fraction of the image side, sampled uniformly.
SIZE_RANGES: dict[str, tuple[float, float]] = {
    "small": (0.28, 0.36),
    "medium": (0.44, 0.54),
    "large": (0.62, 0.76),
}
# Boundaries used to re-label objects whose extent changed (CutMix shrinks, Crop enlarges).
_SIZE_BOUNDS = (("small", 0.40), ("medium", 0.58))


def size_label(extent: float) -> str:
    """Size category of an object whose larger box side is ``extent`` x the image side."""
    for name, upper in _SIZE_BOUNDS:
        if extent < upper:
            return name
    return "large"


def check_names(kind: str, names: Iterable[str], known: Mapping[str, object]) -> list[str]:
    """Return ``names`` as a list; raise ValueError naming unknown entries and the valid ones."""
    names = list(names)
    if not names:
        raise ValueError(f"no {kind} given: choose at least one of {sorted(known)}")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown {kind} {unknown}: valid {kind} are {sorted(known)}")
    return names

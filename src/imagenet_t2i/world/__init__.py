"""Synthetic ImageNet-like world: coloured shapes on textured backgrounds, one object per image."""
from imagenet_t2i.world.build import build_split
from imagenet_t2i.world.palette import BACKGROUNDS, COLORS, SIZE_RANGES, size_label
from imagenet_t2i.world.render import render_scene, sample_scene
from imagenet_t2i.world.shapes import DEFAULT_CLASSES, SHAPES, coverage

__all__ = [
    "BACKGROUNDS",
    "COLORS",
    "DEFAULT_CLASSES",
    "SHAPES",
    "SIZE_RANGES",
    "build_split",
    "coverage",
    "render_scene",
    "sample_scene",
    "size_label",
]

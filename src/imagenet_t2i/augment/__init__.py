"""Image augmentations (paper-spec section 3): CutMix composites and random crops."""
from imagenet_t2i.augment.build import build_crop_set, build_cutmix_set, build_rescaled_set
from imagenet_t2i.augment.crop import apply_crop
from imagenet_t2i.augment.cutmix import apply_cutmix
from imagenet_t2i.augment.geometry import CROP_SCALE, CUTMIX_CHOICES, PATTERNS, CutMixGeometry, cutmix_geometry
from imagenet_t2i.augment.merge import merge_augmented

__all__ = [
    "CROP_SCALE",
    "CUTMIX_CHOICES",
    "PATTERNS",
    "CutMixGeometry",
    "apply_crop",
    "apply_cutmix",
    "build_crop_set",
    "build_cutmix_set",
    "build_rescaled_set",
    "cutmix_geometry",
    "merge_augmented",
]

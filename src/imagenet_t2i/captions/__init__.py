"""Captioners (AIO class-name template, TA descriptions) and the caption-file writer."""
from imagenet_t2i.captions.aio import AIOCaptioner
from imagenet_t2i.captions.base import Captioner, write_captions
from imagenet_t2i.captions.scene import SceneCaptioner
from imagenet_t2i.captions.vlm import clean_vlm_caption

__all__ = ["AIOCaptioner", "Captioner", "SceneCaptioner", "clean_vlm_caption", "write_captions"]

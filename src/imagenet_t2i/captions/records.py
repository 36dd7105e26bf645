"""Captioners over records (index rows or scene records) for the chunked caption stage.

`TemplateRecords` wraps the AIO / scene-template captioners (no images read). `ImageRecords` feeds a VLM
(LLaVA-NeXT, or the vLLM engine) the image each index row names, as the model is trained on it (resize the
shorter side + centre crop, [our choice]: a caption never describes what the crop removes); an unreadable
image is reported in ``failures`` and gets no caption (the shards stage reports it again and skips it).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..encode.images import CorruptImageError, load_rgb, preprocess
from .base import Captioner


class VLM(Protocol):
    """What `ImageRecords` needs of a vision-language captioner."""

    def caption_images(self, images: list[np.ndarray]) -> list[str]:
        ...

    def describe(self) -> dict:
        ...


class TemplateRecords:
    """A template captioner (AIO, scene) as a record captioner; it never fails on a record."""

    def __init__(self, captioner: Captioner, settings: dict) -> None:
        self.captioner, self.settings = captioner, settings
        self.name = captioner.name
        self.failures: dict[str, dict] = {}

    def caption(self, records: Sequence[dict]) -> list[str | None]:
        return list(self.captioner.caption(records))

    def describe(self) -> dict:
        return {"backend": self.name, **self.settings}


class ImageRecords:
    """A VLM over index rows: images read from ``image_dir`` (row ``path``), shown at ``resolution``."""

    def __init__(self, vlm: VLM, image_dir: str | Path, resolution: int, name: str = "llava") -> None:
        self.vlm, self.image_dir, self.resolution, self.name = vlm, Path(image_dir), resolution, name
        self.failures: dict[str, dict] = {}

    def load(self, rec: dict) -> np.ndarray | None:
        """The row's image as the model is trained on it, (R, R, 3) uint8; None (reported) if unreadable."""
        try:
            return preprocess(load_rgb(self.image_dir / rec["path"]), self.resolution)
        except CorruptImageError as e:
            self.failures[rec["key"]] = {"key": rec["key"], "path": rec["path"], "error": e.reason}
            return None

    def caption(self, records: Sequence[dict]) -> list[str | None]:
        images = [self.load(r) for r in records]
        good = [img for img in images if img is not None]
        captions = iter(self.vlm.caption_images(good) if good else [])
        return [None if img is None else next(captions) for img in images]

    def describe(self) -> dict:
        return {**self.vlm.describe(), "view": f"resize {self.resolution} + centre crop"}

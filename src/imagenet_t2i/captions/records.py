"""Captioners over records (index rows or scene records) for the chunked caption stage.

`TemplateRecords` wraps the AIO / scene-template captioners (no images read). `ImageRecords` feeds a VLM
(LLaVA-NeXT, or the vLLM engine) the image each index row names, as the model is trained on it (resize the
shorter side + centre crop, [our choice]: a caption never describes what the crop removes); an unreadable
image is reported in ``failures`` and gets no caption (the shards stage reports it again and skips it).
`record_captioner` builds the records and captioner a config asks for.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from imagenet_t2i.captions.base import Captioner
from imagenet_t2i.config import uses_vllm
from imagenet_t2i.encode.images import CorruptImageError, load_rgb, preprocess

if TYPE_CHECKING:
    from imagenet_t2i.captions.chunked import RecordCaptioner


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


VIEWS = ("full", "crop")  # captions.view: what the VLM is shown


class ImageRecords:
    """A VLM over index rows: images read from ``image_dir`` (row ``path``), shown whole (``view="full"``, as the
    official captioning script passes the original image: LLaVA-NeXT's anyres then tiles it at its own size) or
    as the model is trained on them (``"crop"``: resize to ``resolution`` + centre crop)."""

    def __init__(self, vlm: VLM, image_dir: str | Path, resolution: int, name: str = "llava",
                 view: str = "crop", resize: str = "bicubic") -> None:
        if view not in VIEWS:
            raise ValueError(f"captions.view must be one of {VIEWS}, got {view!r}")
        self.vlm, self.image_dir, self.resolution, self.name, self.view = vlm, Path(image_dir), resolution, name, view
        self.resize = resize
        self.failures: dict[str, dict] = {}

    def load(self, rec: dict) -> np.ndarray | None:
        """The row's image as the VLM sees it, (H, W, 3) uint8; None (reported) if unreadable."""
        try:
            image = load_rgb(self.image_dir / rec["path"])
            return image if self.view == "full" else preprocess(image, self.resolution, self.resize)
        except CorruptImageError as e:
            self.failures[rec["key"]] = {"key": rec["key"], "path": rec["path"], "error": e.reason}
            return None

    def caption(self, records: Sequence[dict]) -> list[str | None]:
        images = [self.load(r) for r in records]
        good = [img for img in images if img is not None]
        captions = iter(self.vlm.caption_images(good) if good else [])
        return [None if img is None else next(captions) for img in images]

    def describe(self) -> dict:
        shown = "the stored image, whole" if self.view == "full" else f"{self.resolution} px square ({self.resize})"
        return {**self.vlm.describe(), "view": shown}


def make_vlm(config: dict, backend: str) -> VLM:
    """The configured VLM (LLaVA-NeXT through transformers, or the vLLM engine)."""
    from imagenet_t2i.weights import model_path

    caps = config["captions"]
    kwargs = {"prompt": caps["prompt"], "max_new_tokens": caps["max_new_tokens"], "batch_size": caps["batch_size"]}
    if backend == "vllm":  # the engine batches continuously: it gets vllm_requests images a call, not batch_size
        from imagenet_t2i.captions.fast_engine import VLLMCaptioner

        return VLLMCaptioner(model_path(config, "captions"), **{**kwargs, "batch_size": caps["vllm_requests"]})
    from imagenet_t2i.captions.llava import LlavaNextCaptioner

    return LlavaNextCaptioner(model_path(config, "captions"), **kwargs)


def images_per_call(config: dict) -> int:
    """Images handed to the captioner at once: ``vllm_requests`` for the vLLM engine, 4 generate batches otherwise."""
    caps = config["captions"]
    return caps["vllm_requests"] if uses_vllm(config) else 4 * caps["batch_size"]


def record_captioner(config: dict, images: Path, kind: str, chunk: tuple[int, int]) -> tuple[list[dict], RecordCaptioner]:
    """The records of an image set and the captioner of ``kind`` (aio | ta) for them."""
    from imagenet_t2i.captions.aio import AIOCaptioner
    from imagenet_t2i.captions.scene import SceneCaptioner
    from imagenet_t2i.chunks import chunk_range
    from imagenet_t2i.io import read_json, read_jsonl

    backend = config["captions"]["backend"]
    if kind == "aio":
        return read_jsonl(images / "index.jsonl"), TemplateRecords(AIOCaptioner(read_json(images / "classes.json")),
                                                                  {"kind": "aio"})
    if backend == "scene":
        return read_jsonl(images / "scenes.jsonl"), TemplateRecords(SceneCaptioner(seed=config["seed"]),
                                                                    {"kind": "ta", "seed": config["seed"]})
    records, resolution = read_jsonl(images / "index.jsonl"), config["source"]["resolution"]
    view, resize = config["captions"].get("view", "crop"), config["source"].get("resize", "bicubic")
    if backend in ("llava", "vllm"):
        return records, ImageRecords(make_vlm(config, backend), images, resolution, name=backend, view=view,
                                     resize=resize)
    from imagenet_t2i.captions.released import ReleasedRecords

    released = config["captions"]["released"]
    # The release captions ImageNet's images: the Crop set's composites (folder ``crop``) are never in it
    keys = set() if images.name == "crop" else {records[i]["key"] for i in chunk_range(len(records), *chunk)}
    return records, ReleasedRecords(released["path"], keys, lambda: ImageRecords(
        make_vlm(config, released["vlm"]), images, resolution, name=released["vlm"], view=view, resize=resize),
                             released["columns"])

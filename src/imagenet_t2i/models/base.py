"""Shared base of DiT-I and CAD-I: a diffusers model (``ModelMixin`` + ``ConfigMixin``).

``model.save_pretrained(folder)`` writes diffusers' layout (``config.json`` with ``_class_name`` +
``diffusion_pytorch_model.safetensors``), every file atomically; ``DiTI.from_pretrained(folder)`` reads
it, and also reads our run folders (``model.safetensors`` + ``config.json``, see `imagenet_t2i.models`).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from diffusers import ConfigMixin, ModelMixin
from diffusers.utils import SAFETENSORS_WEIGHTS_NAME

CONFIG_NAME = "config.json"
RUN_WEIGHTS_NAME = "model.safetensors"  # the weights file of our run folders (the train loop's final/, checkpoints/)
DIFFUSERS_WEIGHTS_NAME = SAFETENSORS_WEIGHTS_NAME  # "diffusion_pytorch_model.safetensors"


@contextlib.contextmanager
def atomic_files(folder: str | os.PathLike) -> Iterator[Path]:
    """A fresh folder to write into; when the block succeeds every file in it is renamed into ``folder`` (same
    relative path, replacing a file of that name), so each file appears whole. Other files in ``folder`` stay."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        yield tmp
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            target = folder / path.relative_to(tmp)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class T2IModel(ModelMixin, ConfigMixin):
    """Base of the denoisers: ``model(x, gamma, text, text_mask, prev_latents=None) -> (eps, latents)``.

    Subclasses decorate ``__init__`` with ``@register_to_config`` and name their architecture in ``arch``.
    """

    config_name = CONFIG_NAME
    arch: str

    @property
    def build_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs (``build_model(model.arch, **model.build_kwargs)`` rebuilds the architecture):
        ``model.config`` without diffusers' private ``_*`` entries."""
        return {k: v for k, v in self.config.items() if not k.startswith("_")}

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained`` (safetensors), each file written atomically. No ``push_to_hub``."""
        if kwargs.get("push_to_hub"):
            raise ValueError("push_to_hub is not supported here: save the folder, then upload it with huggingface_hub")
        with atomic_files(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> T2IModel:
        """diffusers' ``from_pretrained``; a local run folder of ours (``model.safetensors``, no diffusers
        weights file) is read by `imagenet_t2i.models.load_pretrained` instead (kwargs: ``subfolder``,
        ``torch_dtype``)."""
        folder = Path(pretrained_model_name_or_path, kwargs.get("subfolder") or "")
        if not (folder / RUN_WEIGHTS_NAME).is_file() or (folder / DIFFUSERS_WEIGHTS_NAME).is_file():
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        unsupported = set(kwargs) - {"subfolder", "torch_dtype"}
        if unsupported:
            raise TypeError(f"{folder} is a run folder; from_pretrained takes only subfolder and torch_dtype "
                            f"for it, not {sorted(unsupported)}")
        from . import load_pretrained  # the registry module imports this one

        model = load_pretrained(folder)
        if not isinstance(model, cls):
            raise TypeError(f"{folder} holds a {type(model).__name__}, not a {cls.__name__}")
        return model if kwargs.get("torch_dtype") is None else model.to(kwargs["torch_dtype"])

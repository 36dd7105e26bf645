"""Shared base of DiT-I and CAD-I: a plain ``nn.Module`` that records its constructor kwargs.

The networks import no diffusers: importing diffusers costs about 2 s per process (it imports ``torch._dynamo``
and transformers), paid by every training, sampling and evaluation job. The diffusers classes (``DiTIModel``,
``CADIModel``: ``save_pretrained``, ``from_pretrained``, pipeline components) are thin subclasses in
`imagenet_t2i.models.diffusers_models`.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from torch import nn

CONFIG_NAME = "config.json"
RUN_WEIGHTS_NAME = "model.safetensors"  # the weights file of our run folders (the train loop's final/, checkpoints/)
DIFFUSERS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # diffusers' SAFETENSORS_WEIGHTS_NAME
OBJECTIVE_FILE = "objective.json"  # beside a model's weights: {"objective": eps | flow}, written by the train loop


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


def records_config(init: Callable[..., None]) -> Callable[..., None]:
    """Decorate a `T2IModel` ``__init__``: its bound arguments, defaults filled in, become ``model.build_kwargs``.
    The signature stays visible (``functools.wraps``), as diffusers' ``register_to_config`` needs."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: T2IModel, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        self._build_kwargs = {k: v for k, v in bound.arguments.items() if k != "self"}

    return wrapper


class T2IModel(nn.Module):
    """Base of the denoisers: ``model(x, gamma, text, text_mask, prev_latents=None) -> (eps, latents)``.

    Subclasses decorate ``__init__`` with `records_config` and name their architecture in ``arch``.
    """

    arch: str
    _build_kwargs: dict[str, Any]

    @property
    def build_kwargs(self) -> dict[str, Any]:
        """The constructor kwargs: ``build_model(model.arch, **model.build_kwargs)`` rebuilds the architecture."""
        return dict(self._build_kwargs)

    def config_json(self) -> str:
        """``config.json`` of a run folder: the kwargs and ``_class_name`` (this class's name; `load_pretrained` and
        the diffusers classes' ``from_pretrained`` read the folder)."""
        return json.dumps({"_class_name": type(self).__name__, **self._build_kwargs}, indent=2, sort_keys=True) + "\n"

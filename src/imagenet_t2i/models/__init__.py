"""Model registry: build by name, count parameters, save/load model folders.

Every model is a `T2IModel` (``DiTI``, ``CADI``: plain torch) called as ``model(x, gamma, text, text_mask,
prev_latents=None) -> (eps, latents)``, with its constructor kwargs in ``model.build_kwargs`` and its architecture
named in the class attribute ``arch``. ``DiTIModel`` / ``CADIModel`` are the same networks as diffusers models
(`imagenet_t2i.models.diffusers_models`, imported on first use: diffusers costs about 2 s per process). Folder
layouts, all read by `load_pretrained`:

- run folder (the train loop's ``final/`` and ``checkpoints/step-*``, written by `save_pretrained`):
  ``model.safetensors`` + ``config.json`` (``_class_name`` + kwargs, the layout of a diffusers config);
- run folder written before the diffusers port: ``model.safetensors`` + ``config.json`` = {"arch", **kwargs};
- diffusers folder (``model.save_pretrained``, a pipeline's ``model/``): ``diffusion_pytorch_model.safetensors``
  + ``config.json``.

``DiTIModel.from_pretrained`` / ``CADIModel.from_pretrained`` read all three as well.
"""
from __future__ import annotations

from imagenet_t2i.models.base import T2IModel
from imagenet_t2i.models.cad_i import CADI
from imagenet_t2i.models.dit_i import DiTI
from imagenet_t2i.models.registry import (ARCHS, BY_CLASS_NAME, META_BUILD_BYTES, SIZES, build_model, count_parameters,
                                          load_pretrained, model_class, save_pretrained, save_weights, unwrap_model)

__all__ = ["ARCHS", "BY_CLASS_NAME", "CADI", "META_BUILD_BYTES", "SIZES", "DiTI", "T2IModel", "build_model",
           "count_parameters", "load_pretrained", "model_class", "save_pretrained", "save_weights", "unwrap_model",
           "DiTIModel", "CADIModel"]

DIFFUSERS_NAMES = ("DiTIModel", "CADIModel")  # in .diffusers_models, imported on first use (module __getattr__)


def __getattr__(name: str) -> object:
    if name in DIFFUSERS_NAMES:
        from imagenet_t2i.models import diffusers_models

        return getattr(diffusers_models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

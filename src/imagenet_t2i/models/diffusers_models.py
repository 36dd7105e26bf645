"""DiT-I and CAD-I as diffusers models: ``DiTIModel`` and ``CADIModel``, for ``from_pretrained``/``save_pretrained``
and `imagenet_t2i.sampling.pipeline`.

Each is its network (`DiTI`, `CADI`: same modules, state dict and forward) with diffusers' ``ModelMixin`` +
``ConfigMixin``; the constructor kwargs are ``model.config`` as well as ``model.build_kwargs``. Training, sampling
and evaluation use the networks alone and never import diffusers (about 2 s per process).

``model.save_pretrained(folder)`` writes diffusers' layout (``config.json`` with ``_class_name`` +
``diffusion_pytorch_model.safetensors``), every file atomically; ``DiTIModel.from_pretrained(folder)`` reads it, and
also reads our run folders (``model.safetensors`` + ``config.json``, see `imagenet_t2i.models`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from diffusers import ConfigMixin, ModelMixin  # ModelMixin: diffusers' pipeline loader looks base classes up here
from diffusers.configuration_utils import register_to_config

from imagenet_t2i.models.base import CONFIG_NAME, DIFFUSERS_WEIGHTS_NAME, RUN_WEIGHTS_NAME, T2IModel, atomic_files
from imagenet_t2i.models.cad_i import CADI
from imagenet_t2i.models.dit_i import DiTI
from imagenet_t2i.models.registry import load_pretrained, unwrap_model


class DiffusersT2IModel(ModelMixin, ConfigMixin):
    """What ``DiTIModel`` and ``CADIModel`` add to their networks: diffusers' loading and saving."""

    config_name = CONFIG_NAME

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained`` (safetensors), each file written atomically. No ``push_to_hub``."""
        if kwargs.get("push_to_hub"):
            raise ValueError("push_to_hub is not supported here: save the folder, then upload it with huggingface_hub")
        with atomic_files(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> DiffusersT2IModel:
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
        network = load_pretrained(folder)
        if DIFFUSERS_CLASSES[network.arch] is not cls:
            raise TypeError(f"{folder} holds a {type(network).__name__}, not a {cls.__name__}")
        model = to_diffusers(network)
        return model if kwargs.get("torch_dtype") is None else model.to(kwargs["torch_dtype"])


class DiTIModel(DiTI, DiffusersT2IModel):
    """DiT-I as a diffusers model (see the module docstring)."""

    __init__ = register_to_config(DiTI.__init__)


class CADIModel(CADI, DiffusersT2IModel):
    """CAD-I as a diffusers model (see the module docstring)."""

    __init__ = register_to_config(CADI.__init__)


DIFFUSERS_CLASSES: dict[str, type[DiffusersT2IModel]] = {"dit_i": DiTIModel, "cad_i": CADIModel}


def to_diffusers(model: T2IModel) -> DiffusersT2IModel:
    """The diffusers model of a network (compile/DDP wrappers unwrapped), sharing its tensors; itself if it is one."""
    model = unwrap_model(model)
    if isinstance(model, DiffusersT2IModel):
        return model
    with torch.device("meta"):  # no initialisation: every tensor is the network's
        out = DIFFUSERS_CLASSES[model.arch](**model.build_kwargs)
    out.load_state_dict(model.state_dict(keep_vars=True), strict=True, assign=True)
    return out.train(model.training)

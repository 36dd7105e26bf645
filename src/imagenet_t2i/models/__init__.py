"""Model registry: build by name, count parameters, save/load ``model.safetensors`` + ``config.json``.

Every model is called as ``model(x, gamma, text, text_mask, prev_latents=None) -> (eps, latents)``
(see ``DiTI`` and ``CADI``), stores its constructor kwargs in ``model.config`` and names its
architecture in the class attribute ``arch``.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from ..io import atomic_write, read_json, write_json
from .cad_i import CADI
from .dit_i import DiTI

ARCHS: dict[str, type[nn.Module]] = {"dit_i": DiTI, "cad_i": CADI}

# Named sizes. "paper" / "base" / "L" are the paper's models (paper-spec section 4); "tiny" runs on
# 2 CPU cores with 3x32x32 pixel "latents" and 384-wide MiniLM text tokens.
SIZES: dict[str, dict[str, dict]] = {
    "dit_i": {
        "tiny": dict(in_channels=3, input_size=32, patch_size=4, hidden_size=128, depth=4, num_heads=4, text_dim=384),
        "paper": dict(
            in_channels=4, input_size=32, patch_size=2, hidden_size=1024, depth=24, num_heads=16, text_dim=2048
        ),
    },
    "cad_i": {
        "tiny": dict(
            in_channels=3, input_size=32, patch_size=4, data_dim=128, num_latents=32, latents_dim=128, num_blocks=2,
            num_processing_layers=2, compute_heads=4, text_dim=384, num_text_registers=8, text_heads=4,
            read_write_heads=4,
        ),
        "base": dict(
            in_channels=4, input_size=32, patch_size=2, data_dim=256, num_latents=128, latents_dim=768, num_blocks=4,
            num_processing_layers=4, compute_heads=12, text_dim=2048,
        ),
        "L": dict(
            in_channels=4, input_size=32, patch_size=2, data_dim=256, num_latents=256, latents_dim=1024, num_blocks=4,
            num_processing_layers=4, compute_heads=16, text_dim=2048,
        ),
        "L_coherence": dict(
            in_channels=4, input_size=32, patch_size=2, data_dim=256, num_latents=256, latents_dim=1024, num_blocks=4,
            num_processing_layers=4, compute_heads=16, text_dim=2048, coherence=True,
        ),
    },
}  # fmt: skip

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def build_model(arch: str, **kwargs) -> nn.Module:
    """Instantiate ``arch`` ("dit_i" | "cad_i") with its constructor kwargs. Build inside
    ``with torch.device("meta"):`` to count a paper-size model without allocating it."""
    if arch not in ARCHS:
        raise ValueError(f"unknown model arch {arch!r}; choose one of {sorted(ARCHS)}")
    return ARCHS[arch](**kwargs)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameter elements (buffers and frozen tensors excluded)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The plain model inside ``torch.compile`` and ``DistributedDataParallel`` wrappers."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def save_pretrained(model: nn.Module, folder: str | os.PathLike) -> None:
    """Write ``folder/model.safetensors`` and ``folder/config.json`` ({"arch", **model.config}), each
    atomically. Compile/DDP wrappers are unwrapped, so keys never carry their prefixes."""
    folder, model = Path(folder), unwrap_model(model)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_write(folder / WEIGHTS_NAME, "wb") as f:
        f.write(save(state))
    write_json(folder / CONFIG_NAME, {"arch": model.arch, **model.config})


def load_pretrained(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model described by ``folder/config.json`` and load ``folder/model.safetensors`` (strict)."""
    folder = Path(folder)
    config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing; a model folder is written by imagenet_t2i.models.save_pretrained"
            )
    kwargs = read_json(config_path)
    arch = kwargs.pop("arch", None)
    if arch not in ARCHS:
        raise ValueError(
            f"{config_path}: key 'arch' is {arch!r}; it must be one of {sorted(ARCHS)}. For the released CAD-I "
            "weights, build_model('cad_i', **SIZES['cad_i']['L_coherence']) and load_state_dict the safetensors file"
        )
    try:
        with torch.device("meta"):  # no initialisation cost: every tensor is overwritten below
            model = build_model(arch, **kwargs)
    except TypeError as err:
        raise ValueError(f"{config_path}: model kwargs do not fit {ARCHS[arch].__name__}: {err}") from err
    model = model.to_empty(device=map_location)
    state = load_file(weights_path, device=str(torch.device(map_location)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights_path} does not match {config_path}: {err}") from err
    return model.eval()

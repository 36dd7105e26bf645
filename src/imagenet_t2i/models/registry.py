"""The model registry: build by name, count parameters, save and load model folders (layouts: the package
docstring)."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save
from torch import nn

from imagenet_t2i.io import atomic_write, read_json
from imagenet_t2i.models.base import CONFIG_NAME, DIFFUSERS_WEIGHTS_NAME, RUN_WEIGHTS_NAME, T2IModel
from imagenet_t2i.models.cad_i import CADI
from imagenet_t2i.models.dit_i import DiTI

ARCHS: dict[str, type[T2IModel]] = {"dit_i": DiTI, "cad_i": CADI}
# config.json "_class_name" -> network: our run folders name the network, diffusers folders the diffusers class
BY_CLASS_NAME = {name: cls for cls in ARCHS.values() for name in (cls.__name__, f"{cls.__name__}Model")}
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


def build_model(arch: str, **kwargs) -> T2IModel:
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


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    """``model``'s state dict as one safetensors file, atomically; compile/DDP wrappers unwrapped, so keys never
    carry their prefixes."""
    state = {k: v.detach().contiguous().cpu() for k, v in unwrap_model(model).state_dict().items()}
    with atomic_write(path, "wb") as f:
        f.write(save(state))


def save_pretrained(model: nn.Module, folder: str | os.PathLike) -> None:
    """Write a run folder: ``folder/model.safetensors`` (`save_weights`) and ``folder/config.json``
    (`T2IModel.config_json`), each atomically."""
    folder, model = Path(folder), unwrap_model(model)
    save_weights(model, folder / RUN_WEIGHTS_NAME)
    with atomic_write(folder / CONFIG_NAME) as f:
        f.write(model.config_json())


def model_class(config: dict, where: str | os.PathLike) -> type[T2IModel]:
    """The class a model ``config.json`` describes: by ``arch`` (run folders before the diffusers port) or by
    ``_class_name`` (diffusers)."""
    if "arch" in config:
        cls = ARCHS.get(config["arch"])
    else:
        cls = BY_CLASS_NAME.get(config.get("_class_name"))
    if cls is None:
        raise ValueError(
            f"{where}: neither key 'arch' ({config.get('arch')!r}; one of {sorted(ARCHS)}) nor '_class_name' "
            f"({config.get('_class_name')!r}; one of {sorted(BY_CLASS_NAME)}) names a model here. For the released "
            "CAD-I weights use imagenet_t2i.sampling.released.load_released"
        )
    return cls


# A model above this size is built on the meta device (no initialisation), a smaller one initialised as usual: the
# meta device's first use imports sympy and torch._dynamo, 0.86 s per process on one CPU core, where initialising
# an 87M-parameter (334 MiB) DiT-I took 0.63 s.
META_BUILD_BYTES = 256 << 20


def load_pretrained(folder: str | os.PathLike, map_location: str | torch.device = "cpu") -> T2IModel:
    """Rebuild the model described by ``folder/config.json`` and load its safetensors weights (strict); any layout
    of the module docstring."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    weights = [folder / name for name in (RUN_WEIGHTS_NAME, DIFFUSERS_WEIGHTS_NAME) if (folder / name).is_file()]
    if not config_path.is_file() or not weights:
        raise FileNotFoundError(
            f"{folder} lacks {CONFIG_NAME} or a weights file ({RUN_WEIGHTS_NAME} / {DIFFUSERS_WEIGHTS_NAME}); a "
            "model folder is written by imagenet_t2i.models.save_pretrained or model.save_pretrained"
        )
    config = read_json(config_path)
    cls = model_class(config, config_path)
    kwargs = {k: v for k, v in config.items() if k != "arch" and not k.startswith("_")}
    meta = weights[0].stat().st_size > META_BUILD_BYTES
    try:
        with torch.device("meta") if meta else contextlib.nullcontext():  # every tensor is overwritten below
            model = cls(**kwargs)
    except TypeError as err:
        raise ValueError(f"{config_path}: model kwargs do not fit {cls.__name__}: {err}") from err
    model = model.to_empty(device=map_location) if meta else model.to(map_location)
    state = load_file(weights[0], device=str(torch.device(map_location)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{weights[0]} does not match {config_path}: {err}") from err
    return model.eval()

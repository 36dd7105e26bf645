"""The released CAD-I weights loaded into our `CADI`, with the sampling settings the release implies.

Releases: HF ``Lucasdegeorge/CAD-I`` (text + image augmentation) and ``Lucasdegeorge/CAD-I_TA`` (text
augmentation only), MIT. Pass `load_released` a local snapshot folder (e.g. the ``weights`` rule's copy).

Known (hub file listings; github.com/lucasdegeorge/T2I-ImageNet ``training/cad/pipe.py``, ``models/networks/rin.py``):

- A snapshot holds ``README.md``, ``teaser.png``, ``config.json`` (792 bytes) and ``model.safetensors``
  (1.33 GB: float32). The pushed class is ``CAD(CADRINTextCond, PyTorchModelHubMixin)``: ``config.json`` holds
  the keyword arguments the network was built with (the mixin records only those passed, so absent keys take
  ``CADRINTextCond``'s defaults, `OFFICIAL_DEFAULTS`), ``model.safetensors`` the network's state dict, no
  prefix: the 452 keys and shapes of ``CADI(**SIZES["cad_i"]["L_coherence"])`` (tests/test_models.py checks
  them against ``shared/fixtures/cad_i``). ``registers_coherence_mask`` / ``cond_mask`` are frozen bool
  parameters there and buffers here: the same tensors.
- ``CADRINTextCond`` always has the coherence token, 2 text self-attention blocks of 16 heads (whatever
  ``compute_heads`` is) and one MLP ratio for latents and data in our port.
- The release's ``T2IPipeline`` defaults (`RELEASED_SAMPLING`): DDIM with its "linear" scheduler (gamma =
  clamp(1 - t, >= 1e-9), its ``schedulers.py``), step 0 unguided (``step > guidance_start_step``), ``cfg=15``
  (``eps = 16 eps_c - 15 eps_u``: guidance scale 16 in our convention), x0 clamp 1.2, coherence 1 for the
  conditional and 0 for the unconditional branch, unconditional prompts of random lowercase words (3-6 words
  of 3-7 letters, one per sample), google/flan-t5-xl in float32 (tokenizer ``max_length=128``, padded to the
  longest prompt), the SD 1.5 VAE (``benjamin-paine/stable-diffusion-v1-5``, subfolder ``vae``) to decode.

Unknown: the exact values in CAD-I's ``config.json`` (inferred: the keys of ``nicolas-dufour/CAD_256``, pushed
by the same mixin for the same class, whose file is 826 bytes; without ``modulate_conditioning`` it is exactly
792; the architecture itself is pinned by the state-dict listing); whether the weights are the EMA or the
raw network, and from which step; the released sampler's step count when none is passed (250 is the CAD
code's DDIM default); the sampler settings behind the paper's tables. ``eval.released`` samples with the
release's schedule, guidance, clamp and unguided first step; the empty caption stays the unconditional input
and our text encoder and VAE stay ours, so the pipeline is not reproduced exactly (docs/evaluation.md lists what
still differs); `RELEASED_SAMPLING` says what would.

`convert_released` turns a snapshot into a model folder our sampling reads (the ``released_model`` rule of
``evaluate_released``); `save_random_release` writes a tiny random-init snapshot in the release's format
(``weights: {random_init: cad_i_release}``, offline tests).
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from imagenet_t2i.io import atomic_write, read_json, sha256_file, write_json
from imagenet_t2i.models import CADI, save_pretrained

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"

# CADRINTextCond / RINBackbone keyword defaults (absent from a config.json when not passed at build time).
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "read_write_heads": 16, "compute_heads": 16, "latent_mlp_multiplier": 4, "data_mlp_multiplier": 4,
    "rw_dropout": 0.0, "compute_dropout": 0.0, "rw_stochastic_depth": 0.0, "compute_stochastic_depth": 0.0,
    "time_scaling": 1000.0, "noise_embedding_type": "positional", "data_positional_embedding_type": "learned",
    "weight_init": "xavier_uniform", "bias_init": "zeros", "use_cond_token": True, "use_biases": True,
    "concat_cond_token_to_latents": True, "use_cond_rin_block": False, "retrieve_attention_scores": False,
    "use_16_bits_layer_norm": False, "num_text_registers": 16, "modulate_conditioning": False,
}  # fmt: skip
# Settings our CADI implements; any other value builds an architecture we do not have.
REQUIRED: dict[str, Any] = {
    "concat_cond_token_to_latents": False, "use_cond_rin_block": True, "use_cond_token": True, "use_biases": True,
    "noise_embedding_type": "positional", "data_positional_embedding_type": "learned", "time_scaling": 1000.0,
    "modulate_conditioning": False, "retrieve_attention_scores": False,
}  # fmt: skip
# Released key -> our CADI kwarg.
RENAMED = {
    "num_input_channels": "in_channels", "data_size": "input_size", "path_size": "patch_size", "label_dim": "text_dim",
    "data_dim": "data_dim", "num_latents": "num_latents", "latents_dim": "latents_dim", "num_blocks": "num_blocks",
    "num_processing_layers": "num_processing_layers", "compute_heads": "compute_heads",
    "read_write_heads": "read_write_heads", "num_text_registers": "num_text_registers",
}  # fmt: skip
# Training- or initialisation-only settings (dropout, stochastic depth, init; 16-bit LayerNorm is fp32 here),
# and num_cond_tokens, which only sizes the latents when the condition tokens are concatenated to them.
IGNORED = {"rw_dropout", "compute_dropout", "rw_stochastic_depth", "compute_stochastic_depth", "weight_init",
           "bias_init", "use_16_bits_layer_norm", "num_cond_tokens"}
FIXED = {"coherence": True, "num_text_layers": 2, "text_heads": 16}  # hard-coded in CADRINTextCond


@dataclasses.dataclass(frozen=True)
class ReleasedSampling:
    """How the release's ``T2IPipeline`` samples by default, in our terms (see the module docstring)."""

    sampler: str = "ddim"
    schedule: str = "linear"  # the official scheduler name: gamma = clamp(1 - t, >= 1e-9)
    unguided_steps: int = 1  # guidance only for step > guidance_start_step (0)
    steps: int = 250
    guidance: float = 16.0  # official cfg 15: eps = (1 + 15) eps_c - 15 eps_u
    clamp: float = 1.2
    coherence: tuple[float, float] = (1.0, 0.0)  # (conditional, unconditional) branch
    uncond: str = "random lowercase words, 3-6 words of 3-7 letters, one draw per sample"
    text_encoder: str = "google/flan-t5-xl"
    text_max_tokens: int = 128
    vae: str = "benjamin-paine/stable-diffusion-v1-5"
    vae_subfolder: str = "vae"


RELEASED_SAMPLING = ReleasedSampling()


def released_kwargs(config: dict[str, Any]) -> dict[str, Any]:
    """Our `CADI` constructor kwargs for a released ``config.json`` (``CADRINTextCond`` kwargs); ValueError for
    keys we do not know or settings we do not implement."""
    unknown = set(config) - set(RENAMED) - set(REQUIRED) - IGNORED - {"latent_mlp_multiplier", "data_mlp_multiplier"}
    if unknown:
        raise ValueError(f"released CAD-I config: unknown keys {sorted(unknown)}")
    full = {**OFFICIAL_DEFAULTS, **config}
    wrong = {k: full[k] for k, v in REQUIRED.items() if full[k] != v}
    if wrong:
        raise ValueError(f"released CAD-I config: {wrong} is not implemented by our CADI (needs {REQUIRED})")
    if full["latent_mlp_multiplier"] != full["data_mlp_multiplier"]:
        raise ValueError("released CAD-I config: latent_mlp_multiplier != data_mlp_multiplier; our CADI has one "
                         "mlp_ratio")
    missing = set(RENAMED) - set(full)
    if missing:
        raise ValueError(f"released CAD-I config: required keys {sorted(missing)} are missing")
    return {**{ours: full[theirs] for theirs, ours in RENAMED.items()}, **FIXED,
            "mlp_ratio": full["latent_mlp_multiplier"]}


def load_released(snapshot: str | os.PathLike,
                  map_location: str | torch.device = "cpu") -> tuple[CADI, ReleasedSampling]:
    """Our `CADI` holding a released snapshot's weights (strict load) and the sampling settings of the release."""
    folder = Path(snapshot)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing; a CAD-I snapshot holds {CONFIG_FILE} and "
                                    f"{WEIGHTS_FILE}")
    kwargs = released_kwargs(read_json(folder / CONFIG_FILE))
    with torch.device("meta"):  # every tensor is overwritten below
        model = CADI(**kwargs)
    model = model.to_empty(device=map_location)
    state = load_file(folder / WEIGHTS_FILE, device=str(torch.device(map_location)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"{folder / WEIGHTS_FILE} does not fit the CADI of {folder / CONFIG_FILE}: {err}") from err
    return model.eval(), RELEASED_SAMPLING


# How `convert_released`'s folder is sampled, beside the release's own settings (docs/evaluation.md).
OUR_SAMPLER = {"sampler": "ddim", "uncond": "the empty caption, encoded by encode.text", "coherence": [1.0, 0.0]}
RELEASE_FILE = "released.json"
UNCOND_FILE = "uncond.npy"  # read by loader.load_uncond, as in a shard set


def convert_released(snapshot: str | os.PathLike, out: str | os.PathLike, uncond: np.ndarray,
                     sampling: dict[str, Any]) -> dict[str, Any]:
    """Write a model folder our sampling reads from a release snapshot: ``model.safetensors`` + ``config.json``
    (our CADI), ``objective.json`` ("eps"), ``uncond.npy`` (``uncond``, (L0, D): the empty caption of our text
    encoder) and ``released.json`` (the snapshot's sha256s, the release's sampler, ours with ``sampling``).
    -> the ``released.json`` record."""
    from imagenet_t2i.models.base import OBJECTIVE_FILE

    model, release = load_released(snapshot)
    out = Path(out)
    save_pretrained(model, out)
    write_json(out / OBJECTIVE_FILE, {"objective": "eps"})
    with atomic_write(out / UNCOND_FILE, "wb") as f:
        np.save(f, uncond.astype(np.float16), allow_pickle=False)
    record = {"snapshot": str(snapshot),
              "sha256": {name: sha256_file(Path(snapshot) / name) for name in (CONFIG_FILE, WEIGHTS_FILE)},
              "release_sampling": dataclasses.asdict(release), "our_sampling": {**OUR_SAMPLER, **sampling}}
    write_json(out / RELEASE_FILE, record)
    return record


# A tiny CAD-I in the release's format: 4x8x8 latents (64 px through the tiny SD-VAE), text width 32 (the tiny T5).
TINY_RELEASE: dict[str, Any] = {
    "compute_heads": 2, "concat_cond_token_to_latents": False, "data_dim": 16, "data_size": 8, "label_dim": 32,
    "latents_dim": 32, "num_blocks": 1, "num_cond_tokens": 77, "num_input_channels": 4, "num_latents": 8,
    "num_processing_layers": 1, "num_text_registers": 4, "path_size": 2, "read_write_heads": 2,
    "use_cond_rin_block": True,
}  # fmt: skip


def save_random_release(out: str | os.PathLike, config: dict[str, Any] = TINY_RELEASE, seed: int = 0) -> None:
    """A release-format snapshot (``config.json`` with ``CADRINTextCond``'s kwarg names, ``model.safetensors``)
    of a random-init CAD-I, every parameter perturbed so no zero-initialised layer stays zero (trained weights)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = CADI(**released_kwargs(config))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    out = Path(out)
    out.mkdir(parents=True)
    (out / CONFIG_FILE).write_text(json.dumps(config, sort_keys=True, indent=2))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / WEIGHTS_FILE))

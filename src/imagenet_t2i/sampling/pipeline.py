"""`ImageNetT2IPipeline`: a diffusers pipeline around DiT-I / CAD-I that samples exactly as `imagenet_t2i.sampling.sample`.

Components: ``model`` (``DiTIModel`` | ``CADIModel``; a plain ``DiTI`` / ``CADI`` is converted), ``text_encoder``
+ ``tokenizer`` (transformers: the T5 encoder at paper scale, MiniLM in the tiny world) and ``vae`` (a diffusers
``AutoencoderKL``, or None for the tiny world's pixel space). Config: the objective the model was trained with, the text encoder's ``max_tokens`` and batch
size, and the default sampling settings (``num_inference_steps``, ``guidance_scale``, ``clamp``).

``pipe(prompts, ...)`` runs `sample.generate` on these components: the text encoding of the CLI's encoders
(truncation to ``max_tokens``, length-sorted batches, float16 states), the empty caption's encoding as the
unconditional embedding, our sampler (DDIM for ``eps``, Euler for ``flow``) with classifier-free guidance
and the x0 clamp, and our per-sample seeds: image j of prompt i starts from the noise of
``sample_seed(seed, i, j)`` (`sample.SEED_RULE`). Same components, settings and device: the same images as
the CLI's sampling, bit for bit. Save with ``pipe.save_pretrained(folder)`` (every file written atomically);
load with ``ImageNetT2IPipeline.from_pretrained(folder)`` (offline for a local folder); build one from a run
folder and the config's autoencoder and text encoder with `pipeline_from_run`.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, ImagePipelineOutput
from PIL import Image

from imagenet_t2i.encode.autoencoder import SDVAE, PixelAutoencoder, make_autoencoder, to_device
from imagenet_t2i.encode.text import _HFTextEncoder, make_text_encoder
from imagenet_t2i.models import load_pretrained
from imagenet_t2i.models.base import T2IModel, atomic_files
from imagenet_t2i.models.diffusers_models import to_diffusers
from imagenet_t2i.sampling.sample import generate, model_objective, sample_seed
from imagenet_t2i.weights import resolved

OUTPUT_TYPES = ("pil", "uint8")


class LoadedVAE:
    """The decode side of `SDVAE` for an ``AutoencoderKL`` already loaded (what `sample.generate` uses)."""

    def __init__(self, vae: AutoencoderKL):
        self.vae = vae
        self.scale_factor = float(vae.config.scaling_factor)

    @torch.inference_mode()
    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (N, C, h, w) unscaled -> (N, 3, H, W) in [-1, 1]
        x = self.vae.decode(to_device(z, self.vae.device, self.vae.dtype)).sample
        return x.float().clamp(-1.0, 1.0)


class ImageNetT2IPipeline(DiffusionPipeline):
    """Text-to-image sampling with DiT-I / CAD-I: ``pipe(prompts, guidance_scale=, num_inference_steps=, seed=)``."""

    model_cpu_offload_seq = "text_encoder->model->vae"
    _optional_components = ["vae"]

    def __init__(
        self,
        model: T2IModel,
        text_encoder: torch.nn.Module,
        tokenizer: Any,
        vae: AutoencoderKL | None = None,
        objective: str = "eps",
        max_tokens: int = 256,
        text_batch_size: int = 64,
        num_inference_steps: int = 250,
        guidance_scale: float = 9.0,
        clamp: float | None = 1.0,
    ):
        super().__init__()
        self.register_modules(model=to_diffusers(model), text_encoder=text_encoder, tokenizer=tokenizer, vae=vae)
        self.register_to_config(objective=objective, max_tokens=max_tokens, text_batch_size=text_batch_size,
                                num_inference_steps=num_inference_steps, guidance_scale=guidance_scale, clamp=clamp)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        num_images_per_prompt: int = 1,
        guidance_scale: float | None = None,
        num_inference_steps: int | None = None,
        seed: int = 0,
        generator: torch.Generator | None = None,
        batch_size: int = 64,
        output_type: str = "pil",
        return_dict: bool = True,
        progress: bool = False,
    ) -> ImagePipelineOutput | tuple[list[Image.Image] | np.ndarray]:
        """Images prompt-major (prompt 0's ``num_images_per_prompt`` images first).

        ``guidance_scale`` / ``num_inference_steps`` default to the pipeline config; the x0 clamp is
        ``config.clamp``. Image j of prompt i (its index in ``prompt``) starts from the noise of
        ``sample_seed(seed, i, j)``; a ``generator`` given instead stands for ``seed = generator.initial_seed()``
        (the seed rule needs an integer). ``batch_size`` images go through the model at once (as
        `sample.generate`; CPU kernels may round differently for other batch shapes). ``output_type``: "pil"
        (PIL images) or "uint8" ((N, H, W, 3) uint8 array).
        """
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type {output_type!r}: use one of {list(OUTPUT_TYPES)}")
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        seed = generator.initial_seed() if generator is not None else seed
        k = num_images_per_prompt
        flat = [p for p in prompts for _ in range(k)]
        seeds = [sample_seed(seed, i, j) for i in range(len(prompts)) for j in range(k)]
        device = self._execution_device
        text_encoder = _HFTextEncoder(self.tokenizer, self.text_encoder, self.config.max_tokens, device,
                                      self.config.text_batch_size)
        uncond = torch.from_numpy(text_encoder.encode([""])[0]).float()  # (L0, D), as the shards stage stores it
        autoencoder = PixelAutoencoder() if self.vae is None else LoadedVAE(self.vae)
        sample_cfg = {"steps": self.config.num_inference_steps if num_inference_steps is None else num_inference_steps,
                      "guidance": self.config.guidance_scale if guidance_scale is None else guidance_scale,
                      "clamp": self.config.clamp}
        batches = generate(self.model, autoencoder, text_encoder, uncond, flat, seeds, sample_cfg,
                           self.config.objective, batch_size, device, progress)
        images = np.concatenate(list(batches))  # (N, H, W, 3) uint8
        out = [Image.fromarray(img) for img in images] if output_type == "pil" else images
        return ImagePipelineOutput(images=out) if return_dict else (out,)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> None:
        """diffusers' ``save_pretrained`` (``model_index.json`` + one folder per component), each file atomically."""
        if kwargs.get("push_to_hub"):
            raise ValueError("push_to_hub is not supported here: save the folder, then upload it with huggingface_hub")
        with atomic_files(save_directory) as tmp:
            super().save_pretrained(tmp, **kwargs)


def pipeline_from_run(model_dir: str | os.PathLike, config: dict, device: str | None = None) -> ImageNetT2IPipeline:
    """The pipeline of a run folder (``final/``, a checkpoint; any layout `load_pretrained` reads), with the
    autoencoder and text encoder of ``config`` (``encode.autoencoder`` / ``encode.text``, loaded as the CLI loads
    them) and its ``sample`` settings (steps, guidance, clamp) as defaults."""
    model = load_pretrained(model_dir)
    autoencoder = make_autoencoder(resolved(config, "autoencoder"), device)
    text = make_text_encoder(resolved(config, "text"), device)  # a MiniLMEncoder / T5Encoder: tokenizer + model
    sample = config["sample"]
    return ImageNetT2IPipeline(
        model=model, text_encoder=text.model, tokenizer=text.tokenizer,
        vae=autoencoder.vae if isinstance(autoencoder, SDVAE) else None, objective=model_objective(model_dir),
        max_tokens=text.max_tokens, text_batch_size=text.batch_size, num_inference_steps=sample["steps"],
        guidance_scale=sample["guidance"], clamp=sample["clamp"],
    )

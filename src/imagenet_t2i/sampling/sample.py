"""Sample a trained model for a list of prompts: PNG files and a labelled grid.

Sampling runs on the GPU when there is one (bf16 autocast; fp32 on the CPU), in batches. Sample j
of prompt i starts from its own noise (`sample_seed`), so its image depends neither on the batch size
nor on the other prompts sampled with it, up to the float rounding of kernels that vary with the
batch shape (on the CPU: now and then one uint8 level in a pixel). The file writers (`sample_missing`)
therefore skip prompts whose files exist, so a killed job resumes per prompt, and write every file
atomically.
"""
from __future__ import annotations

import hashlib
import itertools
import json
import textwrap
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from imagenet_t2i.diffusion.sampler import SAMPLERS
from imagenet_t2i.encode.autoencoder import Autoencoder, default_device
from imagenet_t2i.encode.images import to_uint8
from imagenet_t2i.encode.text import TextEncoder
from imagenet_t2i.io import atomic_write, read_json, write_json
from imagenet_t2i.models import load_pretrained, unwrap_model
from imagenet_t2i.models.base import OBJECTIVE_FILE
from imagenet_t2i.provenance import path_hash
from imagenet_t2i.shards.reader import pad_text

RESUME_FILE = ".sampling.json"  # in each output folder: the settings its files were sampled with
SEED_RULE = ("x_T of sample j of prompt i = torch.randn((1, C, h, w), generator=torch.Generator().manual_seed("
             "int(numpy.random.SeedSequence((seed, i, j)).generate_state(1, numpy.uint64)[0]))); DDPM's step noise: "
             "that generator's next draws, one (1, C, h, w) per step")


def model_objective(model_dir: str | Path) -> str:
    """The objective a model folder was trained with (``eps`` when unrecorded, e.g. released weights)."""
    path = Path(model_dir) / OBJECTIVE_FILE
    return read_json(path)["objective"] if path.exists() else "eps"


def sample_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device(default_device())


def precision(device: torch.device) -> str:
    """``bf16`` (autocast) on CUDA, ``fp32`` elsewhere."""
    return "bf16" if device.type == "cuda" else "fp32"


def sampling_provenance(batch_size: int) -> dict:
    """How a sampling command ran, beside its config in the provenance record."""
    device = sample_device()
    return {"seed_rule": SEED_RULE, "device": device.type, "precision": precision(device), "batch_size": batch_size}


def sample_seed(seed: int, prompt: int, sample: int) -> int:
    """Noise seed of sample ``sample`` of prompt ``prompt`` (its index in the command's prompt list); `SEED_RULE`."""
    return int(np.random.SeedSequence((seed, prompt, sample)).generate_state(1, np.uint64)[0])


def noise_generators(seeds: Sequence[int]) -> list[torch.Generator]:
    """One CPU generator per sample, seeded with its seed: x_T is its first draw, DDPM's step noise the next ones."""
    return [torch.Generator().manual_seed(s) for s in seeds]


def initial_noise(generators: Sequence[torch.Generator], shape: tuple[int, int, int]) -> torch.Tensor:
    """x_T (N, C, h, w) float32 on the CPU: row n is the next draw of ``generators[n]``."""
    return torch.cat([torch.randn((1, *shape), generator=g) for g in generators])


def sampler_settings(sample_cfg: dict) -> dict:
    """The settings that decide a sample: sampler, steps, guidance, clamp, schedule (default cosine) and the number
    of unguided first steps (default 0)."""
    return {"sampler": sample_cfg.get("sampler", "ddim"), "schedule": sample_cfg.get("schedule", "cosine"),
            "unguided_steps": sample_cfg.get("unguided_steps", 0),
            **{k: sample_cfg[k] for k in ("steps", "guidance", "clamp")}}


@torch.no_grad()
def generate(model: torch.nn.Module, autoencoder: Autoencoder, text_encoder: TextEncoder, uncond: torch.Tensor,
             prompts: list[str], seeds: list[int], sample_cfg: dict, objective: str = "eps", batch_size: int = 64,
             device: str | torch.device | None = None, progress: bool = False) -> Iterator[np.ndarray]:
    """Images (B, H, W, 3) uint8 batch by batch, one per prompt; image n starts from the noise of ``seeds[n]``.

    The model runs on ``device`` (default `sample_device`), under bf16 autocast on CUDA.
    """
    device = torch.device(device) if device is not None else sample_device()
    model.to(device).eval()
    kwargs = unwrap_model(model).build_kwargs
    shape = (kwargs["in_channels"], kwargs["input_size"], kwargs["input_size"])  # (C, h, w)
    uncond = uncond.to(device)  # (L0, D)
    settings = sampler_settings(sample_cfg)
    if (objective, settings["sampler"]) not in SAMPLERS:
        raise ValueError(f"sample.sampler {settings['sampler']!r} does not sample a {objective!r} model "
                         f"(known: {sorted(SAMPLERS)})")
    sampler = SAMPLERS[(objective, settings["sampler"])]
    for start in range(0, len(prompts), batch_size):
        text, mask = pad_text(text_encoder.encode(prompts[start : start + batch_size]))  # (B, T, D), (B, T)
        generators = noise_generators(seeds[start : start + batch_size])
        noise = initial_noise(generators, shape).to(device)  # (B, C, h, w)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            z = sampler(model, text.to(device), mask.to(device), uncond, shape, steps=settings["steps"],
                        guidance=settings["guidance"], clamp=settings["clamp"], progress=progress, noise=noise,
                        schedule=settings["schedule"], unguided_steps=settings["unguided_steps"],
                        step_generators=generators)
        yield to_uint8(autoencoder.decode(z / autoencoder.scale_factor))


def sample_missing(model_dir: str | Path, out_dir: str | Path, autoencoder: Autoencoder, text_encoder: TextEncoder,
                   uncond: torch.Tensor, prompts: list[str], samples_per_prompt: int, sample_cfg: dict, seed: int,
                   done: Callable[[int], bool], write: Callable[[int, np.ndarray], None], batch_size: int = 64,
                   progress: bool = False) -> list[int]:
    """Sample every prompt i with ``not done(i)`` and hand its images, (samples_per_prompt, H, W, 3) uint8,
    to ``write(i, images)`` as soon as they are complete. Returns the indices of the prompts sampled.

    Sample j of prompt i starts from the noise of ``sample_seed(seed, i, j)``. ``out_dir/.sampling.json``
    records the settings; resuming into a folder sampled with other settings is an error.
    """
    device, objective = sample_device(), model_objective(model_dir)
    settings = {"model": path_hash(model_dir), "objective": objective, "autoencoder": autoencoder.describe(),
                "prompts": hashlib.sha256(json.dumps(prompts).encode()).hexdigest(),
                "samples_per_prompt": samples_per_prompt, "seed": seed, "seed_rule": SEED_RULE,
                "precision": precision(device), **sampler_settings(sample_cfg)}
    _claim(out_dir, settings)
    todo = [i for i in range(len(prompts)) if not done(i)]
    if not todo:
        return todo
    k = samples_per_prompt
    flat = [prompts[i] for i in todo for _ in range(k)]
    seeds = [sample_seed(seed, i, j) for i in todo for j in range(k)]
    batches = generate(load_pretrained(model_dir), autoencoder, text_encoder, uncond, flat, seeds, sample_cfg,
                       objective, batch_size, device, progress)
    images = itertools.chain.from_iterable(batches)  # (H, W, 3) each, prompt-major
    for i in todo:
        write(i, np.stack(list(itertools.islice(images, k))))
    return todo


def _claim(out_dir: str | Path, settings: dict) -> None:
    """Record ``settings`` in ``out_dir``; refuse a folder whose files were sampled with other settings."""
    path = Path(out_dir) / RESUME_FILE
    settings = json.loads(json.dumps(settings))  # as read back (tuples -> lists)
    if path.exists() and read_json(path) != settings:
        raise ValueError(f"{out_dir} holds samples made with other settings (model, prompts or sampling; see {path}); "
                         "delete the folder to sample it afresh")
    write_json(path, settings)


def save_png(img: np.ndarray, path: Path) -> None:
    """Write an (H, W, 3) uint8 image as PNG, atomically."""
    with atomic_write(path, "wb") as f:
        Image.fromarray(img).save(f, format="PNG")


def sample_pngs(model_dir: str | Path, out_dir: str | Path, autoencoder: Autoencoder, text_encoder: TextEncoder,
                uncond: torch.Tensor, prompts: list[str], paths: list[list[Path]], sample_cfg: dict, seed: int,
                batch_size: int = 64, progress: bool = False) -> list[int]:
    """Write sample j of prompt i as the PNG ``paths[i][j]`` (same count per prompt) for every prompt
    whose files are not all there; returns the indices of the prompts sampled."""

    def write(i: int, images: np.ndarray) -> None:
        for img, path in zip(images, paths[i], strict=True):
            save_png(img, path)

    k = len(paths[0]) if paths else 0
    return sample_missing(model_dir, out_dir, autoencoder, text_encoder, uncond, prompts, k, sample_cfg, seed,
                          lambda i: all(p.is_file() for p in paths[i]), write, batch_size, progress)


def prompt_paths(out_dir: str | Path, num_prompts: int, samples_per_prompt: int) -> list[list[Path]]:
    """Per prompt, its sample files ``<out>/<prompt:03d>_<sample:02d>.png``."""
    return [[Path(out_dir) / f"{i:03d}_{j:02d}.png" for j in range(samples_per_prompt)] for i in range(num_prompts)]


def sample_prompts(model_dir: str | Path, autoencoder: Autoencoder, text_encoder: TextEncoder, uncond: torch.Tensor,
                   prompts: list[str], sample_cfg: dict, out_dir: str | Path, batch_size: int = 64,
                   progress: bool = True) -> list[Path]:
    """Write ``samples_per_prompt`` PNGs per prompt as ``<out>/<prompt:03d>_<sample:02d>.png`` (prompts
    whose files exist are kept); returns every path, prompt-major."""
    paths = prompt_paths(out_dir, len(prompts), sample_cfg["samples_per_prompt"])
    sample_pngs(model_dir, out_dir, autoencoder, text_encoder, uncond, prompts, paths, sample_cfg, sample_cfg["seed"],
                batch_size, progress)
    return [p for per_prompt in paths for p in per_prompt]


def make_grid(images: list[np.ndarray], prompts: list[str], per_row: int, cell: int = 96, label_w: int = 260) -> Image.Image:
    """Rows = prompts (labelled on the left), columns = samples; cells upscaled with nearest neighbour."""
    rows = len(prompts)
    grid = Image.new("RGB", (label_w + per_row * (cell + 4), rows * (cell + 4)), "white")
    draw = ImageDraw.Draw(grid)
    font = ImageFont.load_default()
    for r, prompt in enumerate(prompts):
        lines = textwrap.wrap(prompt, 40)[:4]
        top = r * (cell + 4) + cell // 2 - 6 * len(lines)
        for j, line in enumerate(lines):
            draw.text((4, top + 12 * j), line, fill="black", font=font)
        for c in range(per_row):
            tile = Image.fromarray(images[r * per_row + c]).resize((cell, cell), Image.NEAREST)
            grid.paste(tile, (label_w + c * (cell + 4), r * (cell + 4)))
    return grid

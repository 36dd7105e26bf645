"""Commands of the sampling stage (workflow/rules/sample.smk): sample a model's grid, encode the evaluation
prompts once (``embed``), and convert the released CAD-I into a model folder (``released``)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from imagenet_t2i.cli.common import config_of, provenance
from imagenet_t2i.cli.sampling_args import embeddings_input, text_encoder
from imagenet_t2i.config import ConfigError
from imagenet_t2i.weights import resolved


def cmd_released(args: argparse.Namespace) -> None:
    from imagenet_t2i.encode.text import make_text_encoder
    from imagenet_t2i.io import staged_folder
    from imagenet_t2i.sampling.released import convert_released

    config = config_of(args.config, gpu=True)
    spec = config["eval"].get("released")
    if not spec:
        raise ConfigError("config key 'eval.released': not set; add {weights: <entry of a CAD-I snapshot>, guidance, "
                          "clamp, steps, schedule, unguided_steps} (config/paper.yaml) to evaluate the released CAD-I")
    t0 = time.time()
    text = resolved(config, "text")
    uncond = make_text_encoder(text).encode([""])[0]  # (L0, D): the prompts' encoder, as the shards stage does it
    sampling = {k: spec[k] for k in ("steps", "guidance", "clamp", "schedule", "unguided_steps")}
    with staged_folder(args.out) as tmp:
        record = convert_released(args.snapshot, tmp, uncond, sampling)
    print(f"{args.out}: released CAD-I from {args.snapshot} (model.safetensors sha256 "
          f"{record['sha256']['model.safetensors']})")
    provenance("released", {"released": spec, "text": text, "release_sampling": record["release_sampling"],
                             "our_sampling": record["our_sampling"], "snapshot_sha256": record["sha256"]},
                {"snapshot": args.snapshot, **({"text_weights": text["path"]} if "path" in text else {})}, args.out, t0)


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from imagenet_t2i.encode.autoencoder import make_autoencoder
    from imagenet_t2i.io import atomic_write, resumable_folder
    from imagenet_t2i.sampling.sample import make_grid, sample_prompts, sampling_provenance
    from imagenet_t2i.shards.reader import load_uncond

    config = config_of(args.config, gpu=True)
    sample_cfg = dict(config["sample"])
    prompts = prompt_lines(Path(args.prompts).read_text().splitlines() if args.prompts else sample_cfg["grid_prompts"])
    t0 = time.time()
    uncond, _ = load_uncond(args.uncond)
    with resumable_folder(args.out) as work:  # what a killed try sampled is kept for the next
        paths = sample_prompts(args.model, make_autoencoder(resolved(config, "autoencoder")),
                               text_encoder(config, args.embeddings), uncond[0], prompts, sample_cfg, work,
                               batch_size=args.batch_size)
        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths] if args.grid else []
    inputs = {"model": args.model, "uncond": args.uncond, **embeddings_input(args)}
    record = {**sample_cfg, **sampling_provenance(args.batch_size)}
    if args.grid:
        with atomic_write(args.grid, "wb") as f:
            make_grid(images, prompts, sample_cfg["samples_per_prompt"]).save(f, format="PNG")
        provenance("sample", record, inputs, args.grid, t0)
    provenance("sample", record, inputs, args.out, t0)


def prompt_lines(lines: list[str]) -> list[str]:
    """Prompts as sampled: stripped, blank lines dropped."""
    return [p.strip() for p in lines if p.strip()]


def cmd_embed(args: argparse.Namespace) -> None:
    from imagenet_t2i.encode.text import make_text_encoder
    from imagenet_t2i.encode.text_cache import read_texts, write_text_cache
    from imagenet_t2i.evaluation.diagnostics.colour_probe import config_probe_prompts

    config = config_of(args.config, gpu=True)
    texts = prompt_lines(config["sample"]["grid_prompts"]) + [row["prompt"] for row in config_probe_prompts(config)]
    for path in args.texts_from:
        texts += read_texts(path, args.captions_limit)
    t0 = time.time()
    n = write_text_cache(make_text_encoder(resolved(config, "text")), texts, args.out)
    print(f"{args.out}: {n} distinct texts ({len(texts)} read)")
    provenance("embed", {"text": resolved(config, "text"), "grid_prompts": config["sample"]["grid_prompts"],
                          "captions_limit": args.captions_limit}, {p: p for p in args.texts_from}, args.out, t0)

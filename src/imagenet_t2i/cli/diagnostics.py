"""Diagnostic commands (workflow/rules/diagnostics.smk), not paper metrics: the tiny world's colour probe and the
denoising profile of a checkpoint."""
from __future__ import annotations

import argparse
import time

from imagenet_t2i.cli.common import config_of, provenance
from imagenet_t2i.cli.sampling_args import embeddings_input, eval_backends, eval_sample_cfg, sampling_record
from imagenet_t2i.config import ConfigError


def cmd_colour_probe(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.diagnostics.colour_probe import config_probe_prompts, probe_accuracy
    from imagenet_t2i.evaluation.diagnostics.probe_sampling import sample_colour_probe
    from imagenet_t2i.io import write_json

    config = config_of(args.config)
    rows, k = config_probe_prompts(config), config["eval"]["colour_probe"]["samples_per_prompt"]
    if not rows:
        raise ConfigError("config key 'source.backend': the colour probe is a diagnostic of the synthetic world "
                          "(its colours and classes); drop colour_probe from the tables of this config")
    t0 = time.time()
    images = sample_colour_probe(args.model, rows, args.images, *eval_backends(config, args.uncond, args.embeddings),
                                 eval_sample_cfg(config, args), k, args.batch_size)
    result = probe_accuracy(images, rows, k)
    write_json(args.out, result)
    print(f"{args.out}: colour probe accuracy {result['accuracy']:.3f} (chance {result['chance']:.3f})")
    inputs = {"model": args.model, "uncond": args.uncond, **embeddings_input(args)}
    provenance("colour_probe_sample", {**sampling_record(config, args), "samples_per_prompt": k}, inputs,
                args.images, t0)
    provenance("colour_probe", {"samples_per_prompt": k}, {"images": args.images}, args.out, t0)


def cmd_denoise_profile(args: argparse.Namespace) -> None:
    from imagenet_t2i.encode.autoencoder import default_device
    from imagenet_t2i.evaluation.diagnostics.denoise_profile import denoise_profile, fixed_samples, format_profile
    from imagenet_t2i.io import write_json
    from imagenet_t2i.models import load_pretrained
    from imagenet_t2i.sampling.sample import model_objective

    config = config_of(args.config)
    cfg = config["eval"]["denoise"]
    t0 = time.time()
    x0, text, mask = fixed_samples(args.shards, cfg["num_samples"], cfg["seed"])
    objective = model_objective(args.model)
    profile = denoise_profile(load_pretrained(args.model), x0, text, mask, cfg["gammas"], objective, cfg["seed"],
                              args.batch_size, default_device())
    profile.update(shards=args.shards, seed=cfg["seed"], objective=objective,
                   self_conditioning="none (one pass, the first sampling step's input)")
    print(f"{args.model} on {profile['num_samples']} samples of {args.shards}: x0-prediction MSE\n"
          f"{format_profile(profile)}")
    if args.out:
        write_json(args.out, profile)
        provenance("denoise_profile", {**cfg, "batch_size": args.batch_size},
                    {"model": args.model, "shards": args.shards}, args.out, t0)

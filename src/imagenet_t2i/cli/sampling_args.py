"""What the sampling commands share: the text encoder or a prompt-embedding cache, the benchmarks' sampling
settings with their command-line overrides, and how they are recorded in provenance."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from imagenet_t2i.config import ConfigError
from imagenet_t2i.weights import resolved

if TYPE_CHECKING:
    from imagenet_t2i.encode.text import TextEncoder


def text_encoder(config: dict, embeddings: str | None) -> TextEncoder:
    """The prompt-embedding cache when given (no text encoder is loaded), else the configured encoder."""
    if embeddings:
        from imagenet_t2i.encode.text_cache import TextEmbeddingCache

        return TextEmbeddingCache(embeddings, expect=resolved(config, "text"))
    from imagenet_t2i.encode.text import make_text_encoder

    return make_text_encoder(resolved(config, "text"))


def embeddings_input(args: argparse.Namespace) -> dict:
    """The cache as a provenance input (audit re-hashes it), when one was used."""
    return {"embeddings": args.embeddings} if args.embeddings else {}


def eval_backends(config: dict, uncond_dir: str, embeddings: str | None) -> tuple:
    from imagenet_t2i.encode.autoencoder import make_autoencoder
    from imagenet_t2i.shards.reader import load_uncond

    return (make_autoencoder(resolved(config, "autoencoder")), text_encoder(config, embeddings),
            load_uncond(uncond_dir)[0][0])


SAMPLING_OVERRIDES = ("sampler", "steps", "guidance", "clamp", "schedule", "unguided_steps")


def eval_sample_cfg(config: dict, args: argparse.Namespace, fid: bool = False) -> dict:
    """``sample`` with the benchmarks' steps (``eval.steps``; FID: ``eval.fid.sampling`` where set), then the
    sampling options given on the command line."""
    given = {k: getattr(args, k) for k in SAMPLING_OVERRIDES if getattr(args, k, None) is not None}
    own = config["eval"].get("fid", {}).get("sampling", {}) if fid else {}
    return {**config["sample"], "steps": config["eval"]["steps"], **own, **given}


def sampling_record(config: dict, args: argparse.Namespace, fid: bool = False) -> dict:
    """The evaluation sampling settings as used (sampler, schedule and unguided steps always named) and how they
    ran (seed rule, device, precision, batch size); ``overridden`` names the settings given on the command line
    (the released CAD-I's, eval.released)."""
    from imagenet_t2i.sampling.sample import sampler_settings, sampling_provenance

    cfg = eval_sample_cfg(config, args, fid)
    given = sorted(k for k in SAMPLING_OVERRIDES if getattr(args, k, None) is not None)
    return {**cfg, **sampler_settings(cfg), **sampling_provenance(args.batch_size),
            **({"overridden": given} if given else {})}


def require_tiny_perception(config: dict, what: str) -> None:
    if config["eval"]["perception"] != "tiny":
        raise ConfigError(f"config key 'eval.perception': this command is the tiny world's; the official {what} "
                          "runs in its own conda environment through the Snakemake rule (docs/evaluation.md)")

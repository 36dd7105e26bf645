"""Helpers the Snakefile calls: resolved config file, per-run inputs, rerun triggers.

All workflow logic lives here (tested without Snakemake); the .smk files only name files.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .config import config_hash, resolve_run, run_shard_sets, validate_config
from .io import atomic_write
from .provenance import source_hash


def results_dir(config: dict) -> str:
    return f"results/{config['name']}"


def write_resolved_config(config: dict) -> str:
    """Validate ``config`` and write it to ``results/<name>/config.yaml`` (only when it changed).

    Every rule's command reads this one file, so ``--configfile`` and ``--config`` overrides reach
    the CLI exactly as Snakemake merged them.
    """
    validate_config(config)
    path = Path(results_dir(config)) / "config.yaml"
    text = yaml.safe_dump(config, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        with atomic_write(path) as f:
            f.write(text)
    return str(path)


def code_version() -> str:
    """A hash of the package sources: in rule params, so code changes rerun jobs."""
    return source_hash()


def set_source(config: dict, set_name: str) -> str:
    """Folder holding the images of a shard/caption set (train, val, cutmix, crop)."""
    root = results_dir(config)
    return f"{root}/augment/{set_name}" if set_name in ("cutmix", "crop") else f"{root}/data/{set_name}"


def run_shards(config: dict, run: str) -> list[str]:
    """Shard-set folders a run trains on."""
    sets = run_shard_sets(resolve_run(config, run))
    return [f"{results_dir(config)}/shards/{name}" for name in sets.values()]


def run_hash(config: dict, run: str) -> str:
    """Hash of everything in the config one run depends on."""
    return config_hash({"run": resolve_run(config, run), "source": config["source"], "encode": config["encode"],
                        "augment": config.get("augment", {})})


def eval_checkpoint_names(config: dict) -> list[str]:
    return [f"step-{s:07d}" for s in config["train"].get("eval_checkpoints", [])]

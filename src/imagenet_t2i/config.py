"""Load, validate and resolve a pipeline config (the same rules for the Snakefile and the CLI)."""
from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config key is missing or invalid; the message names the key."""


def _with_defaults(validator_class: type) -> type:
    """A validator that fills schema defaults before checking (as snakemake's validate does)."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def load_schema(path: Path = SCHEMA_PATH) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def deep_merge(base: dict, over: dict) -> dict:
    """Recursively merge ``over`` into a copy of ``base`` (like snakemake's --configfile)."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def validate_config(config: dict, schema: dict | None = None) -> dict:
    """Fill defaults and validate ``config`` in place; raise ConfigError naming the first bad key."""
    schema = schema or load_schema()
    validator = _with_defaults(jsonschema.Draft202012Validator)(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        key = ".".join(str(p) for p in e.absolute_path) or "<top level>"
        raise ConfigError(f"config key '{key}': {e.message}")
    _check_references(config)
    return config


def _check_references(config: dict) -> None:
    for run, spec in config["runs"].items():
        if spec["model"] not in config["models"]:
            raise ConfigError(f"config key 'runs.{run}.model': unknown model '{spec['model']}' "
                              f"(defined: {sorted(config['models'])})")
        if spec["model"] not in config["train"]["optimizer"]:
            raise ConfigError(f"config key 'train.optimizer.{spec['model']}': missing (needed by run '{run}')")
    for step in config["train"].get("eval_checkpoints", []):
        for run, spec in config["runs"].items():
            if step > spec.get("steps", config["train"]["steps"]):
                raise ConfigError(f"config key 'train.eval_checkpoints': step {step} is past the end of run '{run}'")
    if config["source"]["backend"] == "imagenet":
        for key in ("root", "synset_mapping"):
            if key not in config["source"]:
                raise ConfigError(f"config key 'source.{key}': required when source.backend is imagenet")
    else:
        for key in ("num_train", "num_val", "classes", "colors", "backgrounds"):
            if key not in config["source"]:
                raise ConfigError(f"config key 'source.{key}': required when source.backend is synthetic")


def load_config(*paths: str | Path) -> dict:
    """Deep-merge YAML files in order, then validate; errors name the file or the key."""
    config: dict = {}
    for path in paths:
        try:
            with open(path) as f:
                data = yaml.safe_load(f) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        config = deep_merge(config, data)
    return validate_config(config)


def config_hash(obj: Any) -> str:
    """Stable short hash of a JSON-serialisable config subtree."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def resolve_run(config: dict, run: str) -> dict:
    """Everything one training run depends on: its spec, model, training recipe and data sets."""
    if run not in config["runs"]:
        raise ConfigError(f"config key 'runs.{run}': no such run (defined: {sorted(config['runs'])})")
    spec = config["runs"][run]
    train = copy.deepcopy(config["train"])
    train["optimizer"] = train["optimizer"][spec["model"]]
    train["steps"] = spec.get("steps", train["steps"])
    return {
        "name": run,
        "seed": spec.get("seed", config["seed"]),
        "model": copy.deepcopy(config["models"][spec["model"]]),
        "model_name": spec["model"],
        "captions": spec["captions"],
        "augment": spec["augment"],
        "train": train,
        "resolution": config["source"]["resolution"],
    }


def run_shard_sets(run_cfg: dict) -> dict[str, str]:
    """Role -> shard-set name ("train", "cutmix", "crop") needed by a resolved run."""
    caps = run_cfg["captions"]
    sets = {"train": f"train_{caps}"}
    augment = run_cfg["augment"]
    if augment != "none":
        for kind in augment.split("+"):
            sets[kind] = f"{kind}_{caps}"
    return sets

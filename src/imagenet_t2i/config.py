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


# The pseudo-run name of the released CAD-I (``eval.released``): evaluated like a run, never trained.
RELEASED_RUN = "released_cad_i"


def evaluated_runs(config: dict) -> list[str]:
    """Every run the evaluation rules score: the trained runs, and `RELEASED_RUN` with ``eval.released``."""
    return [*config["runs"], *([RELEASED_RUN] if config.get("eval", {}).get("released") else [])]


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
    expand_replicates(config)
    _check_cluster(config)
    _check_references(config)
    return config


def replicate_name(run: str, seed: int, first: int) -> str:
    return run if seed == first else f"{run}_s{seed}"


def expand_replicates(config: dict) -> None:
    """Repeat every run over ``replicates`` seeds (``<run>_s<seed>``; not a run with ``replicated: false``) and let
    table rows and figure lines average them. Idempotent: a config written after expansion validates unchanged."""
    seeds = config.get("replicates", [0])
    first = seeds[0]
    base = {name: spec for name, spec in config["runs"].items()
            if "_replicate_of" not in spec and spec.get("replicated", True)}
    for name, spec in base.items():
        for seed in seeds[1:]:
            parent = ({"init_from": replicate_name(spec["init_from"], seed, first)}
                      if spec.get("init_from") in base else {})
            config["runs"].setdefault(replicate_name(name, seed, first),  # a grafted run: from its parent's replicate
                                      {**spec, **parent, "seed": spec.get("seed", config["seed"]) + seed,
                                       "_replicate_of": name})

    def widen(runs: list[str]) -> list[str]:
        return list(dict.fromkeys(replicate_name(r, s, first) if r in base else r for r in runs for s in seeds))

    for table in config.get("tables", {}).values():
        for row in table["rows"]:
            row["runs"] = widen(row["runs"])
    for fid in ("F-OVERFIT", "F-DENOISE"):
        for panel in config.get("figures", {}).get(fid, {}).get("panels", []):
            for line in panel.get("lines", []):
                line["runs"] = widen(line["runs"])
    for entry in config.get("figures", {}).get("F-BUBBLE", {}).get("runs", []):
        entry["runs"] = widen(entry["runs"])


GRID_FIGURES = ("F-QUAL", "F-GALLERY")  # figures of sample images: runs x grid prompts, from samples/<run>/images


def grid_figure(config: dict, figure: str) -> tuple[list[str], list[int]]:
    """(runs, indices into sample.grid_prompts) of a grid figure; F-GALLERY's default: every run, every prompt."""
    spec = config.get("figures", {}).get(figure) or {}
    return (list(spec.get("runs") or config["runs"]),
            list(spec.get("prompts") or range(len(config["sample"]["grid_prompts"]))))


IMAGENET = {"train": 1_281_167, "val": 50_000}  # ILSVRC-2012 images per split


def set_images(config: dict, name: str) -> int:
    """Images of a source or augmented set, from the config alone (an augmented set holds one composite per training
    image): the synthetic world's counts, the fake ImageNet's, or ImageNet's."""
    src = config["source"]
    name = split_resolution(name)[0]
    if name == "aesthetic" and config.get("aesthetic", {}).get("set", "world") != "world":
        return aesthetic_folder_images(config["aesthetic"])
    split = name if name in ("train", "val") else "train"
    if src["backend"] == "synthetic":
        return src["num_train"] if split == "train" else src["num_val"]
    if src.get("fake"):
        return src["fake"]["classes"] * src["fake"][f"{split}_per_class"]
    return IMAGENET[split]


def aesthetic_folder_images(spec: dict) -> int:
    """Images of T-AES's fine-tune folder: ``aesthetic.images`` if set, else the rows of its captions.jsonl where the
    folder is on this machine, else 0 (unknown: the cost says so)."""
    if "images" in spec:
        return spec["images"]
    captions = Path(spec["set"]) / "captions.jsonl"
    if not captions.is_file():
        return 0
    with open(captions) as f:
        return sum(1 for line in f if line.strip())


def per_rank_batch(global_batch: int, world_size: int, accumulation: int) -> int:
    """Samples one rank reads per micro-batch: ``global / (ranks x accumulation)``; it must divide."""
    parts = world_size * accumulation
    if global_batch % parts:
        raise ValueError(f"train.batch_size {global_batch} (the global batch) does not divide into {world_size} "
                         f"rank(s) x {accumulation} accumulation step(s) = {parts}: choose a batch size that is a "
                         f"multiple of {parts}, or change train.accumulation / the number of GPUs")
    return global_batch // parts


def cluster_world_size(cluster: dict) -> int:
    """DDP ranks a training job of this cluster config runs: nodes x tasks per node."""
    return cluster.get("nodes", 1) * cluster.get("tasks_per_node", 1)


def _check_cluster(config: dict) -> None:
    """One DDP rank per GPU: ``tasks_per_node`` must equal ``gpus_per_node`` when the nodes have GPUs."""
    cluster = config["cluster"]
    gpus, tasks = cluster.get("gpus_per_node", 0), cluster.get("tasks_per_node", 1)
    if gpus and tasks != gpus:
        effect = f"{gpus - tasks} GPU(s) per node would idle" if tasks < gpus else "ranks would share a GPU and crash"
        raise ConfigError(f"config keys 'cluster.tasks_per_node' ({tasks}) and 'cluster.gpus_per_node' ({gpus}): a "
                          f"training job runs one DDP rank per GPU, so they must be equal ({effect}); set "
                          f"tasks_per_node: {gpus}")


CLAIM_DIRECTIONS = ("higher", "lower")  # a table's compare entry: b's metric than a's, as the paper reports it


def check_compare(table_id: str, spec: dict) -> None:
    """A table's ``compare`` entries (paper/comparisons.py) name its own rows and metrics; ConfigError naming the key
    otherwise."""
    labels = {row["label"] for row in spec["rows"]}
    for i, entry in enumerate(spec.get("compare", [])):
        where = f"config key 'tables.{table_id}.compare.{i}'"
        for side in ("a", "b"):
            if entry[side] not in labels:
                raise ConfigError(f"{where}: row {entry[side]!r} is not a row label of the table ({sorted(labels)})")
        if entry["metric"] not in spec["metrics"]:
            raise ConfigError(f"{where}: metric {entry['metric']!r} is not among the table's metrics")
        if entry["paper"] not in CLAIM_DIRECTIONS:
            raise ConfigError(f"{where}: paper must be one of {CLAIM_DIRECTIONS}, got {entry['paper']!r}")


def _check_references(config: dict) -> None:
    for run, spec in config["runs"].items():
        if spec["model"] not in config["models"]:
            raise ConfigError(f"config key 'runs.{run}.model': unknown model '{spec['model']}' "
                              f"(defined: {sorted(config['models'])})")
        optimizer = spec.get("optimizer", spec["model"])
        if optimizer not in config["train"]["optimizer"]:
            raise ConfigError(f"config key 'train.optimizer.{optimizer}': missing (needed by run '{run}')")
    try:
        per_rank_batch(config["train"]["batch_size"], cluster_world_size(config["cluster"]),
                       config["train"].get("accumulation", 1))
    except ValueError as e:
        raise ConfigError(f"config key 'train.batch_size': {e} (cluster: {config['cluster'].get('nodes', 1)} node(s) "
                          f"x {config['cluster'].get('tasks_per_node', 1)} task(s))") from None
    for step in config["train"].get("eval_checkpoints", []):
        for run, spec in config["runs"].items():
            if step > spec.get("steps", config["train"]["steps"]) and not spec.get("init_from"):
                raise ConfigError(f"config key 'train.eval_checkpoints': step {step} is past the end of run '{run}'")
    runs = config["runs"]
    _check_resolutions(config)
    _check_released(config)
    for tid, table in config.get("tables", {}).items():
        for i, row in enumerate(table["rows"]):
            for r in row["runs"]:
                if r == RELEASED_RUN and r not in evaluated_runs(config):
                    raise ConfigError(f"config key 'tables.{tid}.rows.{i}.runs': '{r}' is the released CAD-I; set "
                                      "eval.released (weights, guidance, clamp, steps) to evaluate it")
                if r not in evaluated_runs(config):
                    raise ConfigError(f"config key 'tables.{tid}.rows.{i}.runs': unknown run '{r}'")
        check_compare(tid, table)
    for i, entry in enumerate(config.get("figures", {}).get("F-BUBBLE", {}).get("runs", [])):
        for r in entry["runs"]:
            if r not in runs:
                raise ConfigError(f"config key 'figures.F-BUBBLE.runs.{i}': unknown run '{r}'")
    for fid in GRID_FIGURES:
        spec = config.get("figures", {}).get(fid)
        if spec:
            for r in spec.get("runs", []):
                if r not in runs:
                    raise ConfigError(f"config key 'figures.{fid}.runs': unknown run '{r}'")
            for i in spec.get("prompts", []):
                if i >= len(config["sample"]["grid_prompts"]):
                    raise ConfigError(f"config key 'figures.{fid}.prompts': index {i} past sample.grid_prompts")
    for fid in ("F-OVERFIT", "F-DENOISE"):
        for p, panel in enumerate(config.get("figures", {}).get(fid, {}).get("panels", [])):
            for line in panel.get("lines", []):
                for r in line.get("runs", []):
                    if r not in runs:
                        raise ConfigError(f"config key 'figures.{fid}.panels.{p}': unknown run '{r}'")
                    if fid == "F-OVERFIT" and runs[r].get("init_from"):
                        raise ConfigError(f"config key 'figures.{fid}.panels.{p}': run '{r}' starts from another "
                                          "(init_from) and keeps no intermediate checkpoints")
    _check_models(config)
    if config["source"]["backend"] == "imagenet":
        for key in ("root", "synset_mapping"):
            if key not in config["source"]:
                raise ConfigError(f"config key 'source.{key}': required when source.backend is imagenet")
    else:
        for key in ("num_train", "num_val", "classes", "colors", "backgrounds"):
            if key not in config["source"]:
                raise ConfigError(f"config key 'source.{key}': required when source.backend is synthetic")


# The metrics of a run's FD file (eval/<run>/fd/), scored against the val reference at source.resolution.
FD_METRICS = ("fd", "precision", "recall", "density", "coverage", "fd_dinov2", "fd_clip", "inception_score",
              "clip_score")
FD_RISE = "fd_rise"  # a table metric: FD at the end minus its lowest from its peak on (paper/tables.py)


# The aesthetic.weights keys each paper T-AES scorer loads (the world's scorer is trained by the pipeline).
AESTHETIC_SCORER_WEIGHTS = {"pickscore": ("pickscore", "pickscore_tokenizer"),
                            "laion_aesthetics": ("clip", "laion_aesthetics"), "hpsv21": ("hpsv21",),
                            "imagereward": ("imagereward", "imagereward_med_config")}


def _check_resolutions(config: dict) -> None:
    """``runs.<r>.resolution`` a multiple of the base side, ``init_from`` a run of the same architecture at a lower
    side (CAD-I: exactly half, the official graft's x2), and no FD metric of a run at another side than the
    reference's."""
    base = config["source"]["resolution"]
    runs = config["runs"]
    for run, spec in runs.items():
        res = spec.get("resolution", base)
        if res % base:
            raise ConfigError(f"config key 'runs.{run}.resolution': {res} is not a multiple of source.resolution "
                              f"({base}); the run's sets are the base images re-made at that side")
        parent = spec.get("init_from")
        if parent is None:
            continue
        if parent not in runs or parent == run:
            raise ConfigError(f"config key 'runs.{run}.init_from': unknown run '{parent}' (defined: {sorted(runs)})")
        arch, parent_arch = (config["models"][runs[r]["model"]]["arch"] for r in (run, parent))
        parent_res = runs[parent].get("resolution", base)
        if arch != parent_arch:
            raise ConfigError(f"config key 'runs.{run}.init_from': '{parent}' is a {parent_arch} run, '{run}' a {arch} "
                              "one")
        if arch == "cad_i" and res not in (parent_res, 2 * parent_res):
            raise ConfigError(f"config key 'runs.{run}.init_from': the CAD-I graft doubles the side (the official "
                              f"bilinear x2 of the positional embedding): '{parent}' is {parent_res} px, so "
                              f"resolution must be {2 * parent_res} (or {parent_res}: a fine-tune), not {res}")
        if res < parent_res:
            raise ConfigError(f"config key 'runs.{run}.init_from': '{parent}' is {parent_res} px; a run starts from "
                              f"one at its side (a fine-tune) or a smaller one (grafted), this one is {res}")
    aesthetic = config.get("aesthetic")
    for run, spec in runs.items():
        if spec.get("data") == "aesthetic" and not aesthetic:
            raise ConfigError(f"config key 'runs.{run}.data': 'aesthetic' needs the aesthetic block (set, prompts, "
                              "scorers; config/config.yaml has one)")
    for scorer in (aesthetic or {}).get("scorers", []):
        for key in AESTHETIC_SCORER_WEIGHTS.get(scorer, ()):
            name = aesthetic.get("weights", {}).get(key)
            if name not in config.get("weights", {}):
                raise ConfigError(f"config key 'aesthetic.weights.{key}': scorer {scorer} needs an entry of the "
                                  f"weights block (got {name!r}; config/paper.yaml has one)")
    if aesthetic and config["source"]["backend"] != "synthetic" and (
            aesthetic["set"] == "world" or "world" in aesthetic["scorers"]):
        raise ConfigError("config key 'aesthetic': 'world' (the set or a scorer) is the tiny world's; name an image + "
                          "caption folder as aesthetic.set")
    for tid, table in config.get("tables", {}).items():
        fd = [m for m in table["metrics"] if m in FD_METRICS or m == FD_RISE]
        for i, row in enumerate(table["rows"]):
            other = [r for r in row["runs"] if r in runs and runs[r].get("resolution", base) != base]
            if fd and other:
                raise ConfigError(f"config key 'tables.{tid}.rows.{i}': run '{other[0]}' is not at source.resolution "
                                  f"({base} px), where the FD reference is; drop {fd} from this table's metrics")


def _check_released(config: dict) -> None:
    """``eval.released`` names a weights entry, does not shadow a run, and a table shows it."""
    released = config.get("eval", {}).get("released")
    if not released:
        return
    if RELEASED_RUN in config["runs"]:
        raise ConfigError(f"config key 'runs.{RELEASED_RUN}': the name is the released CAD-I's (eval.released); "
                          "rename the run")
    if released["weights"] not in config.get("weights", {}):
        raise ConfigError(f"config key 'eval.released.weights': '{released['weights']}' is not in the weights block "
                          f"(defined: {sorted(config.get('weights', {}))}); add e.g. "
                          "{hub: Lucasdegeorge/CAD-I} or {path: <local snapshot>}")
    if not any(RELEASED_RUN in row["runs"] for t in config.get("tables", {}).values() for row in t["rows"]):
        raise ConfigError(f"config key 'tables': eval.released is set but no table row lists '{RELEASED_RUN}'; "
                          f"add one (T-RELEASED in config/paper.yaml) or drop eval.released")


def _check_models(config: dict) -> None:
    """Every model-backed stage names its weights (an entry of ``weights``) or a ``path``."""
    weights = config.get("weights", {})
    caps, enc = config["captions"], config["encode"]
    sections = [("captions", caps, caps["backend"] in ("llava", "vllm") or caps["backend"] == "released"),
                ("encode.autoencoder", enc["autoencoder"], enc["autoencoder"]["backend"] == "sd_vae"),
                ("encode.text", enc["text"], enc["text"]["backend"] == "t5")]
    for key, sec, needs in sections:
        if needs and "weights" not in sec and "path" not in sec:
            raise ConfigError(f"config key '{key}.weights': required by backend '{sec['backend']}' "
                              f"(name an entry of the weights block, or give '{key}.path')")
        if "weights" in sec and sec["weights"] not in weights:
            raise ConfigError(f"config key '{key}.weights': '{sec['weights']}' is not in the weights block "
                              f"(defined: {sorted(weights)})")
    ev = config.get("eval", {})
    for key, name in (("eval.geneval.detector", ev.get("geneval", {}).get("detector")),
                      ("eval.geneval.clip", ev.get("geneval", {}).get("clip")),
                      ("eval.dpg.questions", ev.get("dpg", {}).get("questions")),
                      ("eval.dpg.vqa", ev.get("dpg", {}).get("vqa")),
                      *((f"eval.fid.{k}", ev.get("fid", {}).get(k)) for k in ("inception", "dinov2", "clip"))):
        if name is not None and name not in weights:
            raise ConfigError(f"config key '{key}': '{name}' is not in the weights block (defined: {sorted(weights)})")
    if ev.get("perception") == "portable" and not all(ev.get("geneval", {}).get(k) for k in ("detector", "clip")):
        raise ConfigError("config key 'eval.geneval.detector': portable perception needs eval.geneval.detector and "
                          "eval.geneval.clip (weights entries of a Mask2Former COCO instance checkpoint and CLIP)")
    if caps["backend"] == "released" and "released" not in caps:
        raise ConfigError("config key 'captions.released': required when captions.backend is released "
                          "(path: a local copy of Lucasdegeorge/ImageNet_TA_IA)")


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


def uses_vllm(config: dict) -> bool:
    """Whether TA captions go through the vLLM engine (the backend, or the released backend's fallback)."""
    caps = config["captions"]
    return caps["backend"] == "vllm" or (caps["backend"] == "released" and caps["released"]["vlm"] == "vllm")


def resolve_run(config: dict, run: str) -> dict:
    """Everything one training run depends on: its spec, model, training recipe and data sets."""
    if run not in config["runs"]:
        raise ConfigError(f"config key 'runs.{run}': no such run (defined: {sorted(config['runs'])})")
    spec = config["runs"][run]
    train = copy.deepcopy(config["train"])
    train["optimizer"] = train["optimizer"][spec.get("optimizer", spec["model"])]
    train["steps"] = spec.get("steps", train["steps"])
    if spec.get("init_from"):  # a resolution-stage run: no intermediate checkpoints (F-OVERFIT is the 256 runs')
        train["eval_checkpoints"] = []
    if "cutmix_tau" in spec:
        train["cutmix"]["tau"] = spec["cutmix_tau"]
    return {
        "name": run,
        "seed": spec.get("seed", config["seed"]),
        "model": copy.deepcopy(config["models"][spec["model"]]),
        "model_name": spec["model"],
        "captions": spec["captions"],
        "augment": spec["augment"],
        "pattern": spec.get("pattern", config.get("augment", {}).get("cutmix", {}).get("pattern", "all")),
        "train": train,
        "resolution": run_resolution(config, run),
        "base_resolution": config["source"]["resolution"],
        **({"data": spec["data"]} if spec.get("data", "train") != "train" else {}),
        **({"init_from": spec["init_from"], "init_resolution": run_resolution(config, spec["init_from"])}
           if spec.get("init_from") else {}),
    }


def run_resolution(config: dict, run: str) -> int:
    """Image side of a run: ``runs.<run>.resolution``, else ``source.resolution`` (the released CAD-I: the latter)."""
    return config["runs"].get(run, {}).get("resolution", config["source"]["resolution"])


def resolution_suffix(resolution: int, base: int) -> str:
    """The name suffix of a set at another side than ``source.resolution``: "" at the base, else ``_<R>px``."""
    return "" if resolution == base else f"_{resolution}px"


def split_resolution(set_name: str) -> tuple[str, int | None]:
    """``cutmix_all_64px`` -> (``cutmix_all``, 64); ``train`` -> (``train``, None)."""
    stem, _, last = set_name.rpartition("_")
    if stem and last.endswith("px") and last[:-2].isdigit():
        return stem, int(last[:-2])
    return set_name, None


def run_shard_sets(run_cfg: dict) -> dict[str, str]:
    """Role -> shard-set name needed by a resolved run: train_<caps> (aesthetic_<caps>: the fine-tune set),
    cutmix_<pattern>_<caps>, crop_<caps>; at another side than the base, the same sets re-encoded at it:
    train_<R>px_<caps>, ..."""
    caps = run_cfg["captions"]
    sfx = resolution_suffix(run_cfg["resolution"], run_cfg.get("base_resolution", run_cfg["resolution"]))
    sets = {"train": f"{run_cfg.get('data', 'train')}{sfx}_{caps}"}
    augment = run_cfg["augment"]
    if augment != "none":
        for kind in augment.split("+"):
            name = f"cutmix_{run_cfg['pattern']}" if kind == "cutmix" else kind
            sets[kind] = f"{name}{sfx}_{caps}"
    return sets

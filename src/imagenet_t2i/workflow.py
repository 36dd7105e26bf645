"""Helpers the Snakefile calls: resolved config file, per-run inputs, rerun triggers.

All workflow logic lives here (tested without Snakemake); the .smk files only name files.
"""
from __future__ import annotations

import argparse
import functools
import math
from pathlib import Path

import jsonschema
import yaml

from imagenet_t2i.chunks import chunk_names
from imagenet_t2i.code_closure import code_hash, command_code
from imagenet_t2i.config import (AESTHETIC_SCORER_WEIGHTS, FD_RISE, RELEASED_RUN, ConfigError, config_hash,
                                 evaluated_runs, grid_figure, load_schema, resolve_run, run_resolution, run_shard_sets,
                                 set_images, split_resolution, uses_vllm, validate_config)
from imagenet_t2i.io import atomic_write


def results_dir(config: dict) -> str:
    return f"results/{config['name']}"


def write_resolved_config(config: dict) -> str:
    """Validate ``config`` and write it to ``results/<name>/config.yaml`` (only when it changed).

    Every rule's command reads this one file, so ``--configfile`` and ``--config`` overrides reach
    the CLI exactly as Snakemake merged them.
    """
    validate_config(config)
    check_released_captions(config)
    path = Path(results_dir(config)) / "config.yaml"
    text = yaml.safe_dump(config, sort_keys=True)
    if not path.exists() or path.read_text() != text:
        with atomic_write(path) as f:
            f.write(text)
    return str(path)


def check_released_captions(config: dict) -> None:
    """With ``captions.backend: released``, the local copy's columns, checked once when the workflow starts (a copy
    not on this machine, as in a dry run elsewhere, is left to the caption jobs)."""
    released = config["captions"].get("released")
    if config["captions"]["backend"] != "released" or not released or not Path(released["path"]).exists():
        return
    from imagenet_t2i.captions.released import check_columns

    try:
        check_columns(released["path"], released["columns"])
    except ValueError as e:
        raise ConfigError(f"config key 'captions.released.columns': {e}") from None


def typed_overrides(config: dict, overrides: dict) -> dict:
    """Read back the values Snakemake's ``--config`` hands over as strings; ``config``, changed in place.

    Snakemake reads ``--config key=value`` as YAML at the top level only: with ``--config 'train={cutmix: {p: 0.6}}'``
    or ``replicates=[0,1,2]`` every nested value arrives as a string (``'0.6'``, ``['0', '1', '2']``). Where the schema
    wants another type at a path the command line set, the string is read as YAML; anything else stays as given, so
    the schema still rejects a bad value, naming the key.
    """
    validator = jsonschema.Draft202012Validator(load_schema())
    while True:
        fixes = []
        for error in validator.iter_errors(config):
            path = list(error.absolute_path)
            if error.validator == "type" and isinstance(error.instance, str) and _given(overrides, path):
                value = yaml.safe_load(error.instance)
                if not isinstance(value, str):
                    fixes.append((path, value))
        if not fixes:
            return config
        for path, value in fixes:
            node = config
            for key in path[:-1]:
                node = node[key]
            node[path[-1]] = value


def _given(overrides: object, path: list) -> bool:
    """Whether the ``--config`` values hold ``path`` (dict keys and list indices)."""
    node = overrides
    for key in path:
        if isinstance(node, dict) and key in node:
            node = node[key]
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return False
    return True


# Settings that do not change what a job writes: thread counts and batch sizes (on a GPU a batch size can change
# the last bits of a floating-point result: accepted). Left out of the rules' params, so changing one re-runs nothing.
NOT_OUTPUT_SETTINGS = ("workers", "batch_size", "threads", "vllm_requests")


def output_settings(node: object) -> object:
    """A config subtree as a rule's params hold it: without `NOT_OUTPUT_SETTINGS` (at any depth), keys sorted, so
    the order of keys in a config file (a formatting edit) re-runs nothing."""
    if isinstance(node, dict):
        return {k: output_settings(node[k]) for k in sorted(node) if k not in NOT_OUTPUT_SETTINGS}
    if isinstance(node, list):
        return [output_settings(v) for v in node]
    return node


STAGE_RESOURCES = {"partition": "slurm_partition", "account": "slurm_account", "qos": "qos", "constraint": "constraint",
                   "runtime_min": "runtime", "gpus": "gpu", "mem_mb": "mem_mb", "sbatch_extra": "slurm_extra"}


CLUSTER_WIDE = ("partition", "account", "qos", "constraint")


def stage_resources(config: dict, kind: str, mem_mb: int) -> dict:
    """Snakemake ``resources:`` of a heavy rule from ``cluster.stages.<kind>`` (gpu | cpu).

    The SLURM executor plugin (``--profile workflow/profiles/slurm``) turns them into sbatch options
    (partition, account, qos, constraint, time, GPUs, memory, extra options); a local run ignores all
    but ``mem_mb`` (``mem_mb`` is the rule's own need unless the stage sets it). ``partition``, ``account``,
    ``qos`` and ``constraint`` set once at the top of ``cluster:`` reach every stage job as they reach training;
    a stage's own value wins.
    """
    cluster = config["cluster"]
    spec = {"mem_mb": mem_mb, **{k: cluster[k] for k in CLUSTER_WIDE if cluster.get(k)},
            **cluster.get("stages", {}).get(kind, {})}
    return {res: spec[key] for key, res in STAGE_RESOURCES.items() if spec.get(key)}


def set_chunks(config: dict, stage: str, image_set: str) -> int:
    """Chunk jobs of one set in a chunked stage: ``<stage>.chunks`` for a set of the training set's size, fewer in
    proportion for a smaller one (ImageNet's val: 5 caption jobs of 10k images, not 128 of 390), at least 1."""
    chunks = config[stage].get("chunks", 1)
    return max(1, min(chunks, math.ceil(chunks * set_images(config, image_set) / set_images(config, "train"))))


def chunk_dirs(config: dict, stage: str, prefix: str, image_set: str, suffix: str = "") -> list[str]:
    """The chunk outputs of one set of a chunked stage (`set_chunks` jobs: ``encode``, ``augment``, ``captions``):
    from the config alone, so a dry run plans every chunk job before the data exists."""
    return [f"{prefix}/{name}{suffix}" for name in chunk_names(set_chunks(config, stage, image_set))]


def fid_chunk_files(config: dict, prefix: str) -> list[str]:
    """The feature files of one paper-scale FID: ``eval.fid.chunks`` sampling jobs (at most one per sample)."""
    fid = config["eval"]["fid"]
    return [f"{prefix}/{name}.npz" for name in chunk_names(min(fid["chunks"], fid["num_samples"]))]


@functools.cache
def command_specs() -> dict[str, str]:
    """Command words (``"geneval sample"``) -> ``"<module>:<function>"``, read from the console script's parser."""
    from imagenet_t2i.cli import build_parser

    out = {}

    def walk(parser: argparse.ArgumentParser, words: tuple[str, ...]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, (*words, name))
        if parser.get_default("fn"):
            out[" ".join(words)] = parser.get_default("fn")

    walk(build_parser(), ())
    return out


UNTRACKED = "heavy stage: code changes reported by imagenet-t2i status"  # a constant code param


def heavy_code_changes(config: dict) -> bool:
    """``rerun.heavy_code_changes``: whether GPU / SLURM stages re-run when their code changes."""
    return config.get("rerun", {}).get("heavy_code_changes", True)


def code(config: dict, command: str, heavy: bool = False) -> str:
    """A rule's code param (a re-run trigger): the hash of the code its command runs (`code_closure`: the command's
    static import closure, docstrings, comments and formatting left out).

    ``heavy``: the rule is a GPU or SLURM stage (weights, source index, augmentation, captions, encoding, training,
    sampling, perception, FID). With ``rerun.heavy_code_changes: false`` (paper.yaml) such a job does not re-run
    for a code change alone: the param is constant, the record of each output keeps the code that made it, and
    ``imagenet-t2i status`` lists the results made by other code than today's.
    """
    if heavy and not heavy_code_changes(config):
        return UNTRACKED
    return command_code(command_specs()[command])


def script_code(config: dict, module: str) -> str:
    """The code param of a rule that runs a stand-alone official script (``evaluation.geneval.official``): its own
    module's hash (always a heavy stage)."""
    if not heavy_code_changes(config):
        return UNTRACKED
    return code_hash({f"imagenet_t2i.{module}"})


def weights_inputs(config: dict, *parts: str) -> list[str]:
    """Weights folders the ``weights`` rule fetches for these model sections (captions, autoencoder, text)."""
    from imagenet_t2i.weights import section

    return named_weights(config, *(section(config, part).get("weights") for part in parts))


def named_weights(config: dict, *names: str | None) -> list[str]:
    """Folders of these ``weights`` entries that a rule fetches (``path`` entries are read in place; None skipped)."""
    from imagenet_t2i.weights import weights_dir

    specs = config.get("weights", {})
    return [weights_dir(config, n) for n in dict.fromkeys(names) if n and "path" not in specs[n]]


def portable_geneval(config: dict) -> list[str]:
    """The weights entries portable GenEval perception loads (none for the tiny perception)."""
    g = config["eval"]["geneval"]
    return [g["detector"], g["clip"]] if config["eval"]["perception"] == "portable" else []


def weights_location(config: dict, name: str | None) -> str:
    """Where a weights entry is read from ("" when unnamed)."""
    from imagenet_t2i.weights import weights_location as location

    return location(config, name) if name else ""


def option(flag: str, value: str) -> str:
    """``flag value`` for a shell command, or "" when there is no value."""
    return f"{flag} {value}" if value else ""


def weights_file(config: dict, name: str | None) -> str:
    """The single file of a ``url`` weights entry ("" when unnamed)."""
    from imagenet_t2i.weights import weights_file as file_of

    return file_of(config, name) if name else ""


def augment_release(config: dict) -> dict | None:
    """What a CutMix set reads from the released captions (``captions.backend: released`` rebuilds the paper's
    composites the release names): the copy's path and columns (not the fallback VLM), else None."""
    caps = config["captions"]
    if caps["backend"] != "released":
        return None
    return output_settings({k: caps["released"][k] for k in ("path", "columns")})


def official_geneval_args(config: dict) -> str:
    """The official GenEval script's model arguments: the mmdet 2.x checkpoint, CLIP as GenEval loads it (the tag
    ``openai``, its file's folder as open_clip's cache) and ``--config`` only where ``eval.geneval.mmdet_config``
    overrides the installed mmdet's own config."""
    geneval = config["eval"]["geneval"]
    clip_dir = str(Path(weights_file(config, geneval["clip"])).parent)
    args = (f"--checkpoint {weights_file(config, geneval['detector'])} --clip-pretrained openai "
            f"--clip-cache-dir {clip_dir}")
    return f"{args} --config {geneval['mmdet_config']}" if geneval.get("mmdet_config") else args


def all_weights(config: dict) -> list[str]:
    """Every fetched weights folder of the config (the ``download_weights`` target)."""
    return named_weights(config, *config.get("weights", {}))


def fid_weights(config: dict) -> list[str]:
    """The feature networks of ``eval.fid`` (paper scale)."""
    fid = config["eval"].get("fid", {})
    return named_weights(config, fid.get("inception"), fid.get("dinov2"), fid.get("clip"))


def caption_env(config: dict) -> str | None:
    """The conda environment of the TA caption jobs (``--sdm conda``): envs/vllm.yaml when vLLM captions them (its
    post-deploy script installs this package into it), else the workflow's own (None)."""
    return "../../envs/vllm.yaml" if uses_vllm(config) else None


def caption_weights(config: dict, kind: str) -> list[str]:
    """The VLM's weights a caption set needs: none for AIO or the scene captioner."""
    return weights_inputs(config, "captions") if kind == "ta" and config["captions"]["backend"] != "scene" else []


def source_inputs(config: dict) -> list[str]:
    """The fake ImageNet an offline smoke config writes first (``source.fake``); nothing otherwise."""
    return [config["source"]["root"]] if config["source"].get("fake") else []


def data_targets(config: dict) -> list[str]:
    """The data stage of every run: their shard sets, the val captions of their kinds (evaluation prompts)
    and, with ``encode.val``, the val shard sets."""
    root = results_dir(config)
    kinds = sorted({spec["captions"] for spec in config["runs"].values()})
    sets = {s for run in config["runs"] for s in run_shards(config, run)}
    sets |= {f"{root}/shards/val_{k}" for k in kinds} if config["encode"].get("val") else set()
    return sorted(sets) + [f"{root}/captions/val_{k}.jsonl" for k in kinds]


def stage_threads(config: dict, kind: str) -> int:
    """Threads of a heavy rule: ``cluster.stages.<kind>.cpus`` (1 by default: the tiny world runs on 2 cores)."""
    return config["cluster"].get("stages", {}).get(kind, {}).get("cpus", 1)


def set_source(config: dict, set_name: str) -> str:
    """Folder holding the images of a shard/caption set (train, val, cutmix, crop; ``<set>_<R>px`` at another side:
    the synthetic world's split drawn again, ImageNet's same index, an augmented set made again)."""
    root = results_dir(config)
    base, res = split_resolution(set_name)
    if base not in SOURCE_SPLITS:
        return f"{root}/augment/{set_name}"
    redrawn = res is not None and config["source"]["backend"] == "synthetic"  # ImageNet: the same index at any side
    return f"{root}/data/{set_name}" if redrawn else f"{root}/data/{base}"


SOURCE_SPLITS = ("train", "val", "aesthetic")  # folders under data/; "aesthetic": T-AES's fine-tune set


def base_set_dir(config: dict, set_name: str) -> list[str]:
    """The folder a set's folder is made from: a ``<set>_<R>px`` folder's base set, the world's aesthetic set's
    training split (none for a base set, or an aesthetic set read from an image + caption folder)."""
    base, res = split_resolution(set_name)
    if res is not None:
        return [set_source(config, base)]
    return [set_source(config, "train")] if set_name == "aesthetic" and aesthetic_from_world(config) else []


def aesthetic_from_world(config: dict) -> bool:
    """Whether T-AES's fine-tune set is the tiny world's own (``aesthetic.set: world``), not a folder."""
    return config.get("aesthetic", {}).get("set") == "world"


def set_resolution(config: dict, set_name: str) -> int:
    """Image side of a set: ``_<R>px`` in its name, else ``source.resolution``."""
    return split_resolution(set_name)[1] or config["source"]["resolution"]


def aesthetic_scorer_inputs(config: dict, scorer: str) -> list[str]:
    """What an aesthetic scorer reads besides the samples: the world's trained net, or the weights it loads."""
    if scorer == "world":
        return [f"{results_dir(config)}/eval/aesthetic_net"]
    names = config.get("aesthetic", {}).get("weights", {})
    return named_weights(config, *(names.get(k) for k in AESTHETIC_SCORER_WEIGHTS[scorer]))


def official_aesthetic_args(config: dict, scorer: str) -> str:
    """The official HPSv2.1 / ImageReward script's checkpoint arguments (weights files of aesthetic.weights)."""
    names = config["aesthetic"]["weights"]
    args = f"--checkpoint {weights_file(config, names[scorer])}"
    return f"{args} --med-config {weights_file(config, names['imagereward_med_config'])}" if scorer == "imagereward" \
        else args


def caption_file(config: dict, set_name: str, kind: str) -> str:
    """The captions of a set: a ``<set>_<R>px`` set has its base set's (the same images and keys); the aesthetic set
    the training split's (the world's) or its folder's own (written beside its index)."""
    from imagenet_t2i.source.caption_folder import SPLIT_CAPTIONS

    base = split_resolution(set_name)[0]
    if base == "aesthetic":
        if not aesthetic_from_world(config):
            return f"{results_dir(config)}/data/aesthetic/{SPLIT_CAPTIONS}"
        base = "train"
    return f"{results_dir(config)}/captions/{base}_{kind}.jsonl"


def caption_inputs(config: dict, set_name: str, kind: str) -> list[str]:
    """The caption file a shard job waits for: none for an aesthetic set read from a folder (its captions are
    written with its index, inside the images folder the job already waits for)."""
    if split_resolution(set_name)[0] == "aesthetic" and not aesthetic_from_world(config):
        return []
    return [caption_file(config, set_name, kind)]


def augment_source(config: dict, aug: str) -> str:
    """The source split an augmented set is made from: the training images at the set's side."""
    res = split_resolution(aug)[1]
    return set_source(config, "train" if res is None else f"train_{res}px")


def run_shards(config: dict, run: str) -> list[str]:
    """Shard-set folders a run trains on."""
    sets = run_shard_sets(resolve_run(config, run))
    return [f"{results_dir(config)}/shards/{name}" for name in sets.values()]


def run_inputs(config: dict, run: str) -> list[str]:
    """What a training run reads: its shard sets and, with ``init_from``, the parent run's final weights."""
    parent = config["runs"][run].get("init_from")
    return run_shards(config, run) + ([f"{results_dir(config)}/runs/{parent}/final"] if parent else [])


# When to print and save, and the loader's threads: the weights are the same. (train.batch_size is the global batch:
# it stays.)
UNHASHED_TRAIN_KEYS = ("report_every_s", "checkpoint_every_min", "threads")


def run_hash(config: dict, run: str) -> str:
    """Hash of everything in the config one run depends on: its resolved run (without the CutMix / Crop settings of
    ``train`` when the run trains without that set: the loop never reads them; without `UNHASHED_TRAIN_KEYS`)
    and the data stages' settings."""
    run_cfg = resolve_run(config, run)
    used = run_shard_sets(run_cfg)
    run_cfg["train"] = {k: v for k, v in run_cfg["train"].items()
                        if (k not in ("cutmix", "crop") or k in used) and k not in UNHASHED_TRAIN_KEYS}
    return config_hash({"run": run_cfg, **output_settings({"source": config["source"], "encode": config["encode"],
                                                           "augment": config.get("augment", {})})})


def eval_checkpoint_names(config: dict) -> list[str]:
    return [f"step-{s:07d}" for s in config["train"].get("eval_checkpoints", [])]


def model_dir(config: dict, run: str, ckpt: str) -> str:
    """Weights folder of a run: ``final`` or an intermediate ``step-XXXXXXX`` checkpoint; the released CAD-I's
    converted folder (`released_dir`) for `RELEASED_RUN`, which has only ``final``."""
    if run == RELEASED_RUN:
        if ckpt != "final":
            raise ValueError(f"{RELEASED_RUN} (eval.released) has no checkpoint {ckpt!r}, only 'final'")
        return released_dir(config)
    root = f"{results_dir(config)}/runs/{run}"
    return f"{root}/final" if ckpt == "final" else f"{root}/checkpoints/{ckpt}"


def run_captions(config: dict, run: str) -> str:
    """Caption kind (aio | ta) a run was trained with: its benchmarks prompt val images the same way. The
    released CAD-I was trained on TA captions: its FD samples the TA val captions."""
    return "ta" if run == RELEASED_RUN else config["runs"][run]["captions"]


def run_uncond(config: dict, run: str) -> str:
    """Folder whose ``uncond.npy`` a run samples with: its first shard set's (the empty caption of encode.text),
    or the released CAD-I's converted folder (the same empty caption, same encoder, written by its rule)."""
    return released_dir(config) if run == RELEASED_RUN else run_shards(config, run)[0]


def released_dir(config: dict) -> str:
    """The released CAD-I as a model folder our sampling reads (rule ``released_model``)."""
    return f"{results_dir(config)}/released/{RELEASED_RUN}"


def released_weights(config: dict) -> str:
    """The weights entry of the released snapshot (``eval.released.weights``)."""
    return config["eval"]["released"]["weights"]


def sampling_options(config: dict, run: str) -> str:
    """Sampling options of a run's benchmark jobs: none for a trained run (the config's ``sample`` and
    ``eval.steps``), the release's settings of ``eval.released`` for `RELEASED_RUN`."""
    if run != RELEASED_RUN:
        return ""
    spec = config["eval"]["released"]
    return (f"--sampler ddim --steps {spec['steps']} --guidance {spec['guidance']} --clamp {spec['clamp']} "
            f"--schedule {spec['schedule']} --unguided-steps {spec['unguided_steps']}")


def released_targets(config: dict) -> list[str]:
    """The tables that show the released CAD-I (target ``evaluate_released``); ConfigError without eval.released."""
    if RELEASED_RUN not in evaluated_runs(config):
        raise ConfigError("config key 'eval.released': not set, so there is no released CAD-I to evaluate; add "
                          "eval.released {weights, guidance, clamp, steps, schedule, unguided_steps} and a table row "
                          f"listing '{RELEASED_RUN}' (config/paper.yaml has both)")
    tables = config.get("tables", {})
    return [f"{results_dir(config)}/tables/{t}.md" for t, spec in tables.items()
            if any(RELEASED_RUN in row["runs"] for row in spec["rows"])]


EMBEDDING_SETS = ("grid", "geneval", "dpg", "val_aio", "val_ta", "aesthetic")


def embedding_inputs(config: dict, texts: str) -> list[str]:
    """Files whose texts one prompt-embedding cache holds (besides ``sample.grid_prompts``, always in):
    ``grid`` none, ``geneval`` / ``dpg`` the benchmark prompts, ``val_<kind>`` the val captions FD samples.
    One cache per use, so a change to one benchmark reruns only its own sampling jobs."""
    root = results_dir(config)
    files = {"grid": [], "geneval": [f"{root}/eval/geneval_prompts.jsonl"], "dpg": [f"{root}/eval/dpg/prompts.jsonl"],
             "val_aio": [f"{root}/captions/val_aio.jsonl"], "val_ta": [f"{root}/captions/val_ta.jsonl"],
             "aesthetic": [f"{root}/eval/aesthetic/prompts.jsonl"]}
    if texts not in files:
        raise ValueError(f"unknown prompt-embedding set {texts!r}: one of {list(files)}")
    return files[texts]


def embeddings_path(config: dict, texts: str) -> str:
    """The prompt-embedding cache of one set (see ``embedding_inputs``)."""
    return f"{results_dir(config)}/eval/embeddings/{texts}.safetensors"


def table_inputs(config: dict, table: str) -> list[str]:
    """Score files one table reads."""
    from imagenet_t2i.paper.tables import score_file

    spec = config["tables"][table]
    files = {score_file(m) for m in spec["metrics"]}
    if FD_RISE in spec["metrics"]:  # FD at every eval checkpoint too
        files |= {f"fd/{c}.json" for c in eval_checkpoint_names(config)}
    return sorted(f"{results_dir(config)}/eval/{run}/{f}" for row in spec["rows"] for run in row["runs"] for f in files)


def _panel_runs(config: dict, figure: str) -> set[str]:
    """Every run of a panel figure's lines (none when the config does not declare the figure)."""
    spec = config.get("figures", {}).get(figure) or {"panels": []}
    return {r for panel in spec["panels"] for line in panel["lines"] for r in line["runs"]}


def overfit_inputs(config: dict) -> list[str]:
    """FD files of every checkpoint of every run in F-OVERFIT."""
    runs = _panel_runs(config, "F-OVERFIT")
    ckpts = eval_checkpoint_names(config) + ["final"]
    return sorted(f"{results_dir(config)}/eval/{run}/fd/{c}.json" for run in runs for c in ckpts)


def run_pattern(config: dict, from_parent: bool | None = None) -> str:
    """The ``run`` wildcard's values: every run the evaluation rules score (`evaluated_runs`); ``from_parent`` True /
    False: only the trained runs with / without ``init_from`` (a regex that matches nothing when there are none)."""
    if from_parent is None:
        return "|".join(evaluated_runs(config))
    runs = [r for r, spec in config["runs"].items() if bool(spec.get("init_from")) == from_parent]
    return "|".join(runs) or "(?!)"


def denoise_shards(config: dict, run: str) -> str:
    """The shard set a run's denoising profile reads: the held-out val set of its captions with ``encode.val``,
    else its own training set."""
    if config["encode"].get("val") and run_resolution(config, run) == config["source"]["resolution"]:
        return f"{results_dir(config)}/shards/val_{run_captions(config, run)}"
    return run_shards(config, run)[0]


def denoise_inputs(config: dict) -> list[str]:
    """Profiles F-DENOISE draws."""
    return sorted(f"{results_dir(config)}/eval/{run}/denoise_profile.json"
                  for run in _panel_runs(config, "F-DENOISE"))


def bubble_inputs(config: dict) -> list[str]:
    """The GenEval and DPG scores and the training records of F-BUBBLE's runs."""
    spec = config.get("figures", {}).get("F-BUBBLE")
    runs = sorted({r for entry in spec["runs"] for r in entry["runs"]}) if spec else []
    root = results_dir(config)
    return [f"{root}/{f}" for run in runs for f in (f"eval/{run}/geneval/summary.json", f"eval/{run}/dpg/scores.json",
                                                      f"runs/{run}/provenance.json")]


def grid_figure_inputs(config: dict, figure: str) -> list[str]:
    """The sample grids a grid figure (F-QUAL, F-GALLERY) is cut from."""
    runs, _ = grid_figure(config, figure)
    return [f"{results_dir(config)}/samples/{run}/grid.png" for run in runs]


def paper_targets(config: dict) -> list[str]:
    """Every table and figure the config declares."""
    root = results_dir(config)
    out = [f"{root}/tables/{t}.md" for t in config.get("tables", {})]
    out += [f"{root}/figures/{f}.png" for f in config.get("figures", {})]
    return out

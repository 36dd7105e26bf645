"""How well does a tiny model learn per CPU-second? Shape, steps and learning rate of DiT-I or CAD-I, measured.

Trains a run of the config (default ``dit_i_ta`` / ``cad_i_ta`` by model) on the shards of an existing tiny run
(``results/tiny/shards``) in this process, one thread, with the config's recipe and only the named settings
changed; then measures what `reproduce_all` reports for it: the colour probe (``a photo of a {colour} {class}``,
every colour x class, 2 samples each, the config's evaluation sampler; chance 0.1), GenEval's single_object task
scored by the pipeline's rules with the tiny detector (``a photo of a {class}``, ``--single-samples`` each; chance
1 / number of classes) and the denoising profile (x0-prediction MSE at eval.denoise's noise levels on the run's
training shards, beside predicting 0). Prints one row per setting. Needs torch and this package only
(PYTHONPATH=src); the text encoder is MiniLM.

A setting is ``MODEL[,key=value...]``: ``steps``, ``lr``, ``batch_size``, ``objective`` (eps | flow), ``cfg_dropout``,
any key of ``models.<MODEL>``, or the sampler's ``guidance``, ``sample_steps``, ``sampler`` (ddim | ddpm),
``schedule`` and ``unguided_steps`` (default: sample.guidance, eval.steps, sample.sampler, sample.schedule,
sample.unguided_steps or 0); settings that differ only in the sampler share one training:

    PYTHONPATH=src python benchmarks/tiny_sweep.py dit_i cad_i cad_i,steps=2700 cad_i,latents_dim=96,lr=3e-3

Another world: build its shards with its config first (``snakemake --cores 2 --configfile W.yaml
results/<name>/shards/train_ta``), then ``--config W.yaml --shards results/<name>/shards``.
"""
from __future__ import annotations

import argparse
import csv
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imagenet_t2i.config import load_config, resolve_run, run_shard_sets
from imagenet_t2i.encode.autoencoder import make_autoencoder
from imagenet_t2i.encode.text import make_text_encoder
from imagenet_t2i.evaluation.diagnostics.colour_probe import probe_accuracy, probe_prompts
from imagenet_t2i.evaluation.diagnostics.denoise_profile import denoise_profile, fixed_samples
from imagenet_t2i.evaluation.geneval.detector import detect
from imagenet_t2i.evaluation.geneval.prompts import generate_prompts
from imagenet_t2i.evaluation.geneval.score import evaluate, filter_detections
from imagenet_t2i.models import count_parameters, load_pretrained
from imagenet_t2i.sampling.sample import generate, sample_seed
from imagenet_t2i.shards.reader import load_uncond
from imagenet_t2i.train.trainer import Trainer

SHOWN_GAMMAS = (0.5, 0.2, 0.05)
SAMPLER_KEYS = {"guidance": "guidance", "sample_steps": "steps", "sampler": "sampler", "schedule": "schedule",
                "unguided_steps": "unguided_steps"}  # setting -> key of the sampler config


def parse_setting(setting: str) -> tuple[str, dict]:
    """``MODEL[,key=value...]`` -> (model, {key: number or string})."""
    model, *pairs = setting.split(",")
    changes = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"setting {setting!r}: {pair!r} is not key=value")
        changes[key] = _number(value)
    return model, changes


def _number(value: str) -> int | float | str:
    """``900`` -> 900, ``5e-3`` -> 0.005 (YAML would keep that one a string), anything else as written."""
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            continue
    return value


def resolved(config: dict, model: str, changes: dict, captions: str) -> dict:
    """The run ``<model>_<captions>`` of the config with ``changes`` applied."""
    run = resolve_run(config, f"{model}_{captions}")
    for key, value in changes.items():
        if key == "lr":
            run["train"]["optimizer"]["lr"] = value
        elif key in ("steps", "batch_size", "objective", "cfg_dropout"):
            run["train"][key] = value
        elif key in run["model"]:
            run["model"][key] = value
        else:
            raise SystemExit(f"unknown setting {key!r}: steps, lr, batch_size, objective, cfg_dropout or a key of "
                             f"models.{model} ({sorted(run['model'])})")
    steps = run["train"]["steps"]
    run["train"].update(log_every=10, checkpoint_every=steps, eval_checkpoints=[])
    return run


def single_object_score(images: list[np.ndarray], rows: list[dict], k: int) -> float:
    """Share of the images of GenEval's single_object prompts (``k`` per row, in order) that the pipeline's scoring
    rules call correct, with the tiny detector's detections."""
    correct = [evaluate(filter_detections(detect(img), row["tag"]), row)[0]
               for img, row in zip(images, (r for r in rows for _ in range(k)))]
    return float(np.mean(correct))


def save_rows(images: np.ndarray, k: int, path: Path) -> None:
    """(N, H, W, 3) uint8 images as one PNG, ``k`` to a row."""
    from PIL import Image

    n, h, w, _ = images.shape
    rows = images.reshape(n // k, k, h, w, 3).transpose(0, 2, 1, 3, 4).reshape(n // k * h, k * w, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rows).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("settings", nargs="+", help="MODEL[,key=value...]")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--shards", default="results/tiny/shards")
    p.add_argument("--captions", default="ta", choices=["ta", "aio"])
    p.add_argument("--single-samples", type=int, default=8, help="samples per single_object prompt (default 8)")
    p.add_argument("--samples", type=Path, help="folder for each setting's single_object samples as one PNG "
                   "(a row per prompt)")
    args = p.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    text_encoder = make_text_encoder(config["encode"]["text"])
    autoencoder = make_autoencoder(config["encode"]["autoencoder"])
    train_set = Path(args.shards) / f"train_{args.captions}"
    uncond = load_uncond(train_set)[0][0]
    rows = probe_prompts(config["source"]["classes"], config["source"]["colors"])
    k = config["eval"]["colour_probe"]["samples_per_prompt"]
    prompts = [r["prompt"] for r in rows for _ in range(k)]
    seeds = [sample_seed(config["sample"]["seed"], i, j) for i in range(len(rows)) for j in range(k)]
    single = [r for r in generate_prompts(config["source"]["classes"], colors=config["source"]["colors"])
              if r["tag"] == "single_object"]
    ks = args.single_samples
    single_prompts = [r["prompt"] for r in single for _ in range(ks)]
    single_seeds = [sample_seed(config["sample"]["seed"], i, j) for i in range(len(single)) for j in range(ks)]
    sample_cfg = {**config["sample"], "steps": config["eval"]["steps"]}
    denoise = config["eval"]["denoise"]
    x0, text, mask = fixed_samples(train_set, denoise["num_samples"], denoise["seed"])
    table = []
    trained: dict[str, tuple] = {}  # a run's config -> (model, train_s, loss): sampler-only changes train once
    for setting in args.settings:
        model_name, changes = parse_setting(setting)
        sampling = {**sample_cfg, **{SAMPLER_KEYS[key]: changes.pop(key) for key in list(changes)
                                     if key in SAMPLER_KEYS}}
        run = resolved(config, model_name, changes, args.captions)
        if run_shard_sets(run)["train"] != train_set.name:
            raise SystemExit(f"{setting}: the sweep trains on {train_set} only")
        key = json.dumps(run, sort_keys=True)
        if key not in trained:
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                Trainer(run, args.shards, tmp, f"{tmp}/state")()
                train_s = time.perf_counter() - t0
                loss = float(list(csv.DictReader(open(f"{tmp}/train.csv")))[-1]["loss"])
                trained[key] = (load_pretrained(f"{tmp}/final"), train_s, loss)
        model, train_s, loss = trained[key]
        objective = run["train"]["objective"]
        images = np.concatenate(list(generate(model, autoencoder, text_encoder, uncond, prompts, seeds, sampling,
                                              objective=objective, batch_size=120)))
        acc = probe_accuracy(images, rows, k)["accuracy"]
        drawn = np.concatenate(list(generate(model, autoencoder, text_encoder, uncond, single_prompts, single_seeds,
                                             sampling, objective=objective, batch_size=120)))
        one = single_object_score(list(drawn), single, ks)
        if args.samples:
            save_rows(drawn, ks, args.samples / f"{setting.replace(',', '_').replace('=', '-')}.png")
        profile = denoise_profile(model, x0, text, mask, denoise["gammas"], objective=objective, seed=denoise["seed"])
        mse = dict(zip(profile["gammas"], profile["x0_mse"]["model"]))
        table.append((setting, run["train"]["steps"], count_parameters(model), train_s, loss, acc, one,
                      [mse.get(g, float("nan")) for g in SHOWN_GAMMAS]))
        print(f"{setting}: {train_s:.0f} s, loss {loss:.4f}, colour probe {acc:.3f}, single_object {one:.3f}, x0 MSE "
              + ", ".join(f"g{g} {m:.4f}" for g, m in zip(SHOWN_GAMMAS, table[-1][-1])), flush=True)
    zero = profile["x0_mse"]["predict_zero"][0]
    head = " ".join(f"{'x0@' + str(g):>9}" for g in SHOWN_GAMMAS)
    chance = 1 / len(config["source"]["classes"])
    print(f"\n{'setting':<44} {'steps':>6} {'params':>9} {'train_s':>8} {'loss':>7} {'probe':>6} {'single':>6} {head}"
          f"   (probe chance 0.1, single_object chance {chance:.3f}; predict-0 x0 MSE {zero:.4f})")
    for setting, steps, n, train_s, loss, acc, one, mses in table:
        print(f"{setting:<44} {steps:>6} {n:>9,} {train_s:>8.0f} {loss:>7.4f} {acc:>6.3f} {one:>6.3f} "
              + " ".join(f"{m:>9.4f}" for m in mses))


if __name__ == "__main__":
    main()

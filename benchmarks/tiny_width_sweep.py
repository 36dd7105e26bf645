"""How fast does the tiny DiT-I learn colour, per CPU-second, at a given width and step count?

Trains DiT-I on the TA shards of an existing tiny run (``results/tiny/shards``) in this process, one
thread, with the default config's recipe and only the width / steps changed, then samples the colour
probe (``a photo of a {colour} {class}``, every colour x class, 2 samples, DDIM 20 steps, guidance 5)
and prints a table: width, steps, parameters, training seconds, final loss, colour-probe accuracy
(chance 0.1). Needs torch and this package only (PYTHONPATH=src); the text encoder is MiniLM.

    PYTHONPATH=src python benchmarks/tiny_width_sweep.py 128:400 64:1200 64:4000
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from imagenet_t2i.config import load_config, resolve_run
from imagenet_t2i.encode.autoencoder import make_autoencoder
from imagenet_t2i.encode.text import make_text_encoder
from imagenet_t2i.evaluation.colour_probe import probe_accuracy, probe_prompts
from imagenet_t2i.loader import load_uncond
from imagenet_t2i.models import count_parameters, load_pretrained
from imagenet_t2i.sample import generate, sample_seed
from imagenet_t2i.train.loop import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("settings", nargs="+", help="WIDTH:STEPS pairs")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--shards", default="results/tiny/shards")
    p.add_argument("--lr", type=float, default=2e-3)
    args = p.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    text_encoder = make_text_encoder(config["encode"]["text"])
    autoencoder = make_autoencoder(config["encode"]["autoencoder"])
    uncond = load_uncond(Path(args.shards) / "train_ta")[0][0]
    rows = probe_prompts(config["source"]["classes"], config["source"]["colors"])
    prompts = [r["prompt"] for r in rows for _ in range(2)]
    seeds = [sample_seed(0, i, j) for i in range(len(rows)) for j in range(2)]
    sample_cfg = {**config["sample"], "steps": 20}
    table = []
    for setting in args.settings:
        width, steps = (int(v) for v in setting.split(":"))
        run = resolve_run(config, "dit_i_ta")
        run["model"]["hidden_size"] = width
        run["train"].update(steps=steps, log_every=10, checkpoint_every=steps, eval_checkpoints=[])
        run["train"]["optimizer"]["lr"] = args.lr
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            Trainer(run, args.shards, tmp, f"{tmp}/state")()
            train_s = time.perf_counter() - t0
            loss = float(list(csv.DictReader(open(f"{tmp}/train.csv")))[-1]["loss"])
            model = load_pretrained(f"{tmp}/final")
            images = np.concatenate(list(generate(model, autoencoder, text_encoder, uncond, prompts, seeds, sample_cfg,
                                                  batch_size=120)))
        acc = probe_accuracy(images, rows, 2)["accuracy"]
        table.append((width, steps, count_parameters(model), train_s, loss, acc))
    print(f"\n{'width':>5} {'steps':>6} {'params':>9} {'train_s':>8} {'loss':>7} {'colour_probe':>12}  (chance 0.1)")
    for width, steps, n, train_s, loss, acc in table:
        print(f"{width:>5} {steps:>6} {n:>9,} {train_s:>8.0f} {loss:>7.4f} {acc:>12.3f}")


if __name__ == "__main__":
    main()

"""Training speed of the tiny default runs on this machine: one run at a time, one thread, as `reproduce_all` trains them.

Trains each named run of the config on the shards of an existing tiny run (``results/tiny/shards``) in
this process for ``--steps`` steps and prints images/s (mean of the per-step rates after step 50) and wall
seconds. Compare code versions by running it from two checkouts in one session, alternating (machines of
this kind drift by 10% over minutes):

    PYTHONPATH=src python benchmarks/tiny_train_speed.py dit_i_ta cad_i_ta
"""
from __future__ import annotations

import argparse
import csv
import tempfile
import time

import torch

from imagenet_t2i.config import load_config, resolve_run
from imagenet_t2i.train.loop import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="run names of the config")
    p.add_argument("--config", default="config/config.yaml")
    p.add_argument("--shards", default="results/tiny/shards")
    p.add_argument("--steps", type=int, default=None, help="default: the run's own step count")
    args = p.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    table = []
    for name in args.runs:
        run = resolve_run(config, name)
        steps = args.steps or run["train"]["steps"]
        run["train"].update(steps=steps, log_every=1, checkpoint_every=steps, eval_checkpoints=[])
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            Trainer(run, args.shards, tmp, f"{tmp}/state")()
            wall = time.perf_counter() - t0
            rates = [float(r["images_per_s"]) for r in csv.DictReader(open(f"{tmp}/train.csv"))][50:]
        table.append((name, steps, run["train"]["batch_size"], sum(rates) / max(len(rates), 1), wall))
    print(f"\n{'run':<24} {'steps':>6} {'batch':>6} {'images/s':>9} {'wall_s':>7}")
    for name, steps, batch, rate, wall in table:
        print(f"{name:<24} {steps:>6} {batch:>6} {rate:>9.1f} {wall:>7.1f}")


if __name__ == "__main__":
    main()

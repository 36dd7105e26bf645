"""Training speed of the tiny default runs on this machine: one run at a time, one thread, as `reproduce_all` trains them.

Trains each named run of the config on the shards of an existing tiny run (``results/tiny/shards``) in
this process for ``--steps`` steps and prints images/s (mean of the per-step rates after step 50), wall
seconds and the process's CPU milliseconds per step (user + system, every thread: the number that holds when
another job shares the machine), and first the data stream alone: milliseconds per batch of each shard set the
run reads. Compare code versions by running it from two checkouts in one session, alternating (machines of
this kind drift by 10% over minutes):

    PYTHONPATH=src python benchmarks/tiny_train_speed.py dit_i_ta cad_i_ta
"""
from __future__ import annotations

import argparse
import csv
import resource
import tempfile
import time

import torch

from imagenet_t2i.config import load_config, resolve_run, run_shard_sets
from imagenet_t2i.shards.reader import ShardStream
from imagenet_t2i.train.trainer import Trainer

STREAM_BATCHES = 100


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stream_ms_per_batch(shard_dir: str, batch_size: int) -> float:
    """Milliseconds per batch of the data stream alone (no prefetch thread), after one warm-up batch."""
    with ShardStream(shard_dir, batch_size, seed=0, prefetch=0) as stream:
        next(stream)
        t0 = time.perf_counter()
        for _ in range(STREAM_BATCHES):
            next(stream)
    return (time.perf_counter() - t0) / STREAM_BATCHES * 1e3


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
        for shard_set in run_shard_sets(run).values():
            ms = stream_ms_per_batch(f"{args.shards}/{shard_set}", run["train"]["batch_size"])
            print(f"{name}: stream {shard_set}: {ms:.2f} ms per batch", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), cpu_seconds()
            Trainer(run, args.shards, tmp, f"{tmp}/state")()
            wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
            rates = [float(r["images_per_s"]) for r in csv.DictReader(open(f"{tmp}/train.csv"))][50:]
        table.append((name, steps, run["train"]["batch_size"], sum(rates) / max(len(rates), 1), wall,
                      cpu / steps * 1e3))
    print(f"\n{'run':<24} {'steps':>6} {'batch':>6} {'images/s':>9} {'wall_s':>7} {'cpu_ms/step':>11}")
    for name, steps, batch, rate, wall, cpu_ms in table:
        print(f"{name:<24} {steps:>6} {batch:>6} {rate:>9.1f} {wall:>7.1f} {cpu_ms:>11.1f}")


if __name__ == "__main__":
    main()

"""Time the save of a full-size training state, as the training loop writes it on SIGTERM, USR2 or a checkpoint.

The state is what `imagenet_t2i.train.loop.Training` saves: the model's state dict, the optimiser's (AdamW for
DiT-I, LAMB for CAD-I: two moments per parameter), the EMA shadow and a little bookkeeping, written by
``torch.save`` through `imagenet_t2i.io.atomic_write` (a temporary file, fsync, rename). The models are the paper
sizes, random-init in fp32 on the CPU. It measures the file system ``--out`` is on: run it on the cluster's shared
file system to see whether a save fits in the site's ``KillWait`` (30 s by default) or ``GraceTime``.

    PYTHONPATH=src python benchmarks/state_save.py --out /path/on/the/shared/fs [--models dit_i cad_i] [--repeats 2]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

from imagenet_t2i.io import atomic_write
from imagenet_t2i.models import SIZES, build_model, count_parameters
from imagenet_t2i.train.optim import Ema, make_optimizer

PAPER = {"dit_i": ("dit_i", "paper", {"name": "adamw", "lr": 1e-4}),
         "cad_i": ("cad_i", "L_coherence", {"name": "lamb", "lr": 1e-3})}


def full_state(name: str) -> tuple[dict, int]:
    """The training state of a paper-size model after one optimiser step (so both moments exist); -> (state, params)."""
    arch, size, opt = PAPER[name]
    torch.manual_seed(0)
    model = build_model(arch, **SIZES[arch][size])
    optimizer = make_optimizer(model, {**opt, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01})
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    ema = Ema(model, 0.9999)
    state = {"step": 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(), "ema": ema.state_dict(),
             "generators": [torch.Generator().get_state()], "streams": {}, "nonfinite": 0, "log": []}
    return state, count_parameters(model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=tempfile.gettempdir(), help="a folder on the file system to measure")
    parser.add_argument("--models", nargs="+", default=["dit_i", "cad_i"], choices=sorted(PAPER))
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        t0 = time.perf_counter()
        state, n = full_state(name)
        built = time.perf_counter() - t0
        path = Path(args.out) / f".state_save_{name}.pt"
        for i in range(args.repeats):
            t0 = time.perf_counter()
            with atomic_write(path, "wb") as f:
                torch.save(state, f)
            seconds = time.perf_counter() - t0
            size = path.stat().st_size
            rows.append((name, n, size, seconds, i))
            print(f"{name}: {n:,} parameters, state {size / 1e9:.2f} GB written in {seconds:.1f} s "
                  f"({size / 1e9 / seconds:.2f} GB/s; repeat {i}; state built in {built:.1f} s)", flush=True)
        path.unlink()
        del state
    print(f"\n{'model':<6} {'params':>12} {'GB':>6} {'save s':>7}  (to {os.path.abspath(args.out)})")
    for name, n, size, seconds, _ in rows:
        print(f"{name:<6} {n:>12,} {size / 1e9:>6.2f} {seconds:>7.1f}")


if __name__ == "__main__":
    main()

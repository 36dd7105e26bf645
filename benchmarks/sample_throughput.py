"""Sampling throughput: guided DDIM (the paper's 250 steps) with DiT-I / CAD-I, eager and compiled, bf16 on CUDA.

Runs `imagenet_t2i.diffusion.sampler.ddim_sample` (what `imagenet_t2i.sampling.sample.generate` runs per batch) on random
weights and synthetic T5-width prompts: each batch of B prompts is one network batch of 2B (conditional +
unconditional). Times ``--timed-steps`` DDIM steps after ``--warmup-steps`` (compilation happens there) and
extrapolates to ``--steps``; the VAE decode and the text encoder are not timed. Prints img/s and the projected
GPU-hours of one run's evaluation: GenEval (553 prompts x 4) + DPG (1,065 x 4) + FID-50k, and a short table last.

    PYTHONPATH=src python benchmarks/sample_throughput.py                      # GPU: batch 256 prompts
    PYTHONPATH=src python benchmarks/sample_throughput.py --size tiny --device cpu --batch-sizes 4 --timed-steps 2
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch
from train_throughput import model_kwargs, sync, synthetic_batch

from imagenet_t2i.diffusion.sampler import ddim_sample
from imagenet_t2i.models import build_model
from imagenet_t2i.train.fast import compile_model

EVAL_IMAGES = {"geneval": 553 * 4, "dpg": 1065 * 4, "fid50k": 50_000}


def seconds_per_step(model: torch.nn.Module, kw: dict, batch: int, text_tokens: int, args: argparse.Namespace,
                     device: torch.device) -> float:
    """Wall seconds of one guided DDIM step for ``batch`` prompts (network batch 2 x ``batch``)."""
    generator = torch.Generator().manual_seed(0)
    data = synthetic_batch(kw, batch, text_tokens, generator, device)
    uncond = torch.randn(1, kw["text_dim"], generator=generator).to(device)  # (L0, D)
    shape = (kw["in_channels"], kw["input_size"], kw["input_size"])  # (C, h, w)
    noise = data.x0  # (B, C, h, w) x_T

    def run(steps: int) -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            ddim_sample(model, data.text, data.mask, uncond, shape, steps=steps, guidance=9.0, noise=noise)

    run(args.warmup_steps)
    sync(device)
    t0 = time.perf_counter()
    run(args.timed_steps)
    sync(device)
    return (time.perf_counter() - t0) / args.timed_steps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["paper", "tiny"], default="paper")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", choices=["dit_i", "cad_i"], default=["dit_i", "cad_i"])
    p.add_argument("--resolution", type=int, default=256, help="paper size: 256 or 512")
    p.add_argument("--text-tokens", type=int, default=128)
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[256], help="prompts per batch (network batch 2x)")
    p.add_argument("--variants", nargs="+", choices=["eager", "compiled"], default=["eager", "compiled"])
    p.add_argument("--steps", type=int, default=250, help="DDIM steps per image (the paper: 250)")
    p.add_argument("--warmup-steps", type=int, default=2, help="untimed steps (compilation happens here)")
    p.add_argument("--timed-steps", type=int, default=5)
    p.add_argument("--compile-backend", default=None,
                   help="default inductor on CUDA, aot_eager on the CPU (inductor compiles for about a minute there)")
    args = p.parse_args()
    device = torch.device(args.device)
    backend = args.compile_backend or ("inductor" if device.type == "cuda" else "aot_eager")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"card {card}, torch {torch.__version__}, {args.steps} DDIM steps with guidance, compile backend {backend}",
          flush=True)
    rows = []
    for arch, batch, variant in itertools.product(args.models, args.batch_sizes, args.variants):
        kw = model_kwargs(arch, args.size, args.resolution)
        torch.manual_seed(0)
        torch._dynamo.reset()
        model = compile_model(build_model(arch, **kw).to(device).eval(), variant == "compiled", backend)
        try:
            step_s = seconds_per_step(model, kw, batch, args.text_tokens, args, device)
        except torch.cuda.OutOfMemoryError:
            step_s = float("nan")
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        rate = batch / (step_s * args.steps)
        hours = {k: n / rate / 3600 for k, n in EVAL_IMAGES.items()}
        rows.append((arch, batch, variant, step_s, rate, hours))
        print(f"{arch} batch {batch} ({2 * batch} per network call) {variant}: {step_s * 1e3:.1f} ms per step, "
              f"{rate:.2f} img/s at {args.steps} steps; GenEval + DPG {(hours['geneval'] + hours['dpg']) * 60:.1f} min, "
              f"FID-50k {hours['fid50k']:.2f} h, all {sum(hours.values()):.2f} GPU-h", flush=True)
    print(f"\n{'model':<6} {'batch':>5} {'variant':<8} {'ms/step':>8} {'img/s':>7} {'GenEval+DPG min':>15} "
          f"{'FID-50k h':>9} {'total GPU-h':>11}  card")
    for arch, batch, variant, step_s, rate, hours in rows:
        print(f"{arch:<6} {batch:>5} {variant:<8} {step_s * 1e3:>8.1f} {rate:>7.2f} "
              f"{(hours['geneval'] + hours['dpg']) * 60:>15.1f} {hours['fid50k']:>9.2f} {sum(hours.values()):>11.2f}  {card}")


if __name__ == "__main__":
    main()

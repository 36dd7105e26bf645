"""Training throughput of DiT-I and CAD-I on one device: the eager baseline and the fast path in the same run.

Times the training step itself (the paper loss with CFG dropout and, for CAD-I, self-conditioning; backward; gradient
clipping; optimiser; EMA) on synthetic latents and T5-width text padded to ``--text-tokens`` with random real lengths,
already on the device (data loading is not timed). No Trainer, no Snakemake: it runs on a bare GPU machine with torch
(+ diffusers for the model classes) and ``PYTHONPATH=src``.

Variants: ``eager`` = today's step (bf16 autocast on CUDA, per-tensor / torch-default optimiser), ``fast`` = bf16 +
torch.compile of the model + fused AdamW / foreach LAMB and EMA (``train.compile: true``, ``train.fused_optimizer``).
FLOPs per image as ``docs/performance.md`` counts them (`imagenet_t2i.train.flops`); MFU against the H100 SXM dense
bf16 peak (989e12; the H200 has the same). Prints a row per setting and a short table last, with the H100-hours
(hours on this card) a 500k x 1024 run would take beside the paper's 500.

    PYTHONPATH=src python benchmarks/train_throughput.py                      # GPU: DiT-I then CAD-I at 256
    PYTHONPATH=src python benchmarks/train_throughput.py --size tiny --device cpu --batch-sizes 8 --steps 2
"""
from __future__ import annotations

import argparse
import itertools
import time

import torch

from imagenet_t2i.diffusion.objective import Batch, diffusion_loss
from imagenet_t2i.models import SIZES, build_model
from imagenet_t2i.train.fast import compile_model
from imagenet_t2i.train.flops import H100_BF16_PEAK, forward_flops, mfu, training_flops
from imagenet_t2i.train.optim import Ema, make_optimizer

PAPER_SIZE = {"dit_i": "paper", "cad_i": "L_coherence"}
OPTIMIZER = {  # config/paper.yaml
    "dit_i": {"name": "adamw", "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
    "cad_i": {"name": "lamb", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
}
PAPER_IMAGES = 500_000 * 1024  # steps x global batch of a paper run
PAPER_H100_HOURS = 500


def model_kwargs(arch: str, size: str, resolution: int) -> dict:
    """Constructor kwargs: the paper model on 4 x (res/8)^2 SD-VAE latents, or the tiny model as configured."""
    if size == "tiny":
        return dict(SIZES[arch]["tiny"])
    return {**SIZES[arch][PAPER_SIZE[arch]], "input_size": resolution // 8}


def synthetic_batch(kw: dict, batch: int, text_tokens: int, generator: torch.Generator,
                    device: torch.device) -> Batch:
    """Latents (B, C, h, w), text (B, T, D) and a mask with 8..T real tokens per sample."""
    c, s = kw["in_channels"], kw["input_size"]
    lengths = torch.randint(min(8, text_tokens), text_tokens + 1, (batch,), generator=generator)  # (B,)
    mask = torch.arange(text_tokens)[None] < lengths[:, None]  # (B, T)
    text = torch.randn(batch, text_tokens, kw["text_dim"], generator=generator) * mask[..., None]
    return Batch(torch.randn(batch, c, s, s, generator=generator).to(device), text.to(device), mask.to(device))


def measure(arch: str, kw: dict, batch: int, text_tokens: int, fast: bool, args: argparse.Namespace,
            device: torch.device) -> dict:
    """Images/s and peak memory of ``args.steps`` timed training steps after ``args.warmup`` untimed ones."""
    torch.manual_seed(0)
    raw = build_model(arch, **kw).to(device).train()
    model = compile_model(raw, fast, args.compile_backend)
    optimizer = make_optimizer(raw, OPTIMIZER[arch], fused=fast)
    ema = Ema(raw, 0.9999, foreach=fast)
    generator = torch.Generator().manual_seed(0)
    data = synthetic_batch(kw, batch, text_tokens, generator, device)
    uncond = torch.randn(1, kw["text_dim"], generator=generator).to(device)  # (L0, D): the empty caption
    self_cond = 0.9 if arch == "cad_i" else 0.0
    bf16 = device.type == "cuda"

    def step() -> torch.Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss, _ = diffusion_loss(model, data, [], uncond, generator, 0.1, self_cond)
            loss.backward()
        torch.nn.utils.clip_grad_norm_(raw.parameters(), 2.0)
        optimizer.step()
        ema.update(raw)
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(args.warmup):
        step()
    sync(device)
    warm_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    losses = [step() for _ in range(args.steps)]
    sync(device)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"images_per_s": args.steps * batch / seconds, "peak_gib": peak, "warmup_s": warm_s,
            "loss": float(torch.stack(losses).mean())}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=["paper", "tiny"], default="paper")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--models", nargs="+", choices=["dit_i", "cad_i"], default=["dit_i", "cad_i"])
    p.add_argument("--resolutions", nargs="+", type=int, default=[256], help="paper size: 256 and/or 512")
    p.add_argument("--text-tokens", nargs="+", type=int, default=[128])
    p.add_argument("--batch-sizes", nargs="+", type=int, default=[128, 256], help="per device")
    p.add_argument("--variants", nargs="+", choices=["eager", "fast"], default=["eager", "fast"])
    p.add_argument("--warmup", type=int, default=3, help="untimed steps (compilation happens here)")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--compile-backend", default=None,
                   help="default inductor on CUDA, aot_eager on the CPU (inductor compiles for about a minute there)")
    p.add_argument("--budget-s", type=float, default=None, help="start no new setting after this many seconds")
    args = p.parse_args()
    device = torch.device(args.device)
    args.compile_backend = args.compile_backend or ("inductor" if device.type == "cuda" else "aot_eager")
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"card {card}, torch {torch.__version__}, compile backend {args.compile_backend}, "
          f"MFU against {H100_BF16_PEAK / 1e12:.0f} TFLOP/s (H100 SXM dense bf16)", flush=True)
    rows, start = [], time.perf_counter()
    resolutions = [32] if args.size == "tiny" else args.resolutions  # tiny: 3x32x32 pixel "latents"
    for arch, res, tokens, batch, variant in itertools.product(args.models, resolutions, args.text_tokens,
                                                              args.batch_sizes, args.variants):
        if args.budget_s is not None and time.perf_counter() - start > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: stopping", flush=True)
            break
        kw = model_kwargs(arch, args.size, res)
        flops = training_flops(forward_flops(arch, kw, tokens), self_conditioning=arch == "cad_i")
        torch._dynamo.reset()
        try:
            r = measure(arch, kw, batch, tokens, variant == "fast", args, device)
        except torch.cuda.OutOfMemoryError:
            r = {"images_per_s": float("nan"), "peak_gib": float("nan"), "warmup_s": 0.0, "loss": float("nan")}
        if device.type == "cuda":
            torch.cuda.empty_cache()
        r.update(model=arch, res=res, tokens=tokens, batch=batch, variant=variant,
                 tflops=r["images_per_s"] * flops / 1e12, mfu=mfu(r["images_per_s"], flops),
                 hours=PAPER_IMAGES / r["images_per_s"] / 3600, gflop_per_image=flops / 1e9)
        rows.append(r)
        print(f"{arch} {res}px T={tokens} batch {batch} {variant}: {r['images_per_s']:.1f} img/s, "
              f"{r['tflops']:.1f} TFLOP/s ({r['gflop_per_image']:.4g} GFLOP/img), MFU {r['mfu']:.1%}, "
              f"peak {r['peak_gib']:.1f} GiB, warm-up {r['warmup_s']:.0f} s, loss {r['loss']:.4f}", flush=True)
    print(f"\n{'model':<6} {'res':>4} {'text':>4} {'batch':>5} {'variant':<7} {'img/s':>8} {'TFLOP/s':>8} {'MFU':>6} "
          f"{'peak GiB':>8} {'500kx1024 h':>11} {'paper h':>7}  card")
    for r in rows:
        print(f"{r['model']:<6} {r['res']:>4} {r['tokens']:>4} {r['batch']:>5} {r['variant']:<7} "
              f"{r['images_per_s']:>8.1f} {r['tflops']:>8.2f} {r['mfu']:>6.1%} {r['peak_gib']:>8.1f} "
              f"{r['hours']:>11.0f} {PAPER_H100_HOURS:>7}  {card}")


if __name__ == "__main__":
    main()

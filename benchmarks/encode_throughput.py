"""Encode-stage throughput: SD VAE latents and T5 caption embeddings, alone and as the shards stage runs them.

    PYTHONPATH=src python benchmarks/encode_throughput.py --size tiny --device cpu    # < 1 min on 2 cores
    PYTHONPATH=src python benchmarks/encode_throughput.py --size full --device cuda   # SD KL-f8 VAE + Flan-T5-XL encoder

The weights are random-init (speed does not depend on their values), written to a temporary folder and loaded
through `make_autoencoder` / `make_text_encoder`, so the timed calls are the pipeline's own: per batch,
``to_tensor`` -> ``SDVAE.encode`` -> posterior to host, then ``T5Encoder.encode`` (as `shards.writer._write_shard`).
Images: random 256x256 uint8. Captions: token lengths uniform in [120, 200] (including </s>), our assumption
for LLaVA-NeXT captions of at most 200 new tokens cut at the last full stop (not measured here), made of
one-token words of the test tokenizer so each caption has exactly its drawn length. Every image is taken to
have its own long caption (TA sets); AIO captions are short and repeat per class, so T5 costs them little.
Prints a row per (stage, batch size), the projected device-hours of the paper's image sets at the best
combined rate, and a short table last.
"""
from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from imagenet_t2i.encode.autoencoder import make_autoencoder
from imagenet_t2i.encode.images import to_tensor
from imagenet_t2i.encode.text import make_text_encoder
from imagenet_t2i.encode.tiny_encoders import TINY_AUTOENCODER_KL, TINY_T5, save_autoencoder_kl, save_t5

# stabilityai/sd-vae-ft-ema config.json (the SD KL-f8 autoencoder); diffusers' default scaling_factor 0.18215
SD_VAE = {
    "block_out_channels": [128, 256, 512, 512], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 2, "norm_num_groups": 32, "act_fn": "silu",
    "in_channels": 3, "out_channels": 3, "latent_channels": 4, "sample_size": 256, "scaling_factor": 0.18215,
}
# google/flan-t5-xl config.json (T5 v1.1 XL layout); only the encoder is built
FLAN_T5_XL = {
    "d_model": 2048, "d_kv": 64, "d_ff": 5120, "num_heads": 32, "num_layers": 24, "feed_forward_proj": "gated-gelu",
    "vocab_size": 32128, "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128,
    "dropout_rate": 0.0, "layer_norm_epsilon": 1e-6, "tie_word_embeddings": False,
}
SIZES = {"tiny": (TINY_AUTOENCODER_KL, TINY_T5, 64, [16, 32]), "full": (SD_VAE, FLAN_T5_XL, 2048, [64, 128, 256])}
IMAGE_SETS = {"real": 1_281_167, "cutmix": 1_281_167, "crop": 1_281_167, "val": 50_000}
TARGET_HOURS = 5.0  # the target for real + CutMix + Crop on H100s
PEAK_BF16 = 989e12  # H100 SXM dense bf16, the MFU denominator of docs/performance.md


def captions(encoder, n: int, rng: np.random.Generator, lo: int = 120, hi: int = 200) -> list[str]:
    """``n`` captions of one-token words, token counts (with </s>) uniform in [lo, hi]."""
    words = sorted(p[1:] for p in encoder.tokenizer.get_vocab() if p.startswith("▁") and len(p) > 1)
    return [" ".join(rng.choice(words, size=length - 1)) for length in rng.integers(lo, hi + 1, size=n)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[slice], None], n: int, bs: int, device: torch.device) -> tuple[float, float, float]:
    """(items/s over the full batches after a warm-up batch, model FLOP per item, peak GiB on a GPU, else 0)."""
    batches = [slice(s, s + bs) for s in range(0, n - bs + 1, bs)] or [slice(0, n)]
    fn(batches[0])
    with FlopCounterMode(display=False) as flops:
        fn(batches[0])
    per_item = flops.get_total_flops() / (batches[0].stop - batches[0].start)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    sync(device)
    t0 = time.perf_counter()
    for b in batches:
        fn(b)
    sync(device)
    rate = sum(b.stop - b.start for b in batches) / (time.perf_counter() - t0)
    return rate, per_item, torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", choices=list(SIZES), default="tiny")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--vae-dtype", choices=["float32", "bfloat16"], default="float32", help="float32: the paper")
    p.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                   help="images (and captions) per encode call, comma-separated")
    p.add_argument("--images", type=int, default=None, help="images (and captions) timed per batch size")
    args = p.parse_args()
    vae_cfg, t5_cfg, n_default, bs_default = SIZES[args.size]
    n, batch_sizes, device = args.images or n_default, args.batch_sizes or bs_default, torch.device(args.device)
    card = (torch.cuda.get_device_name(device) if device.type == "cuda"
            else f"{platform.machine()} CPU x{torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        save_autoencoder_kl(Path(tmp) / "vae", vae_cfg)
        save_t5(Path(tmp) / "t5", t5_cfg, dtype=torch.bfloat16 if device.type == "cuda" else torch.float32)
        vae = make_autoencoder({"backend": "sd_vae", "path": f"{tmp}/vae", "dtype": args.vae_dtype}, str(device))
        t5 = make_text_encoder({"backend": "t5", "path": f"{tmp}/t5", "max_tokens": 256}, str(device))
        print(f"weights built and loaded in {time.perf_counter() - t0:.1f} s")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 256, 256, 3), dtype=np.uint8)
    texts = captions(t5, n, rng)
    tokens = t5.token_counts(texts)
    print(f"{card}: VAE {args.vae_dtype}, T5 {t5.describe()['dtype']} (d_model {t5.dim}), {n} images, "
          f"captions {min(tokens)}-{max(tokens)} tokens (mean {np.mean(tokens):.0f})")

    def vae_step(b: slice) -> None:
        mean, std = vae.encode(to_tensor(images[b]))  # (B, 4, 32, 32) each
        mean.cpu().numpy(), std.cpu().numpy()

    def t5_step(b: slice) -> None:
        t5.encode(texts[b])

    def both(b: slice) -> None:
        vae_step(b)
        t5_step(b)

    rows = []
    for bs in batch_sizes:
        t5.batch_size = bs
        for stage, fn in (("vae", vae_step), ("t5", t5_step), ("vae+t5", both)):
            rate, flop, peak = measure(fn, n, bs, device)
            rows.append((stage, bs, rate, flop * rate / 1e12, peak))
            print(f"{stage:<7} batch {bs:>4}: {rate:9.1f} items/s  {flop / 1e9:9.3f} GFLOP/item  "
                  f"{flop * rate / 1e12:7.3f} TFLOP/s", flush=True)

    best = {stage: max(r[2] for r in rows if r[0] == stage) for stage in ("vae", "t5", "vae+t5")}
    print(f"\nprojected {card} hours at the best rates (VAE alone / T5 alone / both, as the shards stage runs):")
    for name, count in IMAGE_SETS.items():
        print(f"  {name:<7} {count:>9,} images: " + " / ".join(f"{count / best[s] / 3600:7.2f}" for s in best))
    three = sum(IMAGE_SETS[s] for s in ("real", "cutmix", "crop")) / best["vae+t5"] / 3600
    print(f"  real + cutmix + crop: {three:.2f} h (target <= {TARGET_HOURS:g} H100-hours: "
          f"{'met' if three <= TARGET_HOURS else 'NOT met'} on this device); with val: "
          f"{three + IMAGE_SETS['val'] / best['vae+t5'] / 3600:.2f} h")

    print(f"\n{'stage':<7} {'batch':>5} {'items/s':>9} {'TFLOP/s':>8} {'MFU':>6} {'peak GiB':>8}  card "
          "(MFU against the H100 dense bf16 peak, GPU only)")
    for stage, bs, rate, tflops, peak in rows:
        mfu, mem = (f"{tflops * 1e12 / PEAK_BF16:.1%}", f"{peak:.1f}") if device.type == "cuda" else ("-", "-")
        print(f"{stage:<7} {bs:>5} {rate:>9.1f} {tflops:>8.3f} {mfu:>6} {mem:>8}  {card}")


if __name__ == "__main__":
    main()

"""What the shards' 16-bit storage costs: the stored fp16 latent mean and std and the fp16 text states against the
same samples encoded again in float32 by the config's autoencoder and text encoder.

Latents: |mean_fp32 - mean_stored| / std_fp32 per element (the rounding next to the noise that sampling the
posterior adds: 1 would be one posterior standard deviation) and |std_fp32 - std_stored| / std_fp32. Text: the mean
|emb_fp32 - emb| over the root mean square of emb_fp32, per sample, for emb = the stored states (the config's
compute dtype, T5 in bf16 at paper scale, then fp16) and emb = fp16(emb_fp32) (the storage alone).

    PYTHONPATH=src python benchmarks/fp16_storage.py --config results/paper_smoke/config.yaml \
        --shards results/paper_smoke/shards/train_ta [--samples 64]
"""
from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from PIL import Image

from imagenet_t2i.config import load_config
from imagenet_t2i.encode.autoencoder import make_autoencoder
from imagenet_t2i.encode.images import to_tensor
from imagenet_t2i.encode.text import make_text_encoder
from imagenet_t2i.weights import resolved


def stats(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "p99": float(np.quantile(values, 0.99)), "max": float(values.max())}


def measure(config: dict, shards: Path, samples: int) -> dict:
    manifest = json.loads((shards / "manifest.json").read_text())
    fmt = manifest["image_format"]
    autoencoder = make_autoencoder({**resolved(config, "autoencoder"), "dtype": "float32"}, device="cpu")
    text = make_text_encoder({**resolved(config, "text"), "dtype": "float32"}, device="cpu")
    urls = [str(shards / e["name"]) for e in manifest["shards"] if e["num_samples"]]
    rows = list(zip(range(samples), wds.WebDataset(urls, shardshuffle=False, empty_check=False)))
    images = [np.asarray(Image.open(io.BytesIO(s[fmt])).convert("RGB")) for _, s in rows]
    with torch.no_grad():
        mean32, std32 = (t.numpy() for t in autoencoder.encode(to_tensor(images)))  # (N, C, h, w) each
    mean16 = np.stack([np.load(io.BytesIO(s["mean.npy"])) for _, s in rows]).astype(np.float32)
    std16 = np.stack([np.load(io.BytesIO(s["std.npy"])) for _, s in rows]).astype(np.float32)
    stored, storage = [], []
    for ids, (_, s) in zip(text.token_ids([s["txt"].decode("utf-8") for _, s in rows]), rows):
        with torch.no_grad():  # one caption at a time: no padding, float32 states (L, D)
            e32 = text.model(input_ids=torch.tensor([ids])).last_hidden_state[0].float().numpy()
        rms = np.sqrt((e32 ** 2).mean())
        stored.append(np.abs(e32 - np.load(io.BytesIO(s["emb.npy"])).astype(np.float32)).mean() / rms)
        storage.append(np.abs(e32 - e32.astype(np.float16).astype(np.float32)).mean() / rms)
    return {"samples": len(rows), "autoencoder": autoencoder.describe(), "text_encoder": text.describe(),
            "latent_mean_error_over_std": stats(np.abs(mean32 - mean16) / std32),
            "latent_std_relative_error": stats(np.abs(std32 - std16) / std32),
            "text_stored_error_over_rms": stats(np.array(stored)),
            "text_fp16_storage_error_over_rms": stats(np.array(storage))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--shards", required=True, help="a shard set folder (manifest.json + tars)")
    p.add_argument("--samples", type=int, default=64)
    args = p.parse_args()
    report = measure(load_config(args.config), Path(args.shards), args.samples)
    print(json.dumps({k: v for k, v in report.items() if k not in ("autoencoder", "text_encoder")}, indent=1))
    print(f"\n{'quantity':<34} {'mean':>10} {'p99':>10} {'max':>10}")
    for key in ("latent_mean_error_over_std", "latent_std_relative_error", "text_stored_error_over_rms",
                "text_fp16_storage_error_over_rms"):
        s = report[key]
        print(f"{key:<34} {s['mean']:>10.2e} {s['p99']:>10.2e} {s['max']:>10.2e}")


if __name__ == "__main__":
    main()

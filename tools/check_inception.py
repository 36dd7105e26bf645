"""One-off equality check: our inception-v3-compat network against torch-fidelity's, same weights file.

UNTESTED in this repository: the development machines have neither torch-fidelity, torchvision nor the
weights (and no network). Run it once where the fidelity environment can be built:

    conda env create -f envs/fidelity.yaml
    conda run -n imagenet-t2i-fidelity env PYTHONPATH=src python tools/check_inception.py \\
        --weights weights-inception-2015-12-05-6726825d.pth [--images DIR] [--device cuda]

Both networks get the same uint8 images: the first ``--num`` image files of ``--images``, else seeded random
images of several sizes (upsampled noise, so the resize matters). Prints the largest absolute difference of
``pool3`` (FID features, 2048-d) and ``logits_unbiased`` (IS logits, 1008-d), plus the largest feature
magnitude for scale, and exits with status 1 when a difference exceeds ``--tol``.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from imagenet_t2i.evaluation.fid.inception import load_inception


def synthetic_images(seed: int) -> list[np.ndarray]:
    """uint8 images (H, W, 3) of sizes below, at and above 299: smooth noise plus fine noise."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in ((32, 32), (64, 96), (256, 256), (299, 299), (512, 384)):
        low = torch.from_numpy(rng.random((1, 3, 6, 6), dtype=np.float32))
        smooth = F.interpolate(low, size=(h, w), mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
        out.append(np.clip(smooth * 220 + rng.random((h, w, 3)) * 35, 0, 255).astype(np.uint8))
    return out


def folder_images(folder: str, num: int) -> list[np.ndarray]:
    """The first ``num`` image files under ``folder`` (sorted paths) as RGB uint8 (H, W, 3)."""
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp"))
    if not paths:
        raise SystemExit(f"{folder}: no image files")
    out = []
    for path in paths[:num]:
        with Image.open(path) as im:
            out.append(np.asarray(im.convert("RGB")))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True, help="weights-inception-2015-12-05-6726825d.pth")
    parser.add_argument("--images", help="folder of images (default: synthetic images)")
    parser.add_argument("--num", type=int, default=16, help="images taken from --images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tol", type=float, default=1e-4, help="largest allowed absolute difference")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    theirs = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                         feature_extractor_weights_path=args.weights).to(args.device)
    ours = load_inception(args.weights, device=args.device)
    images = folder_images(args.images, args.num) if args.images else synthetic_images(args.seed)
    worst = {"pool3": 0.0, "logits_unbiased": 0.0}
    scale = {"pool3": 0.0, "logits_unbiased": 0.0}
    with torch.no_grad():
        for img in images:  # one at a time: images may differ in size
            x = torch.from_numpy(img).permute(2, 0, 1)[None].to(args.device)  # (1, 3, H, W) uint8
            pool3, logits = theirs(x)
            mine = ours(x)
            for key, ref in (("pool3", pool3), ("logits_unbiased", logits)):
                worst[key] = max(worst[key], float((mine[key] - ref).abs().max()))
                scale[key] = max(scale[key], float(ref.abs().max()))
    print(f"{len(images)} images from {args.images or 'synthetic set'} on {args.device}; weights "
          f"{Path(args.weights).name} sha256 {ours.weights_sha256}")
    for key in worst:
        print(f"{key}: max |ours - torch-fidelity| = {worst[key]:.3g} (max |torch-fidelity| = {scale[key]:.3g})")
    ok = all(v <= args.tol for v in worst.values())
    print("OK" if ok else f"FAIL: difference above --tol {args.tol}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

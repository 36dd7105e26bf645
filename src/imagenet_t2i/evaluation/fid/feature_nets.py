"""DINOv2 ViT-L/14 and CLIP ViT-L/14 image features for FD / PRDC, through transformers from local folders.

Both take uint8 images (N, 3, H, W) and do their preprocessing in torch, as the reference pipelines do it
with PIL: a bicubic resize with PIL's antialiased kernel (torch ``interpolate(mode="bicubic",
antialias=True)`` uses PIL's a = -0.5 filter) in PIL's two 1-D passes, each rounded back to uint8 (PIL
keeps 8 bits between passes), then scaled to [0, 1] and normalised with the network's mean / std.
Against PIL itself the result differs by one level on under 1% of pixels (PIL's fixed-point coefficients;
see tests/test_feature_stats.py).

- DINOv2 (``facebook/dinov2-large`` layout, ``Dinov2Model``): resize to 224 x 224, ImageNet mean / std;
  the feature is ``pooler_output``, the CLS token after the final LayerNorm (1024-d). This is what FD-DINOv2
  (Stein et al. 2023, layer6ai-labs/dgm-eval) uses: its encoder calls the torch.hub ViT-L/14, whose forward
  returns ``x_norm_clstoken`` through an identity head, after ``Resize((224, 224), BICUBIC)`` on PIL images.
  The position embeddings (a 37 x 37 grid for 518 px) are resampled to 16 x 16 as torch.hub's model does
  (``hub_position_embeddings``), not as transformers does.
- CLIP (``openai/clip-vit-large-patch14`` layout, ``CLIPModel``'s vision tower): shorter side to 224, centre
  crop 224 (offset (size - 224) // 2, as ``CLIPImageProcessor``), OpenAI mean / std. The FD-CLIP feature is
  the paper's code's: ``CLIPVisionModel(...).last_hidden_state[:, 0]``, the CLS token BEFORE the final
  LayerNorm (1024-d), not the projected image embedding (768-d, torch-fidelity's ``clip`` features), which the
  same pass also gives for CLIPScore (``clip_embeds``). The full ``CLIPModel`` is loaded so that one model
  serves both.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from imagenet_t2i.io import sha256_file

BICUBIC_FILTER = "PIL-style bicubic (antialiased a=-0.5 kernel, two passes in Pillow 13's order, uint8 after each)"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
CLIP_MEAN, CLIP_STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


def _check_uint8(images: torch.Tensor, who: str) -> None:
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{who}: expected uint8 images (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")


def resize_bicubic(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, 3, H, W) -> float32 (N, 3, h, w) with integer values in [0, 255], resized as PIL's BICUBIC:
    two 1-D passes with the antialiased a = -0.5 kernel, each rounded half up to uint8. The pass order is
    Pillow 13's: the one with the smaller intermediate image, width first on ties (always the case for
    square to square, where older Pillow versions agree)."""
    x = images.float()
    (h, w), (out_h, out_w) = x.shape[-2:], size
    width_first = out_w * h <= w * out_h
    for target in ((h, out_w), (out_h, out_w)) if width_first else ((out_h, w), (out_h, out_w)):
        if tuple(x.shape[-2:]) != target:
            x = F.interpolate(x, size=target, mode="bicubic", antialias=True, align_corners=False)
            x = torch.floor(x + 0.5).clamp(0, 255)
    return x


def _normalise(x: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """Values in [0, 255] (N, 3, h, w) -> (x / 255 - mean) / std per channel."""
    m = torch.tensor(mean, dtype=x.dtype, device=x.device)[:, None, None]
    s = torch.tensor(std, dtype=x.dtype, device=x.device)[:, None, None]
    return (x / 255 - m) / s


def clip_pixels(images: torch.Tensor, size: int) -> torch.Tensor:
    """CLIP's preprocessing of uint8 (N, 3, H, W): shorter side to ``size`` (bicubic), centre crop ``size``,
    OpenAI mean / std -> pixel values (N, 3, size, size)."""
    _check_uint8(images, "clip_pixels")
    h, w = images.shape[-2:]
    short = min(h, w)
    resized = resize_bicubic(images, (int(h * size / short), int(w * size / short)))  # as CLIPImageProcessor: floor
    top, left = (resized.shape[-2] - size) // 2, (resized.shape[-1] - size) // 2
    return _normalise(resized[..., top:top + size, left:left + size], CLIP_MEAN, CLIP_STD)


def weights_record(path: str | os.PathLike, sha256: str | None) -> dict:
    """Weights folder, the sha256 the caller gives (e.g. of model.safetensors) and, when the folder has the
    ``weights`` rule's ``manifest.json`` (every file's sha256), that manifest's own sha256."""
    manifest = Path(path) / "manifest.json"
    return {"weights": str(path), "weights_sha256": sha256,
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None}


def hub_position_embeddings(model: nn.Module, input_size: int) -> None:
    """Resample a ``Dinov2Model``'s position embeddings once, in place, for square ``input_size`` inputs, the
    way the torch.hub DINOv2 (which FD-DINOv2 used) does on every call: bicubic with ``scale_factor`` =
    (grid + 0.1) / native grid. transformers resamples to ``size`` = grid instead, which samples slightly
    different points; with the grid already matching, it uses the table as is."""
    emb = model.embeddings.position_embeddings  # (1, 1 + native^2, D)
    native, grid = round((emb.shape[1] - 1) ** 0.5), input_size // model.config.patch_size
    if grid == native:
        return
    table = emb[:, 1:].float().reshape(1, native, native, -1).permute(0, 3, 1, 2)  # (1, D, native, native)
    scale = (grid + 0.1) / native
    table = F.interpolate(table, scale_factor=(scale, scale), mode="bicubic", align_corners=False)  # (1, D, g, g)
    table = table.permute(0, 2, 3, 1).reshape(1, grid * grid, -1).to(emb.dtype)
    model.embeddings.position_embeddings = nn.Parameter(torch.cat([emb[:, :1], table], 1), requires_grad=False)


class DinoV2Features(nn.Module):
    """uint8 images (N, 3, H, W) -> {"dinov2": CLS token after the final LayerNorm (N, hidden)}."""

    name = "dinov2"
    feature_key = "dinov2"

    def __init__(self, model: nn.Module, weights: dict, input_size: int = 224) -> None:
        super().__init__()
        self.model, self.weights, self.input_size = model, weights, input_size
        self.native_grid = round((model.embeddings.position_embeddings.shape[1] - 1) ** 0.5)
        hub_position_embeddings(model, input_size)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        _check_uint8(images, "DinoV2Features")
        x = _normalise(resize_bicubic(images, (self.input_size,) * 2), IMAGENET_MEAN, IMAGENET_STD)  # (N, 3, S, S)
        return {"dinov2": self.model(pixel_values=x).pooler_output.float()}  # (N, hidden)

    def describe(self) -> dict:
        """What an FD-DINOv2 number depends on."""
        c = self.model.config
        return {"network": f"dinov2 (Dinov2Model, hidden {c.hidden_size}, layers {c.num_hidden_layers}, "
                           f"patch {c.patch_size})", **self.weights, "resize": BICUBIC_FILTER,
                "input_size": self.input_size, "normalise": "imagenet mean/std",
                "position_embeddings": f"torch.hub dinov2 resampling, grid {self.native_grid} -> "
                                       f"{self.input_size // c.patch_size}",
                "feature": "pooler_output (CLS after final LayerNorm)", "feature_dim": c.hidden_size}


class ClipImageFeatures(nn.Module):
    """uint8 images (N, 3, H, W) -> {"clip": the vision tower's CLS token before its final LayerNorm (N, hidden),
    the FD-CLIP feature; "clip_embeds": the projected image embedding (N, projection_dim), CLIPScore's}."""

    name = "clip"
    feature_key = "clip"

    def __init__(self, model: nn.Module, weights: dict) -> None:
        super().__init__()
        self.model, self.weights = model, weights
        self.input_size = int(model.config.vision_config.image_size)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = clip_pixels(images, self.input_size)  # (N, 3, S, S)
        out = self.model.vision_model(pixel_values=x)
        return {"clip": out.last_hidden_state[:, 0].float(),  # (N, hidden): pre-LayerNorm CLS
                "clip_embeds": self.model.visual_projection(out.pooler_output).float()}  # (N, projection_dim)

    def describe(self) -> dict:
        """What an FD-CLIP number depends on."""
        v = self.model.config.vision_config
        return {"network": f"clip vision (CLIPModel, hidden {v.hidden_size}, layers {v.num_hidden_layers}, "
                           f"patch {v.patch_size})", **self.weights,
                "resize": f"shorter side, {BICUBIC_FILTER}; centre crop", "input_size": self.input_size,
                "normalise": "openai clip mean/std",
                "feature": "last_hidden_state[:, 0] (CLS before the final LayerNorm, as the paper's code)",
                "feature_dim": v.hidden_size}


def load_dinov2(path: str | os.PathLike, sha256: str | None = None,
                device: str | torch.device = "cpu") -> DinoV2Features:
    """DINOv2 features from a local ``Dinov2Model`` folder (config.json + weights), eval mode on ``device``."""
    from transformers import Dinov2Model

    return DinoV2Features(Dinov2Model.from_pretrained(path), weights_record(path, sha256)).to(device).eval()


def load_clip_image(path: str | os.PathLike, sha256: str | None = None,
                    device: str | torch.device = "cpu") -> ClipImageFeatures:
    """CLIP image features from a local ``CLIPModel`` folder (openai/clip-vit-large-patch14 layout), eval mode
    on ``device``."""
    from transformers import CLIPModel

    return ClipImageFeatures(CLIPModel.from_pretrained(path), weights_record(path, sha256)).to(device).eval()

"""CLIPScore (Hessel et al. 2021) with ``openai/clip-vit-large-patch14`` through transformers ``CLIPModel``.

Per (image, prompt) pair: max(100 cos(image embedding, text embedding), 0); the score is the mean over
pairs. Images get CLIP's preprocessing (``feature_nets.ClipImageFeatures``: shorter side to 224 bicubic, centre
crop, OpenAI mean / std). Prompts longer than the text model's context (77 tokens, start and end tokens
included) are cut to it, keeping the end token as CLIPTokenizer's truncation does, and counted.
(torchmetrics' ``CLIPScore`` clamps the mean instead of each pair; the two agree when no cosine is negative.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imagenet_t2i.evaluation.fid.feature_nets import ClipImageFeatures, weights_record


class ClipScorer(nn.Module):
    """(uint8 images (B, 3, H, W), B prompts) -> per-pair CLIPScores (B,) and which prompts were truncated (B,)."""

    name = "clip_score"

    def __init__(self, model: nn.Module, tokenizer, weights: dict) -> None:
        super().__init__()
        self.model, self.tokenizer, self.weights = model, tokenizer, weights
        self.image_features = ClipImageFeatures(model, weights)
        self.max_tokens = int(model.config.text_config.max_position_embeddings)
        self.requires_grad_(False)
        self.eval()

    def forward(self, images: torch.Tensor, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(prompts) != len(images):
            raise ValueError(f"ClipScorer: {len(images)} images but {len(prompts)} prompts")
        device = next(self.model.parameters()).device
        lengths = [len(ids) for ids in self.tokenizer(list(prompts), verbose=False)["input_ids"]]
        truncated = torch.tensor([n > self.max_tokens for n in lengths])  # (B,)
        text = self.tokenizer(list(prompts), padding=True, truncation=True, max_length=self.max_tokens,
                              return_tensors="pt").to(device)
        txt = self.model.text_projection(self.model.text_model(input_ids=text["input_ids"],
                                                               attention_mask=text["attention_mask"]).pooler_output)
        img = self.image_features(images.to(device))["clip_embeds"]  # (B, D)
        cos = F.cosine_similarity(img.float(), txt.float(), dim=-1)  # (B,)
        return (100 * cos).clamp(min=0).cpu(), truncated

    def describe(self) -> dict:
        """What a CLIPScore depends on."""
        v = self.model.config.vision_config
        return {"network": f"clip (CLIPModel, vision hidden {v.hidden_size}, layers {v.num_hidden_layers}, "
                           f"patch {v.patch_size})", **self.weights, "resize": self.image_features.describe()["resize"],
                "input_size": self.image_features.input_size, "max_tokens": self.max_tokens,
                "score": "mean over pairs of max(100 cos, 0)"}


@dataclass
class ClipScoreTotals:
    """Running sum of per-pair scores, pair count and truncated-prompt count."""

    total: float = 0.0
    pairs: int = 0
    truncated: int = 0

    def update(self, scores: torch.Tensor, truncated: torch.Tensor) -> None:
        self.total += float(scores.double().sum())
        self.pairs += len(scores)
        self.truncated += int(truncated.sum())

    def result(self, network: dict) -> dict:
        """The mean score and counts; ``network`` is the scorer's description."""
        if self.pairs == 0:
            raise ValueError("CLIPScore: no (image, prompt) pairs")
        return {"clip_score": self.total / self.pairs, "num_pairs": self.pairs, "num_truncated": self.truncated,
                "network": network}


def load_clip_scorer(path: str | os.PathLike, sha256: str | None = None,
                     device: str | torch.device = "cpu") -> ClipScorer:
    """CLIPScore from a local CLIP folder (``CLIPModel`` weights, config and CLIP tokenizer files)."""
    from transformers import AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(path)
    return ClipScorer(model, AutoTokenizer.from_pretrained(path), weights_record(path, sha256)).to(device).eval()

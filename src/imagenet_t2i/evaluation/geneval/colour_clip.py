"""The GenEval colour classifier on a transformers ``CLIPModel`` (portable backend of open_clip ViT-L-14 ``openai``).

The colour protocol itself (crop, templates, weights, cosine scores) is ``official.ColourClassifier``,
shared with the official backend; this file only embeds texts and crops with a CLIP folder
(``openai/clip-vit-large-patch14`` at paper scale: the same weights as open_clip's ``openai`` ViT-L-14,
preprocessed by its own image processor: shortest side 224 bicubic, centre crop, CLIP mean/std).
"""
from __future__ import annotations

import os

import torch
from PIL import Image

from imagenet_t2i.evaluation.geneval.official import ColourClassifier


def load_clip_colour_classifier(path: str | os.PathLike, device: str = "cpu", amp: bool = True,
                                batch_size: int = 16) -> ColourClassifier:
    """A ``ColourClassifier`` over the CLIP model, tokenizer and image processor saved in ``path``."""
    from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

    model = CLIPModel.from_pretrained(path).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    processor = AutoImageProcessor.from_pretrained(path)
    max_tokens = model.config.text_config.max_position_embeddings

    def embed_texts(texts: list[str]) -> torch.Tensor:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
        return model.get_text_features(**enc.to(device)).pooler_output  # (T, D)

    def embed_images(crops: list[Image.Image]) -> torch.Tensor:
        pixels = processor(images=crops, return_tensors="pt")["pixel_values"].to(device)  # (N, 3, S, S)
        return model.get_image_features(pixel_values=pixels).pooler_output  # (N, D)

    return ColourClassifier(embed_texts, embed_images, device=device, amp=amp, batch_size=batch_size)

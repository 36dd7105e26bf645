"""The paper's CLIP-based aesthetic scorers in the main environment, through transformers' ``CLIPModel``
(paper-spec section 6):

- PickScore (``yuvalkirstain/PickScore_v1``, a CLIP-H): ``logit_scale.exp()`` x the cosine of the image and prompt
  embeddings; images as CLIP preprocesses them (shorter side 224, bicubic, centre crop), prompts padded and cut to
  77 tokens, as its model card scores them.
- LAION Aesthetics v2 (``sac+logos+ava1-l14-linearMSE.pth``): an MLP without activations, 768-1024-128-64-16-1, on
  the L2-normalised image embedding of OpenAI CLIP ViT-L/14. Its state dict's keys are those of the reference code
  (christophschuhmann/improved-aesthetic-predictor, ``simple_inference.py``): ``layers.{0,2,4,6,7}.{weight,bias}``
  of an ``nn.Sequential`` whose odd places hold its dropouts.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from imagenet_t2i.evaluation.fid.feature_nets import clip_pixels

MAX_TOKENS = 77


class AestheticMLP(nn.Module):
    """The LAION Aesthetics v2 head: (N, D) normalised CLIP image embeddings -> (N,) scores."""

    def __init__(self, dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Linear(dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
                                    nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, D) -> (N,)
        return self.layers(x)[:, 0]


def load_aesthetic_mlp(path: str | os.PathLike) -> AestheticMLP:
    """The head from its ``.pth`` state dict (the reference code's keys; the input width read from it)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    mlp = AestheticMLP(state["layers.0.weight"].shape[1])
    mlp.load_state_dict(state)
    return mlp.eval()


def _unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def image_embeds(clip: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Projected CLIP image embeddings (N, P) of uint8 images (N, 3, H, W) (``get_image_features`` of older
    transformers, spelled out: newer versions return the model output there)."""
    pixels = clip_pixels(images, clip.config.vision_config.image_size)  # (N, 3, S, S)
    return clip.visual_projection(clip.vision_model(pixel_values=pixels).pooler_output)


@torch.no_grad()
def laion_aesthetics(clip_dir: str | os.PathLike, mlp_path: str | os.PathLike, images: torch.Tensor) -> list[float]:
    """LAION Aesthetics v2 scores of uint8 images (N, 3, H, W) (module docstring)."""
    from transformers import CLIPModel

    clip = CLIPModel.from_pretrained(clip_dir).eval()
    return load_aesthetic_mlp(mlp_path)(_unit(image_embeds(clip, images))).tolist()


@torch.no_grad()
def pickscore(model_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike, images: torch.Tensor,
              prompts: list[str]) -> list[float]:
    """PickScore of each uint8 image (N, 3, H, W) for its prompt (module docstring)."""
    from transformers import AutoTokenizer, CLIPModel

    if len(prompts) != len(images):
        raise ValueError(f"PickScore: {len(images)} images but {len(prompts)} prompts")
    model = CLIPModel.from_pretrained(model_dir).eval()
    tokens = AutoTokenizer.from_pretrained(tokenizer_dir)(prompts, padding="max_length", truncation=True,
                                                           max_length=MAX_TOKENS, return_tensors="pt")
    image = _unit(image_embeds(model, images))  # (N, P)
    text_out = model.text_model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
    text = _unit(model.text_projection(text_out.pooler_output))  # (N, P)
    return (model.logit_scale.exp() * (image * text).sum(-1)).tolist()

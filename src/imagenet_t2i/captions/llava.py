"""TA captions from LLaVA-NeXT (paper: ``llava-hf/llama3-llava-next-8b-hf``) through Hugging Face ``generate``.

As the paper's captioning script: user turn "Describe this image" with the image, through the model's chat
template with the generation prompt; ``max_new_tokens=200``; the model's own generation config (greedy for
the paper's model); the FULL sequence (prompt + generation) decoded with ``skip_special_tokens=True`` and
cleaned by :func:`clean_vlm_caption`. Unlike the script, a batch is padded on the LEFT, so an image's caption
does not depend on the other images of its batch (their sizes change the number of image tokens).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import transformers
from PIL import Image
from transformers import AutoProcessor, GenerationConfig, LlavaNextForConditionalGeneration

from imagenet_t2i.captions.vlm import clean_vlm_caption

ImageInput = np.ndarray | Image.Image


def to_rgb_image(image: ImageInput) -> Image.Image:
    """An RGB PIL image from an (H, W, 3) / (H, W) uint8 array or any PIL image (``convert("RGB")``, as the
    paper's script does: grayscale, palette and CMYK images become RGB)."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] in (1, 3))):
        raise ValueError(f"expected an (H, W, 3) or (H, W) uint8 image, got {arr.dtype} {arr.shape}; "
                         "give images with another layout (RGBA, CMYK) as PIL images")
    return Image.fromarray(arr.squeeze(2) if arr.ndim == 3 and arr.shape[2] == 1 else arr).convert("RGB")


def chat_prompt(processor: Any, prompt: str) -> str:
    """The prompt text of one image and ``prompt`` through the processor's chat template (generation prompt on)."""
    conversation = [{"role": "user", "content": [{"type": "text", "text": prompt}, {"type": "image"}]}]
    return processor.apply_chat_template(conversation, add_generation_prompt=True)


def check_greedy(config: GenerationConfig) -> None:
    """Refuse generation configs that sample or beam-search: captions must be reproducible and batch-free."""
    if config.do_sample or (config.num_beams or 1) > 1:
        raise ValueError(f"generation config samples or beam-searches (do_sample={config.do_sample}, "
                         f"num_beams={config.num_beams}); the captioners support greedy decoding only, "
                         "as the paper's model's default config does")


class LlavaNextCaptioner:
    """LLaVA-NeXT captions for RGB images, ``batch_size`` images a ``generate`` call."""

    def __init__(self, model_path: str, prompt: str = "Describe this image", max_new_tokens: int = 200,
                 batch_size: int = 8, device: str | None = None, dtype: str | None = None) -> None:
        self.model_path, self.prompt = str(model_path), prompt
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.dtype = dtype or ("bfloat16" if self.device.startswith("cuda") else "float32")
        self.processor = AutoProcessor.from_pretrained(self.model_path)
        self.processor.tokenizer.padding_side = "left"
        self.model = LlavaNextForConditionalGeneration.from_pretrained(
            self.model_path, dtype=getattr(torch, self.dtype)).to(self.device).eval()
        check_greedy(self.model.generation_config)
        self.prompt_text = chat_prompt(self.processor, prompt)

    @torch.inference_mode()
    def raw_generations(self, images: Sequence[ImageInput]) -> list[str]:
        """Decoded full sequences (prompt + generation, special tokens skipped), one per image, in order."""
        out: list[str] = []
        for start in range(0, len(images), self.batch_size):
            batch = [to_rgb_image(im) for im in images[start:start + self.batch_size]]
            inputs = self.processor(images=batch, text=[self.prompt_text] * len(batch), padding=True,
                                    return_tensors="pt").to(self.device)
            inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)  # (B, tiles, 3, H, W)
            ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens)  # (B, L + new)
            out += self.processor.batch_decode(ids, skip_special_tokens=True)
        return out

    def caption_images(self, images: Sequence[ImageInput]) -> list[str]:
        """Cleaned captions, one per image, in order; ``""`` where the generation left no text at all."""
        return [clean_vlm_caption(raw) for raw in self.raw_generations(images)]

    def describe(self) -> dict:
        """JSON-able identity of the captions: model, prompt (and its templated text), decoding, precision."""
        return {"backend": "llava", "model_path": self.model_path, "prompt": self.prompt,
                "prompt_text": self.prompt_text, "max_new_tokens": self.max_new_tokens,
                "batch_size": self.batch_size, "padding_side": "left", "dtype": self.dtype, "device": self.device,
                "generation_config": self.model.generation_config.to_diff_dict(),
                "image_processor": type(self.processor.image_processor).__name__,
                "transformers_version": transformers.__version__}

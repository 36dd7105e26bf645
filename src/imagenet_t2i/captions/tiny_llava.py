"""A tiny random-init LLaVA-NeXT folder, built offline, that loads like ``llava-hf/llama3-llava-next-8b-hf``.

Same classes and file layout as the real model (``LlavaNextForConditionalGeneration``, ``LlavaNextProcessor``
with the real LLaVA-NeXT image processor, a fast byte-level BPE tokenizer with Llama-3 special tokens, a
Llama-3-style chat template, a generation config like the real one), at a size that generates on a CPU in
milliseconds: CLIP vision tower on 32-pixel tiles of 8-pixel patches, a 2-layer Llama text model.
"""
from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (CLIPVisionConfig, GenerationConfig, LlamaConfig, LlavaNextConfig,
                          LlavaNextForConditionalGeneration, LlavaNextImageProcessor, LlavaNextProcessor,
                          PreTrainedTokenizerFast)

from imagenet_t2i.io import staged_folder

BOS, EOS, EOT = "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>"
HEADER_START, HEADER_END, IMAGE, PAD = "<|start_header_id|>", "<|end_header_id|>", "<image>", "<pad>"
SPECIAL_TOKENS = [BOS, EOS, HEADER_START, HEADER_END, EOT, IMAGE, PAD]
TILE, PATCH = 32, 8  # vision tower input size and patch size (pixels)
GRID_PINPOINTS = [[32, 64], [64, 32], [64, 64]]  # the real model's [[336, 672], ...] scaled down

# Llama-3 layout: one header per turn, images before the text, text trimmed and closed by <|eot_id|>;
# the generation prompt is the assistant header. BOS comes from the tokenizer (as Llama-3's does).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% if message['content'] is string %}{{ message['content'] | trim }}{% else %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for part in message['content'] | selectattr('type', 'equalto', 'text') %}{{ part['text'] | trim }}{% endfor %}"
    "{% endif %}{{ '<|eot_id|>' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CORPUS = [
    "The image shows a small red circle on a blue background.",
    "In the center of the picture there is a large green square next to a yellow triangle.",
    "This is a photograph of a dog sitting on the grass in a park, with trees in the distance.",
    "A cat is lying on a wooden table near a window; the light is soft and warm.",
    "The scene depicts a busy street with cars, people walking, and tall buildings.",
    "Describe this image. The user asks the assistant for a detailed description.",
    "There are two objects: one is above the other, and both are close together.",
    "The background is white and the object in the lower right corner is purple.",
]


def build_tokenizer(vocab_size: int = 512) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``CORPUS`` with Llama-3 special tokens; BOS is prepended to every text."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOT, pad_token=PAD,
                                   extra_special_tokens={"image_token": IMAGE}, padding_side="left",
                                   clean_up_tokenization_spaces=False, model_max_length=4096)


def build_config(tokenizer: PreTrainedTokenizerFast) -> LlavaNextConfig:
    """Tiny LLaVA-NeXT: CLIP ViT (32 px, patch 8, 2 layers) + Llama (width 64, 2 layers, GQA 4/2 heads)."""
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vision = CLIPVisionConfig(image_size=TILE, patch_size=PATCH, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2, projection_dim=32)
    # initializer_range 10x Llama's: peaked logits put greedy picks far from ties (median top-2 logit gap 0.4
    # instead of 0.04), so numerical noise (batch size, padding) cannot flip the random model's choices.
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                       rope_theta=500000.0, rms_norm_eps=1e-5, bos_token_id=ids[BOS], eos_token_id=ids[EOT],
                       pad_token_id=ids[PAD], initializer_range=0.2)
    return LlavaNextConfig(vision_config=vision, text_config=text, image_token_index=ids[IMAGE],
                           image_grid_pinpoints=GRID_PINPOINTS, vision_feature_layer=-2,
                           vision_feature_select_strategy="default", projector_hidden_act="gelu",
                           tie_word_embeddings=False, image_seq_length=(TILE // PATCH) ** 2)


def build_processor(tokenizer: PreTrainedTokenizerFast) -> LlavaNextProcessor:
    """The real LLaVA-NeXT processor (anyres tiling at ``GRID_PINPOINTS``) around the tiny tokenizer."""
    # Without torchvision this class falls back to its PIL twin; the saved type stays LlavaNextImageProcessor.
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": TILE}, crop_size={"height": TILE, "width": TILE},
                                              image_grid_pinpoints=GRID_PINPOINTS, do_pad=True)
    return LlavaNextProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=PATCH,
                              vision_feature_select_strategy="default", num_additional_image_tokens=1,
                              chat_template=CHAT_TEMPLATE)


def save_tiny_llava_next(out_dir: str | Path, seed: int = 0) -> None:
    """Write a random-init tiny LLaVA-NeXT (weights ``seed``), its processor and generation config to ``out_dir``.

    The generation config mirrors the real model's (only BOS and EOS = ``<|eot_id|>``), so ``generate``
    runs its defaults: greedy decoding. The folder appears all at once (staged, then renamed).
    """
    tokenizer = build_tokenizer()
    config = build_config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlavaNextForConditionalGeneration(config).eval()
    model.generation_config = GenerationConfig(bos_token_id=config.text_config.bos_token_id,
                                               eos_token_id=config.text_config.eos_token_id)
    with staged_folder(out_dir) as tmp:
        model.save_pretrained(tmp)
        build_processor(tokenizer).save_pretrained(tmp)

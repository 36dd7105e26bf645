"""Random-init model folders that the portable GenEval perception loads offline, as it loads the real ones.

`save_tiny_mask2former`: a Mask2Former (Swin backbone) COCO instance-segmentation layout at tiny widths,
80 classes labelled as COCO spells them (``mouse``, ``remote``, ``keyboard``: the checkpoint's
convention), with its image processor. `save_tiny_clip`: a tiny CLIP with a byte-level BPE tokenizer
trained offline (``tokenizers``) on the colour prompts, in CLIP's layout (``</w>`` word ends,
``<|startoftext|>`` / ``<|endoftext|>``), and a CLIP image processor.
"""
from __future__ import annotations

import json
import os

import torch

from imagenet_t2i.evaluation.geneval.official import COCO_SPELLINGS, COLORS, OBJECT_NAMES, colour_prompts, read_names
from imagenet_t2i.io import staged_folder

BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def save_tiny_mask2former(out_dir: str | os.PathLike, seed: int = 0, num_queries: int = 10) -> None:
    """Write a random-init tiny Mask2Former (80 COCO classes) and its image processor to ``out_dir``."""
    from transformers import (Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor,
                              SwinConfig)

    labels = [COCO_SPELLINGS.get(n, n) for n in read_names(OBJECT_NAMES)]
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=8, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig(backbone_config=backbone, feature_size=32, mask_feature_size=32, hidden_dim=32,
                               encoder_feedforward_dim=32, encoder_layers=1, decoder_layers=2, num_attention_heads=2,
                               dim_feedforward=32, num_queries=num_queries,
                               id2label=dict(enumerate(labels)), label2id={n: i for i, n in enumerate(labels)})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Mask2FormerForUniversalSegmentation(config).eval()
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}, num_labels=len(labels))
    with staged_folder(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)


def build_clip_tokenizer(vocab_size: int = 400):
    """A ``CLIPTokenizer``: BPE trained on every colour prompt of the 80 classes, plus every byte-level
    character (alone and word-final) so no text is unknown."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    layout = CLIPTokenizer().backend_tokenizer  # CLIP's normaliser and pre-tokeniser
    bpe = Tokenizer(models.BPE(continuing_subword_prefix="", end_of_word_suffix="</w>", unk_token=EOS))
    bpe.normalizer, bpe.pre_tokenizer = layout.normalizer, layout.pre_tokenizer
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[BOS, EOS], end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator([p for cls in read_names(OBJECT_NAMES) for p in colour_prompts(cls)] + list(COLORS),
                            trainer=trainer)
    model = json.loads(bpe.to_str())["model"]
    vocab = dict(model["vocab"])
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        for piece in (ch, ch + "</w>"):
            vocab.setdefault(piece, len(vocab))
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def save_tiny_clip(out_dir: str | os.PathLike, seed: int = 0) -> None:
    """Write a random-init tiny CLIP (32 px, patch 8), its tokenizer and image processor to ``out_dir``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPVisionConfig

    tokenizer = build_clip_tokenizer()
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                              num_attention_heads=2)
    config = CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config).eval()
    processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    with staged_folder(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        processor.save_pretrained(tmp)

"""Random-init encoder folders that the paper backends load offline, exactly as they load the real weights.

`save_tiny_autoencoder_kl`: a diffusers ``AutoencoderKL`` with the SD KL-f8 layout (4 blocks, 8x downsampling,
4 latent channels, scaling factor 0.18215) at tiny widths, for ``SDVAE(out_dir)``.
`save_tiny_t5`: a tiny gated-gelu T5 encoder (the flan-t5 layout) and a Unigram tokenizer built from an in-code
corpus (``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, ``</s>`` appended to every text), for ``T5Encoder(out_dir)``.
`save_autoencoder_kl` / `save_t5` write any config (the encode benchmark uses them at paper size).
"""
from __future__ import annotations

import collections
import math
import os
import string
from typing import Any

import torch

from imagenet_t2i.io import staged_folder

TINY_AUTOENCODER_KL: dict[str, Any] = {
    "block_out_channels": [8, 16, 32, 32], "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4, "layers_per_block": 1, "norm_num_groups": 8,
    "latent_channels": 4, "sample_size": 256, "scaling_factor": 0.18215,
}
TINY_T5: dict[str, Any] = {
    "d_model": 32, "d_kv": 8, "num_heads": 4, "num_layers": 2, "d_ff": 64, "feed_forward_proj": "gated-gelu",
    "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "dropout_rate": 0.0,
    "tie_word_embeddings": False,
}
# The in-code corpus: caption-like sentences, in the style of the LLaVA captions and the AIO template.
_CORPUS = """An image of a red circle in the lower left of the image. A photo of a dog sitting on the grass.
The image shows a small green triangle next to a large blue square on a plain white background.
In this picture, there is a woman wearing a black coat and holding a cup of coffee in her hand.
The scene is set outdoors, with trees and a house in the background and a car parked on the road.
A close-up view of a bird with brown and white feathers perched on a branch. The sky is clear and bright.
Two children are playing with a yellow ball near a wall, and a man is standing behind them.
The fish is swimming in the water, surrounded by rocks and green plants. The lighting is soft and natural.
A boat floats on the lake under a gray sky. There are people on the boat, and the water is calm.
The image captures a horse running across a field of orange flowers, its mane flowing in the wind."""


def build_t5_tokenizer():
    """A T5 tokenizer (Unigram over metaspace-split words, ``</s>`` appended) built offline from `_CORPUS`.

    Pieces: ``<pad>``, ``</s>``, ``<unk>``, every corpus word as one ``▁word`` piece (log of its corpus
    frequency), ``▁`` and the printable ASCII characters (rare, so unseen words are spelled out).
    """
    from transformers import T5Tokenizer

    words = collections.Counter(w.strip(string.punctuation) for w in _CORPUS.split())
    words.pop("", None)
    total = sum(words.values())
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    pieces += [(f"▁{w}", math.log(n / total)) for w, n in sorted(words.items(), key=lambda wn: (-wn[1], wn[0]))]
    rare = math.log(0.5 / total)
    pieces += [(c, rare) for c in "▁" + string.ascii_letters + string.digits + string.punctuation]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


def save_autoencoder_kl(out_dir: str | os.PathLike, config: dict[str, Any], seed: int = 0) -> None:
    """Write a random-init diffusers ``AutoencoderKL`` built from ``config`` to ``out_dir`` (one rename)."""
    from diffusers import AutoencoderKL

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = AutoencoderKL(**config)
    with staged_folder(out_dir) as tmp:
        vae.save_pretrained(tmp)


def save_t5(out_dir: str | os.PathLike, config: dict[str, Any], seed: int = 0,
            dtype: torch.dtype = torch.float32) -> None:
    """Write a random-init ``T5EncoderModel`` (``config`` + the tokenizer's special ids) and `build_t5_tokenizer`."""
    from transformers import T5Config, T5EncoderModel

    tokenizer = build_t5_tokenizer()
    vocab = max(int(config.get("vocab_size", 0)), -(-len(tokenizer) // 8) * 8)
    cfg = T5Config(**{**config, "vocab_size": vocab}, pad_token_id=tokenizer.pad_token_id,
                   eos_token_id=tokenizer.eos_token_id, decoder_start_token_id=tokenizer.pad_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = T5EncoderModel(cfg).to(dtype)
    with staged_folder(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def save_tiny_autoencoder_kl(out_dir: str | os.PathLike, seed: int = 0) -> None:
    """A tiny SD-layout VAE (256 px -> 4 x 32 x 32) that ``SDVAE(out_dir)`` loads offline."""
    save_autoencoder_kl(out_dir, TINY_AUTOENCODER_KL, seed)


def save_tiny_t5(out_dir: str | os.PathLike, seed: int = 0) -> None:
    """A tiny flan-t5-layout encoder (d_model 32) with its tokenizer, that ``T5Encoder(out_dir)`` loads offline."""
    save_t5(out_dir, TINY_T5, seed)

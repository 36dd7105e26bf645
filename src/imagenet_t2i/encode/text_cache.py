"""Prompt-embedding cache: every evaluation prompt encoded once, so sampling jobs never load the text encoder.

One safetensors file: each distinct text's unpadded (L_i, D) float16 embedding under the sha256 of the text;
metadata ``encoder`` (the encoder's ``describe()``, JSON) and ``texts`` (key -> text, JSON). Reading it
imports neither torch nor transformers.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save
from tqdm import tqdm

from ..io import atomic_write, read_jsonl

if TYPE_CHECKING:
    from .text import TextEncoder


def text_key(text: str) -> str:
    """The tensor name of a text's embedding."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_texts(path: str | os.PathLike, captions_limit: int | None = None) -> list[str]:
    """The ``prompt`` of every row of a prompts JSONL (GenEval, DPG), or the ``caption`` of the first
    ``captions_limit`` rows of a captions JSONL (FD samples only those)."""
    rows = read_jsonl(path)
    if rows and "prompt" in rows[0]:
        return [row["prompt"] for row in rows]
    if rows and "caption" in rows[0]:
        return [row["caption"] for row in rows[:captions_limit]]
    raise ValueError(f"{path}: expected JSONL rows with a 'prompt' (GenEval, DPG) or 'caption' (captions) field")


def write_text_cache(encoder: TextEncoder, texts: list[str], path: str | os.PathLike, batch_size: int = 256,
                     progress: bool = True) -> int:
    """Encode the distinct ``texts`` and write them to one safetensors file, atomically. -> number stored."""
    unique = list(dict.fromkeys(texts))
    tensors: dict[str, np.ndarray] = {}
    for start in tqdm(range(0, len(unique), batch_size), desc="embed", unit="batch", disable=not progress):
        chunk = unique[start : start + batch_size]
        for text, emb in zip(chunk, encoder.encode(chunk)):
            tensors[text_key(text)] = np.ascontiguousarray(emb, dtype=np.float16)  # (L_i, D)
    metadata = {"encoder": json.dumps(encoder.describe(), sort_keys=True),
                "texts": json.dumps({text_key(t): t for t in unique})}
    with atomic_write(path, "wb") as f:
        f.write(save(tensors, metadata=metadata))
    return len(unique)


class TextEmbeddingCache:
    """A `TextEncoder` that reads the embeddings `write_text_cache` stored (lazily, memory-mapped)."""

    def __init__(self, path: str | os.PathLike, expect: dict[str, Any] | None = None):
        """``expect``: encoder settings (config ``encode.text``) the stored ``describe()`` must agree with."""
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no prompt-embedding cache; build it with `imagenet-t2i embed` "
                                    "(snakemake rule prompt_embeddings)")
        self._file = safe_open(str(self.path), framework="numpy")
        self._encoder = json.loads(self._file.metadata()["encoder"])
        wrong = [f"{k}: expected {v!r}, cache {self._encoder[k]!r}" for k, v in (expect or {}).items()
                 if k in self._encoder and self._encoder[k] != v]
        if wrong:
            raise ValueError(f"{self.path} was built with another text encoder ({'; '.join(wrong)}); rebuild it "
                             "with this config (snakemake rule prompt_embeddings, or imagenet-t2i embed)")
        self._keys = set(self._file.keys())
        self.dim = int(self._encoder["dim"])
        self.max_tokens = int(self._encoder["max_tokens"])

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        keys = {t: text_key(t) for t in dict.fromkeys(texts)}
        missing = [t for t, k in keys.items() if k not in self._keys]
        if missing:
            first = missing[0] if len(missing[0]) <= 80 else missing[0][:77] + "..."
            raise LookupError(f"{self.path} holds no embedding of {first!r} ({len(missing)} of {len(keys)} texts "
                              "missing); rebuild it from the prompt files you sample (snakemake rule "
                              "prompt_embeddings, or imagenet-t2i embed --texts-from ...)")
        embs = {t: self._file.get_tensor(k) for t, k in keys.items()}
        return [embs[t] for t in texts]

    def describe(self) -> dict[str, Any]:
        return {**self._encoder, "cache": str(self.path)}

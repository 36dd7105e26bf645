"""Prompt-embedding cache: every evaluation prompt encoded once, so sampling jobs never load the text encoder.

One safetensors file: each distinct text's unpadded (L_i, D) float16 embedding under the sha256 of the text;
metadata ``encoder`` (the encoder's ``describe()``, JSON) and ``texts`` (key -> text, JSON). Reading it
imports neither torch nor transformers. It is written streaming (`write_text_cache`): the header first, from
the token counts, then each batch's embeddings at their offsets, so memory holds one batch, never the file.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import safe_open
from tqdm import tqdm

from imagenet_t2i.io import atomic_write, read_jsonl

if TYPE_CHECKING:
    from imagenet_t2i.encode.text import TextEncoder


def text_key(text: str) -> str:
    """The tensor name of a text's embedding."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_texts(path: str | os.PathLike, captions_limit: int | None = None) -> list[str]:
    """The ``prompt`` of every row of a prompts JSONL (GenEval, DPG), or the ``caption`` of the first
    ``captions_limit`` captions of a captions JSONL (FD samples only those; images dropped for an empty caption,
    ``"caption": null``, do not count)."""
    rows = read_jsonl(path)
    if rows and "prompt" in rows[0]:
        return [row["prompt"] for row in rows]
    if rows and "caption" in rows[0]:
        return [row["caption"] for row in rows if row["caption"] is not None][:captions_limit]
    raise ValueError(f"{path}: expected JSONL rows with a 'prompt' (GenEval, DPG) or 'caption' (captions) field")


def safetensors_header(shapes: dict[str, tuple[int, ...]], metadata: dict[str, str]) -> tuple[bytes, dict[str, int]]:
    """The header of a safetensors file of float16 tensors with these shapes, laid out as safetensors lays
    them out (by name, back to back). -> (the bytes before the data, each tensor's byte offset in the data)."""
    header: dict[str, Any] = {"__metadata__": metadata}
    offsets, end = {}, 0
    for name in sorted(shapes):
        size = 2 * int(np.prod(shapes[name], dtype=np.int64))
        offsets[name] = end
        header[name] = {"dtype": "F16", "shape": list(shapes[name]), "data_offsets": [end, end + size]}
        end += size
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned
    return struct.pack("<Q", len(text)) + text, offsets


def write_text_cache(encoder: TextEncoder, texts: list[str], path: str | os.PathLike, batch_size: int = 256,
                     progress: bool = True) -> int:
    """Encode the distinct ``texts`` into one safetensors file, written atomically. -> number stored.

    The texts are tokenized first (``encoder.token_counts``) to lay out the header, then encoded
    ``batch_size`` at a time, shortest first, each embedding written at its offset as soon as it exists.
    """
    unique = list(dict.fromkeys(texts))
    wrong = [t for t in unique if not isinstance(t, str)]
    if wrong:
        raise TypeError(f"write_text_cache: every text must be a str, got {wrong[0]!r} ({type(wrong[0]).__name__})")
    keys = [text_key(t) for t in unique]
    counts = encoder.token_counts(unique)
    metadata = {"encoder": json.dumps(encoder.describe(), sort_keys=True),
                "texts": json.dumps(dict(zip(keys, unique)))}
    head, offsets = safetensors_header({k: (n, encoder.dim) for k, n in zip(keys, counts)}, metadata)
    order = sorted(range(len(unique)), key=counts.__getitem__)  # similar lengths share a batch: less padding
    with atomic_write(path, "wb") as f:
        f.write(head)
        for start in tqdm(range(0, len(order), batch_size), desc="embed", unit="batch", disable=not progress):
            chunk = order[start : start + batch_size]
            for i, emb in zip(chunk, encoder.encode([unique[i] for i in chunk])):
                if emb.shape != (counts[i], encoder.dim):
                    raise ValueError(f"the text encoder returned {emb.shape} for a text it counted "
                                     f"{counts[i]} tokens of width {encoder.dim}: {unique[i][:80]!r}")
                f.seek(len(head) + offsets[keys[i]])
                f.write(np.ascontiguousarray(emb, dtype="<f2").data)  # (L_i, D) float16, little-endian
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
        self._keys_stored = set(self._file.keys())
        self.dim = int(self._encoder["dim"])
        self.max_tokens = int(self._encoder["max_tokens"])

    def _keys(self, texts: list[str]) -> dict[str, str]:
        """text -> tensor name of each distinct text; LookupError naming the first text the file lacks."""
        keys = {t: text_key(t) for t in dict.fromkeys(texts)}
        missing = [t for t, k in keys.items() if k not in self._keys_stored]
        if missing:
            first = missing[0] if len(missing[0]) <= 80 else missing[0][:77] + "..."
            raise LookupError(f"{self.path} holds no embedding of {first!r} ({len(missing)} of {len(keys)} texts "
                              "missing); rebuild it from the prompt files you sample (snakemake rule "
                              "prompt_embeddings, or imagenet-t2i embed --texts-from ...)")
        return keys

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        embs = {t: self._file.get_tensor(k) for t, k in self._keys(texts).items()}
        return [embs[t] for t in texts]

    def token_counts(self, texts: list[str]) -> list[int]:
        """The stored rows of each text's embedding (read from the header, no data)."""
        rows = {t: self._file.get_slice(k).get_shape()[0] for t, k in self._keys(texts).items()}
        return [rows[t] for t in texts]

    def describe(self) -> dict[str, Any]:
        return {**self._encoder, "cache": str(self.path)}

"""The captioner interface and the caption-file writer (docs/formats.md, Captions)."""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

from imagenet_t2i.io import write_jsonl


class Captioner(ABC):
    """Turns records (scene records or index rows, each with a ``key``) into captions."""

    name: str

    @abstractmethod
    def caption(self, records: Sequence[dict]) -> list[str]:
        """One caption per record, in order."""


def write_captions(records: Sequence[dict], captioner: Captioner, out_path: str | Path) -> int:
    """Caption ``records`` and write ``{"key", "caption"}`` JSONL atomically; return the count."""
    keys = [r.get("key") for r in records]
    missing = [i for i, k in enumerate(keys) if not isinstance(k, str) or not k]
    if missing:
        raise ValueError(f"{out_path}: records {missing[:5]} have no 'key'")
    seen: set[str] = set()
    dupes = [k for k in keys if k in seen or seen.add(k)]
    if dupes:
        raise ValueError(f"{out_path}: duplicate keys {sorted(set(dupes))[:5]}")
    captions = captioner.caption(records)
    if len(captions) != len(records):
        raise RuntimeError(
            f"captioner {captioner.name!r} returned {len(captions)} captions for {len(records)} records"
        )
    empty = [k for k, c in zip(keys, captions) if not c.strip()]
    if empty:
        raise RuntimeError(f"captioner {captioner.name!r} returned empty captions for {empty[:5]}")
    write_jsonl(out_path, ({"key": k, "caption": c} for k, c in zip(keys, captions)))
    return len(captions)

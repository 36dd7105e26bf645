"""The build record (``build.json``) of an augmented set or part, and when a folder counts as complete."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from imagenet_t2i.io import read_json, read_jsonl

INDEX = "index.jsonl"  # written last: its presence marks a complete set or part
RECORD = "build.json"


def fingerprint(settings: dict) -> str:
    """sha256 of the settings (source hashes, set, pattern or scale, seed, image format, size)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def complete_record(folder: Path, images: bool = True) -> dict | None:
    """The folder's build record if it is complete: index and record present and (``images``) every
    listed image there (one stat each; a merge skips it, its links fail on a missing image anyway)."""
    if not (folder / INDEX).is_file() or not (folder / RECORD).is_file():
        return None
    if images and not all((folder / row["path"]).is_file() for row in read_jsonl(folder / INDEX)):
        return None
    return read_json(folder / RECORD)

"""An image + caption folder as a source split (T-AES's fine-tune set at paper scale: LAION-POP, or any folder).

The folder holds ``captions.jsonl``, one row per image: ``{"path": <image path, relative to the folder>, "caption":
<text>}``. Its index (``index.jsonl``: key ``aes_<row>``, the image's absolute path, no class) and its captions in the
caption stage's format (``captions_ta.jsonl``: key, caption) are written to the split folder; the images stay where
they are.
"""
from __future__ import annotations

import os
from pathlib import Path

from imagenet_t2i.io import read_jsonl, write_jsonl

CAPTIONS = "captions.jsonl"
SPLIT_CAPTIONS = "captions_ta.jsonl"  # in the split folder: what the shard stage reads


def index_caption_folder(folder: str | os.PathLike, out_dir: str | os.PathLike) -> int:
    """Index ``folder`` (module docstring) into ``out_dir``; the number of images. A row without a caption or an
    image that does not exist is an error naming the row."""
    folder, out_dir = Path(folder), Path(out_dir)
    rows = read_jsonl(folder / CAPTIONS)
    if not rows:
        raise ValueError(f"{folder / CAPTIONS}: no rows; write one {{\"path\", \"caption\"}} row per image")
    index, captions = [], []
    for i, row in enumerate(rows):
        path = folder / str(row.get("path", ""))
        if not row.get("caption") or not path.is_file():
            raise ValueError(f"{folder / CAPTIONS} row {i}: needs a caption and an existing image ({path})")
        key = f"aes_{i:07d}"
        index.append({"key": key, "class": "", "path": str(path.resolve())})
        captions.append({"key": key, "caption": row["caption"]})
    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / SPLIT_CAPTIONS, captions)
    write_jsonl(out_dir / "index.jsonl", index)  # last: its presence marks a complete split
    return len(index)

"""The tiny world's "aesthetic" images (T-AES; our choice, docs/aesthetic.md): a warm beige background.

The paper fine-tunes on LAION-POP, photos picked for their looks. The world has no looks, so it names a property of
its scene records instead: the background is `AESTHETIC_BACKGROUND`, a quarter of the training images. A colour over
the whole frame is what the tiny models learn first (the colour probe), where a shape or a size is not (the issue of
a world that draws objects), so a fine-tune towards it can show. The fine-tune set is the training images that have
it, with their own TA captions; a tiny scorer learns the property from the training split
(`imagenet_t2i.evaluation.aesthetic.world_scorer`), so a fine-tuned model that draws it more often scores higher.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from imagenet_t2i.io import read_json, read_jsonl, staged_folder, write_json, write_jsonl

AESTHETIC_BACKGROUND = "beige"


def is_aesthetic(scene: dict) -> bool:
    """Whether a scene record has the world's aesthetic property (module docstring)."""
    return (scene.get("backgrounds") or [None])[0] == AESTHETIC_BACKGROUND


def aesthetic_split(base_dir: str | os.PathLike, out_dir: str | os.PathLike) -> int:
    """The images of the split ``base_dir`` with the property, hard-linked into ``out_dir`` with their index rows,
    scene records and the class list (the source-split layout); the number of images."""
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    scenes = {s["key"]: s for s in read_jsonl(base_dir / "scenes.jsonl")}
    rows = [r for r in read_jsonl(base_dir / "index.jsonl") if is_aesthetic(scenes[r["key"]])]
    if not rows:
        raise ValueError(f"{base_dir}: no image has the aesthetic property (a {AESTHETIC_BACKGROUND} background)")
    with staged_folder(out_dir / "images") as tmp:
        for row in rows:
            target = tmp / Path(row["path"]).relative_to("images")
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(base_dir / row["path"], target)
            except OSError:  # another file system
                shutil.copy2(base_dir / row["path"], target)
    write_jsonl(out_dir / "scenes.jsonl", [scenes[r["key"]] for r in rows])
    write_json(out_dir / "classes.json", read_json(base_dir / "classes.json"))
    write_jsonl(out_dir / "index.jsonl", rows)  # last: its presence marks a complete split
    return len(rows)

"""A source split to augment: its index, optional scene records, and image loading that never fails."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from imagenet_t2i.augment.images import load_square_rgb
from imagenet_t2i.io import read_json, read_jsonl, sha256_file

PAPER_SIZE = 256  # side of ImageNet sources without scene records (resize 256 + center crop)


class SourceSplit:
    """Index columns (``keys``, ``classes``, ``paths``), scene records if any, and ``load``.

    Rows are held as three lists of strings, not dicts: every chunk of a paper-scale build holds all
    1.28M of them (CutMix partners come from the whole set).
    """

    def __init__(self, source_dir: str | Path, size: int | None, resize: str = "bicubic") -> None:
        self.dir, self.crop_first = Path(source_dir), resize == "official"
        index = self.dir / "index.jsonl"
        if not index.is_file():
            raise FileNotFoundError(f"{index} not found: build the source split first (it needs index.jsonl)")
        rows = read_jsonl(index)
        if not rows:
            raise ValueError(f"{index} is empty: nothing to augment")
        self.keys = [str(r.get("key", f"<row {i}>")) for i, r in enumerate(rows)]
        self.classes = [str(r.get("class")) for r in rows]
        self.paths = [str(r.get("path", "")) for r in rows]
        scenes_path = self.dir / "scenes.jsonl"
        self.scenes = {s["key"]: s for s in read_jsonl(scenes_path)} if scenes_path.is_file() else None
        classes_path = self.dir / "classes.json"
        self.class_names = read_json(classes_path) if classes_path.is_file() else None
        if size is None:
            size = next(iter(self.scenes.values()))["size"] if self.scenes else PAPER_SIZE
        self.size = int(size)
        self.unreadable: dict[int, str] = {}  # row -> error; a file that failed once is not read again

    def __len__(self) -> int:
        return len(self.keys)

    def hashes(self) -> dict[str, str | None]:
        """sha256 of ``index.jsonl`` and of ``scenes.jsonl`` (None without one): what the set is made from."""
        scenes = self.dir / "scenes.jsonl"
        return {"index_sha256": sha256_file(self.dir / "index.jsonl"),
                "scenes_sha256": sha256_file(scenes) if scenes.is_file() else None}

    def load(self, i: int) -> tuple[np.ndarray, dict] | None:
        """Image i as (R, R, 3) uint8 with its scene record; None if unusable (reason in ``unreadable[i]``)."""
        if i in self.unreadable:
            return None
        key, path = self.keys[i], self.dir / self.paths[i]
        try:
            if self.scenes is None:
                scene = {"key": key, "size": self.size, "source": "imagenet", "backgrounds": None,
                         "objects": None, "parents": [], "pattern": None}
                return load_square_rgb(path, self.size, crop_first=self.crop_first), scene
            if key not in self.scenes:
                raise KeyError(f"no record for {key!r} in {self.dir / 'scenes.jsonl'}")
            scene = self.scenes[key]
            img = load_square_rgb(path, scene["size"], exact=True)
            if scene["size"] != self.size:
                raise ValueError(f"scene size {scene['size']} differs from the set's size {self.size}")
            return img, scene
        except Exception as e:  # unreadable, truncated, wrong size, missing record: report, skip
            self.unreadable[i] = f"{type(e).__name__}: {e}"
            return None

    def original(self, i: int) -> np.ndarray:
        """Image i as stored, (H, W, 3) uint8 RGB (the Crop set cuts its window from it at paper scale)."""
        from PIL import Image

        with Image.open(self.dir / self.paths[i]) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)

    def skip_entry(self, i: int, error: str) -> dict:
        """A ``skipped.json`` entry for row i."""
        return {"key": self.keys[i], "path": str(self.dir / self.paths[i]), "error": error}

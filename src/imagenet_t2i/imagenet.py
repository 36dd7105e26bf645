"""The paper-scale source: an index of an ImageNet-1k folder (ILSVRC2012 layout), images left in place."""
from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from .io import write_json, write_jsonl

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png"}


def read_synset_mapping(path: str | Path) -> dict[str, str]:
    """``LOC_synset_mapping.txt`` lines "n01440764 tench, Tinca tinca" -> {wnid: names}."""
    mapping = {}
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            wnid, _, names = line.partition(" ")
            if not wnid.startswith("n") or not names:
                raise ValueError(f"{path}:{n}: expected '<wnid> <names>', got {line!r}")
            mapping[wnid] = names
    return mapping


def build_index(root: str | Path, split: str, synset_mapping: str | Path, out_dir: str | Path) -> int:
    """Write ``index.jsonl`` + ``classes.json`` for ``root/<split>/<wnid>/*`` (keys = file stems)."""
    classes = read_synset_mapping(synset_mapping)
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise FileNotFoundError(f"{split_dir} does not exist: source.root must hold {split}/<wnid>/ folders "
                                f"(ImageNet val must be sorted into class folders first)")
    rows = []
    for wnid_dir in tqdm(sorted(p for p in split_dir.iterdir() if p.is_dir()), desc=f"index {split}"):
        if wnid_dir.name not in classes:
            raise ValueError(f"{wnid_dir}: class folder not in {synset_mapping}")
        for img in sorted(wnid_dir.iterdir()):
            if img.suffix.lower() in IMAGE_SUFFIXES:
                rows.append({"key": img.stem, "class": wnid_dir.name, "path": str(img.resolve())})
    out_dir = Path(out_dir)
    write_jsonl(out_dir / "index.jsonl", rows)
    write_json(out_dir / "classes.json", classes)
    return len(rows)

"""Join the part folders of a chunked augmented-set build into the set one unchunked build writes."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from imagenet_t2i.augment.record import INDEX, RECORD, complete_record
from imagenet_t2i.io import atomic_write, read_json, read_jsonl, write_json


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src``: a hard link, or a copy across file systems."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _concat(parts: list[Path], name: str, out: Path) -> None:
    """``out`` = the parts' files ``name`` one after the other (JSONL lines stay as written)."""
    with atomic_write(out, "wb") as f:
        for part in parts:
            with open(part / name, "rb") as g:
                shutil.copyfileobj(g, f)


def _remove_unlisted(images: Path, listed: set[str]) -> None:
    """Delete files under ``images`` that the merged index does not list (left by an earlier merge)."""
    for folder, _, files in os.walk(images, topdown=False):
        for name in files:
            path = Path(folder) / name
            if path.relative_to(images.parent).as_posix() not in listed:
                path.unlink()
        if Path(folder) != images and not os.listdir(folder):
            os.rmdir(folder)


def merge_augmented(parts: list[str | Path], out_dir: str | Path) -> dict:
    """One augmented set from the part folders of chunks 0..n-1 of one build; returns its build record.

    Images are hard-linked with the same relative paths; ``index.jsonl``, ``scenes.jsonl``,
    ``skipped.json``, ``classes.json`` and ``build.json`` are those a ``chunk=(0, 1)`` build writes,
    ``index.jsonl`` last. Rerunning gives the same folder.
    """
    out_dir = Path(out_dir)
    folders = [Path(p) for p in parts]
    names = ", ".join(str(p) for p in folders)
    records = []
    for part in folders:
        if (rec := complete_record(part, images=False)) is None:
            raise ValueError(f"cannot merge into {out_dir}: part {part} is incomplete (no {INDEX} or {RECORD}); "
                             f"rerun its augment chunk job")
        records.append(rec)
    count = len(records)
    if sorted(r["chunk"][0] for r in records) != list(range(count)) or any(r["chunk"][1] != count for r in records):
        found = [f"{r['chunk'][0]}-of-{r['chunk'][1]}" for r in records]
        raise ValueError(f"cannot merge {names}: they are chunks {found}, not chunks 0..{count - 1} of {count} "
                         f"once each; pass every part folder of one build")
    if len({r["fingerprint"] for r in records}) != 1:
        settings = "; ".join(f"{p}: {r['settings']}" for p, r in zip(folders, records))
        raise ValueError(f"cannot merge {names}: they were built from different sources or settings ({settings}); "
                         f"rerun their augment chunk jobs with one source and config")
    order = sorted(range(count), key=lambda k: records[k]["chunk"][0])
    folders, records = [folders[k] for k in order], [records[k] for k in order]

    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / INDEX).unlink(missing_ok=True)  # incomplete until the end
    listed = set()
    for part in folders:
        for row in read_jsonl(part / INDEX):
            _link(part / row["path"], out_dir / row["path"])
            listed.add(row["path"])
    (out_dir / "images").mkdir(exist_ok=True)
    _remove_unlisted(out_dir / "images", listed)
    _concat(folders, "scenes.jsonl", out_dir / "scenes.jsonl")
    skipped = [s for part in folders for s in read_json(part / "skipped.json")]
    write_json(out_dir / "skipped.json", sorted(skipped, key=lambda s: s["key"]))
    if (folders[0] / "classes.json").is_file():
        write_json(out_dir / "classes.json", read_json(folders[0] / "classes.json"))
    else:
        (out_dir / "classes.json").unlink(missing_ok=True)
    record = {**records[0], "chunk": [0, 1], "rows": [0, records[-1]["rows"][1]],
              "written": sum(r["written"] for r in records), "skipped": sum(r["skipped"] for r in records)}
    write_json(out_dir / RECORD, record)
    _concat(folders, INDEX, out_dir / INDEX)  # last: its presence marks a complete set
    return record

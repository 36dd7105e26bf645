"""Captioning at scale: one chunk of an image set per job, written atomically, then merged into the caption file.

A chunk job writes ``<chunk>.jsonl`` (``{"key", "caption"}`` rows) and ``<chunk>.json`` (its summary:
settings fingerprint, counts, unreadable images, rate). Both appear only when the chunk is done, so a
failed or preempted chunk leaves nothing and is redone alone; a finished chunk is never recomputed.
`merge_caption_chunks` concatenates the chunks of one set, in order, into the set's caption file.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from tqdm import tqdm

from imagenet_t2i.chunks import chunk_range
from imagenet_t2i.io import atomic_write, read_json, write_json


class RecordCaptioner(Protocol):
    """Captions records; ``None`` marks a record that could not be captioned (reported in ``failures``)."""

    name: str
    failures: dict[str, dict]

    def caption(self, records: Sequence[dict]) -> list[str | None]:
        ...

    def describe(self) -> dict:
        ...


def summary_path(part: str | os.PathLike) -> Path:
    """``<chunk>.jsonl`` -> ``<chunk>.json``."""
    return Path(part).with_suffix(".json")


EMPTY = "empty caption"  # the ``dropped`` reason of an image whose caption came back empty


def fingerprint(index_sha256: str, kind: str, captioner: dict) -> str:
    """What a set's chunks must share to be merged: the image index, the caption kind, the captioner's settings."""
    blob = json.dumps({"index": index_sha256, "kind": kind, "captioner": captioner}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_caption_chunk(records: Sequence[dict], captioner: RecordCaptioner, out_path: str | os.PathLike,
                        chunk: tuple[int, int], fp: str, batch_size: int = 64, progress: bool = True) -> dict:
    """Caption records ``chunk_range(len(records), *chunk)`` into ``out_path`` + its summary; -> the summary."""
    out_path = Path(out_path)
    mine = [records[i] for i in chunk_range(len(records), *chunk)]
    name = f"{chunk[0]:04d}-of-{chunk[1]:04d}"
    t0, written, empty = time.time(), 0, []
    bar = tqdm(total=len(mine), desc=f"captions {out_path.parent.name} {name}", unit="img", disable=not progress,
               mininterval=1.0 if sys.stderr.isatty() else 60.0)  # a line a minute in a cluster log
    with atomic_write(out_path) as f:
        for start in range(0, len(mine), batch_size):
            batch = mine[start : start + batch_size]
            for rec, caption in zip(batch, captioner.caption(batch), strict=True):
                if caption is None:
                    continue
                if not caption.strip(" ."):  # dropped from the set, never trained as an unconditional sample
                    empty.append(rec["key"])
                    f.write(json.dumps({"key": rec["key"], "caption": None, "dropped": EMPTY}) + "\n")
                    continue
                f.write(json.dumps({"key": rec["key"], "caption": caption}) + "\n")
                written += 1
            bar.update(len(batch))
    bar.close()
    wall = time.time() - t0
    summary = {"chunk": list(chunk), "fingerprint": fp, "records": len(mine), "written": written,
               "failed": sorted(captioner.failures.values(), key=lambda r: r["key"]), "empty": empty,
               "captioner": captioner.describe(), "wall_s": round(wall, 3),
               "images_per_s": round(len(mine) / wall, 3) if wall > 0 else None}
    write_json(summary_path(out_path), summary)
    print(f"{out_path}: {written} captions, {len(summary['failed'])} unreadable, {len(empty)} empty (dropped), "
          f"{summary['images_per_s']} img/s", flush=True)
    return summary


def merge_caption_chunks(parts: Sequence[str | os.PathLike], out_path: str | os.PathLike) -> dict:
    """One caption file from every chunk of a set (in chunk order); -> the merged summary."""
    loaded = [(Path(p), read_json(summary_path(p))) for p in parts]
    count = len(loaded)
    if sorted(s["chunk"][0] for _, s in loaded) != list(range(count)) or any(s["chunk"][1] != count for _, s in loaded):
        raise ValueError(f"cannot merge {[str(p) for p, _ in loaded]}: they are not chunks 0..{count - 1} of {count}; "
                         "rerun the caption chunks")
    if len({s["fingerprint"] for _, s in loaded}) != 1:
        raise ValueError(f"the chunks of {out_path} were captioned from different images or settings; "
                         "rerun the caption chunks")
    loaded.sort(key=lambda ps: ps[1]["chunk"][0])
    seen: set[str] = set()
    with atomic_write(out_path) as f:
        for part, _ in loaded:
            with open(part) as src:
                for line in src:
                    key = json.loads(line)["key"]
                    if key in seen:
                        raise ValueError(f"{part}: key {key!r} is captioned twice; rerun the caption chunks")
                    seen.add(key)
                    f.write(line)
    return {"chunks": count, "written": sum(s["written"] for _, s in loaded),
            "fingerprint": loaded[0][1]["fingerprint"],
            "failed": [x for _, s in loaded for x in s["failed"]], "empty": [x for _, s in loaded for x in s["empty"]],
            "captioner": loaded[0][1]["captioner"],
            "wall_s": round(sum(s["wall_s"] for _, s in loaded), 3)}

"""The paper-scale DPG-Bench vocabulary: the 1,065 prompts shipped in ``data/prompts.jsonl`` (Apache-2.0) and a check
of the question file ``dpg_bench.csv`` that users download themselves, by its git blob id.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
DPG_PROMPTS = DATA / "prompts.jsonl"
DPG_N_PROMPTS = 1065
DPG_CSV_BLOB = "98457fc9901943f51ff9a30367250fc292533bed"
DPG_CSV_URL = "https://github.com/TencentQQGYLab/ELLA/blob/main/dpg_bench/dpg_bench.csv"


def dpg_prompts() -> list[dict]:
    """The 1,065 DPG-Bench prompts as ``{"item_id", "source", "prompt"}`` rows (prompt stripped), file order."""
    with open(DPG_PROMPTS) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    out = [{"item_id": r["item_id"], "source": r["source"], "prompt": r["prompt"].strip()} for r in rows]
    if len(out) != DPG_N_PROMPTS or len({r["item_id"] for r in out}) != DPG_N_PROMPTS:
        raise ValueError(f"{DPG_PROMPTS}: expected {DPG_N_PROMPTS} prompts with distinct item ids, got {len(out)}")
    return out


def git_blob_id(data: bytes) -> str:
    """Git's object id of a file's bytes: sha1 of ``b"blob <len>\\0" + data`` (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def check_dpg_csv(path: str | os.PathLike, expected: str = DPG_CSV_BLOB) -> str:
    """Check a user-supplied ``dpg_bench.csv`` against the official file's git blob id; return the id."""
    path = Path(path)
    where = (f"download it from the ELLA repository's dpg_bench folder ({DPG_CSV_URL}, 'Download raw file') "
             f"and give its path; its git blob id (`git hash-object dpg_bench.csv`) must be {expected}")
    if not path.is_file():
        raise FileNotFoundError(f"DPG-Bench question file {path} not found: {where}")
    blob = git_blob_id(path.read_bytes())
    if blob != expected:
        raise ValueError(f"{path} is not the official DPG-Bench question file (git blob id {blob}): {where}. "
                         "A file edited or re-saved (line endings, encoding) changes the id")
    return blob

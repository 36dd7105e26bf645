"""The paper-scale benchmark vocabulary: files shipped in ``evaluation/data`` and checks of downloaded ones.

GenEval: the 80 COCO names (``data/geneval/object_names.txt``, MIT) and the official prompt metadata,
regenerated from them by ``geneval_prompts.generate_prompts`` with seed 43 (byte-identical to the
official ``evaluation_metadata.jsonl``, sha256 ``GENEVAL_METADATA_SHA256``).
DPG-Bench: the 1,065 prompts (``data/dpg/prompts.jsonl``, Apache-2.0) and a check of the question file
``dpg_bench.csv`` that users download themselves, by its git blob id.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from imagenet_t2i.evaluation.geneval_prompts import generate_prompts, read_class_names

DATA = Path(__file__).resolve().parent / "data"
GENEVAL_OBJECT_NAMES = DATA / "geneval" / "object_names.txt"
GENEVAL_SEED = 43
GENEVAL_METADATA_SHA256 = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"
DPG_PROMPTS = DATA / "dpg" / "prompts.jsonl"
DPG_N_PROMPTS = 1065
DPG_CSV_BLOB = "98457fc9901943f51ff9a30367250fc292533bed"
DPG_CSV_URL = "https://github.com/TencentQQGYLab/ELLA/blob/main/dpg_bench/dpg_bench.csv"


def geneval_object_names() -> list[str]:
    """The 80 COCO names in detector index order (GenEval's ``object_names.txt``)."""
    names = read_class_names(GENEVAL_OBJECT_NAMES)
    if len(names) != 80 or len(set(names)) != 80:
        raise ValueError(f"{GENEVAL_OBJECT_NAMES}: expected 80 distinct names, got {len(names)}; reinstall the package")
    return names


def paper_geneval_prompts(seed: int = GENEVAL_SEED) -> list[dict]:
    """The official GenEval metadata rows (553 for seed 43): the generator over the 80 COCO names."""
    return generate_prompts(geneval_object_names(), seed=seed)


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

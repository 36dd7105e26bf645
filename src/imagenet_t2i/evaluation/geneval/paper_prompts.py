"""The paper-scale GenEval vocabulary: the 80 COCO names shipped in ``data/object_names.txt`` (MIT) and the official
prompt metadata, regenerated from them by `prompts.generate_prompts` with seed 43 (byte-identical to the official
``evaluation_metadata.jsonl``, sha256 ``GENEVAL_METADATA_SHA256``).
"""
from __future__ import annotations

from pathlib import Path

from imagenet_t2i.evaluation.geneval.prompts import generate_prompts, read_class_names

DATA = Path(__file__).resolve().parent / "data"
GENEVAL_OBJECT_NAMES = DATA / "object_names.txt"
GENEVAL_SEED = 43
GENEVAL_METADATA_SHA256 = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"


def geneval_object_names() -> list[str]:
    """The 80 COCO names in detector index order (GenEval's ``object_names.txt``)."""
    names = read_class_names(GENEVAL_OBJECT_NAMES)
    if len(names) != 80 or len(set(names)) != 80:
        raise ValueError(f"{GENEVAL_OBJECT_NAMES}: expected 80 distinct names, got {len(names)}; reinstall the package")
    return names


def paper_geneval_prompts(seed: int = GENEVAL_SEED) -> list[dict]:
    """The official GenEval metadata rows (553 for seed 43): the generator over the 80 COCO names."""
    return generate_prompts(geneval_object_names(), seed=seed)

"""What every command shares: its config (validated) and the provenance record of its output."""
from __future__ import annotations

import time

from imagenet_t2i.config import load_config


def config_of(paths: list[str]) -> dict:
    return load_config(*paths)


def provenance(stage: str, cfg: dict, inputs: dict, output: str, t0: float) -> None:
    from imagenet_t2i.provenance import make_record, write_record

    write_record(output, make_record(stage, cfg, inputs, [output], time.time() - t0))

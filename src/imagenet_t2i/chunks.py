"""Chunked stages: a large stage split into a config-given number of jobs, each redone alone when it fails.

The chunk count comes from the config (e.g. ``encode.chunks``), never from the data, so a dry run
plans every chunk job before any image exists. A chunk is named ``<index>-of-<count>`` (a Snakemake
wildcard) and covers one contiguous, balanced range of the stage's work items (shards, images, ...).
"""
from __future__ import annotations

import re

_NAME = re.compile(r"^(\d+)-of-(\d+)$")


def chunk_names(count: int) -> list[str]:
    """The chunk wildcards of a stage split ``count`` ways: ``0000-of-0004`` ... ``0003-of-0004``."""
    if count < 1:
        raise ValueError(f"a stage needs at least one chunk, got {count}")
    return [f"{i:04d}-of-{count:04d}" for i in range(count)]


def parse_chunk(name: str) -> tuple[int, int]:
    """``0003-of-0064`` -> (3, 64)."""
    m = _NAME.match(name)
    if not m or not 0 <= int(m.group(1)) < int(m.group(2)):
        raise ValueError(f"chunk {name!r} is not '<index>-of-<count>' with 0 <= index < count")
    return int(m.group(1)), int(m.group(2))


def chunk_range(num_items: int, index: int, count: int) -> range:
    """Items ``[index * n // count, (index + 1) * n // count)``: contiguous, disjoint, sizes differ by at most 1."""
    if not 0 <= index < count:
        raise ValueError(f"chunk index {index} is outside 0..{count - 1}")
    return range(index * num_items // count, (index + 1) * num_items // count)

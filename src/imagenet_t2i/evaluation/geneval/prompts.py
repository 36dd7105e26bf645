"""GenEval prompt metadata generator and the official image folder layout.

Reproduces the official generator (djghosh13/geneval ``prompts/create_prompts.py``, MIT): one
``numpy.random.default_rng(seed)`` stream drawn in the official order, so seed 43 over the 80 COCO
names gives the shipped ``evaluation_metadata.jsonl`` byte for byte. The same code runs over any
vocabulary (the tiny world's shapes); with few classes the duplicates dropped leave fewer prompts.

Layout: ``<root>/<00000>/metadata.jsonl`` (that prompt's JSON object) and
``<root>/<00000>/samples/<0000>.png``. The official evaluator silently skips anything else;
``iter_samples`` refuses it.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from imagenet_t2i.io import atomic_write
from imagenet_t2i.provenance import PROVENANCE_NAME

COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
)
RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
TAGS: tuple[str, ...] = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
NUMBERS: tuple[str, ...] = (
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
)
NO_COLOR_CLASS = "person"  # the official suite never asks for "a {colour} person"
MAX_COUNT = 4

_SAMPLE_NAME = re.compile(r"\d+\.png")


def with_article(word: str) -> str:
    """'an' before a lowercase vowel, else 'a' (the official rule, so 'a umbrella' never occurs)."""
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def make_plural(word: str) -> str:
    """The official plural: 'es' after a final 's', else 's' ('sheeps' is part of the benchmark)."""
    return f"{word}es" if word[-1] == "s" else f"{word}s"


class _Draws:
    """The official draws over one vocabulary; each method consumes the rng exactly as the original."""

    def __init__(self, classes: Sequence[str], colors: Sequence[str], rng: np.random.Generator):
        self.classes, self.colors, self.rng = list(classes), list(colors), rng
        # Colour tasks draw from the classes other than "person", counted cyclically after it.
        self.skip = self.classes.index(NO_COLOR_CLASS) if NO_COLOR_CLASS in self.classes else None

    def _colorable(self, size: int) -> np.ndarray:
        n = len(self.classes)
        if self.skip is None:
            return self.rng.choice(n, size=size, replace=False)
        return (self.rng.choice(n - 1, size=size, replace=False) + 1 + self.skip) % n

    def single_object(self) -> list[dict]:
        idxs = self.rng.choice(len(self.classes), size=len(self.classes), replace=False)
        return [
            {"tag": "single_object", "include": [{"class": self.classes[i], "count": 1}],
             "prompt": f"a photo of {with_article(self.classes[i])}"}
            for i in idxs
        ]

    def two_object(self) -> dict:
        a, b = (self.classes[i] for i in self.rng.choice(len(self.classes), size=2, replace=False))
        return {"tag": "two_object",
                "include": [{"class": a, "count": 1}, {"class": b, "count": 1}],
                "prompt": f"a photo of {with_article(a)} and {with_article(b)}"}

    def counting(self) -> dict:
        cls = self.classes[self.rng.choice(len(self.classes))]
        num = int(self.rng.integers(2, MAX_COUNT, endpoint=True))
        return {"tag": "counting", "include": [{"class": cls, "count": num}],
                "exclude": [{"class": cls, "count": num + 1}],
                "prompt": f"a photo of {NUMBERS[num]} {make_plural(cls)}"}

    def color(self) -> dict:
        n = len(self.classes)
        if self.skip is None:
            cls = self.classes[self.rng.choice(n)]
        else:
            cls = self.classes[(self.rng.choice(n - 1) + 1 + self.skip) % n]
        color = self.colors[self.rng.choice(len(self.colors))]
        return {"tag": "colors", "include": [{"class": cls, "count": 1, "color": color}],
                "prompt": f"a photo of {with_article(color)} {cls}"}

    def position(self) -> dict:
        a, b = (self.classes[i] for i in self.rng.choice(len(self.classes), size=2, replace=False))
        rel = RELATIONS[self.rng.choice(len(RELATIONS))]
        return {"tag": "position",
                "include": [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}],
                "prompt": f"a photo of {with_article(a)} {rel} {with_article(b)}"}

    def color_attr(self) -> dict:
        a, b = (self.classes[i] for i in self._colorable(2))
        ca, cb = (self.colors[i] for i in self.rng.choice(len(self.colors), size=2, replace=False))
        return {"tag": "color_attr",
                "include": [{"class": a, "count": 1, "color": ca}, {"class": b, "count": 1, "color": cb}],
                "prompt": f"a photo of {with_article(ca)} {a} and {with_article(cb)} {b}"}


def generate_prompts(
    classes: Sequence[str],
    seed: int = 43,
    colors: Sequence[str] = COLORS,
    n_per_task: int = 100,
) -> list[dict]:
    """The GenEval suite over ``classes``: every class once, then ``n_per_task`` draws of each other
    task in the official order, duplicates dropped (first occurrence kept)."""
    colorable = [c for c in classes if c != NO_COLOR_CLASS]
    if len(set(classes)) != len(classes):
        raise ValueError(f"generate_prompts: duplicate class names in {list(classes)}")
    if len(classes) < 2 or len(colorable) < 2 or len(colors) < 2:
        raise ValueError(
            "generate_prompts needs at least 2 classes (2 besides 'person') and 2 colours; got "
            f"classes={list(classes)}, colors={list(colors)}"
        )
    draws = _Draws(classes, colors, np.random.default_rng(seed))
    rows = draws.single_object()
    for task in (draws.two_object, draws.counting, draws.color, draws.position, draws.color_attr):
        rows.extend(task() for _ in range(n_per_task))
    unique, seen = [], set()
    for row in rows:
        key = json.dumps(row, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(row)
    return unique


def write_prompts(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """One ``json.dumps`` line per prompt (default separators, key order as generated), atomically."""
    with atomic_write(path) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def read_class_names(path: str | os.PathLike) -> list[str]:
    """One class name per line (``object_names.txt``: the detector's index order)."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def prepare_layout(root: str | os.PathLike, rows: Sequence[dict], n_samples: int = 4) -> list[list[Path]]:
    """Create ``<root>/<00000>/samples/`` and ``metadata.jsonl`` for each prompt row; return, per
    prompt, the ``n_samples`` PNG paths the sampler must write."""
    root = Path(root)
    paths = []
    for index, row in enumerate(rows):
        folder = root / f"{index:05d}"
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / "metadata.jsonl") as f:
            json.dump(row, f)
        paths.append([folder / "samples" / f"{j:04d}.png" for j in range(n_samples)])
    return paths


def iter_samples(root: str | os.PathLike) -> Iterator[tuple[str, dict]]:
    """Yield ``(relative image path, prompt metadata)`` in sorted order, e.g.
    ``("00012/samples/0003.png", {...})``. Anything outside the official layout is an error, except
    hidden files (workflow markers) and the folder's own provenance record at the root."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GenEval image root {root} is not a folder")
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or folder.name == PROVENANCE_NAME:
            continue
        if not (folder.is_dir() and folder.name.isdigit()):
            raise ValueError(
                f"unexpected entry {folder} in GenEval image root {root}: only prompt folders named by "
                "digits (00000, 00001, ...) belong there; move it elsewhere"
            )
        extra = sorted(p.name for p in folder.iterdir() if p.name not in ("metadata.jsonl", "samples"))
        if extra:
            raise ValueError(f"unexpected entries {extra} in {folder}: only metadata.jsonl and samples/ belong there")
        meta_path, samples = folder / "metadata.jsonl", folder / "samples"
        if not meta_path.is_file() or not samples.is_dir():
            raise FileNotFoundError(f"{folder} lacks metadata.jsonl or samples/: regenerate this prompt folder")
        try:
            with open(meta_path) as f:
                metadata = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{meta_path} is not one JSON object ({err}); regenerate this prompt folder") from None
        for image in sorted(samples.iterdir()):
            if not (image.is_file() and _SAMPLE_NAME.fullmatch(image.name)):
                raise ValueError(
                    f"unexpected entry {image}: samples/ holds only PNG files named by digits (0000.png, ...)"
                )
            yield f"{folder.name}/samples/{image.name}", metadata

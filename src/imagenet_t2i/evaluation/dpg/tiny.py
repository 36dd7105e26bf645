"""A DPG-style benchmark for the tiny synthetic world, scored by the official DPG rules (``score``).

Generation: each item is a random scene record of 1-3 shapes (non-overlapping boxes, so a renderer
can draw it) turned into a dense prompt, e.g. "A red circle to the left of a blue square on a gray
background. The circle is large.", and a question graph in the columns of the official
``dpg_bench.csv``. Tuples follow the official "L1 - L2 (args)" syntax:
``entity - whole (circle)``, ``other - count (circle, ==2)``, ``attribute - color (circle, red)``,
``attribute - size (circle, large)``, ``relation - spatial (circle, square, left of)``,
``global - (background gray)``. Counts, attributes and relations depend on their entity questions.
Stated relations hold under GenEval's relative-position rule even at a stricter threshold, so
small box errors of a detector do not flip them.

Answering (the stand-in for the official mPLUG VQA model): every cell of an item's 2x2 grid goes
through a detector (``evaluation.detector.detect`` by default) and each question is answered
"yes"/"no" from the detections above ``SCORE_THRESHOLD`` and, for the background, the cell's
border pixels.
"""
from __future__ import annotations

import csv
import logging
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from imagenet_t2i.evaluation.dpg.score import CSV_COLUMNS, make_grid, read_questions, split_grid
from imagenet_t2i.evaluation.geneval.detector import detect
from imagenet_t2i.evaluation.geneval.position import relative_position
from imagenet_t2i.evaluation.geneval.prompts import make_plural, with_article
from imagenet_t2i.io import atomic_write, write_jsonl
from imagenet_t2i.world.palette import BACKGROUNDS, COLORS, SIZE_RANGES, check_names, size_label
from imagenet_t2i.world.render import render_scene
from imagenet_t2i.world.shapes import SHAPES

log = logging.getLogger(__name__)

Detection = dict  # {"class", "box": [x1, y1, x2, y2], "score", "color"}
DetectFn = Callable[[np.ndarray], list[Detection]]

SOURCE = "tiny"
SCORE_THRESHOLD = 0.3        # detections must score strictly above it (GenEval's default)
GAP_PX = 2.0                 # minimum gap between object boxes, so same-coloured shapes stay apart
STRICT_POSITION = 0.2        # a stated relation must also hold at this GenEval position threshold
MIN_BACKGROUND_SHARE = 0.3   # border fraction a background colour needs before the cell "has" it
MAX_PLACEMENT_TRIES = 1000
POSITION_TRIES = 50
# Object counts per group of one class: distinct classes, same-class groups give count questions.
GROUPINGS: dict[int, tuple[tuple[int, ...], ...]] = {
    1: ((1,),),
    2: ((1, 1), (2,)),
    3: ((1, 1, 1), (2, 1), (1, 2), (3,)),
}
NUMBER_WORDS = {2: "two", 3: "three"}
SIZE_WORDS = {"small": "small", "medium": "medium-sized", "large": "large"}
RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
_TUPLE = re.compile(r"^\s*(\w+)\s*-\s*([\w ]*?)\s*\((.*)\)\s*$")


@dataclass(frozen=True)
class BenchmarkItem:
    item_id: str
    prompt: str
    questions: list[dict]  # rows with the official CSV columns, in question order
    scene: dict            # the scene record the prompt describes (docs/formats.md)


# ---------------------------------------------------------------- generation

def _boxes_apart(a: Sequence[float], b: Sequence[float], gap: float) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _place_objects(rng: np.random.Generator, n: int, size: int) -> list[tuple[str, list[float]]]:
    """(size name, box) for n objects with boxes at least GAP_PX apart; sizes as ``sample_scene``.

    Sizes are drawn per try; each object then gets up to POSITION_TRIES positions.
    """
    names = list(SIZE_RANGES)
    for _ in range(MAX_PLACEMENT_TRIES):
        placed: list[tuple[str, list[float]]] = []
        for _ in range(n):
            name = names[rng.integers(len(names))]
            lo, hi = SIZE_RANGES[name]
            side = float(np.floor(rng.uniform(lo, hi) * size * 100) / 100)  # rounded down to 0.01 px
            for _ in range(POSITION_TRIES):
                x1 = min(round(float(rng.uniform(0, size - side)), 2), size - side)
                y1 = min(round(float(rng.uniform(0, size - side)), 2), size - side)
                box = [round(x1, 2), round(y1, 2), round(x1 + side, 2), round(y1 + side, 2)]
                if all(_boxes_apart(box, other, GAP_PX) for _, other in placed):
                    placed.append((name, box))
                    break
            else:
                break
        if len(placed) == n:
            return placed
    raise RuntimeError(f"could not place {n} non-overlapping objects in {size}x{size} px "
                       f"after {MAX_PLACEMENT_TRIES} tries; use a larger size")


def _stated_relation(rng: np.random.Generator, box_a: Sequence[float], box_b: Sequence[float]) -> str | None:
    """A relation of A to B that GenEval's rule gives even at the stricter threshold, or None."""
    robust = sorted(relative_position(box_a, box_b, STRICT_POSITION) & relative_position(box_a, box_b))
    return robust[rng.integers(len(robust))] if robust else None


class _Questions:
    """Accumulates one item's question rows with running proposition ids."""

    def __init__(self, item_id: str, prompt: str):
        self.item_id, self.prompt, self.rows = item_id, prompt, []

    def add(self, tup: str, question: str, parents: Sequence[int] = ()) -> int:
        l2, args = tup.split(" (", 1)
        broad, detailed = (p.strip() for p in l2.split("-", 1))
        pid = len(self.rows) + 1
        self.rows.append({
            "item_id": self.item_id, "text": self.prompt, "keywords": args.rstrip(")"),
            "proposition_id": str(pid), "dependency": ",".join(map(str, parents)) or "0",
            "category_broad": broad, "category_detailed": detailed or "background",
            "tuple": tup, "question_natural_language": question,
        })
        return pid


def _sample_item(rng: np.random.Generator, item_id: str, size: int, classes: list[str], colors: list[str],
                 backgrounds: list[str]) -> BenchmarkItem:
    n_objects = int(rng.integers(1, 4))
    options = [g for g in GROUPINGS[n_objects] if len(g) <= len(classes)]
    grouping = options[rng.integers(len(options))]
    group_classes = [classes[i] for i in rng.choice(len(classes), size=len(grouping), replace=False)]
    group_colors = [colors[rng.integers(len(colors))] for _ in grouping]
    background = backgrounds[rng.integers(len(backgrounds))]

    starts = np.cumsum((0, *grouping))[:-1].tolist()  # index of each group's first object
    singles = all(n == 1 for n in grouping)
    # Relations only between single objects: the first to the second, the third to the second.
    pairs = [(0, 1), (2, 1)][: len(grouping) - 1] if singles else []
    for _ in range(MAX_PLACEMENT_TRIES):  # redraw the layout until every stated pair has a clear relation
        placed = _place_objects(rng, n_objects, size)
        relations = [_stated_relation(rng, placed[a][1], placed[b][1]) for a, b in pairs]
        if None not in relations:
            break
    else:
        raise RuntimeError(f"item {item_id}: no layout with clear relations in {MAX_PLACEMENT_TRIES} tries")
    sizes = [placed[s][0] if n == 1 and rng.integers(2) else None for n, s in zip(grouping, starts)]

    def phrase(g: int) -> str:
        n, cls, color = grouping[g], group_classes[g], group_colors[g]
        return with_article(f"{color} {cls}") if n == 1 else f"{NUMBER_WORDS[n]} {color} {make_plural(cls)}"

    if len(grouping) == 1:
        body = phrase(0)
    elif not pairs:
        body = f"{phrase(0)} and {phrase(1)}"
    else:
        body = f"{phrase(0)} {RELATION_WORDS[relations[0]]} {phrase(1)}"
        if len(pairs) == 2:
            body += f", and {phrase(2)} {RELATION_WORDS[relations[1]]} the {group_classes[1]},"
    sentences = [f"{body[0].upper()}{body[1:]} on {with_article(background)} background."]
    sentences += [f"The {cls} is {SIZE_WORDS[sz]}." for cls, sz in zip(group_classes, sizes) if sz]
    prompt = " ".join(sentences)

    qs = _Questions(item_id, prompt)
    entity = [qs.add(f"entity - whole ({cls})", f"Is there {with_article(cls)}?") for cls in group_classes]
    for g, (n, cls) in enumerate(zip(grouping, group_classes)):
        if n > 1:
            qs.add(f"other - count ({cls}, =={n})", f"Are there {NUMBER_WORDS[n]} {make_plural(cls)}?", [entity[g]])
    for g, (n, cls, color, sz) in enumerate(zip(grouping, group_classes, group_colors, sizes)):
        subject = f"Is the {cls}" if n == 1 else f"Are the {make_plural(cls)}"
        qs.add(f"attribute - color ({cls}, {color})", f"{subject} {color}?", [entity[g]])
        if sz:
            qs.add(f"attribute - size ({cls}, {sz})", f"{subject} {SIZE_WORDS[sz]}?", [entity[g]])
    for (a, b), rel in zip(pairs, relations):
        ca, cb = group_classes[a], group_classes[b]
        qs.add(f"relation - spatial ({ca}, {cb}, {rel})", f"Is the {ca} {RELATION_WORDS[rel]} the {cb}?",
               [entity[a], entity[b]])
    qs.add(f"global - (background {background})", f"Is the background {background}?")

    objects = [{"class": cls, "color": color, "size": placed[s + j][0], "box": placed[s + j][1]}
               for n, s, cls, color in zip(grouping, starts, group_classes, group_colors) for j in range(n)]
    scene = {"key": item_id, "size": size, "source": "render", "backgrounds": [background], "objects": objects,
             "parents": [], "pattern": None}
    return BenchmarkItem(item_id, prompt, qs.rows, scene)


def benchmark_items(classes: Sequence[str], colors: Sequence[str], backgrounds: Sequence[str], n_items: int,
                    seed: int, size: int = 32) -> list[BenchmarkItem]:
    """``n_items`` items ``tiny00000``...; item i draws from ``default_rng([seed, i])`` alone."""
    classes = check_names("classes", classes, SHAPES)
    colors = check_names("colors", colors, COLORS)
    backgrounds = check_names("backgrounds", backgrounds, BACKGROUNDS)
    if n_items < 1 or size < 16:
        raise ValueError(f"DPG tiny benchmark: need n_items >= 1 and size >= 16, got {n_items}, {size}")
    return [_sample_item(np.random.default_rng([seed, i]), f"tiny{i:05d}", size, classes, colors, backgrounds)
            for i in range(n_items)]


def generate_benchmark(classes: Sequence[str], colors: Sequence[str], backgrounds: Sequence[str], n_items: int,
                       seed: int, size: int = 32) -> tuple[list[dict], list[dict]]:
    """(prompt rows {"item_id", "source", "prompt"}, question rows with the official CSV columns)."""
    items = benchmark_items(classes, colors, backgrounds, n_items, seed, size)
    return ([{"item_id": it.item_id, "source": SOURCE, "prompt": it.prompt} for it in items],
            [row for it in items for row in it.questions])


def write_benchmark(out_dir: str | os.PathLike, items: Sequence[BenchmarkItem]) -> dict[str, Path]:
    """Write ``prompts.jsonl``, ``questions.csv`` (official columns) and ``scenes.jsonl``, each atomically."""
    out_dir = Path(out_dir)
    paths = {"prompts": out_dir / "prompts.jsonl", "questions": out_dir / "questions.csv",
             "scenes": out_dir / "scenes.jsonl"}
    write_jsonl(paths["prompts"], ({"item_id": it.item_id, "source": SOURCE, "prompt": it.prompt} for it in items))
    with atomic_write(paths["questions"], "w") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(row for it in items for row in it.questions)
    write_jsonl(paths["scenes"], (it.scene for it in items))
    return paths


def render_reference_grids(scenes: Sequence[dict], out_dir: str | os.PathLike) -> list[Path]:
    """Render every scene four times (textures and noise seeded by ``<key>_<cell>``) into
    ``<out_dir>/<key>.png`` 2x2 grids: the ground-truth ceiling of the benchmark."""
    out_dir = Path(out_dir)
    paths = []
    for scene in scenes:
        cells = [Image.fromarray(render_scene({**scene, "key": f"{scene['key']}_{c}"})) for c in range(4)]
        path = out_dir / f"{scene['key']}.png"
        with atomic_write(path, "wb") as f:
            make_grid(cells).save(f, format="PNG")
        paths.append(path)
    return paths


# ---------------------------------------------------------------- answering

def parse_tuple(tup: str) -> tuple[str, str, list[str]]:
    """'relation - spatial (a, b, left of)' -> ('relation', 'spatial', ['a', 'b', 'left of'])."""
    m = _TUPLE.match(tup)
    if not m:
        raise ValueError(f"tuple {tup!r} is not of the form 'L1 - L2 (args)'")
    return m.group(1), m.group(2), [a.strip() for a in m.group(3).split(",")]


def cell_background(cell: np.ndarray) -> str | None:
    """Named background of an (R, R, 3) cell from its border pixels, or None if none dominates.

    Each border pixel takes the nearest palette colour (objects and backgrounds); the most common
    background wins if it covers at least MIN_BACKGROUND_SHARE of the border.
    """
    border = np.concatenate([cell[0], cell[-1], cell[1:-1, 0], cell[1:-1, -1]]).astype(np.float32)  # (P, 3)
    names = list(COLORS) + list(BACKGROUNDS)
    palette = np.asarray([*COLORS.values(), *BACKGROUNDS.values()], dtype=np.float32)  # (K, 3)
    nearest = np.argmin(((border[:, None, :] - palette[None]) ** 2).sum(-1), axis=1)  # (P,)
    counts = np.bincount(nearest, minlength=len(names))[len(COLORS):]  # (n_backgrounds,)
    best = int(np.argmax(counts))
    return list(BACKGROUNDS)[best] if counts[best] >= MIN_BACKGROUND_SHARE * len(border) else None


def answer_question(l1: str, l2: str, args: list[str], detections: Sequence[Detection], cell: np.ndarray) -> bool:
    """Answer one parsed tuple from a cell's detections (already thresholded) and pixels."""
    by_class: dict[str, list[Detection]] = {}
    for det in sorted(detections, key=lambda d: -d["score"]):
        by_class.setdefault(det["class"], []).append(det)
    if (l1, l2) == ("entity", "whole"):
        return bool(by_class.get(args[0]))
    if (l1, l2) == ("other", "count"):
        if not args[1].startswith("==") or not args[1][2:].isdigit():
            raise ValueError(f"count tuple needs '==N', got {args[1]!r}")
        return len(by_class.get(args[0], [])) == int(args[1][2:])
    if (l1, l2) == ("attribute", "color"):
        return any(d.get("color") == args[1] for d in by_class.get(args[0], []))
    if (l1, l2) == ("attribute", "size"):
        found = by_class.get(args[0])
        if not found:
            return False
        x1, y1, x2, y2 = found[0]["box"]
        return size_label(max(x2 - x1, y2 - y1) / cell.shape[1]) == args[1]
    if (l1, l2) == ("relation", "spatial"):
        a, b = by_class.get(args[0]), by_class.get(args[1])
        return bool(a and b) and args[2] in relative_position(a[0]["box"], b[0]["box"])
    if (l1, l2) == ("global", "") and args[0].startswith("background "):
        return cell_background(cell) == args[0][len("background "):]
    raise ValueError(f"no rule answers '{l1} - {l2} ({', '.join(args)})'")


def _read_tuples(questions_csv: str | os.PathLike) -> dict[str, list[tuple[int, tuple[str, str, list[str]]]]]:
    """Item id -> [(proposition id, parsed tuple)] in CSV order (validated by ``read_questions``)."""
    read_questions(questions_csv)
    items: dict[str, list] = {}
    with open(questions_csv, newline="") as f:
        for n, row in enumerate(csv.DictReader(f), 2):
            try:
                parsed = parse_tuple(row["tuple"])
            except ValueError as err:
                raise ValueError(f"{questions_csv} line {n}: {err}") from None
            items.setdefault(row["item_id"].strip(), []).append((int(row["proposition_id"]), parsed))
    return items


def answer_grids(grid_dir: str | os.PathLike, questions_csv: str | os.PathLike, out_path: str | os.PathLike,
                 detect_fn: DetectFn = detect) -> dict:
    """Answer every question of ``questions_csv`` on ``<grid_dir>/<item_id>.png`` and write the DPG
    answers JSONL (``{"item_id", "cell", "proposition_id", "answer"}``) atomically.

    A missing grid is logged and its answers are left out (``score_dpg`` counts it as a failure).
    Returns ``{"answered": [item ids], "missing": [item ids]}``.
    """
    items = _read_tuples(questions_csv)
    grid_dir = Path(grid_dir)
    rows, answered, missing = [], [], []
    for item, questions in items.items():
        path = grid_dir / f"{item}.png"
        if not path.is_file():
            log.warning("DPG tiny: no grid %s for item %s; its answers are absent (scored as a failure)", path, item)
            missing.append(item)
            continue
        with Image.open(path) as grid:
            try:
                cells = split_grid(grid.convert("RGB"))
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from None
        for c, cell_img in enumerate(cells):
            cell = np.asarray(cell_img)  # (R, R, 3) uint8
            dets = [d for d in detect_fn(cell) if d["score"] > SCORE_THRESHOLD]
            for pid, (l1, l2, args) in questions:
                yes = answer_question(l1, l2, args, dets, cell)
                rows.append({"item_id": item, "cell": c, "proposition_id": pid, "answer": "yes" if yes else "no"})
        answered.append(item)
    write_jsonl(out_path, rows)
    return {"answered": answered, "missing": missing}

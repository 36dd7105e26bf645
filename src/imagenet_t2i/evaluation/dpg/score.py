"""DPG-Bench scoring (TencentQQGYLab/ELLA ``dpg_bench/compute_dpg_bench.py``, Apache-2.0) as pure
functions over the question CSV and a VQA answers file, plus the 2x2 grid helpers.

Answers file: one JSON object per (image cell, question):
``{"item_id": "partiprompts12", "cell": 0, "proposition_id": 3, "answer": "yes"}``.
Per cell a_q = 1 iff the answer is exactly "yes"; in CSV order s_q = 0 when any parent p != 0 has
s_p = 0 (one in-place pass); cell = mean over all the item's questions; image = mean of the cells;
DPG = 100 x mean over images. An item with missing answers scores 0 and is listed, never dropped.

Two defects of the official script are reproduced behind flags, recorded in the output:
``skip_first_row`` (it skips the first CSV data row; an item whose dependencies then name a missing
question raises and is dropped, and we list it under ``dropped_items``) and
``last_cell_categories`` (category scores from the last cell's raw answers, without zeroing).
`score_both` gives both variants: every published DPG number, the paper's included, comes from the official
script (on the official CSV the first row's item, partiprompts97, is dropped: ELLA issue 61).
"""
from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imagenet_t2i.io import read_jsonl, write_json

CSV_COLUMNS = (
    "item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
    "category_detailed", "tuple", "question_natural_language",
)
N_CELLS = 4


@dataclass(frozen=True)
class Question:
    proposition_id: int
    parents: tuple[int, ...]  # 0 = no parent
    l1: str                   # e.g. "relation"
    l2: str                   # e.g. "relation - spatial"


class MissingParentError(KeyError):
    """A dependency names a question the item does not have (the official script's KeyError)."""


def read_questions(path: str | os.PathLike, skip_first_row: bool = False) -> dict[str, list[Question]]:
    """Item id -> its questions in CSV order (``skip_first_row`` drops the first data row, as the
    official script does)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{path}: missing columns {absent}; expected the DPG-Bench dpg_bench.csv")
        rows = list(reader)
    if skip_first_row:
        rows = rows[1:]
    items: dict[str, list[Question]] = {}
    previous = None
    for n, row in enumerate(rows, 3 if skip_first_row else 2):
        item = row["item_id"].strip()
        if item != previous and item in items:
            raise ValueError(f"{path} line {n}: rows of item {item!r} are not contiguous")
        previous = item
        try:
            pid = int(row["proposition_id"])
            parents = tuple(int(d) for d in row["dependency"].split(","))
        except ValueError as err:
            raise ValueError(f"{path} line {n}: bad proposition_id/dependency ({err})") from None
        l2 = row["tuple"].split("(")[0].strip()
        questions = items.setdefault(item, [])
        if any(q.proposition_id == pid for q in questions):
            raise ValueError(f"{path} line {n}: item {item!r} repeats proposition_id {pid}")
        questions.append(Question(pid, parents, l2.split("-")[0].strip(), l2))
    if not skip_first_row:
        for item, questions in items.items():
            ids = {q.proposition_id for q in questions}
            for q in questions:
                bad = [p for p in q.parents if p != 0 and p not in ids]
                if bad:
                    raise ValueError(
                        f"{path}: item {item!r} question {q.proposition_id} depends on absent questions {bad}"
                    )
    return items


def read_answers(path: str | os.PathLike) -> dict[tuple[str, int, int], str]:
    """(item_id, cell, proposition_id) -> raw VQA answer."""
    answers: dict[tuple[str, int, int], str] = {}
    for n, row in enumerate(read_jsonl(path), 1):
        try:
            key = (str(row["item_id"]), int(row["cell"]), int(row["proposition_id"]))
            answer = row["answer"]
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{path} line {n}: need item_id, cell, proposition_id, answer ({err!r})") from None
        if not isinstance(answer, str):
            raise ValueError(f"{path} line {n}: 'answer' must be the VQA model's text, got {answer!r}")
        if key in answers:
            raise ValueError(f"{path} line {n}: duplicate answer for item {key[0]!r} cell {key[1]} question {key[2]}")
        answers[key] = answer
    return answers


def zero_dependents(questions: Sequence[Question], raw: dict[int, float]) -> dict[int, float]:
    """One in-place pass in CSV order: s_q = 0 when a parent p != 0 has s_p = 0 (parents are read
    as already updated, like the official loop)."""
    scores = dict(raw)
    for q in questions:
        for parent in q.parents:
            if parent == 0:
                continue
            if parent not in scores:
                raise MissingParentError(f"question {q.proposition_id} depends on absent question {parent}")
            if scores[parent] == 0:
                scores[q.proposition_id] = 0.0
                break
    return scores


def score_dpg(
    questions_csv: str | os.PathLike,
    answers_path: str | os.PathLike,
    skip_first_row: bool = False,
    last_cell_categories: bool = False,
    n_cells: int = N_CELLS,
) -> dict:
    """Overall (0-100), per-item and L1/L2 category scores, with the flag state recorded."""
    questions = read_questions(questions_csv, skip_first_row)
    answers = read_answers(answers_path)
    skipped_first = _first_row_key(questions_csv) if skip_first_row else None
    for item, cell, pid in answers:
        known = item in questions and any(q.proposition_id == pid for q in questions[item])
        if (item, pid) != skipped_first and not known:
            raise ValueError(f"{answers_path}: answer for item {item!r} question {pid} not in {questions_csv}")
        if not 0 <= cell < n_cells:
            raise ValueError(f"{answers_path}: item {item!r} has cell {cell}; cells are 0..{n_cells - 1}")

    items, failed, dropped = [], [], []
    if skipped_first and skipped_first[0] not in questions:  # its only question was the skipped row
        items.append({"item_id": skipped_first[0], "score": None, "cell_scores": None, "status": "dropped",
                      "reason": "official script skips the first CSV row, its only question"})
        dropped.append(skipped_first[0])
    categories: dict[str, list[float]] = {}
    for item, qs in questions.items():
        missing = [(c, q.proposition_id) for c in range(n_cells) for q in qs
                   if (item, c, q.proposition_id) not in answers]
        if missing:
            reason = f"{len(missing)} of {n_cells * len(qs)} answers missing, e.g. (cell, question) {missing[:3]}"
            items.append({"item_id": item, "score": 0.0, "cell_scores": None, "status": "failed", "reason": reason})
            failed.append(item)
            for q in qs:
                categories.setdefault(q.l2, []).extend([0.0] * (1 if last_cell_categories else n_cells))
            continue
        raws = [{q.proposition_id: float(answers[(item, c, q.proposition_id)] == "yes") for q in qs}
                for c in range(n_cells)]
        try:
            zeroed = [zero_dependents(qs, raw) for raw in raws]
        except MissingParentError as err:  # only reachable with skip_first_row (validated otherwise)
            items.append({"item_id": item, "score": None, "cell_scores": None, "status": "dropped",
                          "reason": f"official script raises and drops it: {err.args[0]}"})
            dropped.append(item)
            continue
        cell_scores = [float(np.mean(list(s.values()))) for s in zeroed]
        items.append({"item_id": item, "score": float(np.mean(cell_scores)), "cell_scores": cell_scores,
                      "status": "ok", "reason": ""})
        for q in qs:
            per_q = [raws[-1][q.proposition_id]] if last_cell_categories else [s[q.proposition_id] for s in zeroed]
            categories.setdefault(q.l2, []).extend(per_q)

    scored = [it["score"] for it in items if it["score"] is not None]
    if not scored:
        raise ValueError(f"score_dpg: no item of {questions_csv} could be scored")
    l1: dict[str, list[float]] = {}
    for l2, values in categories.items():
        l1.setdefault(l2.split("-")[0].strip(), []).extend(values)
    return {
        "overall": 100.0 * float(np.mean(scored)),
        "num_items": len(items),
        "num_scored": len(scored),
        "failed_items": failed,
        "dropped_items": dropped,
        "flags": {"skip_first_row": skip_first_row, "last_cell_categories": last_cell_categories},
        "n_cells": n_cells,
        "l1": {k: 100.0 * float(np.mean(v)) for k, v in sorted(l1.items())},
        "l2": {k: 100.0 * float(np.mean(v)) for k, v in sorted(categories.items())},
        "items": items,
    }


OFFICIAL_FLAGS = {"skip_first_row": True, "last_cell_categories": True}


def score_both(questions_csv: str | os.PathLike, answers_path: str | os.PathLike, n_cells: int = N_CELLS) -> dict:
    """The official script's scores at the top level (``overall``, ``l1``, ``l2``: comparable with published DPG
    numbers) and the corrected ones (no row skipped, categories over all four cells with dependents zeroed) as
    ``overall_corrected``, ``l1_corrected`` and, in full, ``corrected``."""
    official = score_dpg(questions_csv, answers_path, n_cells=n_cells, **OFFICIAL_FLAGS)
    corrected = score_dpg(questions_csv, answers_path, n_cells=n_cells)
    return {**official, "variant": "official (skips the CSV's first row; categories from the last cell)",
            "overall_corrected": corrected["overall"], "l1_corrected": corrected["l1"], "corrected": corrected}


def _first_row_key(path: str | os.PathLike) -> tuple[str, int]:
    with open(path, newline="") as f:
        row = next(csv.DictReader(f))
    return row["item_id"].strip(), int(row["proposition_id"])


def write_scores(path: str | os.PathLike, result: dict) -> None:
    """The score_dpg result as JSON, atomically."""
    write_json(path, result)


def split_grid(grid: Image.Image) -> list[Image.Image]:
    """Four R x R cells of a 2R x 2R grid: top-left, top-right, bottom-left, bottom-right."""
    w, h = grid.size
    if w != h or w % 2:
        raise ValueError(f"DPG grid must be 2R x 2R (square, even side), got {w}x{h}")
    r = w // 2
    return [grid.crop((x, y, x + r, y + r)) for y in (0, r) for x in (0, r)]


def make_grid(cells: Sequence[Image.Image]) -> Image.Image:
    """Paste four equal R x R cells into a 2R x 2R grid (order as ``split_grid`` returns them)."""
    if len(cells) != N_CELLS:
        raise ValueError(f"make_grid needs {N_CELLS} cells, got {len(cells)}")
    r = cells[0].size[0]
    if any(c.size != (r, r) for c in cells) or any(c.mode != cells[0].mode for c in cells):
        got = [(c.size, c.mode) for c in cells]
        raise ValueError(f"make_grid: cells must share one square size and mode, got {got}")
    grid = Image.new(cells[0].mode, (2 * r, 2 * r))
    for i, cell in enumerate(cells):
        grid.paste(cell, ((i % 2) * r, (i // 2) * r))
    return grid

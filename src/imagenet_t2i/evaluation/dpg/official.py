"""DPG-Bench perception: every question of every cell of every 2x2 grid, answered by the official VQA model.

The official model, ModelScope ``damo/mplug_visual-question-answering_coco_large_en``, runs INSIDE its
own environment (``envs/dpg.yaml``: Python 3.10, modelscope < 1.15, transformers < 4.30), where this
package is not installed. So this file stands alone: the standard library, PIL and tqdm at top level,
modelscope only inside ``load_mplug``, Python 3.8 syntax (a test parses it so), nothing imported from
``imagenet_t2i``. The main environment imports its pure parts and tests them with a stand-in model.

UNTESTED HERE: the ModelScope call (``load_mplug``, ``main``) has never run; the machines this project
is developed on have neither the model nor a ModelScope environment.

Run inside the DPG environment, from the repository root:
    python src/imagenet_t2i/evaluation/dpg/official.py --grids DIR --questions dpg_bench.csv \
        --out ANSWERS.jsonl [--resolution R] [--model damo/mplug_visual-question-answering_coco_large_en]

Input: ``<DIR>/<item_id>.png``, a 2R x 2R grid of four R x R samples per CSV item, cells top-left,
top-right, bottom-left, bottom-right. Output (eval-spec "Our file formats"): one line per (item, cell,
question) in CSV order, ``{"item_id", "cell", "proposition_id", "answer"}`` with the model's raw text
(scoring counts exactly "yes"), plus ``<out>.meta.json``. Unlike the official script, every CSV row is
asked (the first data row included) and a grid that is missing, unreadable, of the wrong size or
whose answering raises is recorded under ``failed`` in the meta record, with its reason; none of its
answers are written, so scoring counts the item as a failure. Nothing is dropped silently.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from PIL import Image
from tqdm import tqdm

CSV_COLUMNS = ("item_id", "text", "keywords", "proposition_id", "dependency", "category_broad",
               "category_detailed", "tuple", "question_natural_language")
N_CELLS = 4
MODEL = "damo/mplug_visual-question-answering_coco_large_en"
PROVENANCE_NAME = "provenance.json"  # the grid folder's own provenance record

AnswerFn = Callable[[Image.Image, str], str]  # (cell, question) -> raw answer text


def read_questions(path: str | os.PathLike) -> Dict[str, List[Tuple[int, str]]]:
    """Item id -> [(proposition_id, question)] in CSV order, every data row (the first included)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        absent = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(f"{path}: missing columns {absent}; expected the DPG-Bench dpg_bench.csv")
        items: Dict[str, List[Tuple[int, str]]] = {}
        for n, row in enumerate(reader, 2):
            try:
                pid = int(row["proposition_id"])
            except ValueError:
                raise ValueError(f"{path} line {n}: proposition_id {row['proposition_id']!r} is not an integer") \
                    from None
            items.setdefault(row["item_id"].strip(), []).append((pid, row["question_natural_language"]))
    if not items:
        raise ValueError(f"{path}: no questions")
    return items


def split_cells(grid: Image.Image, resolution: Optional[int] = None) -> List[Image.Image]:
    """The four R x R cells of a 2R x 2R grid: top-left, top-right, bottom-left, bottom-right."""
    w, h = grid.size
    if w != h or w % 2 or (resolution is not None and w != 2 * resolution):
        want = f"{2 * resolution}x{2 * resolution}" if resolution is not None else "2R x 2R (square, even side)"
        raise ValueError(f"grid is {w}x{h}, expected {want}")
    r = w // 2
    return [grid.crop((x, y, x + r, y + r)) for y in (0, r) for x in (0, r)]


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[Any]:
    """A text file that appears at ``path`` only when the block succeeds (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _answer_item(path: Path, questions: List[Tuple[int, str]], answer: AnswerFn,
                 resolution: Optional[int]) -> List[dict]:
    """All rows of one grid; raises on any problem (the caller records it)."""
    with Image.open(path) as im:
        cells = split_cells(im.convert("RGB"), resolution)
    rows = []
    for cell, image in enumerate(cells):
        for pid, question in questions:
            text = answer(image, question)
            if not isinstance(text, str):
                raise TypeError(f"the VQA model returned {type(text).__name__}, not text, for question {pid}")
            rows.append({"cell": cell, "proposition_id": pid, "answer": text})
    return rows


def answer_grids(grid_dir: str | os.PathLike, questions_csv: str | os.PathLike, out_path: str | os.PathLike,
                 answer: AnswerFn, description: Optional[dict] = None, resolution: Optional[int] = None,
                 meta_path: Optional[str | os.PathLike] = None, progress: bool = True) -> dict:
    """Answer every question of every cell of ``<grid_dir>/<item_id>.png``; write the answers JSONL and the
    meta record (``description``, counts, ``failed`` items with reasons), both atomically; return the meta.

    A PNG in ``grid_dir`` that no CSV item names is an error (raised before any answering)."""
    items = read_questions(questions_csv)
    grid_dir = Path(grid_dir)
    if not grid_dir.is_dir():
        raise FileNotFoundError(f"DPG grid folder {grid_dir} is not a folder")
    stray = sorted(p.name for p in grid_dir.iterdir() if not p.name.startswith(".") and p.name != PROVENANCE_NAME
                   and not (p.suffix == ".png" and p.stem in items))
    if stray:
        raise ValueError(f"{grid_dir} holds entries no item of {questions_csv} names: {stray[:5]} ({len(stray)})")
    failed: List[dict] = []
    n_rows = 0
    with atomic_open(out_path) as f:
        for item, questions in tqdm(items.items(), desc="dpg perception", disable=not progress):
            path = grid_dir / f"{item}.png"
            try:
                if not path.is_file():
                    raise FileNotFoundError(f"no grid {path}")
                rows = _answer_item(path, questions, answer, resolution)
            except Exception as err:  # recorded, never silent: the item scores as a failure
                failed.append({"item_id": item, "reason": f"{type(err).__name__}: {err}"})
                print(f"DPG perception: item {item} failed: {err}", file=sys.stderr)
                continue
            for row in rows:
                f.write(json.dumps({"item_id": item, **row}) + "\n")
            n_rows += len(rows)
    meta = {**(description or {}), "items": len(items), "answered_items": len(items) - len(failed),
            "failed_items": len(failed), "failed": failed, "answers": n_rows, "cells": N_CELLS,
            "resolution": resolution, "questions_csv": str(questions_csv)}
    with atomic_open(meta_path or Path(str(out_path) + ".meta.json")) as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    return meta


def load_mplug(model: str = MODEL, device: str = "gpu") -> AnswerFn:
    """The official ModelScope VQA pipeline as ``(cell, question) -> answer``."""
    from modelscope.pipelines import pipeline
    from modelscope.utils.constant import Tasks

    vqa = pipeline(Tasks.visual_question_answering, model=model, device=device)
    return lambda image, question: vqa({"image": image, "question": question})["text"]


def _versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for name in ("modelscope", "torch", "transformers"):
        with contextlib.suppress(ImportError):
            out[name] = __import__(name).__version__
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="DPG-Bench perception with the official mPLUG VQA model.")
    parser.add_argument("--grids", required=True, help="folder of <item_id>.png 2x2 grids")
    parser.add_argument("--questions", required=True, help="the official dpg_bench.csv")
    parser.add_argument("--out", required=True, help="answers JSONL to write")
    parser.add_argument("--resolution", type=int, default=None, help="cell side R (grids must be 2R x 2R)")
    parser.add_argument("--model", default=MODEL, help="ModelScope model id or local model folder")
    parser.add_argument("--device", default="gpu")
    parser.add_argument("--meta", default=None, help="meta record path (default <out>.meta.json)")
    args = parser.parse_args(argv)
    description = {"perception": "official", "model": args.model, "versions": _versions()}
    meta = answer_grids(args.grids, args.questions, args.out, load_mplug(args.model, args.device), description,
                        args.resolution, args.meta)
    print(f"{meta['answered_items']} of {meta['items']} items answered, {meta['failed_items']} failed -> {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

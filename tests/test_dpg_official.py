"""DPG-Bench perception script: grid cells, questions from a CSV with the official columns, answers format and
failure accounting, with a stand-in VQA model that reads the cell's colour; then scored by ``dpg_score``."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagenet_t2i.evaluation.dpg import official as dpg_official
from imagenet_t2i.evaluation.dpg.official import answer_grids, read_questions, split_cells
from imagenet_t2i.evaluation.dpg.score import CSV_COLUMNS, make_grid, score_dpg, split_grid
from imagenet_t2i.io import read_json, read_jsonl

from .test_geneval_perception import check_stand_alone

R = 4
RGB = {"red": (220, 10, 10), "green": (10, 220, 10), "blue": (10, 10, 220), "white": (250, 250, 250)}
# (item_id, proposition_id, dependency, question)
QUESTIONS = [("a", 1, "0", "Is there something red?"), ("a", 2, "1", "Is it green?"), ("b", 1, "0", "Is it blue?"),
             ("c", 1, "0", "Is it red?"), ("d", 1, "0", "Is it red?"), ("e", 1, "0", "boom"),
             ("f", 1, "0", "Is it red?")]


def write_csv(path: Path, rows: list[tuple[str, int, str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for item, pid, dep, question in rows:
            w.writerow({"item_id": item, "text": f"prompt {item}", "keywords": "k", "proposition_id": pid,
                        "dependency": dep, "category_broad": "entity", "category_detailed": "whole",
                        "tuple": "entity - whole (thing)", "question_natural_language": question})
    return path


def grid(*colours: str) -> Image.Image:
    return make_grid([Image.new("RGB", (R, R), RGB[c]) for c in colours])


def stand_in_vqa(cell: Image.Image, question: str) -> str:
    """'yes' when the question names the cell's colour; raises on the question 'boom'."""
    if question == "boom":
        raise RuntimeError("boom")
    mean = np.asarray(cell, dtype=float).mean((0, 1))
    colour = min(RGB, key=lambda c: np.abs(mean - RGB[c]).sum())
    return "yes" if colour in question else "no"


@pytest.fixture
def bench(tmp_path) -> tuple[Path, Path]:
    grids = tmp_path / "grids"
    grids.mkdir()
    grid("red", "green", "blue", "white").save(grids / "a.png")
    grid("blue", "blue", "red", "red").save(grids / "b.png")
    Image.new("RGB", (2 * R, 2 * R - 2)).save(grids / "d.png")  # not square
    grid("red", "red", "red", "red").save(grids / "e.png")
    (grids / "f.png").write_bytes(b"not a png")
    (grids / "provenance.json").write_text("{}")
    return grids, write_csv(tmp_path / "dpg_bench.csv", QUESTIONS)  # no c.png


def test_answers_format_order_and_failures(bench, tmp_path):
    grids, questions = bench
    out = tmp_path / "answers.jsonl"
    meta = answer_grids(grids, questions, out, stand_in_vqa, {"perception": "stand-in"}, progress=False)
    rows = read_jsonl(out)
    assert rows[:4] == [{"item_id": "a", "cell": 0, "proposition_id": 1, "answer": "yes"},
                        {"item_id": "a", "cell": 0, "proposition_id": 2, "answer": "no"},
                        {"item_id": "a", "cell": 1, "proposition_id": 1, "answer": "no"},
                        {"item_id": "a", "cell": 1, "proposition_id": 2, "answer": "yes"}]
    assert [r["answer"] for r in rows if r["item_id"] == "b"] == ["yes", "yes", "no", "no"]  # TL, TR, BL, BR
    assert len(rows) == 4 * 2 + 4 * 1 and {r["item_id"] for r in rows} == {"a", "b"}  # failed items: no answers
    reasons = {f["item_id"]: f["reason"] for f in meta["failed"]}
    assert list(reasons) == ["c", "d", "e", "f"]
    assert "no grid" in reasons["c"] and "grid is 8x6" in reasons["d"] and reasons["e"] == "RuntimeError: boom"
    assert reasons["f"].startswith("UnidentifiedImageError")
    assert (meta["items"], meta["answered_items"], meta["failed_items"], meta["answers"]) == (6, 2, 4, 12)
    assert meta["perception"] == "stand-in" and read_json(Path(f"{out}.meta.json")) == meta
    scores = score_dpg(questions, out)
    assert scores["failed_items"] == ["c", "d", "e", "f"] and scores["num_items"] == 6
    # a: cell 0 = (1 + 0) / 2, cell 1: question 2 zeroed by its parent's "no"; b: 2 of 4 cells
    assert scores["overall"] == pytest.approx(100 * (0.125 + 0.5) / 6)


def test_resolution_and_stray_files(bench, tmp_path):
    grids, questions = bench
    meta = answer_grids(grids, questions, tmp_path / "answers.jsonl", stand_in_vqa, resolution=5, progress=False)
    assert meta["answered_items"] == 0 and "expected 10x10" in meta["failed"][0]["reason"]
    Image.new("RGB", (8, 8)).save(grids / "zzz.png")
    out = tmp_path / "again.jsonl"
    with pytest.raises(ValueError, match=r"\['zzz.png'\]"):
        answer_grids(grids, questions, out, stand_in_vqa, progress=False)
    assert not out.exists()


def test_split_cells_matches_scoring_helper():
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (10, 10, 3), dtype=np.uint8))
    assert [np.asarray(c).tolist() for c in split_cells(img, 5)] == [np.asarray(c).tolist() for c in split_grid(img)]
    for size in ((10, 8), (9, 9)):
        with pytest.raises(ValueError, match="2R x 2R"):
            split_cells(Image.new("RGB", size))


def test_read_questions_keeps_every_row(tmp_path):
    assert dpg_official.CSV_COLUMNS == CSV_COLUMNS
    items = read_questions(write_csv(tmp_path / "q.csv", QUESTIONS))
    assert items["a"] == [(1, "Is there something red?"), (2, "Is it green?")]  # the first data row included
    assert list(items) == ["a", "b", "c", "d", "e", "f"]
    (tmp_path / "bad.csv").write_text("item_id,text\nx,y\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_questions(tmp_path / "bad.csv")


def test_dpg_script_stands_alone():
    check_stand_alone(Path(dpg_official.__file__), {"modelscope"})
    with pytest.raises(SystemExit) as exit_info:
        dpg_official.main(["--help"])
    assert exit_info.value.code == 0

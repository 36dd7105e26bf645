"""DPG-Bench scoring rules, official-bug flags and grid helpers, on hand-built question files."""
from __future__ import annotations

import csv
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagenet_t2i.evaluation.dpg.score import (CSV_COLUMNS, make_grid, read_questions, score_dpg, split_grid,
                                               write_scores)
from imagenet_t2i.io import read_json, write_jsonl

TUPLES = {
    "entity": "entity - whole (dog)",
    "attribute": "attribute - color (dog, brown)",
    "relation": "relation - spatial (dog, ball, next to)",
    "other": "other - count (dog, ==2)",
}


def write_csv(path: Path, rows: list[tuple[str, int, str, str]]) -> Path:
    """rows: (item_id, proposition_id, dependency, tuple)."""
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        w.writeheader()
        for item, pid, dep, tup in rows:
            w.writerow({"item_id": item, "text": f"prompt of {item}", "keywords": "k", "proposition_id": pid,
                        "dependency": dep, "category_broad": tup.split(" ")[0], "category_detailed": "d",
                        "tuple": tup, "question_natural_language": f"question {pid}?"})
    return path


def write_answers(path: Path, answers: dict[tuple[str, int, int], str]) -> Path:
    write_jsonl(path, [{"item_id": i, "cell": c, "proposition_id": p, "answer": a} for (i, c, p), a in answers.items()])
    return path


def all_cells(item: str, per_q: dict[int, list[str]]) -> dict[tuple[str, int, int], str]:
    """per_q: proposition id -> its answer in each of the 4 cells."""
    return {(item, c, p): ans[c] for p, ans in per_q.items() for c in range(4)}


Y, N = "yes", "no"


def test_cell_image_and_overall_means(tmp_path):
    q = write_csv(tmp_path / "q.csv", [("a", 1, "0", TUPLES["entity"]), ("a", 2, "0", TUPLES["attribute"]),
                                       ("b", 1, "0", TUPLES["entity"])])
    ans = all_cells("a", {1: [Y, Y, N, N], 2: [Y, N, N, "Yes"]}) | all_cells("b", {1: [Y, Y, Y, "yes."]})
    r = score_dpg(q, write_answers(tmp_path / "a.jsonl", ans))
    a, b = r["items"]
    assert a["cell_scores"] == [1.0, 0.5, 0.0, 0.0] and a["score"] == 0.375  # "Yes" is not "yes"
    assert b["cell_scores"] == [1.0, 1.0, 1.0, 0.0] and b["score"] == 0.75   # nor is "yes."
    assert r["overall"] == pytest.approx(100 * (0.375 + 0.75) / 2)
    assert r["flags"] == {"skip_first_row": False, "last_cell_categories": False}
    assert r["failed_items"] == [] and r["dropped_items"] == [] and r["num_scored"] == 2


def test_dependency_zeroing_is_one_in_place_pass_in_csv_order(tmp_path):
    # CSV order: 1 (parent 2), 2 (parent 3), 3 (root), 4 (parents 3,2), 5 (parent 4).
    q = write_csv(tmp_path / "q.csv", [("a", 1, "2", TUPLES["entity"]), ("a", 2, "3", TUPLES["entity"]),
                                       ("a", 3, "0", TUPLES["entity"]), ("a", 4, "3,2", TUPLES["relation"]),
                                       ("a", 5, "4", TUPLES["attribute"])])
    # Cell 0: 3 = no -> 2 zeroed; 1 read 2 before it was zeroed (stays 1); 4 zeroed via 3; 5 via updated 4.
    ans = all_cells("a", {1: [Y] * 4, 2: [Y] * 4, 3: [N, Y, Y, Y], 4: [Y, Y, Y, N], 5: [Y, Y, Y, Y]})
    r = score_dpg(q, write_answers(tmp_path / "a.jsonl", ans))
    cells = r["items"][0]["cell_scores"]
    assert cells[0] == pytest.approx(1 / 5)  # only question 1 survives; mean over ALL 5 questions
    assert cells[1] == 1.0 and cells[2] == 1.0
    assert cells[3] == pytest.approx(3 / 5)  # 4 = no -> 5 zeroed
    # Categories pool the zeroed scores of all cells: relation = question 4 over 4 cells.
    assert r["l2"]["relation - spatial"] == pytest.approx(100 * 2 / 4)
    assert r["l2"]["attribute - color"] == pytest.approx(100 * 2 / 4)
    assert r["l1"] == {"attribute": pytest.approx(50.0), "entity": pytest.approx(100 * 10 / 12),
                       "relation": pytest.approx(50.0)}


def test_last_cell_categories_flag_uses_raw_last_cell(tmp_path):
    q = write_csv(tmp_path / "q.csv", [("a", 1, "0", TUPLES["entity"]), ("a", 2, "1", TUPLES["other"])])
    ans = all_cells("a", {1: [Y, Y, Y, N], 2: [N, N, N, Y]})
    default = score_dpg(q, write_answers(tmp_path / "a.jsonl", ans))
    flagged = score_dpg(q, tmp_path / "a.jsonl", last_cell_categories=True)
    assert default["overall"] == flagged["overall"] == pytest.approx(100 * (0.5 * 3 + 0) / 4)
    assert default["l2"] == {"entity - whole": 75.0, "other - count": 0.0}
    assert flagged["l2"] == {"entity - whole": 0.0, "other - count": 100.0}  # raw "yes" despite its parent's "no"
    assert flagged["flags"]["last_cell_categories"] is True


def test_skip_first_row_flag_drops_and_reports(tmp_path):
    q = write_csv(tmp_path / "q.csv", [("p97", 1, "0", TUPLES["entity"]), ("p97", 2, "1", TUPLES["attribute"]),
                                       ("b", 1, "0", TUPLES["entity"]), ("c", 1, "0", TUPLES["entity"]),
                                       ("c", 2, "0", TUPLES["entity"])])
    ans = (all_cells("p97", {1: [Y] * 4, 2: [N] * 4}) | all_cells("b", {1: [Y] * 4})
           | all_cells("c", {1: [Y] * 4, 2: [N] * 4}))
    path = write_answers(tmp_path / "a.jsonl", ans)
    default = score_dpg(q, path)
    assert default["overall"] == pytest.approx(100 * (0.5 + 1 + 0.5) / 3)
    flagged = score_dpg(q, path, skip_first_row=True)
    assert flagged["dropped_items"] == ["p97"] and flagged["num_scored"] == 2
    assert flagged["items"][0]["status"] == "dropped" and "absent question 1" in flagged["items"][0]["reason"]
    assert flagged["overall"] == pytest.approx(100 * (1 + 0.5) / 2)
    assert flagged["flags"] == {"skip_first_row": True, "last_cell_categories": False}
    # Without the flag a dependency on an absent question is a CSV error.
    bad = write_csv(tmp_path / "bad.csv", [("a", 2, "1", TUPLES["entity"])])
    with pytest.raises(ValueError, match="absent questions \\[1\\]"):
        read_questions(bad)


def test_missing_answers_count_as_failure(tmp_path):
    q = write_csv(tmp_path / "q.csv", [("a", 1, "0", TUPLES["entity"]), ("b", 1, "0", TUPLES["entity"]),
                                       ("c", 1, "0", TUPLES["entity"])])
    ans = all_cells("a", {1: [Y] * 4}) | all_cells("b", {1: [Y] * 4})
    del ans[("b", 2, 1)]
    r = score_dpg(q, write_answers(tmp_path / "a.jsonl", ans))
    assert r["failed_items"] == ["b", "c"] and r["num_items"] == r["num_scored"] == 3
    assert r["overall"] == pytest.approx(100 / 3)
    assert "1 of 4 answers missing" in r["items"][1]["reason"] and r["items"][2]["score"] == 0.0
    assert r["l2"]["entity - whole"] == pytest.approx(100 / 3)
    out = tmp_path / "scores.json"
    write_scores(out, r)
    assert read_json(out) == r


def test_bad_inputs_raise_clear_errors(tmp_path):
    q = write_csv(tmp_path / "q.csv", [("a", 1, "0", TUPLES["entity"])])
    with pytest.raises(ValueError, match="'zz' question 1 not in"):
        score_dpg(q, write_answers(tmp_path / "a.jsonl", all_cells("a", {1: [Y] * 4}) | {("zz", 0, 1): Y}))
    with pytest.raises(ValueError, match="cell 4"):
        score_dpg(q, write_answers(tmp_path / "a.jsonl", all_cells("a", {1: [Y] * 4}) | {("a", 4, 1): Y}))
    (tmp_path / "cols.csv").write_text("item_id,text\na,b\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_questions(tmp_path / "cols.csv")


def _official_like(rows: list[tuple[str, int, str, str]], answers: dict) -> float:
    """Direct transcription of the official per-image loop (dicts keyed by qid), flags off."""
    qdeps: dict[str, dict[int, list[int]]] = {}
    for item, pid, dep, _ in rows:
        qdeps.setdefault(item, {})[pid] = [int(d) for d in dep.split(",")]
    images = []
    for item, deps in qdeps.items():
        scores = []
        for cell in range(4):
            s = {pid: float(answers[(item, cell, pid)] == "yes") for pid in deps}
            for pid, parents in deps.items():
                if any(p != 0 and s[p] == 0 for p in parents):
                    s[pid] = 0
            scores.append(sum(s.values()) / len(s))
        images.append(sum(scores) / 4)
    return 100 * float(np.mean(images))


def test_matches_official_loop_on_random_items(tmp_path):
    rng = random.Random(0)
    rows = []
    for i in range(30):
        n = rng.randint(1, 8)
        for pid in range(1, n + 1):
            parents = rng.sample(range(1, n + 1), rng.randint(0, min(2, n - 1))) if n > 1 else []
            parents = [p for p in parents if p != pid] or [0]
            rows.append((f"it{i}", pid, ",".join(map(str, parents)), rng.choice(list(TUPLES.values()))))
    answers = {(item, c, pid): rng.choice([Y, Y, N, "Yes"]) for item, pid, _, _ in rows for c in range(4)}
    r = score_dpg(write_csv(tmp_path / "q.csv", rows), write_answers(tmp_path / "a.jsonl", answers))
    assert r["overall"] == pytest.approx(_official_like(rows, answers))


def test_grid_roundtrip_and_order():
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    cells = [Image.new("RGB", (6, 6), c) for c in colours]
    grid = make_grid(cells)
    assert grid.size == (12, 12)
    assert [grid.getpixel(p) for p in [(0, 0), (11, 0), (0, 11), (11, 11)]] == colours
    back = split_grid(grid)
    assert [np.asarray(c).tolist() for c in back] == [np.asarray(c).tolist() for c in cells]
    with pytest.raises(ValueError, match="2R x 2R"):
        split_grid(Image.new("RGB", (12, 10)))
    with pytest.raises(ValueError, match="2R x 2R"):
        split_grid(Image.new("RGB", (11, 11)))
    with pytest.raises(ValueError, match="4 cells"):
        make_grid(cells[:3])


def test_dpg_score_command_writes_the_official_and_the_corrected_scores(tmp_path):
    """With no flags: the official script's overall (its first-row item dropped) beside the corrected one."""
    q = write_csv(tmp_path / "q.csv", [("p97", 1, "0", TUPLES["entity"]), ("p97", 2, "1", TUPLES["attribute"]),
                                       ("b", 1, "0", TUPLES["entity"]), ("c", 1, "0", TUPLES["relation"]),
                                       ("c", 2, "0", TUPLES["entity"])])
    ans = (all_cells("p97", {1: [Y] * 4, 2: [Y, Y, Y, N]}) | all_cells("b", {1: [Y, N, N, N]})
           | all_cells("c", {1: [Y] * 4, 2: [N, N, N, Y]}))
    answers = write_answers(tmp_path / "a.jsonl", ans)
    out = tmp_path / "scores.json"
    subprocess.run([sys.executable, "-m", "imagenet_t2i.cli", "dpg", "score", "--questions", str(q), "--answers",
                    str(answers), "--out", str(out)], check=True, capture_output=True)
    scores = read_json(out)
    p97 = next(it["score"] for it in scores["corrected"]["items"] if it["item_id"] == "p97")
    assert p97 == pytest.approx((1 + 1 + 1 + 0.5) / 4)
    assert scores["dropped_items"] == ["p97"] and scores["corrected"]["dropped_items"] == []
    # they differ by exactly the dropped item: 3 x corrected = 2 x official + 100 x p97
    assert 3 * scores["overall_corrected"] == pytest.approx(2 * scores["overall"] + 100 * p97)
    assert scores["overall"] == pytest.approx(100 * (0.25 + 0.625) / 2)
    # categories: the official script's from the last cell's raw answers, the corrected ones over all cells
    assert scores["l1"]["relation"] == 100.0 and scores["l1_corrected"]["relation"] == 100.0
    assert scores["l1"]["entity"] == pytest.approx(100 * (0 + 1) / 2)  # b's and c's last cells: N, Y
    assert scores["flags"] == {"skip_first_row": True, "last_cell_categories": True}

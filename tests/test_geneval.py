"""GenEval prompt generator, folder layout and official scoring rules."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imagenet_t2i.evaluation.geneval.position import relative_position
from imagenet_t2i.evaluation.geneval.prompts import (TAGS, generate_prompts, iter_samples, make_plural, prepare_layout,
                                                     read_class_names, with_article, write_prompts)
from imagenet_t2i.evaluation.geneval.score import (ScoringOptions, compute_iou, evaluate, filter_detections,
                                                   score_images, summarize, write_results)
from imagenet_t2i.io import read_jsonl, sha256_file, write_jsonl

from .conftest import FIXTURES

GENEVAL = FIXTURES / "geneval"
OFFICIAL_SHA = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"
TINY_CLASSES = ["circle", "square", "triangle", "diamond", "cross", "ring"]


def det(cls: str, box: list[float], score: float, color: str | None = None) -> dict:
    d = {"class": cls, "box": box, "score": score}
    if color is not None:
        d["color"] = color
    return d


# ---- prompts ---------------------------------------------------------------------------------

def test_official_metadata_byte_identical(tmp_path):
    names = read_class_names(GENEVAL / "object_names.txt")
    rows = generate_prompts(names, seed=43)
    out = tmp_path / "evaluation_metadata.jsonl"
    write_prompts(out, rows)
    assert sha256_file(out) == OFFICIAL_SHA
    assert out.read_bytes() == (GENEVAL / "evaluation_metadata.jsonl").read_bytes()
    counts = Counter(r["tag"] for r in rows)
    assert counts == {"single_object": 80, "two_object": 99, "counting": 80, "colors": 94,
                      "position": 100, "color_attr": 100}


def test_article_and_plural_rules():
    assert with_article("apple") == "an apple" and with_article("umbrella") == "an umbrella"
    assert with_article("bus") == "a bus" and with_article("orange") == "an orange"
    assert make_plural("bus") == "buses" and make_plural("sheep") == "sheeps"
    assert make_plural("glass") == "glasses" and make_plural("circle") == "circles"


def test_tiny_vocabulary_prompts_are_consistent():
    rows = generate_prompts(TINY_CLASSES, seed=43)
    assert rows == generate_prompts(TINY_CLASSES, seed=43)
    assert rows != generate_prompts(TINY_CLASSES, seed=44)
    assert len({json.dumps(r, sort_keys=True) for r in rows}) == len(rows)  # duplicates dropped
    counts = Counter(r["tag"] for r in rows)
    assert set(counts) == set(TAGS)
    assert counts["single_object"] == 6 and counts["two_object"] <= 30  # 6 x 5 ordered pairs at most
    words = {2: "two", 3: "three", 4: "four"}
    for r in rows:
        inc = r["include"]
        if r["tag"] == "counting":
            n = inc[0]["count"]
            assert 2 <= n <= 4 and r["exclude"] == [{"class": inc[0]["class"], "count": n + 1}]
            assert r["prompt"] == f"a photo of {words[n]} {make_plural(inc[0]['class'])}"
        if r["tag"] == "position":
            rel, target = inc[1]["position"]
            assert target == 0 and inc[0]["class"] != inc[1]["class"]
            assert r["prompt"] == f"a photo of {with_article(inc[1]['class'])} {rel} {with_article(inc[0]['class'])}"
        if r["tag"] == "color_attr":
            assert inc[0]["class"] != inc[1]["class"] and inc[0]["color"] != inc[1]["color"]


def test_colour_tasks_never_use_person():
    classes = ["person", "cat", "dog", "bus", "apple"]
    rows = generate_prompts(classes, seed=0, n_per_task=200)
    coloured = [i["class"] for r in rows if r["tag"] in ("colors", "color_attr") for i in r["include"]]
    assert coloured and "person" not in coloured
    assert set(coloured) == {"cat", "dog", "bus", "apple"}
    assert any(i["class"] == "person" for r in rows if r["tag"] == "two_object" for i in r["include"])


def test_generator_rejects_too_small_vocabulary():
    with pytest.raises(ValueError, match="at least 2 classes"):
        generate_prompts(["person", "cat"])


# ---- layout ----------------------------------------------------------------------------------

def _fill(paths: list[list[Path]]) -> None:
    for group in paths:
        for p in group:
            Image.new("RGB", (8, 8)).save(p)


def test_layout_roundtrip(tmp_path):
    rows = generate_prompts(TINY_CLASSES, n_per_task=2)[:3]
    paths = prepare_layout(tmp_path, rows, n_samples=2)
    assert paths[1] == [tmp_path / "00001" / "samples" / "0000.png", tmp_path / "00001" / "samples" / "0001.png"]
    _fill(paths)
    got = list(iter_samples(tmp_path))
    assert [g[0] for g in got] == [f"{i:05d}/samples/{j:04d}.png" for i in range(3) for j in range(2)]
    assert [g[1] for g in got] == [r for r in rows for _ in range(2)]


@pytest.mark.parametrize(
    "bad", ["stray_folder", "00000/samples/0000.jpg", "00000/samples/a.png", "00000/grid.png", "notes.txt"]
)
def test_layout_refuses_unexpected_entries(tmp_path, bad):
    _fill(prepare_layout(tmp_path, generate_prompts(TINY_CLASSES, n_per_task=1)[:1], n_samples=1))
    target = tmp_path / bad
    if "." in bad:
        target.write_bytes(b"x")
    else:
        target.mkdir()
    with pytest.raises(ValueError, match="unexpected"):
        list(iter_samples(tmp_path))


# ---- scoring rules ---------------------------------------------------------------------------

def test_relative_position_fixture_cases():
    cases = json.loads((GENEVAL / "relative_position_cases.json").read_text())
    assert cases
    for case in cases:
        got = relative_position(case["box_a_xyxy"], case["box_b_xyxy"], case["position_threshold"])
        assert got == set(case["expected_relations"]), case["name"]


def test_relative_position_margin_scales_with_sizes():
    # Centres 50 apart horizontally; margin 0.1 * (w_a + w_b); "left of" needs (50 - margin) / 50 > 0.5.
    assert relative_position([0, 0, 100, 100], [50, 0, 150, 100]) == {"left of"}  # (50 - 20) / 50
    assert relative_position([0, 0, 200, 100], [50, 0, 250, 100]) == set()       # (50 - 40) / 50
    assert relative_position([0, 0, 200, 100], [50, 0, 250, 100], 0.05) == {"left of"}
    assert relative_position([50, 0, 250, 100], [0, 0, 200, 100], 0.05) == {"right of"}


def test_iou_inclusive_pixels():
    assert compute_iou([0, 0, 9, 9], [0, 0, 9, 9]) == 1.0
    assert compute_iou([0, 0, 9, 9], [5, 0, 14, 9]) == pytest.approx(50 / 150)
    assert compute_iou([0, 0, 9, 9], [20, 20, 29, 29]) == 0.0


def test_filter_threshold_strict_and_counting():
    dets = [det("dog", [0, 0, 10, 10], 0.3), det("dog", [0, 0, 10, 10], 0.31),
            det("dog", [0, 0, 10, 10], 0.95), det("cat", [0, 0, 5, 5], 0.2)]
    kept = filter_detections(dets, "two_object")
    assert [d["score"] for d in kept["dog"]] == [0.95, 0.31] and "cat" not in kept
    kept = filter_detections(dets, "counting")
    assert [d["score"] for d in kept["dog"]] == [0.95]
    assert filter_detections([det("dog", [0, 0, 1, 1], 0.9)], "counting") == {}


def test_filter_top16_and_nms_option():
    dets = [det("cup", [i, 0, i + 10, 10], 0.4 + i / 100) for i in range(20)]
    kept = filter_detections(dets, "single_object")["cup"]
    assert len(kept) == 16 and [d["score"] for d in kept] == sorted((d["score"] for d in dets), reverse=True)[:16]
    # With NMS at 0.5, boxes shifted by one pixel overlap heavily: only every few survive.
    nms = filter_detections(dets, "single_object", ScoringOptions(max_overlap=0.5))["cup"]
    boxes = [d["box"] for d in nms]
    assert 1 < len(nms) < 16
    assert all(compute_iou(a, b) < 0.5 for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_evaluate_include_count_and_exclude():
    meta = {"tag": "counting", "include": [{"class": "cat", "count": 2}], "exclude": [{"class": "cat", "count": 3}]}
    one = filter_detections([det("cat", [0, 0, 5, 5], 0.95)], "counting")
    assert evaluate(one, meta) == (False, "expected cat>=2, found 1")
    two = filter_detections([det("cat", [0, 0, 5, 5], 0.95), det("cat", [9, 0, 15, 5], 0.92),
                             det("cat", [20, 0, 25, 5], 0.85)], "counting")
    assert evaluate(two, meta) == (True, "")
    three = filter_detections([det("cat", [0, 0, 5, 5], 0.95)] * 3, "counting")
    assert evaluate(three, meta) == (False, "expected cat<3, found 3")


def test_evaluate_colour_uses_top_detections():
    meta = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}
    objs = filter_detections([det("car", [0, 0, 5, 5], 0.9, "blue"), det("car", [9, 9, 20, 20], 0.8, "red")], "colors")
    assert evaluate(objs, meta) == (False, "expected red car>=1, found 0 red; and 1 blue")
    objs = filter_detections([det("car", [0, 0, 5, 5], 0.9, "red"), det("car", [9, 9, 20, 20], 0.8)], "colors")
    assert evaluate(objs, meta) == (True, "")
    with pytest.raises(ValueError, match="no 'color' label"):
        evaluate(filter_detections([det("car", [0, 0, 5, 5], 0.9)], "colors"), meta)


def test_evaluate_position_and_missing_target():
    meta = {"tag": "position", "include": [{"class": "dog", "count": 1},
                                           {"class": "cat", "count": 1, "position": ["left of", 0]}]}
    left = filter_detections([det("dog", [200, 0, 300, 100], 0.9), det("cat", [0, 0, 100, 100], 0.9)], "position")
    assert evaluate(left, meta) == (True, "")
    right = filter_detections([det("dog", [0, 0, 100, 100], 0.9), det("cat", [200, 0, 300, 100], 0.9)], "position")
    assert evaluate(right, meta) == (False, "expected cat left of target, found right of target")
    no_dog = filter_detections([det("cat", [0, 0, 100, 100], 0.9)], "position")
    assert evaluate(no_dog, meta) == (False, "expected dog>=1, found 0\nno target for cat to be left of")


def _world(tmp_path: Path) -> tuple[Path, Path, list[dict]]:
    rows = [
        {"tag": "single_object", "include": [{"class": "circle", "count": 1}], "prompt": "a photo of a circle"},
        {"tag": "colors", "include": [{"class": "ring", "count": 1, "color": "red"}], "prompt": "a photo of a red ring"},
    ]
    root = tmp_path / "images"
    _fill(prepare_layout(root, rows, n_samples=2))
    detections = [
        {"image": "00000/samples/0000.png", "detections": [det("circle", [1, 1, 5, 5], 0.8)]},
        {"image": "00000/samples/0001.png", "detections": [det("circle", [1, 1, 5, 5], 0.2)]},
        {"image": "00001/samples/0000.png", "detections": [det("ring", [1, 1, 5, 5], 0.7, "red")]},
        {"image": "00001/samples/0001.png", "detections": [det("ring", [2, 2, 6, 6], 0.7, "green")]},
    ]
    path = tmp_path / "detections.jsonl"
    write_jsonl(path, detections)
    return root, path, detections


def test_score_images_end_to_end(tmp_path):
    root, path, _ = _world(tmp_path)
    rows = score_images(root, path)
    assert [r["correct"] for r in rows] == [True, False, True, False]
    assert rows[1]["reason"] == "expected circle>=1, found 0"
    assert rows[3]["reason"] == "expected red ring>=1, found 0 red; and 1 green"
    assert rows[0]["filename"].endswith("00000/samples/0000.png")
    assert json.loads(rows[0]["details"]) == {"circle": [[1, 1, 5, 5, 0.8]]}
    assert json.loads(rows[2]["metadata"])["prompt"] == "a photo of a red ring"
    out = tmp_path / "results.jsonl"
    write_results(out, rows)
    assert read_jsonl(out) == rows


def test_score_images_detection_mismatch(tmp_path):
    root, path, detections = _world(tmp_path)
    write_jsonl(path, detections[:-1])
    with pytest.raises(ValueError, match="1 images without detections"):
        score_images(root, path)
    write_jsonl(path, detections + [{"image": "00009/samples/0000.png", "detections": []}])
    with pytest.raises(ValueError, match="1 detection lines for absent images"):
        score_images(root, path)


def _rows(spec: dict[str, list[bool]]) -> list[dict]:
    return [{"tag": t, "correct": c, "metadata": f"{t}-{i // 2}"} for t, cs in spec.items() for i, c in enumerate(cs)]


def test_summarize_unweighted_over_tags():
    spec = {t: [True] for t in TAGS}
    spec["counting"] = [True, False, False, False]  # 0.25 over images, not weighted by count
    s = summarize(_rows(spec))
    assert s["tags"]["counting"] == {"score": 0.25, "correct": 1, "images": 4}
    assert s["overall"] == pytest.approx(np.mean([1, 1, 0.25, 1, 1, 1]))
    assert s["images"] == 9 and s["correct_images"] == pytest.approx(6 / 9)
    assert s["prompts"] == 7 and s["correct_prompts"] == pytest.approx(6 / 7)  # any image correct
    assert s["missing_tags"] == []


def test_summarize_missing_tag():
    spec = {t: [True, False] for t in TAGS if t != "position"}
    with pytest.raises(ValueError, match=r"\['position'\]"):
        summarize(_rows(spec))
    s = summarize(_rows(spec), allow_missing_tags=True)
    assert s["missing_tags"] == ["position"] and s["overall"] == pytest.approx(0.5) and len(s["tags"]) == 5

"""The tiny-world DPG benchmark: generation, question graphs, detection-based answers, official scoring."""
from __future__ import annotations

import csv
import re

import numpy as np
import pytest
from PIL import Image

from imagenet_t2i.evaluation.dpg.score import CSV_COLUMNS, make_grid, read_questions, score_dpg
from imagenet_t2i.evaluation.dpg.tiny import (GAP_PX, SOURCE, answer_grids, answer_question, benchmark_items,
                                              cell_background, generate_benchmark, parse_tuple, render_reference_grids,
                                              write_benchmark)
from imagenet_t2i.evaluation.geneval.detector import detect
from imagenet_t2i.evaluation.geneval.position import relative_position
from imagenet_t2i.io import read_jsonl
from imagenet_t2i.world import BACKGROUNDS, COLORS, DEFAULT_CLASSES, render_scene, size_label

VOCAB = dict(classes=DEFAULT_CLASSES, colors=list(COLORS), backgrounds=list(BACKGROUNDS))
L1 = {"entity", "attribute", "relation", "other", "global"}


def det(cls, box, color, score=0.9):
    return {"class": cls, "box": box, "score": score, "color": color}


def cell(background="gray", size=32):
    """A flat cell of a named background."""
    return np.broadcast_to(np.asarray(BACKGROUNDS[background], np.uint8), (size, size, 3)).copy()


def test_generated_rows_follow_the_official_csv_and_are_deterministic(tmp_path):
    prompts, questions = generate_benchmark(**VOCAB, n_items=60, seed=3)
    assert [p["item_id"] for p in prompts] == [f"tiny{i:05d}" for i in range(60)]
    assert all(set(p) == {"item_id", "source", "prompt"} and p["source"] == SOURCE for p in prompts)
    assert all(set(q) == set(CSV_COLUMNS) for q in questions)
    assert (prompts, questions) == generate_benchmark(**VOCAB, n_items=60, seed=3)
    assert generate_benchmark(**VOCAB, n_items=5, seed=3)[0] == prompts[:5]  # item i depends on (seed, i) only
    assert generate_benchmark(**VOCAB, n_items=5, seed=4)[0] != prompts[:5]

    items = benchmark_items(**VOCAB, n_items=60, seed=3)
    paths = write_benchmark(tmp_path / "bench", items)
    assert read_jsonl(paths["prompts"]) == prompts
    assert read_jsonl(paths["scenes"]) == [it.scene for it in items]
    with open(paths["questions"], newline="") as f:
        assert list(csv.DictReader(f)) == questions
    parsed = read_questions(paths["questions"])  # dpg_score's own reader: ids, dependencies, categories
    assert list(parsed) == [p["item_id"] for p in prompts]
    seen_l2 = {q.l2 for qs in parsed.values() for q in qs}
    assert {q.l1 for qs in parsed.values() for q in qs} == L1
    assert seen_l2 == {"entity - whole", "attribute - color", "attribute - size", "relation - spatial",
                       "other - count", "global -"}
    for item, qs in parsed.items():
        ids = [q.proposition_id for q in qs]
        assert ids == list(range(1, len(qs) + 1))
        entities = {q.proposition_id for q in qs if q.l1 == "entity"}
        for q in qs:
            if q.l1 in ("entity", "global"):
                assert q.parents == (0,)
            else:  # attributes, counts and relations hang on their entity questions, asked earlier
                assert set(q.parents) <= entities and max(q.parents) < q.proposition_id
                assert len(q.parents) == (2 if q.l1 == "relation" else 1)


def test_prompts_describe_drawable_scenes_with_geneval_consistent_relations():
    items = benchmark_items(**VOCAB, n_items=150, seed=0)
    assert {len(it.scene["objects"]) for it in items} == {1, 2, 3}
    for it in items:
        objs = it.scene["objects"]
        for o in objs:
            x1, y1, x2, y2 = o["box"]
            assert 0 <= x1 < x2 <= 32 and 0 <= y1 < y2 <= 32 and size_label((x2 - x1) / 32) == o["size"]
            assert f"{o['color']} {o['class']}" in it.prompt or f"{o['color']} {o['class']}s" in it.prompt
        for i, a in enumerate(objs):
            for b in objs[i + 1:]:
                ba, bb = a["box"], b["box"]
                gap = max(bb[0] - ba[2], ba[0] - bb[2], bb[1] - ba[3], ba[1] - bb[3])
                assert gap >= GAP_PX - 1e-9, (it.item_id, ba, bb)
        assert it.scene["backgrounds"][0] in it.prompt
        boxes = {o["class"]: o["box"] for o in objs}
        for q in it.questions:
            l1, l2, args = parse_tuple(q["tuple"])
            if l2 == "spatial":
                assert args[2] in relative_position(boxes[args[0]], boxes[args[1]])
                assert f"the {args[1]}" in q["question_natural_language"]
            if l2 == "count":
                assert sum(o["class"] == args[0] for o in objs) == int(args[1][2:]) >= 2
            if l2 == "size":
                assert [o["size"] for o in objs if o["class"] == args[0]] == [args[1]]
                assert f"The {args[0]} is " in it.prompt


def test_small_vocabularies_and_bad_names():
    items = benchmark_items(classes=["ring"], colors=["red"], backgrounds=["beige"], n_items=20, seed=0)
    assert {len(it.scene["objects"]) for it in items} == {1, 2, 3}  # one class: several rings are counted
    for it in items:
        n = len(it.scene["objects"])
        counts = [q["tuple"] for q in it.questions if q["category_broad"] == "other"]
        assert counts == ([f"other - count (ring, =={n})"] if n > 1 else [])
        assert not any(q["category_broad"] == "relation" for q in it.questions)
    with pytest.raises(ValueError, match="unknown colors"):
        benchmark_items(classes=["ring"], colors=["teal"], backgrounds=["beige"], n_items=1, seed=0)


@pytest.mark.parametrize("bad", ["entity whole (circle)", "relation - spatial circle"])
def test_malformed_tuples_are_refused(bad):
    with pytest.raises(ValueError, match="L1 - L2"):
        parse_tuple(bad)


def test_each_question_type_answered_from_hand_built_detections():
    img = cell("beige")
    red_circle, blue_square = det("circle", [2, 10, 12, 20], "red"), det("square", [18, 10, 30, 22], "blue")
    dets = [red_circle, blue_square, det("square", [20, 0, 28, 8], "green", score=0.5)]

    def ask(tup, detections=dets, image=img):
        return answer_question(*parse_tuple(tup), detections, image)

    assert ask("entity - whole (circle)") and not ask("entity - whole (ring)")
    assert ask("attribute - color (circle, red)") and not ask("attribute - color (circle, blue)")
    assert ask("attribute - color (square, green)")  # any detection of the class with that colour
    assert ask("other - count (square, ==2)") and not ask("other - count (square, ==1)")
    assert not ask("other - count (ring, ==2)")
    # size from the best detection's larger side over the cell side: 10/32 small, 12/32 small
    assert ask("attribute - size (circle, small)") and not ask("attribute - size (circle, large)")
    assert ask("attribute - size (square, medium)", [det("square", [0, 0, 16, 15], "blue")])
    assert not ask("attribute - size (ring, small)")
    # spatial between the best detections (blue square, score 0.9, not the green one above it)
    assert ask("relation - spatial (circle, square, left of)") and ask("relation - spatial (square, circle, right of)")
    assert not ask("relation - spatial (circle, square, above)")
    assert not ask("relation - spatial (circle, ring, left of)")
    assert ask("global - (background beige)") and not ask("global - (background gray)")
    with pytest.raises(ValueError, match="no rule answers"):
        ask("attribute - texture (circle, wooden)")
    with pytest.raises(ValueError, match="==N"):
        ask("other - count (circle, >=2)")


def test_background_read_from_the_border_even_under_objects():
    scene = {"key": "bg", "size": 32, "source": "render", "backgrounds": ["dark gray"], "parents": [], "pattern": None,
             "objects": [{"class": "square", "color": "white", "size": "large", "box": [0, 0, 22, 22]}]}
    assert cell_background(render_scene(scene)) == "dark gray"  # the square covers ~45% of the border
    for name in BACKGROUNDS:
        assert cell_background(cell(name)) == name
    assert cell_background(cell("gray") * 0 + np.uint8(220)) is None  # white-ish: an object colour, no background
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert cell_background(noise) is None


def _bench(tmp_path, n_items, seed=0):
    items = benchmark_items(**VOCAB, n_items=n_items, seed=seed)
    return items, write_benchmark(tmp_path / "bench", items)


def _save_grids(folder, items, cells_of):
    folder.mkdir(parents=True, exist_ok=True)
    for it in items:
        make_grid([Image.fromarray(c) for c in cells_of(it)]).save(folder / f"{it.item_id}.png")


def test_answers_file_dependencies_and_missing_grids_through_score_dpg(tmp_path):
    items, paths = _bench(tmp_path, 6)
    # A fake detector that always sees the first item's objects exactly (from the scene record).
    truth = [det(o["class"], o["box"], o["color"]) for o in items[0].scene["objects"]]
    bg = items[0].scene["backgrounds"][0]
    _save_grids(tmp_path / "grids", items[:5], lambda it: [cell(bg)] * 4)  # item 5 has no grid
    out = tmp_path / "answers.jsonl"
    seen = []

    def fake_detect(image):
        seen.append(image.shape)
        return truth + [det("ring", [0, 0, 4, 4], "red", score=0.3)]  # at the threshold: dropped

    report = answer_grids(tmp_path / "grids", paths["questions"], out, detect_fn=fake_detect)
    assert report == {"answered": [it.item_id for it in items[:5]], "missing": [items[5].item_id]}
    assert seen == [(32, 32, 3)] * 20
    rows = read_jsonl(out)
    assert len(rows) == 4 * sum(len(it.questions) for it in items[:5])
    assert {r["answer"] for r in rows} == {"yes", "no"} and {r["cell"] for r in rows} == {0, 1, 2, 3}
    first = [r for r in rows if r["item_id"] == items[0].item_id]
    assert all(r["answer"] == "yes" for r in first)

    result = score_dpg(paths["questions"], out)
    assert result["failed_items"] == [items[5].item_id]
    by_item = {r["item_id"]: r for r in result["items"]}
    assert by_item[items[0].item_id]["score"] == 1.0
    # Other items: any question whose entity is absent scores 0 even if its raw answer would be "yes".
    present = {d["class"] for d in truth}
    for it in items[1:5]:
        expected = []
        for q in it.questions:
            l1, l2, args = parse_tuple(q["tuple"])
            entities = [] if l1 == "global" else args[:2] if l1 == "relation" else args[:1]
            expected.append(answer_question(l1, l2, args, truth, cell(bg)) and all(e in present for e in entities))
        assert by_item[it.item_id]["score"] == pytest.approx(np.mean(expected))
    assert result["overall"] == pytest.approx(100 * np.mean([by_item[it.item_id]["score"] for it in items]))


def test_wrong_grid_size_names_the_file(tmp_path):
    items, paths = _bench(tmp_path, 1)
    (tmp_path / "grids").mkdir()
    Image.new("RGB", (64, 60)).save(tmp_path / "grids" / f"{items[0].item_id}.png")
    with pytest.raises(ValueError, match=re.escape(f"{items[0].item_id}.png")):
        answer_grids(tmp_path / "grids", paths["questions"], tmp_path / "a.jsonl", detect_fn=lambda im: [])


def test_rendered_ground_truth_scores_high_and_noise_low(tmp_path):
    items, paths = _bench(tmp_path, 40, seed=1)
    render_reference_grids([it.scene for it in items], tmp_path / "truth")
    answer_grids(tmp_path / "truth", paths["questions"], tmp_path / "truth.jsonl", detect_fn=detect)
    truth = score_dpg(paths["questions"], tmp_path / "truth.jsonl")
    assert truth["failed_items"] == [] and truth["overall"] >= 90, truth["l2"]

    rng = np.random.default_rng(0)
    _save_grids(tmp_path / "noise", items, lambda it: rng.integers(0, 256, (4, 32, 32, 3), dtype=np.uint8))
    answer_grids(tmp_path / "noise", paths["questions"], tmp_path / "noise.jsonl", detect_fn=detect)
    assert score_dpg(paths["questions"], tmp_path / "noise.jsonl")["overall"] < 20

    _save_grids(tmp_path / "flat", items, lambda it: [cell("gray")] * 4)
    answer_grids(tmp_path / "flat", paths["questions"], tmp_path / "flat.jsonl", detect_fn=detect)
    assert score_dpg(paths["questions"], tmp_path / "flat.jsonl")["overall"] < 20

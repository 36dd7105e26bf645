"""The tiny world's GenEval perception backend: a pixel-reading shapes detector."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from PIL import Image

from imagenet_t2i.augment import apply_cutmix
from imagenet_t2i.evaluation.geneval.detector import detect, detect_folder, match_detections
from imagenet_t2i.io import read_jsonl
from imagenet_t2i.world import BACKGROUNDS, COLORS, DEFAULT_CLASSES, SIZE_RANGES, render_scene, sample_scene

ALL = dict(classes=DEFAULT_CLASSES, colors=list(COLORS), backgrounds=list(BACKGROUNDS))


def held_out_grid(size, seed):
    """One fresh render for every class x colour x size x background (720 scenes)."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (cls, color, size_name, bg) in enumerate(
        itertools.product(DEFAULT_CLASSES, COLORS, SIZE_RANGES, BACKGROUNDS)
    ):
        while True:  # draw positions with the world's sampler until the combination comes up
            s = sample_scene(rng, f"heldout_{seed}_{i}", size, [cls], [color], [bg])
            if s["objects"][0]["size"] == size_name:
                out.append(s)
                break
    return out


def precision_recall(scenes):
    tp = kept = gt = 0
    for s in scenes:
        t, k, g = match_detections(detect(render_scene(s)), s["objects"])
        tp, kept, gt = tp + t, kept + k, gt + g
    return tp / max(kept, 1), tp / gt


def test_clean_renders_every_combination_at_32px():
    scenes = held_out_grid(32, seed=1001)
    p, r = precision_recall(scenes)
    assert p >= 0.95 and r >= 0.95, (p, r)


def test_clean_renders_at_64px_and_confident_scores():
    rng = np.random.default_rng(2002)
    scenes = [sample_scene(rng, f"fresh_{i}", 64, **ALL) for i in range(150)]
    p, r = precision_recall(scenes)
    assert p >= 0.95 and r >= 0.95, (p, r)
    top = [detect(render_scene(s))[0]["score"] for s in scenes[:60]]
    assert np.mean(np.array(top) > 0.9) >= 0.9  # clear objects pass GenEval's counting threshold


def test_several_objects_per_image():
    rng = np.random.default_rng(3003)
    scenes = []
    while len(scenes) < 80:
        objs = []
        for _ in range(3):
            o = sample_scene(rng, "m", 64, **ALL)["objects"][0]
            apart = all(o["box"][2] <= q["box"][0] or q["box"][2] <= o["box"][0] or o["box"][3] <= q["box"][1]
                        or q["box"][3] <= o["box"][1] for q in objs)
            if o["size"] != "large" and apart:
                objs.append(o)
        if len(objs) >= 2:
            scenes.append({"key": f"multi_{len(scenes)}", "size": 64, "backgrounds": ["gray"], "objects": objs})
    p, r = precision_recall(scenes)
    assert p >= 0.95 and r >= 0.95, (p, r)


def test_cutmix_composites_are_mostly_found():
    rng = np.random.default_rng(4004)
    tp = kept = gt = 0
    for i in range(60):
        a, b = (sample_scene(rng, f"cm_{i}_{j}", 64, **ALL) for j in range(2))
        img, rec = apply_cutmix(render_scene(a), a, render_scene(b), b, "all", rng)
        t, k, g = match_detections(detect(img), rec["objects"])
        tp, kept, gt = tp + t, kept + k, gt + g
    assert tp / kept >= 0.8 and tp / gt >= 0.85, (tp / kept, tp / gt)


@pytest.mark.parametrize("size", [32, 64])
def test_noise_and_flat_images_give_nothing_confident(size):
    rng = np.random.default_rng(5005)
    confident = 0
    for i in range(40):
        noise = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        confident += sum(d["score"] > 0.3 for d in detect(noise))
    assert confident <= 1
    flats = [render_scene({"key": f"empty_{bg}_{i}", "size": size, "backgrounds": [bg], "objects": []})
             for bg in BACKGROUNDS for i in range(5)]
    flats += [np.full((size, size, 3), rng.integers(0, 256, 3), dtype=np.uint8) for _ in range(20)]
    flats += [np.full((size, size, 3), COLORS[c], dtype=np.uint8) for c in COLORS]  # a coloured backdrop
    assert [d for img in flats for d in detect(img) if d["score"] > 0.3] == []


def test_detection_format():
    s = {"key": "fmt", "size": 32, "backgrounds": ["beige"],
         "objects": [{"class": "ring", "color": "purple", "size": "large", "box": [4.0, 6.0, 26.0, 28.0]}]}
    dets = detect(render_scene(s))
    assert dets and set(dets[0]) == {"class", "box", "score", "color"}
    assert (dets[0]["class"], dets[0]["color"]) == ("ring", "purple")
    assert np.allclose(dets[0]["box"], [4, 6, 26, 28], atol=1)
    assert all(0 < d["score"] <= 1 for d in dets)
    assert [d["score"] for d in dets] == sorted((d["score"] for d in dets), reverse=True)
    with pytest.raises(ValueError, match="RGB"):
        detect(np.zeros((8, 8), np.uint8))


def test_match_detections_counts_class_colour_and_overlap():
    objs = [{"class": "circle", "color": "red", "box": [0, 0, 10, 10]},
            {"class": "square", "color": "blue", "box": [20, 20, 30, 30]}]
    dets = [{"class": "circle", "color": "red", "box": [1, 1, 10, 10], "score": 0.9},   # match
            {"class": "circle", "color": "red", "box": [0, 0, 10, 10], "score": 0.8},   # duplicate
            {"class": "square", "color": "green", "box": [20, 20, 30, 30], "score": 0.9},  # wrong colour
            {"class": "square", "color": "blue", "box": [20, 20, 30, 30], "score": 0.2}]   # below 0.3
    assert match_detections(dets, objs) == (1, 3, 2)


def test_detect_folder_writes_one_line_per_sample(tmp_path):
    rng = np.random.default_rng(6006)
    expected = {}
    for p in range(2):
        folder = tmp_path / "images" / f"{p:05d}"
        (folder / "samples").mkdir(parents=True)
        (folder / "metadata.jsonl").write_text(json.dumps({"tag": "single_object", "prompt": "x", "include": []}))
        for n in range(2):
            img = render_scene(sample_scene(rng, f"g{p}{n}", 32, **ALL))
            Image.fromarray(img).save(folder / "samples" / f"{n:04d}.png")
            expected[f"{p:05d}/samples/{n:04d}.png"] = detect(img)
    assert detect_folder(tmp_path / "images", tmp_path / "det.jsonl", progress=False) == 4
    rows = read_jsonl(tmp_path / "det.jsonl")
    assert [r["image"] for r in rows] == sorted(expected)
    assert all(r["detections"] == expected[r["image"]] for r in rows)
    (tmp_path / "images" / "notes").mkdir()
    with pytest.raises(ValueError, match="notes"):
        detect_folder(tmp_path / "images", tmp_path / "det2.jsonl", progress=False)

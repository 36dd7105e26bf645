"""The synthetic world: scene sampling, rendering, split building."""
from __future__ import annotations

import itertools
import time

import numpy as np
import pytest
from PIL import Image

from imagenet_t2i.io import read_json, read_jsonl
from imagenet_t2i.world import (BACKGROUNDS, COLORS, DEFAULT_CLASSES, SIZE_RANGES, build_split, coverage, render_scene,
                                sample_scene, size_label)

ALL = dict(classes=DEFAULT_CLASSES, colors=list(COLORS), backgrounds=list(BACKGROUNDS))


def scene_with(objects, size=32, background="gray", key="k"):
    return {"key": key, "size": size, "source": "render", "backgrounds": [background],
            "objects": objects, "parents": [], "pattern": None}


def test_default_vocabulary_is_geneval_colours_and_six_shapes():
    assert list(COLORS) == ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white"]
    assert set(DEFAULT_CLASSES) == {"circle", "square", "triangle", "diamond", "cross", "ring"}
    rgb = {k: np.array(v, float) for k, v in COLORS.items()}
    assert min(np.linalg.norm(rgb[a] - rgb[b]) for a, b in itertools.combinations(rgb, 2)) > 90
    for bg in BACKGROUNDS.values():
        assert min(np.linalg.norm(np.array(bg, float) - c) for c in rgb.values()) > 90


def test_sample_scene_record_matches_format():
    rng = np.random.default_rng(0)
    for i in range(300):
        s = sample_scene(rng, f"k{i}", 32, **ALL)
        assert set(s) == {"key", "size", "source", "backgrounds", "objects", "parents", "pattern"}
        assert (s["key"], s["size"], s["source"], s["parents"], s["pattern"]) == (f"k{i}", 32, "render", [], None)
        assert len(s["backgrounds"]) == 1 and s["backgrounds"][0] in BACKGROUNDS
        (obj,) = s["objects"]
        assert set(obj) == {"class", "color", "size", "box"}
        x1, y1, x2, y2 = obj["box"]
        assert 0 <= x1 < x2 <= 32 and 0 <= y1 < y2 <= 32
        lo, hi = SIZE_RANGES[obj["size"]]
        assert lo * 32 - 0.02 <= x2 - x1 <= hi * 32 and abs((x2 - x1) - (y2 - y1)) < 0.02
        assert size_label((x2 - x1) / 32) == obj["size"]


def test_a_world_of_large_objects_only_and_the_default_drawing_all_three_sizes():
    """source.sizes: the categories drawn; all three (the default) draws the scenes it always drew."""
    default = [sample_scene(np.random.default_rng(i), f"k{i}", 32, **ALL) for i in range(200)]
    explicit = [sample_scene(np.random.default_rng(i), f"k{i}", 32, **ALL, sizes=["small", "medium", "large"])
                for i in range(200)]
    assert default == explicit and {s["objects"][0]["size"] for s in default} == set(SIZE_RANGES)
    large = [sample_scene(np.random.default_rng(i), f"k{i}", 32, **ALL, sizes=["large"]) for i in range(200)]
    assert {s["objects"][0]["size"] for s in large} == {"large"}
    lo, hi = SIZE_RANGES["large"]
    assert all(lo * 32 - 0.02 <= s["objects"][0]["box"][2] - s["objects"][0]["box"][0] <= hi * 32 for s in large)


def test_centre_placement_draws_the_same_scenes_with_the_object_in_the_middle(tmp_path):
    """source.placement: centre keeps every draw of the random placement and moves the object's box to the middle."""
    rand = build_split(tmp_path / "r", "train", 30, seed=0, size=16, progress=False, **ALL, sizes=["large"])
    mid = build_split(tmp_path / "c", "train", 30, seed=0, size=16, progress=False, **ALL, sizes=["large"],
                      placement="centre")
    assert read_jsonl(tmp_path / "c" / "scenes.jsonl") == mid
    moved = 0
    for r, c in zip(rand, mid):
        (ro,), (co,) = r["objects"], c["objects"]
        assert {k: v for k, v in ro.items() if k != "box"} == {k: v for k, v in co.items() if k != "box"}
        assert r["backgrounds"] == c["backgrounds"]
        x1, y1, x2, y2 = co["box"]
        assert abs((x2 - x1) - (ro["box"][2] - ro["box"][0])) < 0.02
        assert abs(x1 + x2 - 16) < 0.02 and abs(y1 + y2 - 16) < 0.02
        moved += abs(ro["box"][0] + ro["box"][2] - 16) > 1
    assert moved > 10  # the random placement does move objects off the centre
    with pytest.raises(ValueError, match="unknown placement 'middle'.*centre"):
        sample_scene(np.random.default_rng(0), "k", 16, **ALL, placement="middle")


@pytest.mark.parametrize("kind,kwargs", [("classes", {"classes": ["circle", "hexagon"]}),
                                         ("colors", {"colors": ["red", "teal"]}),
                                         ("backgrounds", {"backgrounds": ["sky"]}),
                                         ("sizes", {"sizes": ["huge"]})])
def test_unknown_names_raise_clear_errors(kind, kwargs):
    args = {**ALL, **kwargs}
    with pytest.raises(ValueError, match=f"unknown {kind}.*valid {kind}"):
        sample_scene(np.random.default_rng(0), "k", 32, **args)


def test_render_is_deterministic_and_draws_colour_on_textured_background():
    s = scene_with([{"class": "square", "color": "red", "size": "medium", "box": [8.0, 8.0, 24.0, 24.0]}])
    img = render_scene(s)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert np.array_equal(img, render_scene(s))
    assert not np.array_equal(img, render_scene({**s, "key": "other"}))  # texture seeded by key
    inside = img[9:23, 9:23].reshape(-1, 3).astype(float)
    assert np.abs(inside - COLORS["red"]).max() < 15
    outside = np.concatenate([img[:6].reshape(-1, 3), img[26:].reshape(-1, 3)]).astype(float)
    assert np.abs(outside - BACKGROUNDS["gray"]).max() < 25
    assert outside.std() > 1.0  # not flat


def test_box_is_the_tight_extent_of_every_shape():
    box = [5.3, 7.6, 21.7, 24.0]
    for cls in DEFAULT_CLASSES:
        cov = coverage(cls, box, 32)
        ys, xs = np.nonzero(cov > 0)
        assert xs.min() == 5 and xs.max() == 21 and ys.min() == 7 and ys.max() == 23, cls
        cols, rows = cov.sum(0), cov.sum(1)
        assert cols[4] == 0 and cols[22] == 0 and rows[6] == 0 and rows[24] == 0, cls


@pytest.mark.parametrize("size", [32, 64])
def test_shapes_stay_distinguishable(size):
    side = SIZE_RANGES["small"][0] * size
    box = [2.0, 2.0, 2.0 + side, 2.0 + side]
    masks = {c: coverage(c, box, size) >= 0.5 for c in DEFAULT_CLASSES}
    for a, b in itertools.combinations(masks, 2):
        iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
        assert iou < 0.9 and (masks[a] ^ masks[b]).sum() >= 8, (a, b, iou)


def test_objects_are_drawn_in_order():
    a = {"class": "square", "color": "blue", "size": "medium", "box": [4.0, 4.0, 20.0, 20.0]}
    b = {"class": "square", "color": "yellow", "size": "medium", "box": [12.0, 12.0, 28.0, 28.0]}
    ab, ba = render_scene(scene_with([a, b])), render_scene(scene_with([b, a]))
    assert np.abs(ab[15, 15].astype(float) - COLORS["yellow"]).max() < 15
    assert np.abs(ba[15, 15].astype(float) - COLORS["blue"]).max() < 15
    assert np.array_equal(ab[:12, :12], ba[:12, :12])


def test_antialias_blends_edges_only_when_enabled():
    s = scene_with([{"class": "circle", "color": "black", "size": "large", "box": [3.3, 3.3, 27.7, 27.7]}])
    cov_aa = coverage("circle", s["objects"][0]["box"], 32, antialias=True)
    cov_hard = coverage("circle", s["objects"][0]["box"], 32, antialias=False)
    assert ((cov_aa > 0) & (cov_aa < 1)).sum() > 20
    assert set(np.unique(cov_hard)) <= {0.0, 1.0}
    assert not np.array_equal(render_scene(s, antialias=True), render_scene(s, antialias=False))


def test_build_split_layout_determinism_and_balance(tmp_path):
    scenes = build_split(tmp_path / "a", "train", 60, seed=3, size=32, progress=False, **ALL)
    index = read_jsonl(tmp_path / "a" / "index.jsonl")
    assert [r["key"] for r in index] == [f"train_{i:06d}" for i in range(60)]
    assert read_jsonl(tmp_path / "a" / "scenes.jsonl") == scenes
    assert read_json(tmp_path / "a" / "classes.json") == {c: c for c in DEFAULT_CLASSES}
    counts = {c: sum(r["class"] == c for r in index) for c in DEFAULT_CLASSES}
    assert set(counts.values()) == {10}
    for row, scene in zip(index[:10], scenes):
        assert row["path"] == f"images/{row['key']}.png" and row["class"] == scene["objects"][0]["class"]
        png = np.asarray(Image.open(tmp_path / "a" / row["path"]))
        assert np.array_equal(png, render_scene(scene))  # PNG is lossless; the record reproduces it
    assert len({(s["objects"][0]["color"], s["backgrounds"][0]) for s in scenes}) > 15

    again = build_split(tmp_path / "b", "train", 60, seed=3, size=32, progress=False, **ALL)
    other = build_split(tmp_path / "c", "train", 60, seed=4, size=32, progress=False, **ALL)
    val = build_split(tmp_path / "d", "val", 60, seed=3, size=32, progress=False, **ALL)
    assert again == scenes
    png = "images/train_000007.png"
    assert (tmp_path / "a" / png).read_bytes() == (tmp_path / "b" / png).read_bytes()
    assert [s["objects"] for s in other] != [s["objects"] for s in scenes]
    assert [s["objects"] for s in val] != [s["objects"] for s in scenes]


def test_build_split_rerun_replaces_images(tmp_path):
    build_split(tmp_path, "train", 12, seed=0, size=32, progress=False, **ALL)
    build_split(tmp_path, "train", 5, seed=0, size=32, progress=False, **ALL)
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [f"train_{i:06d}.png" for i in range(5)]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_rendering_3000_small_images_is_fast():
    rng = np.random.default_rng(0)
    scenes = [sample_scene(rng, f"k{i}", 32, **ALL) for i in range(3000)]
    t0 = time.perf_counter()
    for s in scenes:
        render_scene(s)
    assert time.perf_counter() - t0 < 20.0

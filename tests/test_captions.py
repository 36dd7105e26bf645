"""Captioners: AIO template, scene-based TA descriptions, VLM post-processing, caption files."""
from __future__ import annotations

import re

import numpy as np
import pytest

from imagenet_t2i.captions import AIOCaptioner, Captioner, SceneCaptioner, clean_vlm_caption, write_captions
from imagenet_t2i.evaluation.geneval.position import relative_position
from imagenet_t2i.io import read_jsonl
from imagenet_t2i.world import BACKGROUNDS, COLORS, DEFAULT_CLASSES, sample_scene

ALL = dict(classes=DEFAULT_CLASSES, colors=list(COLORS), backgrounds=list(BACKGROUNDS))
SIZE_WORDS = {"small": ("small", "little", "tiny"), "medium": ("medium-sized", "mid-sized", "moderately sized"),
              "large": ("large", "big")}
REL_PHRASES = {"to the left of": "left of", "to the right of": "right of", "above": "above", "below": "below"}


def scenes(n, seed=0, size=32):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, f"train_{i:06d}", size, **ALL) for i in range(n)]


def two_object_scenes(n, seed=0, size=64):
    """Random scenes with two objects (as CutMix composites have), boxes anywhere."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a, b = (sample_scene(rng, "x", size, **ALL) for _ in range(2))
        out.append({**a, "key": f"pair_{i}", "objects": a["objects"] + b["objects"],
                    "backgrounds": a["backgrounds"] + b["backgrounds"]})
    return out


def sentences(text):
    return [s for s in re.split(r"(?<=\.)\s+", text) if s]


def test_aio_is_the_paper_template_from_class_names():
    cap = AIOCaptioner({"n01440764": "tench, Tinca tinca", **{c: c for c in DEFAULT_CLASSES}})
    rows = [{"key": "a", "class": "n01440764", "path": "x"}, {"key": "b", "class": "circle", "path": "y"}]
    assert cap.caption(rows) == ["An image of tench, Tinca tinca", "An image of circle"]
    assert cap.caption(scenes(1)) == [f"An image of {scenes(1)[0]['objects'][0]['class']}"]
    with pytest.raises(KeyError, match="'zz'.*classes.json"):
        cap.caption([{"key": "zz", "class": "n99"}])
    with pytest.raises(ValueError, match="no 'class' and 0 objects"):
        cap.caption([{"key": "e", "objects": []}])


@pytest.mark.parametrize("raw,expected", [
    ("user\n\nDescribe this image assistant\n\nThe image shows a dog. It sits on a", "The image shows a dog."),
    ("assistant says hi assistant\nA red\nball. Done.", "A redball. Done."),
    ("user Describe this image assistant\n\nA cat on a mat", "A cat on a mat."),
    ("no marker. second sentence. third unfinished", "no marker. second sentence."),
])
def test_clean_vlm_caption_follows_the_official_postprocessing(raw, expected):
    assert clean_vlm_caption(raw) == expected


LLAMA3_PREFIX = "user\n\n\nDescribe this imageassistant\n\n"  # the decoded prompt, special tokens skipped


@pytest.mark.parametrize("generation,expected", [
    ("The image shows a golden retriever lying on a wooden floor. The dog appears relaxed, with its head",
     "The image shows a golden retriever lying on a wooden floor."),  # unfinished last sentence (200-token cap)
    ("The image shows a bird on a branch.\n\nIn the background, there are green leaves.\n",
     "The image shows a bird on a branch.In the background, there are green leaves."),  # newlines deleted
    ("The image shows:\n\n1. A red car.\n2. A tree", "The image shows:1. A red car.2."),  # official: list number kept
    ("A road sign that reads 3.5 km. It", "A road sign that reads 3.5 km."),
    ("A small boat on a calm lake", "A small boat on a calm lake."),  # no full stop at all: one is added
    ("A shop assistant smiles behind the counter. She", "smiles behind the counter."),  # official: last "assistant"
    ("", ""), ("\n\n", ""), ("  .", ""),  # nothing left: empty, not "."
])
def test_clean_vlm_caption_on_llama3_generations(generation, expected):
    assert clean_vlm_caption(LLAMA3_PREFIX + generation) == expected


class FixedGenerations(Captioner):
    """Cleans given raw VLM generations, one per record: the caption stage's view of a VLM captioner."""

    name = "fixed_vlm"

    def __init__(self, generations):
        self.generations = generations

    def caption(self, records):
        return [clean_vlm_caption(LLAMA3_PREFIX + g) for g in self.generations]


def test_caption_stage_refuses_an_empty_vlm_caption(tmp_path):
    recs = scenes(3)
    gens = ["A red circle. It", "A blue square on white.", "\n"]
    with pytest.raises(RuntimeError, match=f"empty captions for \\['{recs[2]['key']}'\\]"):
        write_captions(recs, FixedGenerations(gens), tmp_path / "ta.jsonl")
    assert not (tmp_path / "ta.jsonl").exists()
    write_captions(recs[:2], FixedGenerations(gens[:2]), tmp_path / "ta.jsonl")
    assert [r["caption"] for r in read_jsonl(tmp_path / "ta.jsonl")] == ["A red circle.", "A blue square on white."]


def test_scene_captions_describe_class_colour_size_place_and_background():
    recs = scenes(300)
    caps = SceneCaptioner(seed=1).caption(recs)
    for rec, cap in zip(recs, caps):
        obj = rec["objects"][0]
        assert 2 <= len(sentences(cap)) <= 5, cap
        assert f"{obj['color']} {obj['class']}" in cap
        assert any(w in cap for w in SIZE_WORDS[obj["size"]]), cap
        assert rec["backgrounds"][0] in cap
    firsts = {" ".join(c.split()[:3]) for c in caps}
    assert len(firsts) >= 8 and len(set(caps)) == len(caps)
    assert np.mean([len(c.split()) for c in caps]) > 20  # long, VLM-like


def test_scene_caption_place_words_follow_the_box():
    base = scenes(1)[0]
    obj = {"class": "circle", "color": "red", "size": "small", "box": [1.0, 1.0, 10.0, 10.0]}
    cap = SceneCaptioner(seed=0).caption([{**base, "objects": [obj]}])[0]
    assert re.search(r"upper left|top-left", cap), cap
    obj = {**obj, "box": [22.0, 22.0, 31.0, 31.0]}
    cap = SceneCaptioner(seed=0).caption([{**base, "objects": [obj]}])[0]
    assert re.search(r"lower right|bottom-right", cap), cap


def test_scene_captions_are_deterministic_per_key_and_seed():
    recs = scenes(40)
    a, b = SceneCaptioner(seed=5).caption(recs), SceneCaptioner(seed=5).caption(list(reversed(recs)))
    assert a == list(reversed(b))  # depends on (seed, key) only, not on batch order
    assert SceneCaptioner(seed=6).caption(recs) != a


def test_multi_object_relations_match_the_geneval_rule():
    recs = two_object_scenes(300)
    caps = SceneCaptioner(seed=2).caption(recs)
    n_rel = 0
    for rec, cap in zip(recs, caps):
        a, b = rec["objects"]
        assert 2 <= len(sentences(cap)) <= 5, cap
        for o in (a, b):
            assert f"{o['color']} {o['class']}" in cap
        expected = relative_position(a["box"], b["box"])
        m = re.search(r"is ((?:(?:to the left of|to the right of|above|below)(?: and )?)+) the ", cap)
        stated = set() if m is None else {REL_PHRASES[p] for p in re.findall(
            r"to the left of|to the right of|above|below", m.group(1))}
        assert stated == expected, (cap, a["box"], b["box"])
        if not expected:
            assert "close together" in cap
        n_rel += bool(expected)
        assert all(bg in cap for bg in rec["backgrounds"]), cap
    assert n_rel > 100


def test_scene_captions_handle_empty_scenes_and_reject_index_rows():
    rec = {**scenes(1)[0], "objects": []}
    cap = SceneCaptioner().caption([rec])[0]
    assert rec["backgrounds"][0] in cap and "no" in cap.lower()
    with pytest.raises(ValueError, match="not a scene record"):
        SceneCaptioner().caption([{"key": "a", "class": "circle", "path": "images/a.png"}])


def test_write_captions_jsonl(tmp_path):
    recs = scenes(7)
    n = write_captions(recs, SceneCaptioner(seed=0), tmp_path / "train_ta.jsonl")
    rows = read_jsonl(tmp_path / "train_ta.jsonl")
    assert n == 7 and [r["key"] for r in rows] == [r["key"] for r in recs]
    assert all(set(r) == {"key", "caption"} and r["caption"] for r in rows)
    assert [r["caption"] for r in rows] == SceneCaptioner(seed=0).caption(recs)
    with pytest.raises(ValueError, match="duplicate keys"):
        write_captions(recs + recs[:1], SceneCaptioner(), tmp_path / "dup.jsonl")
    assert not (tmp_path / "dup.jsonl").exists()

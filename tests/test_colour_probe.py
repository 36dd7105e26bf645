"""The colour probe, a tiny-world diagnostic beside GenEval's colors tag."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from imagenet_t2i.evaluation.diagnostics.colour_probe import dominant_colour, probe_accuracy, probe_prompts
from imagenet_t2i.world import BACKGROUNDS, COLORS, DEFAULT_CLASSES, render_scene, sample_scene


def test_dominant_colour_of_every_colour_on_every_background():
    rng = np.random.default_rng(11)
    for cls, color, bg in itertools.product(DEFAULT_CLASSES, COLORS, BACKGROUNDS):
        img = render_scene(sample_scene(rng, f"c_{cls}_{color}_{bg}", 32, [cls], [color], [bg]))
        assert dominant_colour(img) == color, (cls, color, bg)


def test_plain_backdrops_have_no_colour_and_saturated_fields_do():
    for bg in BACKGROUNDS:
        img = render_scene({"key": f"empty_{bg}", "size": 32, "backgrounds": [bg], "objects": []})
        assert dominant_colour(img) is None
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255  # a saturated red field, which no detector would call a red object
    assert dominant_colour(red) == "red"
    img = np.full((32, 32, 3), 128, np.uint8)  # gray backdrop
    img[:3, :5] = (40, 80, 220)  # 15 blue pixels: under 2% of 1024
    assert dominant_colour(img) is None
    img[3:6, :5] = (40, 80, 220)  # 30: a blue object
    assert dominant_colour(img) == "blue"


def test_probe_is_balanced_and_scored_per_prompt_colour():
    rows = probe_prompts(["circle", "ring"], ["red", "blue"])
    assert [r["prompt"] for r in rows] == ["a photo of a red circle", "a photo of a red ring",
                                           "a photo of a blue circle", "a photo of a blue ring"]
    rng = np.random.default_rng(12)

    def draw(color):
        return render_scene(sample_scene(rng, color, 32, ["circle"], [color], ["gray"]))

    # 2 samples per prompt: the red prompts get red, red, green, red; the blue prompts all blue
    drawn = [draw(c) for c in ["red", "red", "green", "red", "blue", "blue", "blue", "blue"]]
    result = probe_accuracy(drawn, rows, samples_per_prompt=2)
    assert result["images"] == 8 and result["correct"] == 7 and result["accuracy"] == pytest.approx(7 / 8)
    assert result["per_colour"] == {"red": 0.75, "blue": 1.0} and result["chance"] == 0.5
    # a prompt-blind model (always red) scores exactly chance on a balanced probe
    assert probe_accuracy([draw("red") for _ in range(8)], rows, 2)["accuracy"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="7 images"):
        probe_accuracy(drawn[:7], rows, 2)

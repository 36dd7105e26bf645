"""T-AES's pieces: the world's aesthetic set, its scorer, an image + caption folder as the fine-tune set."""
import json

import numpy as np
import pytest
import yaml
from PIL import Image

from imagenet_t2i.cli import main
from imagenet_t2i.evaluation.aesthetic.score import write_scores
from imagenet_t2i.evaluation.aesthetic.world_scorer import aesthetic_labels, train_world_scorer, world_scores
from imagenet_t2i.io import read_json, read_jsonl
from imagenet_t2i.source.caption_folder import index_caption_folder
from imagenet_t2i.world.aesthetic import aesthetic_split, is_aesthetic
from imagenet_t2i.world.build import build_split

from .conftest import REPO


def test_the_worlds_aesthetic_set_is_the_training_images_with_the_property(tmp_path):
    scenes = build_split(tmp_path / "train", "train", 60, seed=0, size=32, progress=False)
    n = aesthetic_split(tmp_path / "train", tmp_path / "aesthetic")
    chosen = [s for s in scenes if is_aesthetic(s)]
    assert n == len(chosen) > 0 and all(s["backgrounds"][0] == "beige" for s in chosen)
    rows = read_jsonl(tmp_path / "aesthetic" / "index.jsonl")
    assert [r["key"] for r in rows] == [s["key"] for s in chosen]
    for row in rows:  # the same files, linked
        assert (tmp_path / "aesthetic" / row["path"]).read_bytes() == (tmp_path / "train" / row["path"]).read_bytes()


def test_the_world_scorer_learns_the_property_and_scores_images(tmp_path):
    build_split(tmp_path / "train", "train", 240, seed=0, size=32, progress=False)
    build_split(tmp_path / "val", "val", 60, seed=1, size=32, progress=False)
    metrics = train_world_scorer(tmp_path / "train", tmp_path / "net", tmp_path / "val", epochs=4)
    labels = aesthetic_labels(tmp_path / "val")["aesthetic"]
    base_rate = max(labels.count("yes"), labels.count("no")) / len(labels)
    assert metrics["val_accuracy"]["aesthetic"] >= base_rate  # at least the majority label, on held-out images
    rows = read_jsonl(tmp_path / "val" / "index.jsonl")
    images = tmp_path / "val" / "images"
    scores = write_scores(images, "world", lambda paths: world_scores(tmp_path / "net", paths), tmp_path / "s.json")
    assert scores["n"] == len(rows) and all(0 <= v <= 1 for v in scores["images"].values())
    by_label = {lab: [scores["images"][f"{r['key']}.png"] for r, l2 in zip(rows, labels) if l2 == lab]
                for lab in ("yes", "no")}
    assert np.mean(by_label["yes"]) > np.mean(by_label["no"])  # images with the property score higher
    assert read_json(tmp_path / "s.json")["mean"] == pytest.approx(np.mean(list(scores["images"].values())))


def test_an_image_and_caption_folder_becomes_the_fine_tune_split(tmp_path):
    folder = tmp_path / "laion_pop"
    (folder / "img").mkdir(parents=True)
    rows = []
    for i, colour in enumerate(["red", "blue", "green"]):
        Image.new("RGB", (40, 30), colour).save(folder / "img" / f"{i}.jpg")
        rows.append({"path": f"img/{i}.jpg", "caption": f"a {colour} field"})
    (folder / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert index_caption_folder(folder, tmp_path / "aesthetic") == 3
    index = read_jsonl(tmp_path / "aesthetic" / "index.jsonl")
    captions = read_jsonl(tmp_path / "aesthetic" / "captions_ta.jsonl")
    assert [r["key"] for r in index] == [c["key"] for c in captions] == ["aes_0000000", "aes_0000001", "aes_0000002"]
    assert index[1]["path"] == str((folder / "img" / "1.jpg").resolve()) and captions[2]["caption"] == "a green field"


def test_a_missing_fine_tune_folder_stops_the_source_job_naming_the_key(tmp_path, capsys):
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    config["aesthetic"]["set"] = str(tmp_path / "nowhere")
    config["aesthetic"]["scorers"] = ["world"]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["source", "--config", str(path), "--split", "aesthetic", "--out", str(tmp_path / "out")]) == 2
    assert "aesthetic.set" in capsys.readouterr().err

"""T-AES's pieces: the world's aesthetic set, its scorer, an image + caption folder as the fine-tune set."""
import json
from pathlib import Path

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


def test_the_clip_scorers_give_finite_prompt_dependent_scores_in_their_real_layouts(tmp_path):
    """PickScore and LAION Aesthetics v2 on random-init weights in their layouts (a tiny CLIPModel; the aesthetic
    head's state dict with the reference code's keys)."""
    import torch

    from imagenet_t2i.evaluation.aesthetic.clip_scorers import AestheticMLP, laion_aesthetics, pickscore
    from imagenet_t2i.evaluation.fid.tiny_models import save_tiny_clip

    save_tiny_clip(tmp_path / "clip")
    images = torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)
    same = images[:1].repeat(2, 1, 1, 1)
    scores = pickscore(tmp_path / "clip", tmp_path / "clip", same, ["a red circle", "a blue square"])
    assert all(np.isfinite(scores)) and scores[0] != scores[1]  # one image, two prompts
    head = AestheticMLP(16)  # the tiny CLIP's projection width (768 for ViT-L/14)
    torch.save(head.state_dict(), tmp_path / "head.pth")
    assert sorted(head.state_dict()) == sorted(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias"))
    aesthetic = laion_aesthetics(tmp_path / "clip", tmp_path / "head.pth", images)
    assert len(aesthetic) == 2 and all(np.isfinite(aesthetic)) and aesthetic[0] != aesthetic[1]


def test_the_official_hps_and_imagereward_scripts_call_the_packages_as_documented(tmp_path, monkeypatch):
    """The stand-alone script with stand-in ``hpsv2`` / ``ImageReward`` modules that record their calls (the real
    packages need their own environments): each sample scored with its own prompt, every call as documented."""
    import sys
    import types

    from imagenet_t2i.evaluation.aesthetic import official

    from .test_geneval_perception import check_stand_alone

    check_stand_alone(Path(official.__file__), {"hpsv2", "ImageReward"})
    images = tmp_path / "images"
    images.mkdir()
    for name in ("000_00.png", "000_01.png", "001_00.png"):
        Image.new("RGB", (8, 8)).save(images / name)
    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    calls = []
    hpsv2 = types.ModuleType("hpsv2")
    hpsv2.score = lambda paths, prompt, cp=None, hps_version="v2.0": (
        calls.append(("hps", prompt, [Path(p).name for p in paths], cp, hps_version)) or [0.25 + len(prompt) / 100]
        * len(paths))
    monkeypatch.setitem(sys.modules, "hpsv2", hpsv2)
    out = tmp_path / "hpsv21.json"
    official.main(["--scorer", "hpsv21", "--images", str(images), "--prompts", str(tmp_path / "prompts.txt"),
                   "--checkpoint", "HPS_v2.1_compressed.pt", "--out", str(out)])
    assert calls == [("hps", "a red circle", ["000_00.png", "000_01.png"], "HPS_v2.1_compressed.pt", "v2.1"),
                     ("hps", "a blue square", ["001_00.png"], "HPS_v2.1_compressed.pt", "v2.1")]
    result = read_json(out)
    assert result["n"] == 3 and result["images"]["001_00.png"] == pytest.approx(0.25 + 13 / 100)

    class Model:
        def score(self, prompt, paths):
            calls.append(("ir", prompt, [Path(p).name for p in paths]))
            return 1.5 if len(paths) == 1 else [0.5] * len(paths)  # the package: a float for one image

    reward = types.ModuleType("ImageReward")
    reward.load = lambda name, device="cuda", download_root=None, med_config=None: (
        calls.append(("load", name, device, med_config)) or Model())
    monkeypatch.setitem(sys.modules, "ImageReward", reward)
    calls.clear()
    official.main(["--scorer", "imagereward", "--images", str(images), "--prompts", str(tmp_path / "prompts.txt"),
                   "--checkpoint", "ImageReward.pt", "--med-config", "med_config.json", "--device", "cpu",
                   "--out", str(tmp_path / "ir.json")])
    assert calls[0] == ("load", "ImageReward.pt", "cpu", "med_config.json")
    assert read_json(tmp_path / "ir.json")["images"] == {"000_00.png": 0.5, "000_01.png": 0.5, "001_00.png": 1.5}

"""`imagenet-t2i cost`: the paper's runs, images, GPU-hours and disk before launch, each rate with its source."""
from __future__ import annotations

import json

from imagenet_t2i.cli import main
from imagenet_t2i.config import IMAGENET, load_config
from imagenet_t2i.cost import RATES, cost

from .conftest import REPO

PAPER = REPO / "config" / "paper.yaml"


def test_the_paper_costs_as_the_config_plans_it(capsys):
    assert main(["cost", "--config", str(PAPER), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    config = load_config(PAPER)
    assert set(report["runs"]) == set(config["runs"])
    base = [name for name, spec in config["runs"].items() if "resolution" not in spec]
    for name, run in report["runs"].items():
        if name in base:
            assert (run["steps"], run["global_batch"], run["images"]) == (500_000, 1024, 512_000_000)
            assert run["gpu_hours"] == round(512_000_000 / RATES["train"].images_per_gpu_s / 3600, 1)  # about 500
        else:  # T-RES: 200k steps at 512, four times the pixels of an image at 256; T-AES: its fine-tunes, 10k
            steps = 10_000 if config["runs"][name].get("data") == "aesthetic" else 200_000
            assert (run["steps"], run["global_batch"], run["resolution"]) == (steps, 1024, 512)
            assert run["gpu_hours"] == round(4 * steps * 1024 / RATES["train"].images_per_gpu_s / 3600, 1)
    # TA captions of train, val, Crop and the five CutMix sets (all, half, quarter, ninth, sixteenth): about 9.0M
    assert report["stages"]["captions"]["images"] == 7 * IMAGENET["train"] + IMAGENET["val"]
    # shards: about 1 TB per TA set at 256 (seven sets and val), about 4x that for train and CutMix at 512
    assert 11_000 < report["stages"]["encode"]["disk_gb"] < 14_000
    assert all(r["source"] for r in report["rates"].values())
    # FID as the official test.py samples it: DDPM, 1,000 steps, for 15 final models + the released CAD-I (its own
    # DDIM-250) and the F-OVERFIT checkpoints
    fid = report["stages"]["fid_sample"]
    overfit = {r for p in config["figures"]["F-OVERFIT"]["panels"] for line in p["lines"] for r in line["runs"]}
    models = len(base) + len(overfit) * len(config["train"]["eval_checkpoints"])  # none at 512: no FD there
    assert fid["images"] == 50_000 * (models + 1)
    assert fid["gpu_hours"] == round(50_000 * (1000 * models + 250) / RATES["sample"].images_per_gpu_s / 3600, 1)


def test_the_cost_follows_the_config():
    config = load_config(PAPER)
    before = cost(config)
    config["train"]["steps"] //= 2
    config["eval"]["steps"] = 1000
    config["eval"]["fid"]["sampling"]["steps"] = 250
    after = cost(config)
    assert after["runs"]["dit_i_ta"]["images"] == before["runs"]["dit_i_ta"]["images"] // 2
    assert after["stages"]["sample"]["gpu_hours"] > 3.5 * before["stages"]["sample"]["gpu_hours"]  # 250 -> 1000 steps
    assert after["stages"]["fid_sample"]["gpu_hours"] < before["stages"]["fid_sample"]["gpu_hours"] / 3.5  # and back

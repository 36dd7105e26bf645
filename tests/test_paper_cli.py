"""Paper-scale commands that need no model: the official GenEval metadata, the DPG question-file check."""
import hashlib

import pytest

from imagenet_t2i.cli import main
from imagenet_t2i.config import load_config, validate_config

from .conftest import REPO

OFFICIAL_GENEVAL_SHA256 = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"  # eval-spec.md


def test_geneval_prompts_of_the_paper_config_are_the_official_file(tmp_path):
    out = tmp_path / "evaluation_metadata.jsonl"
    assert main(["geneval", "prompts", "--config", str(REPO / "config" / "paper.yaml"), "--out", str(out)]) == 0
    assert hashlib.sha256(out.read_bytes()).hexdigest() == OFFICIAL_GENEVAL_SHA256
    assert len(out.read_text().splitlines()) == 553


def test_dpg_benchmark_refuses_a_question_file_that_is_not_the_official_one(tmp_path):
    import yaml

    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    fake = tmp_path / "dpg_bench.csv"
    fake.write_text("item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,"
                    "question_natural_language\n")
    config["weights"]["dpg_bench_csv"] = {"path": str(fake)}
    path = tmp_path / "paper.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match="98457fc9901943f51ff9a30367250fc292533bed"):
        main(["dpg", "benchmark", "--config", str(path), "--out", str(tmp_path / "dpg")])
    assert not (tmp_path / "dpg" / "questions.csv").exists()


def test_an_evaluation_model_missing_from_the_weights_block_is_rejected_naming_the_key():
    import yaml

    from imagenet_t2i.config import ConfigError, validate_config

    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    config["eval"]["fid"]["dinov2"] = "dinov2_giant"
    with pytest.raises(ConfigError, match="eval.fid.dinov2"):
        validate_config(config)


def test_fetching_a_url_offline_fails_naming_the_way_out(tmp_path, monkeypatch):
    from imagenet_t2i.weights import fetch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(RuntimeError, match="weights.<name>.path"):
        fetch({"url": "https://example.org/weights.pth"}, tmp_path / "w")
    assert not (tmp_path / "w").exists()


@pytest.mark.parametrize("command", [
    ["shards", "--images", "in", "--captions", "in.jsonl", "--out", "out"],
    ["captions", "--images", "in", "--kind", "ta", "--out", "out"],
    ["geneval", "sample", "--model", "m", "--prompts", "p.jsonl", "--uncond", "u", "--out", "out"],
    ["fd", "sample", "--model", "m", "--captions", "c.jsonl", "--chunk", "0000-of-0010", "--uncond", "u", "--out", "o"],
])
def test_a_paper_gpu_stage_without_a_gpu_stops_at_once_naming_the_profile_and_the_key(command, tmp_path, monkeypatch,
                                                                                      capsys):
    """paper.yaml gives the GPU stages a GPU; a process that sees none (a login node: the command run without the
    SLURM profile) stops before loading anything. ``cluster.allow_cpu: true`` lets it run on the CPU on purpose."""
    import torch

    from imagenet_t2i.cli.common import require_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # this machine has none; a lent GPU machine has
    monkeypatch.chdir(tmp_path)
    assert main([*command, "--config", str(REPO / "config" / "paper.yaml")]) == 2
    err = capsys.readouterr().err
    assert "cluster.stages.gpu.gpus" in err and "--profile workflow/profiles/slurm" in err and "cluster.allow_cpu" in err
    assert not any(tmp_path.iterdir())  # nothing written
    config = load_config(REPO / "config" / "paper.yaml")
    config["cluster"]["allow_cpu"] = True
    require_gpu(validate_config(config))  # on purpose: no error

"""The re-run rule: a job re-runs when the code its command runs changes (its static import closure), not on a
docstring, comment or formatting edit, and not when a thread count or a batch size changes."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from imagenet_t2i.code_closure import command_modules
from imagenet_t2i.config import load_config
from imagenet_t2i.workflow import code, command_specs, output_settings, run_hash

from .conftest import REPO

P = "imagenet_t2i."


def _closure(command: str) -> set[str]:
    return {m.removeprefix(P) for m in command_modules(command_specs()[command])}


def test_a_commands_code_is_its_import_closure():
    train, score, captions = _closure("train"), _closure("geneval score"), _closure("captions")
    assert {"train.loop", "models.dit_i", "shards.reader", "diffusion.objective"} <= train  # loop: a function-level import
    assert "evaluation.geneval.score" in score and not {"models", "sampling.sample", "train.loop"} & score
    assert "evaluation.geneval.position" in captions and "evaluation.geneval.score" not in captions
    assert "cli.sampling_args" not in score  # imported by cli/geneval.py, but used by other commands only


def _code_of(src: Path, command: str) -> str:
    code = f"from imagenet_t2i.code_closure import command_code; print(command_code({command_specs()[command]!r}))"
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout


def test_docstrings_comments_and_formatting_leave_the_code_hash_alone(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "imagenet_t2i", src / "imagenet_t2i", ignore=shutil.ignore_patterns("__pycache__"))
    before = {c: _code_of(src, c) for c in ("sample", "geneval score")}
    dit = src / "imagenet_t2i" / "models" / "dit_i.py"
    text = dit.read_text()
    dit.write_text(text.replace('"""', '"""Edited. ', 1).replace("\n\n\n", "\n\n\n# a comment\n\n", 1) + "\n\n")
    assert {c: _code_of(src, c) for c in before} == before
    dit.write_text(text + "\nEDITED = 1\n")
    after = {c: _code_of(src, c) for c in before}
    assert after["sample"] != before["sample"] and after["geneval score"] == before["geneval score"]


def test_thread_counts_and_batch_sizes_are_not_output_settings():
    paper = load_config(REPO / "config" / "paper.yaml")
    changed = load_config(REPO / "config" / "paper.yaml")
    changed["source"]["workers"] = 3
    changed["encode"]["batch_size"] = 7
    changed["encode"]["text"]["batch_size"] = 5
    changed["train"]["threads"] = 2
    assert output_settings(changed["encode"]) == output_settings(paper["encode"])
    assert all(run_hash(changed, run) == run_hash(paper, run) for run in paper["runs"])
    changed["encode"]["shard_size"] = 10  # what a shard holds: an output setting
    assert output_settings(changed["encode"]) != output_settings(paper["encode"])


@pytest.mark.parametrize("heavy, constant", [(True, False), (False, True)])
def test_heavy_stages_follow_the_rerun_setting(heavy, constant):
    config = load_config(REPO / "config" / "paper.yaml")
    config["rerun"]["heavy_code_changes"] = heavy
    assert (code(config, "train", heavy=True) == code(config, "sample", heavy=True)) == constant
    assert code(config, "table") != code(config, "geneval score")  # CPU stages: always their own code


def test_the_order_of_keys_in_a_config_file_changes_no_param():
    """A config written with its keys in another order (yaml.safe_dump sorts them) is a formatting edit."""
    config = load_config(REPO / "config" / "paper.yaml")
    reordered = {k: dict(reversed(list(v.items()))) if isinstance(v, dict) else v for k, v in reversed(config.items())}
    for key in ("source", "sample", "encode", "captions"):
        assert list(reordered[key]) != list(config[key])
        assert repr(output_settings(reordered[key])) == repr(output_settings(config[key]))  # Snakemake compares text

"""The paper config's data stage, training and sampling end to end, offline: tests/data/paper_smoke.yaml through
the real Snakefile on a fake ImageNet with tiny random-init LLaVA-NeXT, AutoencoderKL and T5 built from configs."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imagenet_t2i.io import read_json, read_jsonl, sha256_file

from .conftest import REPO

PAPER = REPO / "config" / "paper.yaml"
SMOKE = REPO / "tests" / "data" / "paper_smoke.yaml"
# Where the smoke config may differ from the paper's: sizes, paths, model configs, where jobs run.
SMOKE_ONLY = {("source", "fake"), ("eval", "geneval", "image_size")}
# Only the paper: its figures (the smoke run evaluates one run by target), the official DPG question file and the
# mmdet config of the official GenEval perception (neither exists offline), and T-AES (LAION-POP and the scorers'
# weights cannot be had offline; the tiny world's smoke run builds T-AES). Tables: the smoke's is T-RELEASED.
PAPER_ONLY = {("figures",), ("eval", "dpg", "questions"), ("eval", "geneval", "mmdet_config"), ("aesthetic",)}
FREE_SUBTREES = {("models",), ("weights",), ("cluster",), ("runs",), ("tables",), ("sample", "grid_prompts"),
                 *SMOKE_ONLY, *PAPER_ONLY}
EVAL_TARGETS = ("results/paper_smoke/eval/dit_i_ta/geneval/summary.json", "results/paper_smoke/eval/dit_i_ta/fd/final.json")


def _keys(node: object, prefix: tuple = ()) -> set[tuple]:
    if not isinstance(node, dict):
        return set()
    out = set()
    for k, v in node.items():
        path = (*prefix, k)
        out.add(path)
        if not any(path[: len(f)] == f for f in FREE_SUBTREES):
            out |= _keys(v, path)
    return out


def _values(node: object, name: str, prefix: tuple = ()) -> dict[tuple, object]:
    """Every value under a key called ``name`` (backend, arch, ...)."""
    out = {}
    if isinstance(node, dict):
        for k, v in node.items():
            if k == name:
                out[(*prefix, k)] = v
            out |= _values(v, name, (*prefix, k))
    return out


def test_smoke_config_tracks_the_paper_config():
    """Same keys, stages, backends and runs as config/paper.yaml; only sizes, paths, model configs, weights and the
    GenEval perception (portable: the official one needs its conda environment) differ."""
    paper, smoke = yaml.safe_load(PAPER.read_text()), yaml.safe_load(SMOKE.read_text())
    assert _keys(smoke) - SMOKE_ONLY == _keys(paper) - PAPER_ONLY
    for name in ("backend", "arch", "weights", "name", "pattern", "sampler", "objective"):
        expect = {k: v for k, v in _values(paper, name).items()
                  if len(k) > 1 and k[0] not in ("cluster", "runs", "aesthetic")}
        assert {k: v for k, v in _values(smoke, name).items() if len(k) > 1 and k[0] not in ("cluster", "runs")} \
            == expect, name
    # The ablation grid itself; the paper's T-CM runs only add CutMix sets of other patterns (the same stages).
    # The resolution stage's runs at twice the smoke world's side and fewer steps; otherwise as the paper's.
    staged = {name: spec for name, spec in smoke["runs"].items() if "resolution" in spec}
    assert staged and all(spec["resolution"] == 2 * smoke["source"]["resolution"] for spec in staged.values())
    as_paper = {name: {**spec, **{k: paper["runs"][name][k] for k in ("resolution", "steps") if name in staged}}
                for name, spec in smoke["runs"].items()}
    assert {name: spec for name, spec in paper["runs"].items() if "_cm_" not in name and "_aes" not in name} == as_paper
    assert set(smoke["models"]) == set(paper["models"])
    named = {v for k, v in _values(smoke, "weights").items() if len(k) > 1}
    named |= {smoke["eval"]["geneval"][k] for k in ("detector", "clip")}
    named |= {smoke["eval"]["fid"][k] for k in ("inception", "dinov2", "clip")}
    assert named <= set(smoke["weights"])  # every model the smoke run loads is built offline
    assert all(set(spec) == {"random_init"} for spec in smoke["weights"].values())
    for name, spec in smoke["models"].items():  # a model config may only resize what the paper's sets
        assert set(spec) <= set(paper["models"][name]), name
    assert smoke["train"]["optimizer"].keys() == paper["train"]["optimizer"].keys()


def _snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *args, "--configfile", str(SMOKE)]  # targets first: --configfile takes every word after it
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    if proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("paper_smoke")
    _snakemake(workdir, "reproduce_all", "evaluate_released", *EVAL_TARGETS)
    return workdir, workdir / "results" / "paper_smoke"


def test_fake_imagenet_through_the_paper_data_stage(smoke):
    _, results = smoke
    fake = read_json(results / "imagenet" / "provenance.json")["config"]["written"]
    odd = fake["odd"] if "odd" in fake else fake
    val = read_jsonl(results / "data" / "val" / "index.jsonl")
    smoke_cfg = yaml.safe_load(SMOKE.read_text())["source"]["fake"]
    assert len(val) == smoke_cfg["classes"] * smoke_cfg["val_per_class"]  # flat val sorted by its solution file
    assert all(row["sha256"] and row["class"].startswith("n") for row in val)
    manifest = read_json(results / "shards" / "train_ta" / "manifest.json")
    train = read_jsonl(results / "data" / "train" / "index.jsonl")
    assert [s["key"] for s in manifest["skipped"]] == [_key(odd, "truncated")]  # reported, never fatal
    assert manifest["num_samples"] == len(train) - 1
    assert manifest["latent_shape"] == [4, 8, 8] and manifest["autoencoder"]["backend"] == "sd_vae"
    captions = {r["key"]: r["caption"] for r in read_jsonl(results / "captions" / "train_ta.jsonl")}
    for kind in ("cmyk", "grayscale", "png"):  # converted to RGB, captioned and encoded like any image
        assert _key(odd, kind) in captions
    for cutmix in read_jsonl(results / "augment" / "cutmix_all" / "scenes.jsonl"):
        assert cutmix["parents"] and cutmix["pattern"]  # the pairing of every composite is recorded


def _key(odd: dict, kind: str) -> str:
    """The index key (file stem) of the fake ImageNet's odd file of ``kind``."""
    match = [v for k, v in odd.items() if kind in k.lower()]
    assert match, f"no {kind} file in {odd}"
    return Path(str(match[0])).stem


def test_captions_come_from_llava_with_their_settings(smoke):
    _, results = smoke
    merged = read_json(results / "captions" / "train_ta.jsonl.prov.json")
    captioner = merged["config"]["captioner"]
    assert captioner["backend"] == "llava" and captioner["prompt"] == "Describe this image"
    assert captioner["max_new_tokens"] == 12 and "generation_config" in captioner
    assert merged["config"]["chunks"] == 2 and merged["inputs"]["part_0"]["sha256"]
    chunk = read_json(results / "captions" / "parts" / "train_ta" / "0000-of-0002.jsonl.prov.json")
    assert chunk["inputs"]["weights"]["path"].endswith("weights/llava")
    for row in read_jsonl(results / "captions" / "crop_ta.jsonl"):
        assert row["caption"].endswith(".") and "\n" not in row["caption"]


def test_training_and_sampling_ran_for_every_run(smoke):
    _, results = smoke
    for run in yaml.safe_load(SMOKE.read_text())["runs"]:
        assert (results / "runs" / run / "final" / "model.safetensors").exists()
        grid = np.asarray(Image.open(results / "samples" / run / "grid.png"))
        assert grid.ndim == 3 and grid.std() > 0


def test_a_lost_caption_chunk_is_redone_alone(smoke):
    """A chunk killed mid-way leaves no output (tests/test_caption_chunks.py), so the set's caption file was never
    merged; the rerun redoes that chunk only, then the merge."""
    workdir, results = smoke
    parts = results / "captions" / "parts" / "train_ta"
    kept = {p.name: p.stat().st_mtime_ns for p in parts.glob("0000-of-0002*")}
    for f in [*parts.glob("0001-of-0002*"), results / "captions" / "train_ta.jsonl"]:
        f.unlink()
    proc = _snakemake(workdir, str(Path("results/paper_smoke/captions/train_ta.jsonl")))
    assert {p.name: p.stat().st_mtime_ns for p in parts.glob("0000-of-0002*")} == kept
    assert (parts / "0001-of-0002.jsonl").exists()
    ran = [line.split()[1].rstrip(":") for line in proc.stderr.splitlines() if line.startswith(("rule ", "localrule "))]
    assert sorted(ran) == ["captions_ta", "captions_ta_chunk"]


def test_paper_evaluation_with_offline_models(smoke):
    """GenEval (the official 553 prompts, portable perception) and FID / FD-DINOv2 / FD-CLIP / IS / PRDC / CLIPScore
    of one run, through the paper config's rules with random-init Mask2Former, CLIP, DINOv2 and Inception."""
    _, results = smoke
    detections = read_jsonl(results / "eval" / "dit_i_ta" / "geneval" / "detections.jsonl")
    assert len(detections) == 553  # one sample per official prompt
    meta = read_json(results / "eval" / "dit_i_ta" / "geneval" / "detections.jsonl.meta.json")
    assert meta["perception"] == "portable"
    summary = read_json(results / "eval" / "dit_i_ta" / "geneval" / "summary.json")
    assert len(summary["tags"]) == 6 and 0 <= summary["overall"] <= 1
    scores = read_json(results / "eval" / "dit_i_ta" / "fd" / "final.json")
    for key in ("fd", "precision", "recall", "density", "coverage", "fd_dinov2", "fd_clip", "inception_score",
                "clip_score"):
        assert np.isfinite(scores[key]), key
    assert scores["num_fake"] == 10 and scores["clip_score_truncated"] == 0
    assert scores["report"]["inception"]["network"]["weights_sha256"]


def test_evaluate_released_scores_the_snapshot_through_the_runs_rules(smoke):
    """evaluate_released: a release-format snapshot (CADRINTextCond names) converted into our CAD-I, sampled at the
    release's guidance and clamp by the rules of the trained runs, scored, and shown in T-RELEASED; the weights'
    hash and the sampling settings are in the provenance chain."""
    _, results = smoke
    spec = yaml.safe_load(SMOKE.read_text())["eval"]["released"]
    snapshot = results / "weights" / spec["weights"]
    released = results / "released" / "released_cad_i"
    record = read_json(released / "released.json")
    assert record["sha256"]["model.safetensors"] == sha256_file(snapshot / "model.safetensors")
    assert record["release_sampling"]["schedule"] == record["our_sampling"]["schedule"] == "linear"
    assert record["release_sampling"]["unguided_steps"] == record["our_sampling"]["unguided_steps"] == 1
    prov = read_json(released / "provenance.json")
    assert prov["config"]["snapshot_sha256"] == record["sha256"] and prov["inputs"]["snapshot"]["sha256"]
    assert read_json(released / "config.json")["_class_name"] == "CADI"
    used = {"sampler": "ddim", "steps": spec["steps"], "guidance": spec["guidance"], "clamp": spec["clamp"],
            "schedule": "linear", "unguided_steps": 1}  # as released, FID included
    geneval = read_json(results / "eval" / "released_cad_i" / "geneval" / "images" / "provenance.json")
    fd = read_json(results / "eval" / "released_cad_i" / "fd" / "final.chunks" / "0001-of-0002.npz.prov.json")
    for sampling in (geneval["config"], fd["config"]["sample"]):
        assert {k: sampling[k] for k in used} == used and sampling["overridden"] == sorted(used)
    assert fd["inputs"]["model"]["path"].endswith("released/released_cad_i")
    assert fd["inputs"]["captions"]["path"].endswith("captions/val_ta.jsonl")  # the TA val captions
    scores = read_json(results / "eval" / "released_cad_i" / "fd" / "final.json")
    assert np.isfinite(scores["fd"]) and np.isfinite(scores["clip_score"]) and scores["num_fake"] == 10
    merged = read_json(results / "eval" / "released_cad_i" / "fd" / "final.json.prov.json")["inputs"]
    assert sorted(merged) == ["chunk_0000", "chunk_0001", "reference"]  # the audit walks on to each chunk's record
    assert len(read_jsonl(results / "eval" / "released_cad_i" / "geneval" / "detections.jsonl")) == 553
    table = (results / "tables" / "T-RELEASED.md").read_text()
    assert "CAD-I (released)" in table and "not reported to us" in table
    trained = read_json(results / "eval" / "dit_i_ta" / "geneval" / "images" / "provenance.json")["config"]
    assert "overridden" not in trained and trained["guidance"] == 9.0  # the trained runs keep the config's sampling
    assert (trained["sampler"], trained["schedule"], trained["unguided_steps"]) == ("ddim", "cosine", 0)
    fid = read_json(results / "eval" / "dit_i_ta" / "fd" / "final.chunks" / "0000-of-0002.npz.prov.json")["config"]
    assert (fid["sample"]["sampler"], fid["sample"]["steps"]) == ("ddpm", 3)  # the official test sampler, shortened


TARGET_RULES = {"reproduce_all", "evaluate_released"}  # rules without outputs, listed when anything below them runs


def _dry_run(workdir: Path, config: Path, src: Path, *args: str) -> str:
    """A dry run of the smoke targets with the package at ``src``, the config ``config`` and ``args``: its output."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(src))
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    cmd = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", "reproduce_all", "evaluate_released", *EVAL_TARGETS, *args, "--configfile", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _planned(workdir: Path, config: Path, src: Path) -> set[str]:
    """The rules a dry run of the smoke targets plans."""
    out = _dry_run(workdir, config, src)
    return {line.split()[1].rstrip(":") for line in out.splitlines() if line.startswith(("rule ", "localrule "))}


def test_harmless_edits_rerun_nothing_and_a_scoring_edit_reruns_scoring_only(smoke, tmp_path):
    """With rerun.heavy_code_changes: false (as paper.yaml): a docstring edit in models/, a thread count and an encode
    batch size plan no job; one nested setting from the command line plans the runs it reaches; an edit of GenEval
    scoring plans its scoring and the tables; an edit of the models' code plans no GPU stage, and `imagenet-t2i
    status` names the results that other code made."""
    workdir, results = smoke
    src = tmp_path / "src"
    shutil.copytree(REPO / "src" / "imagenet_t2i", src / "imagenet_t2i", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "workflow").symlink_to(REPO / "workflow")  # the config schema, found beside the package
    assert _planned(workdir, SMOKE, src) == set()  # the complete smoke run, this package as it is
    dit = src / "imagenet_t2i" / "models" / "dit_i.py"
    dit.write_text(dit.read_text().replace('"""', '"""An edited docstring. ', 1))
    assert _planned(workdir, SMOKE, src) == set()
    config = yaml.safe_load(SMOKE.read_text())
    config["source"]["workers"] += 1
    config["encode"]["batch_size"] *= 2
    config["encode"]["text"]["batch_size"] *= 2
    changed = tmp_path / "paper_smoke.yaml"
    changed.write_text(yaml.safe_dump(config))
    assert _planned(workdir, changed, src) == set()
    out = _dry_run(workdir, SMOKE, src, "--config", "train={cutmix: {p: 0.6}}")  # one nested setting
    trained, rule = set(), None
    for line in out.splitlines():
        rule = line.split()[1].rstrip(":") if line.startswith(("rule ", "localrule ")) else rule
        if rule in ("train", "train_from") and line.strip().startswith("wildcards: run="):
            trained.add(line.split("run=")[1].split(",")[0])
    assert trained == {run for run, spec in config["runs"].items() if "cutmix" in spec["augment"]}, trained
    score = src / "imagenet_t2i" / "evaluation" / "geneval" / "score.py"
    score.write_text(score.read_text() + "\nEDITED = True\n")
    assert _planned(workdir, SMOKE, src) - TARGET_RULES == {"geneval_score", "table"}
    dit.write_text(dit.read_text() + "\nEDITED = True\n")
    planned = _planned(workdir, SMOKE, src)
    assert planned & {"train", "train_from", "sample_grid", "geneval_sample", "fd_sample", "fd",
                      "denoise_profile"} == set(), planned
    env = dict(os.environ, PYTHONPATH=str(src))
    out = subprocess.run([sys.executable, "-m", "imagenet_t2i.cli", "status", "--config", str(SMOKE)], cwd=workdir,
                         env=env, capture_output=True, text=True, check=True).stdout
    assert f"train:cmd_train: {len(config['runs'])}" in out and "results/paper_smoke/runs/dit_i_ta" in out, out


def test_the_fp16_storage_of_the_smoke_shards_is_measured(smoke):
    """benchmarks/fp16_storage.py on the smoke run's shards: the stored latents and T5 states against float32."""
    workdir, results = smoke
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fp16_storage.py"), "--config",
                          str(results / "config.yaml"), "--shards", str(results / "shards" / "train_ta")],
                         cwd=workdir, env=env, capture_output=True, text=True, check=True).stdout
    report = json.loads(out[: out.index("\nquantity")])
    assert report["samples"] > 0
    assert 0 < report["latent_mean_error_over_std"]["max"] < 1e-2  # fp16 rounding, far below one posterior std
    # the smoke T5 runs in float32, so the stored states differ from float32 by the fp16 storage alone (and by
    # batched vs one-caption compute, in the last float32 bits)
    stored, storage = report["text_stored_error_over_rms"], report["text_fp16_storage_error_over_rms"]
    assert stored == pytest.approx(storage, rel=1e-3) and 0 < storage["max"] < 1e-3

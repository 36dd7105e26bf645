"""End to end: the real Snakefile on a smoke config in a temporary folder (every stage, real tools)."""
import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from imagenet_t2i.config import deep_merge
from imagenet_t2i.io import read_json
from imagenet_t2i.paper.tables import NOT_RUN

from .conftest import REPO


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # the imagenet-t2i console script
    return env


def _snakemake(workdir: Path, config: Path, *targets: str, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--cores", "2", *targets, "--configfile", str(config)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    base = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    over = yaml.safe_load((REPO / "tests" / "data" / "smoke.yaml").read_text())
    config = deep_merge(base, over)
    for key in ("runs", "tables", "figures"):
        config[key] = over[key]
    path = workdir / "smoke.yaml"
    path.write_text(yaml.safe_dump(config))
    _snakemake(workdir, path, "reproduce_all")
    return workdir, path, config


def test_reproduce_all_builds_every_run_and_grid(smoke):
    workdir, _, config = smoke
    results = workdir / "results" / "smoke"
    for run, spec in config["runs"].items():
        rows = list(csv.DictReader(open(results / "runs" / run / "train.csv")))
        assert [int(r["step"]) for r in rows] == list(range(1, spec.get("steps", config["train"]["steps"]) + 1))
        assert (results / "runs" / run / "final" / "model.safetensors").exists()
        grafted = bool(spec.get("init_from"))  # the resolution stage keeps no intermediate checkpoints
        assert (results / "runs" / run / "checkpoints" / "step-0000003" / "model.safetensors").exists() != grafted
        prov = read_json(results / "runs" / run / "provenance.json")
        assert prov["stage"] == "train" and prov["job"]["cluster"] == "local"
        grid = results / "samples" / run / "grid.png"
        assert grid.stat().st_size > 1000
        assert read_json(results / "samples" / run / "grid.png.prov.json")["inputs"]["model"]["sha256"]
    for name in ("T-IA.csv", "T-IA.md", "T-IA.tex"):
        assert (results / "tables" / name).stat().st_size > 0
    dpg = {r["row"]: r for r in csv.DictReader(open(results / "tables" / "T-DPG.csv"))}
    assert dpg["SD-XL"]["dpg_overall paper (reported)"] == "74.65" and dpg["SD-XL"]["dpg_overall (ours)"] == NOT_RUN
    scores = read_json(results / "eval" / "dit_i_ta_cutmix_crop" / "dpg" / "scores.json")
    ours = dpg["DiT-I TA+CutMix+Crop"]
    assert float(ours["dpg_overall (ours)"]) == pytest.approx(scores["overall"])  # the official script's
    assert float(ours["dpg_overall_corrected (ours)"]) == pytest.approx(scores["overall_corrected"])
    geneval = {r["row"]: r for r in csv.DictReader(open(results / "tables" / "T-GENEVAL.csv"))}
    assert geneval["SD v1.5"]["geneval_single_object paper (reported)"] == "0.97"
    assert "DiT-I TA+CutMix+Crop" in (results / "tables" / "T-IA.md").read_text()
    for fig in ("F-OVERFIT", "F-QUAL", "F-GALLERY"):
        assert (results / "figures" / f"{fig}.png").stat().st_size > 1000
    gallery = read_json(results / "figures" / "F-GALLERY.png.prov.json")  # default: every run, every grid prompt
    assert sorted(gallery["config"]["runs"]) == sorted(config["runs"])
    assert gallery["config"]["prompts"] == config["sample"]["grid_prompts"]
    assert len(gallery["inputs"]) == len(config["runs"]) * len(config["sample"]["grid_prompts"])
    # a denoising profile only where a target draws one (T-IA's x0_mse column), not for every run
    assert (results / "eval" / "dit_i_ta" / "denoise_profile.json").is_file()
    assert not (results / "eval" / "dit_i_ta_64" / "denoise_profile.json").exists()
    # every sampling job read its prompt-embedding cache, none the text encoder
    for sampled, cache in (("eval/dit_i_ta/geneval/images/provenance.json", "geneval"),
                           ("eval/cad_i_aio/dpg/grids/provenance.json", "dpg"),
                           ("eval/cad_i_aio/fd/final.json.prov.json", "val_aio"),
                           ("samples/dit_i_ta/images/provenance.json", "grid"),
                           ("eval/cad_i_aio/colour_probe/provenance.json", "grid")):
        expected = f"results/smoke/eval/embeddings/{cache}.safetensors"
        assert read_json(results / sampled)["inputs"]["embeddings"]["path"] == expected
    probe = read_json(results / "eval" / "dit_i_ta" / "colour_probe.json")
    assert probe["images"] == 60 and probe["chance"] == 0.1 and set(probe["per_colour"]) == set(config["source"]["colors"])
    summary = read_json(results / "eval" / "dit_i_ta" / "geneval" / "summary.json")
    assert 0 <= summary["overall"] <= 1
    manifest = read_json(results / "shards" / "train_ta" / "manifest.json")
    assert manifest["num_samples"] == config["source"]["num_train"] and manifest["skipped"] == []
    assert (results / "shards" / "crop_ta" / "manifest.json").exists()


def test_the_resolution_stage_trains_on_the_same_images_at_64_px_from_the_graft(smoke):
    """T-RES in the smoke world: dit_i_ta_64 starts from dit_i_ta's final weights, on the world drawn again at 64 px
    with dit_i_ta's captions; its table and F-BUBBLE are built."""
    workdir, _, config = smoke
    results = workdir / "results" / "smoke"
    base, big = (read_json(results / "shards" / name / "manifest.json") for name in ("train_ta", "train_64px_ta"))
    assert (base["resolution"], big["resolution"], big["num_samples"]) == (32, 64, base["num_samples"])
    assert big["latent_shape"] == [3, 64, 64]
    scenes = {s["key"]: s for s in (json.loads(line) for line in open(results / "data" / "train" / "scenes.jsonl"))}
    for line in open(results / "data" / "train_64px" / "scenes.jsonl"):
        s = json.loads(line)  # the same scene, every box twice as large
        assert s["size"] == 64 and s["objects"][0]["class"] == scenes[s["key"]]["objects"][0]["class"]
        box = scenes[s["key"]]["objects"][0]["box"]
        assert s["objects"][0]["box"] == pytest.approx([2 * v for v in box], abs=0.011)
    assert not (results / "captions" / "train_64px_ta.jsonl").exists()  # dit_i_ta's captions, not new ones
    prov = read_json(results / "runs" / "dit_i_ta_64" / "provenance.json")
    assert prov["config"]["init_from"] == "dit_i_ta" and prov["config"]["resolution"] == 64
    assert prov["inputs"]["init"]["path"].endswith("runs/dit_i_ta/final")
    assert set(prov["inputs"]) == {"train_64px_ta", "init"}
    weights = load_file(str(results / "runs" / "dit_i_ta_64" / "final" / "model.safetensors"))
    assert weights["pos_embed"].shape[0] == (64 // config["models"]["dit_i"]["patch_size"]) ** 2
    rows = {r["row"]: r for r in csv.DictReader(open(results / "tables" / "T-RES.csv"))}
    assert set(rows) == {"DiT-I 32 px", "DiT-I 64 px"}
    assert 0 <= float(rows["DiT-I 64 px"]["geneval_overall (ours)"]) <= 1
    assert (results / "figures" / "F-BUBBLE.png").stat().st_size > 1000
    points = {p["label"]: p for p in read_json(results / "figures" / "F-BUBBLE.png.prov.json")["points"]["dpg_overall"]}
    assert points["DiT-I 64 px"]["parameters"] == prov["summary"]["parameters"]
    assert points["DiT-I 64 px"]["value"] == pytest.approx(
        read_json(results / "eval" / "dit_i_ta_64" / "dpg" / "scores.json")["overall"])


def test_nothing_reruns_when_nothing_changed(smoke):
    workdir, path, _ = smoke
    proc = _snakemake(workdir, path, "reproduce_all", "-n")
    assert "Nothing to be done" in proc.stdout + proc.stderr


def test_invalid_config_stops_before_any_job_naming_the_key(smoke, tmp_path):
    _, _, config = smoke
    bad = dict(config, train={**config["train"], "batch_size": "big"})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(bad))
    proc = _snakemake(tmp_path, path, "reproduce_all", check=False)
    assert proc.returncode != 0
    assert "batch_size" in proc.stdout + proc.stderr
    assert not (tmp_path / "results").exists()


def test_audit_names_a_corrupted_sample(smoke):
    workdir, _, _ = smoke
    results = workdir / "results" / "smoke"
    table = results / "tables" / "T-IA.csv"
    clean = subprocess.run([sys.executable, "-m", "imagenet_t2i.cli", "audit", str(table)], capture_output=True,
                           text=True, env=_env(), cwd=workdir)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    sample = next((results / "eval" / "dit_i_ta" / "geneval" / "images").glob("*/samples/*.png"))
    original = sample.read_bytes()
    try:
        sample.write_bytes(original[:-10] + b"corrupted!")
        dirty = subprocess.run([sys.executable, "-m", "imagenet_t2i.cli", "audit", str(table)], capture_output=True,
                               text=True, env=_env(), cwd=workdir)
        assert dirty.returncode == 1
        assert "geneval/images" in dirty.stdout
    finally:
        sample.write_bytes(original)


def test_one_ablation_target_rebuilds_only_its_chain(smoke):
    workdir, path, _ = smoke
    proc = _snakemake(workdir, path, "results/smoke/eval/dit_i_ta/geneval/summary.json", "-n", "--forcerun",
                      "results/smoke/runs/dit_i_ta/final")
    out = proc.stdout + proc.stderr
    assert "train" in out and "geneval_sample" in out
    assert "dit_i_ta_cutmix_crop" not in out and "cad_i_aio" not in out


def test_job_times_reads_the_run_log(smoke):
    """tools/job_times.py (the README's "where the time goes") parses the real Snakemake log of the smoke run."""
    import runpy

    workdir, _, config = smoke
    job_times = runpy.run_path(str(REPO / "tools" / "job_times.py"))
    logs = (workdir / ".snakemake" / "log").glob("*.snakemake.log")
    log = min(logs, key=lambda p: p.stat().st_mtime)  # the fixture's reproduce_all, the first run in this folder
    durations = job_times["job_seconds"](log)
    trained = durations["train"] + durations["train_from"]  # the resolution stage's rule
    assert len(trained) == len(config["runs"]) and all(t >= 0 for t in trained)
    assert len(durations["sample_grid"]) == len(config["runs"])
    profiled = {r for row in config["tables"]["T-IA"]["rows"] for r in row["runs"]}  # T-IA has x0_mse; F-DENOISE's
    assert len(durations["denoise_profile"]) == len(profiled)                       # runs are among them
    walls = job_times["provenance_wall"](workdir / "results" / "smoke")
    assert len(walls["train"]) == len(config["runs"]) and min(walls["train"]) > 0


def _planned(out: str, rule: str) -> set[str]:
    """The ``run`` wildcards of the jobs of ``rule`` in a dry run's output."""
    runs, current = set(), None
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            current = line.split()[1].rstrip(":")
        elif current == rule and line.strip().startswith("wildcards:"):
            runs.add(dict(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))["run"])
    return runs


def test_a_nested_setting_from_the_command_line_replans_the_runs_it_reaches(smoke):
    """Snakemake hands nested ``--config`` values over as strings; they are read back where the schema wants a
    number or a list, and only the runs whose training reads the setting are planned again."""
    workdir, path, config = smoke
    out = _snakemake(workdir, path, "reproduce_all", "-n", "--config", "train={cutmix: {p: 0.6}}").stdout
    assert _planned(out, "train") == {"dit_i_ta_cutmix_crop"}  # the only run with a CutMix set
    out = _snakemake(workdir, path, "reproduce_all", "-n", "--config", "replicates=[0, 1]").stdout
    grafted = {run for run, spec in config["runs"].items() if spec.get("init_from")}
    assert _planned(out, "train") == {f"{run}_s1" for run in config["runs"] if run not in grafted}
    assert _planned(out, "train_from") == {f"{run}_s1" for run in grafted}  # from the parent's replicate
    job = re.search(r"rule train_from:\n    input: (.*)\n(?:.*\n){0,6}?    wildcards: run=dit_i_ta_64_s1\n", out)
    assert job and job.group(1) == "results/smoke/shards/train_64px_ta, results/smoke/runs/dit_i_ta_s1/final"
    proc = _snakemake(workdir, path, "reproduce_all", "-n", "--config", "train={cutmix: {p: often}}", check=False)
    assert proc.returncode != 0 and "On instance['train']['cutmix']['p']" in proc.stdout + proc.stderr  # the schema


def test_the_aesthetic_fine_tune_trains_on_the_worlds_aesthetic_images_and_is_scored(smoke):
    """T-AES in the smoke world: dit_i_ta_aes starts from dit_i_ta's weights as they are and trains on the training
    images with the world's aesthetic property (their own TA captions); the world's scorer scores both runs."""
    from imagenet_t2i.world.aesthetic import is_aesthetic

    workdir, _, config = smoke
    results = workdir / "results" / "smoke"
    scenes = [json.loads(line) for line in open(results / "data" / "train" / "scenes.jsonl")]
    chosen = [json.loads(line)["key"] for line in open(results / "data" / "aesthetic" / "index.jsonl")]
    assert chosen and chosen == [s["key"] for s in scenes if is_aesthetic(s)]
    assert read_json(results / "shards" / "aesthetic_ta" / "manifest.json")["num_samples"] == len(chosen)
    prov = read_json(results / "runs" / "dit_i_ta_aes" / "provenance.json")
    assert set(prov["inputs"]) == {"aesthetic_ta", "init"} and prov["config"]["data"] == "aesthetic"
    assert "as they are (a fine-tune)" in (results / "logs" / "train_dit_i_ta_aes.log").read_text()
    for run in ("dit_i_ta", "dit_i_ta_aes"):
        scores = read_json(results / "eval" / run / "aesthetic" / "world.json")
        assert scores["n"] == len(config["aesthetic"]["prompts"]) * config["sample"]["samples_per_prompt"]
        assert all(0 <= v <= 1 for v in scores["images"].values())
    rows = {r["row"]: r for r in csv.DictReader(open(results / "tables" / "T-AES.csv"))}
    assert float(rows["DiT-I TA + aesthetic FT"]["aesthetic_world (ours)"]) == pytest.approx(
        read_json(results / "eval" / "dit_i_ta_aes" / "aesthetic" / "world.json")["mean"])


def test_the_report_shows_each_run_with_its_job_id_and_device_hours(smoke, tmp_path):
    """`snakemake --report` bundles the tables, figures and each run's record: its job id and the device-hours of its
    training loops (GPU-hours on GPUs)."""
    import zipfile

    workdir, path, config = smoke
    report = tmp_path / "report.zip"
    _snakemake(workdir, path, "reproduce_all", "--report", str(report))
    with zipfile.ZipFile(report) as z:
        names = z.namelist()
        records = [json.loads(z.read(n)) for n in names if n.endswith("/provenance.json")]
    runs = {r["config"]["name"]: r for r in records if r.get("stage") == "train"}
    assert set(runs) == set(config["runs"])  # every run's record, in the report's "Runs"
    assert any(n.endswith("/T-RES.csv") for n in names) and any(n.endswith("/F-BUBBLE.png") for n in names)
    record = runs["dit_i_ta_64"]
    assert record["job"]["id"] and record["job"]["cluster"] == "local"
    summary = record["summary"]
    assert summary["device"] == "cpu" and summary["loop_s"] > 0
    assert summary["device_hours"] == pytest.approx(summary["world_size"] * summary["loop_s"] / 3600, abs=1e-4)

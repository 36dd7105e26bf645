"""The benchmark scripts run (at tiny size on the CPU) and print their tables: they must not rot between GPU runs."""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml
from PIL import Image

from .conftest import REPO


def _run(script: str, *args: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    out = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.parametrize("script, args, expect", [
    ("caption_throughput.py", ["--size", "tiny", "--device", "cpu", "--batch-sizes", "2", "--images", "4",
                               "--new-tokens", "8"], ["img/s", "real", "cutmix", "crop"]),
    ("encode_throughput.py", ["--size", "tiny", "--device", "cpu", "--batch-sizes", "4", "--images", "8"],
     ["items/s", "real", "cutmix", "crop"]),
])
def test_benchmark_runs_at_tiny_size(script, args, expect):
    out = _run(script, *args)
    for word in expect:
        assert word in out, f"{script}: {word!r} missing from\n{out}"


@pytest.mark.parametrize("script, args, expect", [
    ("train_throughput.py", ["--size", "tiny", "--device", "cpu", "--batch-sizes", "2", "--text-tokens", "16",
                             "--warmup", "1", "--steps", "1"],
     ["img/s", "TFLOP/s", "MFU", "peak GiB", "500kx1024 h", "dit_i", "cad_i", "eager", "fast"]),
    ("sample_throughput.py", ["--size", "tiny", "--device", "cpu", "--batch-sizes", "2", "--text-tokens", "16",
                              "--steps", "250", "--warmup-steps", "2", "--timed-steps", "1"],
     ["img/s", "GenEval+DPG min", "FID-50k h", "total GPU-h", "dit_i", "cad_i", "eager", "compiled"]),
])
def test_throughput_benchmarks_run_eager_and_fast_at_tiny_size(script, args, expect):
    """Both variants of both models run and the table names every column (the compiled ones with aot_eager)."""
    out = _run(script, *args)
    for word in expect:
        assert word in out, f"{script}: {word!r} missing from\n{out}"
    table = out[out.rindex("\nmodel"):].splitlines()[2:]
    assert len(table) == 4 and all("nan" not in row.split()[5] for row in table), out


def test_tiny_world_scripts_run_on_real_shards(tiny_shards, tmp_path):
    """The CPU scripts behind the tiny config's sizes and the README's training rates, on real MiniLM shards."""
    config = str(REPO / "config" / "config.yaml")
    out = _run("tiny_train_speed.py", "dit_i_ta", "--steps", "3", "--shards", str(tiny_shards), "--config", config)
    assert "stream train_ta:" in out and "cpu_ms/step" in out
    row = next(line.split() for line in out.splitlines() if line.startswith("dit_i_ta "))
    assert row[1:3] == ["3", "32"] and float(row[-1]) > 0
    out = _run("tiny_sweep.py", "dit_i,steps=2", "cad_i,steps=2,lr=4e-3,num_latents=8,objective=flow",
               "dit_i,steps=2,guidance=1,sample_steps=3", "--shards", str(tiny_shards), "--config", config,
               "--single-samples", "2", "--samples", str(tmp_path))
    rows = {line.split()[0]: line.split() for line in out.splitlines()
            if line.startswith(("dit_i,", "cad_i,")) and not line.split()[0].endswith(":")}  # the table, not the log
    assert set(rows) == {"dit_i,steps=2", "cad_i,steps=2,lr=4e-3,num_latents=8,objective=flow",
                         "dit_i,steps=2,guidance=1,sample_steps=3"}
    assert out.count("dit_i: 347,760 parameters") == 1  # a sampler-only change samples the same trained model
    assert rows["dit_i,steps=2"][1:3] == ["2", "347,760"]  # steps, parameters of the default tiny DiT-I
    for row in rows.values():
        assert 0 <= float(row[5]) <= 1 and 0 <= float(row[6]) <= 1  # colour probe, single_object
    assert "single_object chance 0.167" in out
    with Image.open(tmp_path / "dit_i_steps-2.png") as im:  # 6 prompts x 2 samples of 32 px
        assert im.size == (2 * 32, 6 * 32)


def test_the_sweeps_single_object_score_follows_the_scoring_rules():
    """Drawn by the world itself, the prompted shape counts; another shape of the same colour does not."""
    import runpy

    from imagenet_t2i.evaluation.geneval.prompts import generate_prompts
    from imagenet_t2i.world.render import render_scene

    sweep = runpy.run_path(str(REPO / "benchmarks" / "tiny_sweep.py"))
    rows = [r for r in generate_prompts(["circle", "square", "cross"]) if r["tag"] == "single_object"]

    def drawn(cls: str, i: int) -> np.ndarray:
        scene = {"key": f"k{i}", "size": 32, "backgrounds": ["gray"],
                 "objects": [{"class": cls, "color": "red", "box": [6, 7, 26, 27]}]}
        return render_scene(scene)

    right = [drawn(r["include"][0]["class"], i) for i, r in enumerate(rows) for _ in range(2)]
    assert sweep["single_object_score"](right, rows, 2) == 1.0
    wrong = {"circle": "cross", "square": "cross", "cross": "circle"}
    images = [drawn(wrong[r["include"][0]["class"]], i) for i, r in enumerate(rows) for _ in range(2)]
    assert sweep["single_object_score"](images, rows, 2) == 0.0


def test_the_sweeps_settings_reach_the_run_they_change():
    """``cfg_dropout``, ``objective`` and ``steps`` change the run's train section, a model key its model; a typo
    is refused naming the settings there are."""
    import runpy

    sweep = runpy.run_path(str(REPO / "benchmarks" / "tiny_sweep.py"))
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    run = sweep["resolved"](config, "dit_i", {"cfg_dropout": 0.3, "objective": "flow", "steps": 7, "depth": 2}, "ta")
    assert (run["train"]["cfg_dropout"], run["train"]["objective"], run["train"]["steps"]) == (0.3, "flow", 7)
    assert run["model"]["depth"] == 2 and config["train"]["cfg_dropout"] == 0.1
    with pytest.raises(SystemExit, match="unknown setting 'cfg_dropuot'.*cfg_dropout"):
        sweep["resolved"](config, "dit_i", {"cfg_dropuot": 0.3}, "ta")

"""The one-call GPU check (`tools/gpu_check.py`) runs its whole sequence on the CPU here: the smoke config's stages
through the CLI, training stopped, resumed and compared with an uninterrupted run, sampling, one table."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_sequence_on_the_cpu(tmp_path):
    report = tmp_path / "report" / "gpu_check.md"
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "gpu_check.py"), "--device", "cpu", "--steps", "6",
                           "--runs", "cad_i_ta", "--bench-size", "none", "--work", str(tmp_path / "work"), "--report",
                           str(report)], capture_output=True, text=True)  # one model here; both on the GPU
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {name: result for name, _, result in json.loads(report.with_suffix(".json").read_text())["rows"]}
    for run in ("cad_i_ta",):
        assert rows[f"train {run}: 3 steps, stop"] == rows[f"train {run}: resume to 6"] == "ok"
        assert rows[f"{run}: resumed == uninterrupted"] == "bitwise"
        assert rows[f"{run}: device (distributed, precision)"] == "cpu NO, no"  # CUDA: "cuda:0 MULTI_GPU, nccl, bf16"
        assert (tmp_path / "work" / "results" / "paper_smoke" / "samples" / run / "grid.png").stat().st_size > 0
    assert "| captions (LLaVA, TA)" in report.read_text() and proc.stdout.rstrip().endswith(report.read_text().rstrip())

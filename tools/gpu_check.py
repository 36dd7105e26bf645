"""What CI cannot run, in one call on one CUDA GPU (about 5 minutes; `tools/gpu_check.sh` installs the wheels first).

1. The smoke config's stages (`tests/data/paper_smoke.yaml`: tiny random-init LLaVA-NeXT, SD-VAE-shaped autoencoder,
   T5) through the CLI, on the GPU: fake ImageNet, TA captions, latent + text shards, then training of DiT-I and
   CAD-I (one rank under torch.distributed, NCCL, bf16) stopped half-way, resumed, and compared tensor by tensor
   with an uninterrupted run of the same config, and sampling.
2. `benchmarks/train_throughput.py` and `benchmarks/sample_throughput.py` at full size (eager, one batch size).
3. One table, labelled with the card's name, printed last and written as Markdown (``--report``).

``--device cpu --bench-size tiny`` runs the same sequence on a CPU (tests/test_gpu_check.py does, so the script
itself is tested where no GPU is).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "tests" / "data" / "paper_smoke.yaml"
R = "results/paper_smoke"  # the smoke config's result folder, relative to the work folder
RUNS = ("dit_i_ta", "cad_i_ta")  # DiT-I and CAD-I


class Check:
    """Runs the steps in ``work`` and keeps one row per step: (step, seconds, result)."""

    def __init__(self, work: Path, env: dict[str, str], log: Path) -> None:
        self.work, self.env, self.log, self.rows = work, env, log, []

    def cli(self, name: str, *args: str, env: dict[str, str] | None = None) -> str:
        """``imagenet-t2i <args>`` in the work folder; its output is appended to the log and returned."""
        return self.command(name, [sys.executable, "-m", "imagenet_t2i.cli", *args], env)

    def command(self, name: str, argv: list[str], env: dict[str, str] | None = None, timeout_s: float = 600) -> str:
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=self.work, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=timeout_s)
        took = time.perf_counter() - t0
        with self.log.open("a") as f:
            f.write(f"\n$ {' '.join(argv)}\n{proc.stdout}{proc.stderr}")
        if proc.returncode:
            self.rows.append((name, took, f"FAILED (exit {proc.returncode}; {self.log})"))
            raise SystemExit(f"{name} failed:\n{proc.stdout[-2000:]}{proc.stderr[-4000:]}")
        self.rows.append((name, took, "ok"))
        return proc.stdout + proc.stderr

    def note(self, name: str, seconds: float, result: str) -> None:
        self.rows.append((name, seconds, result))


def smoke_config(device: str, steps: int) -> dict:
    """The smoke config with one chunk per stage, ``steps`` training steps and the GPU stages on ``device``."""
    config = yaml.safe_load(SMOKE.read_text())
    for stage in ("captions", "augment", "encode"):
        config[stage]["chunks"] = 1
    train = config["train"]
    train.update(steps=steps, checkpoint_every=max(1, steps // 4), log_every=max(1, steps // 10),
                 eval_checkpoints=[max(1, steps // 2)])
    cluster = config["cluster"]
    cluster["gpus_per_node"] = 1 if device == "cuda" else 0
    cluster["stages"]["gpu"]["gpus"] = 1  # a GPU stage that sees no GPU stops (cluster.allow_cpu on a CPU run)
    cluster["allow_cpu"] = device == "cpu"
    return config


def compare(a: Path, b: Path) -> tuple[bool, float]:
    """Whether two model folders hold bit-identical tensors, and the largest absolute difference."""
    from safetensors.torch import load_file

    bitwise, worst = True, 0.0
    files = sorted(p.name for p in a.glob("*.safetensors"))
    if not files or files != sorted(p.name for p in b.glob("*.safetensors")):
        raise SystemExit(f"{a} and {b} hold different weight files")
    for name in files:
        ta, tb = load_file(a / name), load_file(b / name)
        for key in ta:
            bitwise &= torch.equal(ta[key], tb[key])
            worst = max(worst, (ta[key].double() - tb[key].double()).abs().max().item())
    return bitwise, worst


def stages(check: Check, device: str, steps: int, runs: tuple[str, ...]) -> None:
    cfg = ["--config", "config.yaml"]
    for name in ("llava", "sd_vae", "flan_t5_xl"):
        check.cli(f"weights {name}", "weights", *cfg, "--name", name, "--out", f"{R}/weights/{name}")
    check.cli("fake ImageNet", "fake-imagenet", *cfg, "--out", f"{R}/imagenet")
    check.cli("source train", "source", *cfg, "--split", "train", "--out", f"{R}/data/train")
    check.cli("captions (LLaVA, TA)", "captions", *cfg, "--images", f"{R}/data/train", "--kind", "ta", "--chunk",
              "0000-of-0001", "--weights", f"{R}/weights/llava", "--out",
              f"{R}/captions/parts/train_ta/0000-of-0001.jsonl")
    check.cli("captions merge", "captions-merge", "--parts", f"{R}/captions/parts/train_ta/0000-of-0001.jsonl",
              "--out", f"{R}/captions/train_ta.jsonl")
    check.cli("shards (VAE + T5)", "shards", *cfg, "--images", f"{R}/data/train", "--captions",
              f"{R}/captions/train_ta.jsonl", "--chunk", "0000-of-0001", "--out",
              f"{R}/shards/parts/train_ta/0000-of-0001")
    check.cli("shards merge", "shards-merge", "--parts", f"{R}/shards/parts/train_ta/0000-of-0001", "--out",
              f"{R}/shards/train_ta")
    # One rank under torch.distributed: accelerate starts the NCCL process group on CUDA (gloo would serve a CPU).
    ddp = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29517"}
    ddp = ddp if device == "cuda" else {}
    for run in runs:
        common = [*cfg, "--run", run, "--shards", f"{R}/shards"]
        out = check.cli(f"train {run}: {steps // 2} steps, stop", "train", *common, "--out", f"{R}/runs/{run}",
                        "--state", f"{R}/state/{run}", "--until", str(steps // 2), env=ddp)
        check.cli(f"train {run}: resume to {steps}", "train", *common, "--out", f"{R}/runs/{run}", "--state",
                  f"{R}/state/{run}", env=ddp)
        check.cli(f"train {run}: {steps} uninterrupted", "train", *common, "--out", f"{R}/runs/{run}_whole",
                  "--state", f"{R}/state/{run}_whole", env=ddp)
        runs = check.work / R / "runs"
        bitwise, worst = compare(runs / run / "final", runs / f"{run}_whole" / "final")
        check.note(f"{run}: resumed == uninterrupted", 0.0,
                   "bitwise" if bitwise else f"NOT bitwise: max |diff| {worst:.3g}")
        logs = "\n".join(p.read_text() for p in (check.work / R / "state" / run).rglob("*.out"))
        found = re.search(r" on (\S+) \(([^)]*)\)", out + logs)
        check.note(f"{run}: device (distributed, precision)", 0.0, " ".join(found.groups()) if found else "not found")
        check.cli(f"sample {run}", "sample", *cfg, "--model", f"{R}/runs/{run}/final", "--uncond",
                  f"{R}/shards/train_ta", "--out", f"{R}/samples/{run}/images", "--grid", f"{R}/samples/{run}/grid.png")


def benchmarks(check: Check, device: str, size: str, budget_s: float) -> None:
    common = ["--size", size, "--device", device]
    train = check.command("train throughput", [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"),
                                               *common, "--batch-sizes", "256" if size == "paper" else "8",
                                               "--variants", "eager", "--warmup", "2", "--steps", "5",
                                               "--budget-s", str(budget_s)])
    sample = check.command("sample throughput", [sys.executable, str(REPO / "benchmarks" / "sample_throughput.py"),
                                                 *common, "--batch-sizes", "256" if size == "paper" else "4",
                                                 "--variants", "eager", "--warmup-steps", "1", "--timed-steps", "3"])
    for line in (train + sample).splitlines():
        if re.match(r"^(dit_i|cad_i) .*(img/s|ms)", line):
            check.note(f"bench {line.split(':')[0]}", 0.0, line.split(":", 1)[1].strip() if ":" in line else line)


def card_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def table(rows: list[tuple[str, float, str]], card: str) -> str:
    width = max(len(r[0]) for r in rows)
    lines = [f"GPU check on {card}, torch {torch.__version__}, {time.strftime('%Y-%m-%d')}", "",
             f"| {'step':<{width}} | seconds | result |", f"|{'-' * (width + 2)}|--------:|--------|"]
    lines += [f"| {name:<{width}} | {secs:7.1f} | {result} |" for name, secs, result in rows]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    p.add_argument("--work", default="/tmp/gpu_check", help="work folder (emptied first)")
    p.add_argument("--steps", type=int, default=200, help="training steps of each tiny run")
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=RUNS, help="the smoke runs to train")
    p.add_argument("--bench-size", choices=["paper", "tiny", "none"], default="paper")
    p.add_argument("--bench-budget-s", type=float, default=90)
    p.add_argument("--report", help="also write the table (Markdown) and the rows (JSON beside it) here")
    args = p.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_check: no CUDA device visible; --device cpu runs the same sequence on the CPU")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / "config.yaml").write_text(yaml.safe_dump(smoke_config(args.device, args.steps)))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])}
    check = Check(work, env, work / "gpu_check.log")
    card = card_name(args.device)
    t0 = time.perf_counter()
    try:
        stages(check, args.device, args.steps, tuple(args.runs))
        if args.bench_size != "none":
            benchmarks(check, args.device, args.bench_size, args.bench_budget_s)
    finally:
        check.note("total", time.perf_counter() - t0, "")
        text = table(check.rows, card)
        if args.report:
            Path(args.report).parent.mkdir(parents=True, exist_ok=True)
            Path(args.report).write_text(text + "\n")
            Path(args.report).with_suffix(".json").write_text(json.dumps({"card": card, "rows": check.rows}, indent=1))
        print("\n" + text)


if __name__ == "__main__":
    main()

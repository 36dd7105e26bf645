"""Provenance records: what produced a result file (code, config, inputs, packages, host, time)."""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .config import config_hash
from .io import sha256_file, write_json

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parents[1]
PACKAGES = ["torch", "numpy", "transformers", "diffusers", "webdataset", "submitit", "snakemake", "pillow", "imagenet-t2i"]
PROVENANCE_NAME = "provenance.json"


def source_hash() -> str:
    """sha256 over the package's Python sources (changes whenever the code does)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE_ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def code_version() -> dict:
    """Git commit and dirty flag of the checkout (when there is one) and the source hash."""
    info: dict[str, Any] = {"source_sha256": source_hash()}
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src", "workflow",
                                "Snakefile", "config"], capture_output=True, text=True, timeout=10).stdout.strip()
        info.update(git_commit=commit, git_dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):
        info.update(git_commit=None, git_dirty=None)
    return info


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def path_hash(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's sorted (relative path, file sha256) list, provenance files excluded."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"cannot hash {path}: no such file or folder")
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        if f.name == PROVENANCE_NAME or f.name.endswith(".prov.json") or f.name.startswith("."):
            continue
        h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def provenance_path(output: str | os.PathLike) -> Path:
    """Where the record of ``output`` lives: ``<dir>/provenance.json`` or ``<file>.prov.json``."""
    output = Path(output)
    return output / PROVENANCE_NAME if output.is_dir() else output.with_name(output.name + ".prov.json")


def accelerator() -> str:
    """GPUs when the calling process uses torch (never imported just for this: it costs seconds per job)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return f"{torch.cuda.device_count()} x {torch.cuda.get_device_name(0)}"
    return f"cpu ({os.cpu_count()} cores)"


def make_record(stage: str, config: Any, inputs: dict[str, str | os.PathLike], outputs: list[str | os.PathLike],
                wall_s: float, extra: dict | None = None) -> dict:
    """A provenance record; inputs are named so an audit can walk back through their own records."""
    return {
        "stage": stage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "code": code_version(),
        "config": config,
        "config_hash": config_hash(config),
        "inputs": {name: {"path": str(p), "sha256": path_hash(p)} for name, p in inputs.items()},
        "outputs": {str(p): path_hash(p) for p in outputs},
        "packages": package_versions(),
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "accelerator": accelerator(),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "wall_s": round(wall_s, 3),
        **(extra or {}),
    }


def write_record(output: str | os.PathLike, record: dict) -> Path:
    path = provenance_path(output)
    write_json(path, record)
    return path

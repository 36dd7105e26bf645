"""Provenance records: what produced a result file (code, config, inputs, packages, host, time).

A folder with a manifest (a shard set's ``manifest.json``, an image set's ``index.jsonl`` whose rows carry
``sha256``) is identified by its other files, the manifest included: the manifest already holds every
member's sha256, so members are never read (``audit --members`` re-hashes them).
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from imagenet_t2i.code_closure import COMMAND_ENV, command_code
from imagenet_t2i.config import config_hash
from imagenet_t2i.io import read_json, read_jsonl, sha256_file, write_json

PACKAGE_ROOT = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_ROOT.parents[1]
PACKAGES = ["torch", "numpy", "transformers", "diffusers", "webdataset", "submitit", "snakemake", "pillow", "imagenet-t2i"]
PROVENANCE_NAME = "provenance.json"
MANIFEST_NAME = "manifest.json"  # shard sets: {"shards": [{"name", "sha256", ...}], ...}
INDEX_NAME = "index.jsonl"       # image sets: {"key", "class", "path", "sha256"} rows


def source_hash() -> str:
    """sha256 over the package's Python sources (changes whenever the code does)."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_ROOT.rglob("*.py")):
        h.update(str(path.relative_to(PACKAGE_ROOT)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def code_version() -> dict:
    """Git commit and dirty flag of the checkout (when there is one), the source hash and, in a command of the
    console script, the command and the hash of the code it runs (`code_closure`: what re-runs a job)."""
    info: dict[str, Any] = {"source_sha256": source_hash()}
    command = os.environ.get(COMMAND_ENV)
    if command:
        info.update(command=command, command_code=command_code(command))
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--", "src", "workflow",
                                "Snakefile", "config"], capture_output=True, text=True, timeout=10).stdout.strip()
        info.update(git_commit=commit, git_dirty=bool(dirty))
    except (OSError, subprocess.SubprocessError):
        info.update(git_commit=None, git_dirty=None)
    return info


def other_code(record: dict) -> str | None:
    """The command that made a record's output when it ran other code than that command runs today (its recorded
    ``command_code`` differs), else None (also for records without a command: not made by the console script)."""
    code = record.get("code") if isinstance(record, dict) else None
    command = code.get("command") if isinstance(code, dict) else None
    if not command or "command_code" not in code:
        return None
    try:
        today = command_code(command)
    except (KeyError, ValueError, FileNotFoundError):  # the command's module or function is gone
        return f"{command} (no longer exists)"
    return command if today != code["command_code"] else None


def records_under(root: str | os.PathLike) -> list[Path]:
    """Every provenance record below ``root`` (``provenance.json`` and ``<file>.prov.json``), sorted."""
    return sorted(p for p in Path(root).rglob("*.json") if p.name == PROVENANCE_NAME or p.name.endswith(".prov.json"))


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


class Member(NamedTuple):
    """A file a folder's manifest vouches for."""

    sha256: str     # as recorded in the manifest
    listed_in: Path  # the manifest file


def _entries(path: Path, path_key: str) -> list[dict] | None:
    """A manifest's member entries when every one carries ``path_key`` and ``sha256``, else None."""
    try:
        if path.name == INDEX_NAME:
            entries = read_jsonl(path)
        else:
            data = json.loads(path.read_text())
            entries = (data.get("shards", data.get("files")) if isinstance(data, dict) else None)  # shards, weights
    except ValueError:  # not JSON: not a manifest of ours
        return None
    ok = isinstance(entries, list) and all(
        isinstance(e, dict) and isinstance(e.get(path_key), str) and isinstance(e.get("sha256"), str) for e in entries)
    return entries if ok else None


def members(folder: str | os.PathLike) -> dict[str, Member]:
    """Absolute, normalised member path -> `Member`, from ``manifest.json`` shard entries (``name``, relative to
    the folder) and ``index.jsonl`` rows (``path``, relative to the folder or absolute) when every entry carries
    a sha256. (Strings: a million ``Path`` objects cost seconds.)"""
    folder = Path(folder)
    base = os.path.abspath(folder)
    out: dict[str, Member] = {}
    for name, path_key in ((MANIFEST_NAME, "name"), (INDEX_NAME, "path")):
        manifest = folder / name
        entries = _entries(manifest, path_key) if manifest.is_file() else None
        out.update({os.path.normpath(os.path.join(base, e[path_key])): Member(e["sha256"], manifest)
                    for e in entries or []})
    return out


def _counted(name: str) -> bool:
    return not (name == PROVENANCE_NAME or name.endswith(".prov.json") or name.startswith("."))


def hashed_files(folder: str | os.PathLike) -> list[Path]:
    """The files of ``folder`` that `path_hash` reads, sorted: all but provenance records, hidden files and
    manifest members (symbolic links to folders are not followed)."""
    folder = Path(folder)
    listed = members(folder)
    base = os.path.abspath(folder)
    found = []
    for dirpath, _, names in os.walk(base):
        for name in names:
            path = os.path.join(dirpath, name)
            if _counted(name) and path not in listed and os.path.isfile(path):
                found.append(folder / path[len(base) + 1 :])
    return sorted(found)


def path_hash(path: str | os.PathLike) -> str:
    """sha256 of a file, or of a folder's sorted (relative path, file sha256) list over its `hashed_files`."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    if not path.is_dir():
        raise FileNotFoundError(f"cannot hash {path}: no such file or folder")
    h = hashlib.sha256()
    for f in hashed_files(path):
        h.update(f"{f.relative_to(path)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def recorded_hash(folder: str | os.PathLike) -> str | None:
    """The content hash of ``folder`` its provenance record gives (written with the folder); None without one."""
    record = provenance_path(folder)
    if record.is_file():
        outputs = read_json(record).get("outputs") or {}
        if len(outputs) == 1:
            return next(iter(outputs.values()))
    return None


def sha256_files(paths: list[str] | list[Path], workers: int = 8, desc: str = "sha256",
                 progress: bool = True) -> list[str | None]:
    """sha256 of each file (None for a missing one) on a pool of ``workers`` threads, in order, with a progress bar."""
    def one(path: str | Path) -> str | None:
        try:
            return sha256_file(path)
        except FileNotFoundError:
            return None

    out: list[str | None] = []
    step = max(1, workers) * 256  # bounded batches: a million pending futures cost ~1 GB
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(total=len(paths), desc=desc, disable=not progress) as bar:
        for start in range(0, len(paths), step):
            out.extend(pool.map(one, paths[start : start + step]))
            bar.update(min(step, len(paths) - start))
    return out


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

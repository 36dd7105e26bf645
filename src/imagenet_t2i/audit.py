"""Audit: walk a table cell (or any recorded file) back through provenance records to the scores, samples,
checkpoint, shards, captions and source images; re-hash every file and folder and report what changed.
A folder with a manifest is checked through its manifest (`provenance.path_hash`); ``members=True`` also
re-hashes every member the manifests list and names each one that no longer matches.

A path's record is its own (``provenance.provenance_path``) or, failing that, the ``provenance.json`` of the
nearest enclosing folder (e.g. a checkpoint inside ``runs/<run>/``). Every record is read and checked once:
each of its outputs against the hash it recorded, each input against the hash it recorded when it used it.
Relative paths in records are taken relative to ``root`` (the folder Snakemake ran in; default: cwd).
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from imagenet_t2i.provenance import (PROVENANCE_NAME, hashed_files, members as manifest_members, other_code, path_hash,
                                     provenance_path, sha256_files)

MAX_SUSPECTS = 10


@dataclass
class Finding:
    """A recorded hash that no longer matches (or a recorded path that is gone, or a broken record)."""

    path: str
    problem: str             # changed | missing | unreadable record
    record: str              # the record (or, for a member, the manifest) holding the expectation
    role: str                # "output" | "input '<name>'" | "record" | "member of <folder>"
    recorded: str | None = None
    current: str | None = None
    suspects: list[str] = field(default_factory=list)  # files of a changed folder modified after the record
    folder: str | None = None  # for a member: the folder whose manifest lists it

    def text(self) -> str:
        if self.folder is not None:
            now = "it is gone" if self.problem == "missing" else f"now {self.current}"
            return (f"{self.problem.upper()} {self.path}: {self.role}, listed in {self.record} with sha256 "
                    f"{self.recorded}; {now}")
        if self.problem == "missing":
            return f"MISSING {self.path}: recorded as {self.role} by {self.record}"
        if self.problem == "changed":
            line = (f"CHANGED {self.path}: differs from the hash recorded as {self.role} by {self.record} "
                    f"(recorded {self.recorded[:12]}, now {self.current[:12]})")
            return line + (f"; modified after that record: {', '.join(self.suspects)}" if self.suspects else "")
        return f"BROKEN RECORD {self.record}: {self.recorded}"


@dataclass
class Node:
    """One file or folder on a chain, with the record that produced it and its recorded inputs."""

    path: str
    exists: bool
    record: str | None = None
    stage: str | None = None
    inputs: list[tuple[str, str]] = field(default_factory=list)  # (input name, node path)
    other_code: str | None = None  # the command, when it made this with other code than it runs today


@dataclass
class AuditReport:
    target: str
    record: str
    cells: dict[str, list[str]]      # "row|metric" (or the target) -> node paths the cell was computed from
    nodes: dict[str, Node]
    findings: list[Finding]
    records_read: int
    paths_hashed: int
    members_hashed: int = 0

    @property
    def ok(self) -> bool:
        return not self.findings

    def status(self, path: str) -> str:
        """ok | changed | missing, for a node path (a folder with a changed or missing member is changed)."""
        problems = {f.problem for f in self.findings if f.path == path}
        problems |= {"changed" for f in self.findings if f.folder == path}
        return "missing" if "missing" in problems else "changed" if "changed" in problems else "ok"

    def unrecorded(self) -> list[str]:
        """Nodes without any provenance record: where a chain ends."""
        return [p for p, n in self.nodes.items() if n.record is None]

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self) -> str:
        changed = sum(f.problem == "changed" for f in self.findings)
        missing = sum(f.problem == "missing" for f in self.findings)
        broken = len(self.findings) - changed - missing
        hashed = f"{self.paths_hashed} files/folders" + (f" and {self.members_hashed} manifest members"
                                                          if self.members_hashed else "")
        lines = [f"audit of {self.target} (record {self.record})",
                 f"read {self.records_read} records, re-hashed {hashed}: "
                 + ("nothing changed" if self.ok else f"{changed} changed, {missing} missing, {broken} broken records")]
        lines += [f.text() for f in self.findings]
        lines += [f"no provenance record (chain ends): {p}" for p in self.unrecorded()]
        lines += [f"made by other code than today's ({n.other_code}): {p}" for p, n in self.nodes.items()
                  if n.other_code]
        lines += ["", "chains:"]
        shown: set[str] = set()
        for cell, paths in self.cells.items():
            lines.append(cell)
            for path in paths:
                self._tree(path, "", 1, shown, lines)
        return "\n".join(lines) + "\n"

    def _tree(self, path: str, name: str, depth: int, shown: set[str], lines: list[str]) -> None:
        node = self.nodes[path]
        label = f"{'  ' * depth}{name + ': ' if name else ''}{path}"
        stage = f" [{node.stage}]" if node.stage else ""
        status = self.status(path).upper() if self.status(path) != "ok" else "ok"
        if path in shown:
            lines.append(f"{label}{stage} {status} (chain shown above)")
            return
        shown.add(path)
        lines.append(f"{label}{stage} {status}" + ("" if node.record else " (no record)")
                     + (f" (other code: {node.other_code})" if node.other_code else ""))
        for input_name, child in node.inputs:
            self._tree(child, input_name, depth + 1, shown, lines)


class _Walker:
    def __init__(self, root: Path, members: bool = False, workers: int = 8):
        self.root = Path(os.path.abspath(root))
        self.members, self.workers = members, workers
        self.member_hashes: dict[str, str | None] = {}
        self.hashes: dict[Path, str | None] = {}
        self.records: dict[Path, dict | None] = {}
        self.nodes: dict[str, Node] = {}
        self.findings: dict[tuple[str, str, str], Finding] = {}

    def absolute(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        return Path(os.path.normpath(path if path.is_absolute() else self.root / path))

    def show(self, path: Path) -> str:
        return str(path.relative_to(self.root)) if path.is_relative_to(self.root) else str(path)

    def current_hash(self, path: Path) -> str | None:
        if path not in self.hashes:
            self.hashes[path] = path_hash(path) if path.exists() else None
            if self.members and path.is_dir():
                self.check_members(path)
        return self.hashes[path]

    def check_members(self, folder: Path) -> None:
        """Re-hash the members the folder's manifests list; a finding for each one that changed or is gone."""
        listed = manifest_members(folder)
        todo = [p for p in listed if p not in self.member_hashes]
        self.member_hashes.update(zip(todo, sha256_files(todo, self.workers, f"members of {folder.name}")))
        for path, member in listed.items():
            current = self.member_hashes[path]
            if current != member.sha256:
                self.add(Finding(self.show(Path(path)), "missing" if current is None else "changed",
                                 self.show(member.listed_in), f"member of {self.show(folder)}", member.sha256,
                                 current, folder=self.show(folder)))

    def add(self, finding: Finding) -> None:
        self.findings.setdefault((finding.path, finding.record, finding.role), finding)

    def check(self, path: Path, recorded: str, record: Path, role: str) -> None:
        current = self.current_hash(path)
        if current is None:
            self.add(Finding(self.show(path), "missing", self.show(record), role, recorded))
        elif current != recorded:
            suspects = []
            if path.is_dir():
                since = record.stat().st_mtime_ns
                suspects = [str(f.relative_to(path)) for f in hashed_files(path)
                            if f.stat().st_mtime_ns > since][:MAX_SUSPECTS]
            self.add(Finding(self.show(path), "changed", self.show(record), role, recorded, current, suspects))

    def find_record(self, path: Path) -> Path | None:
        own = provenance_path(path)
        if own.is_file():
            return own
        for folder in path.parents:
            if (folder / PROVENANCE_NAME).is_file():
                return folder / PROVENANCE_NAME
            if folder == self.root:
                break
        return None

    def load(self, record_path: Path) -> dict | None:
        """Parse and check a record once; the first load also checks its outputs and inputs."""
        if record_path in self.records:
            return self.records[record_path]
        try:
            record = json.loads(record_path.read_text())
            problem = _record_problem(record)
        except (OSError, ValueError) as err:
            record, problem = None, f"cannot read it: {err}"
        if problem:
            self.add(Finding(self.show(record_path), "unreadable record", self.show(record_path), "record", problem))
            record = None
        self.records[record_path] = record
        if record is not None:
            for out, sha in record["outputs"].items():
                self.check(self.absolute(out), sha, record_path, "output")
            for name, entry in record["inputs"].items():
                self.check(self.absolute(entry["path"]), entry["sha256"], record_path, f"input {name!r}")
        return record

    def visit(self, path: str | os.PathLike) -> str:
        """Add the node for ``path`` and, recursively, the inputs of its record; returns the node key."""
        absolute = self.absolute(path)
        key = self.show(absolute)
        if key in self.nodes:  # memoised; also stops cycles, since a node is added before its inputs
            return key
        node = self.nodes[key] = Node(key, absolute.exists())
        record_path = self.find_record(absolute)
        if record_path is None:
            return key
        node.record = self.show(record_path)
        record = self.load(record_path)
        if record is not None:
            node.stage = record.get("stage")
            node.other_code = other_code(record)
            node.inputs = [(name, self.visit(entry["path"])) for name, entry in record["inputs"].items()]
        return key


def _record_problem(record: object) -> str | None:
    """What is wrong with a parsed record's structure, or None."""
    if not isinstance(record, Mapping):
        return "not a JSON object"
    inputs, outputs = record.get("inputs"), record.get("outputs")
    if not isinstance(inputs, Mapping) or not all(
            isinstance(e, Mapping) and isinstance(e.get("path"), str) and isinstance(e.get("sha256"), str)
            for e in inputs.values()):
        return "'inputs' must map names to {path, sha256}"
    if not isinstance(outputs, Mapping) or not all(isinstance(v, str) for v in outputs.values()):
        return "'outputs' must map paths to sha256 strings"
    return None


def audit(target: str | os.PathLike, root: str | os.PathLike | None = None, members: bool = False,
          workers: int = 8) -> AuditReport:
    """Audit a table CSV (each cell through the record's ``cells`` mapping) or any file with a provenance record.

    ``members``: also re-hash (on ``workers`` threads) every member listed by the manifests of the folders
    the audit hashes, each changed or missing one a finding. Raises FileNotFoundError when ``target`` has no
    record; everything else that is wrong is a finding."""
    walker = _Walker(Path(root) if root is not None else Path.cwd(), members, workers)
    absolute = walker.absolute(target)
    record_path = provenance_path(absolute)
    if not record_path.is_file():
        raise FileNotFoundError(f"{target} has no provenance record ({record_path}); rebuild it with its "
                                f"snakemake target (e.g. snakemake --cores all {target})")
    top = walker.visit(absolute)
    record = walker.records.get(record_path) or {}
    cells_spec = record.get("cells")
    if isinstance(cells_spec, Mapping):
        cells = {cell: [walker.visit(p) for p in paths] for cell, paths in cells_spec.items()}
    else:
        cells = {top: [top]}
    return AuditReport(top, walker.show(record_path), cells, walker.nodes, list(walker.findings.values()),
                       len(walker.records), len(walker.hashes), len(walker.member_hashes))

"""The paper's reported values known to us (``config/reference_values.yaml``), with their sources.

A cell absent from the file is "not reported to us"; nothing here is ever filled in by guesswork.
"""
from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from imagenet_t2i.provenance import REPO_ROOT

REFERENCE_PATH = REPO_ROOT / "config" / "reference_values.yaml"
NOT_REPORTED = "not reported to us"


@dataclass(frozen=True)
class Reported:
    """One reported value (``text`` as written in the file, e.g. "7.30") and where it comes from."""

    value: float
    text: str
    source: str
    note: str = ""


class _Loader(yaml.SafeLoader):
    """Safe YAML whose floats keep the text they were written with: (value, text)."""


_Loader.add_constructor("tag:yaml.org,2002:float",
                        lambda loader, node: (loader.construct_yaml_float(node), node.value))


@dataclass(frozen=True)
class Claim:
    """A reported statement about a table or figure that is not one cell's value."""

    text: str
    source: str


class ReferenceValues:
    """Lookup over the parsed reference file."""

    def __init__(self, data: Mapping, path: str | os.PathLike = "<memory>"):
        self.path = str(path)
        self._values: dict[str, dict[str, dict[str, Reported]]] = {}
        for table_id, rows in (data.get("values") or {}).items():
            for row, entry in (rows or {}).items():
                where = f"{self.path}: values.{table_id}.{row}"
                values = entry.get("values") if isinstance(entry, Mapping) else None
                if not isinstance(values, Mapping) or not entry.get("source"):
                    raise ValueError(f"{where} needs a non-empty 'source' and a 'values' mapping (metric -> number)")
                for metric, value in values.items():
                    value, text = value if isinstance(value, tuple) else (value, str(value))
                    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                        raise ValueError(f"{where}.values.{metric} = {text!r} is not a finite number")
                    self._values.setdefault(table_id, {}).setdefault(str(row), {})[metric] = Reported(
                        float(value), text, str(entry["source"]), str(entry.get("note", "")))
        self._unreported = {str(k): str(v) for k, v in (data.get("unreported") or {}).items()}
        self._claims: dict[str, list[Claim]] = {}
        for target, claims in (data.get("claims") or {}).items():
            for n, claim in enumerate(claims or []):
                if not isinstance(claim, Mapping) or not claim.get("text") or not claim.get("source"):
                    raise ValueError(f"{self.path}: claims.{target}[{n}] needs 'text' and 'source'")
                self._claims.setdefault(target, []).append(Claim(str(claim["text"]), str(claim["source"])))

    def reported(self, table_id: str, row: str | Iterable[str], metric: str) -> Reported | None:
        """The value reported for ``metric`` of ``row`` (or the first of several candidate row keys) in
        ``table_id``, or None when it is not reported to us."""
        rows = self._values.get(table_id, {})
        for key in [row] if isinstance(row, str) else row:
            if metric in rows.get(key, {}):
                return rows[key][metric]
        return None

    def rows(self, table_id: str) -> list[str]:
        """Row keys with at least one reported value in ``table_id``, in file order."""
        return list(self._values.get(table_id, {}))

    def claims(self, target_id: str) -> list[Claim]:
        return list(self._claims.get(target_id, []))

    def unreported(self, target_id: str) -> str | None:
        """The status of a table's cells that have no reported value: why, with its source (``unreported``)."""
        return self._unreported.get(target_id)


def load_reference(path: str | os.PathLike | None = None) -> ReferenceValues:
    """Parse the reference file (default ``config/reference_values.yaml`` of the checkout)."""
    path = Path(path) if path is not None else REFERENCE_PATH
    if not path.is_file():
        raise FileNotFoundError(f"reference values file {path} not found; it ships as config/reference_values.yaml")
    with open(path) as f:
        data = yaml.load(f, Loader=_Loader) or {}  # noqa: S506 (a SafeLoader subclass)
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: top level must be a mapping with 'values' and 'claims'")
    return ReferenceValues(data, path)


@functools.lru_cache(maxsize=1)
def _default() -> ReferenceValues:
    return load_reference()


def reported(table_id: str, run_or_row: str | Iterable[str], metric: str) -> Reported | None:
    """Reported value (with ``.source``) from the default reference file, or None: not reported to us."""
    return _default().reported(table_id, run_or_row, metric)

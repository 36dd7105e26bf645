"""The paper's released TA captions (HF dataset ``Lucasdegeorge/ImageNet_TA_IA``, fields ``image_path`` and
``caption``, or the columns ``captions.released.columns`` names), read from a local copy: a parquet / JSONL / CSV file
or a folder of them. The columns are checked when the workflow starts (`check_columns`), not in the caption jobs.

Released paths map to our keys by file stem (``.../n01440764_10026.JPEG`` -> ``n01440764_10026``). The
release captions ImageNet's images and the paper's CutMix composites, named ``<base>_<partner>_<x>_<y>_<x2>_<y2>``:
a CutMix set rebuilds those (`imagenet_t2i.augment.released`) under the same names, so they match too. Keys it lacks
(val, the Crop set, composites the release has none of, anything renamed) are captioned by the configured VLM and
reported.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path, PurePosixPath

from imagenet_t2i.captions.chunked import RecordCaptioner

SUFFIXES = (".parquet", ".jsonl", ".csv")
COLUMNS = {"image": "image_path", "caption": "caption"}  # the release's; captions.released.columns overrides


def released_files(path: str | Path) -> list[Path]:
    """The data files of a local copy: the file itself, or every parquet / JSONL / CSV file under the folder."""
    path = Path(path)
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES)
    if not files:
        raise FileNotFoundError(f"{path}: no released captions (.parquet, .jsonl or .csv) found; download the "
                                "dataset with `huggingface-cli download Lucasdegeorge/ImageNet_TA_IA --repo-type "
                                "dataset --local-dir <folder>` and set captions.released.path to that folder")
    return files


def columns_of(path: Path) -> list[str]:
    """The column names of one file (parquet schema, CSV header, the first JSONL row's keys)."""
    if path.suffix == ".jsonl":
        with open(path) as f:
            first = next((line for line in f if line.strip()), "{}")
        return list(json.loads(first))
    if path.suffix == ".csv":
        import pandas as pd

        return list(pd.read_csv(path, nrows=0).columns)
    import pyarrow.parquet as pq

    return list(pq.read_schema(path).names)


def check_columns(path: str | Path, columns: dict[str, str] = COLUMNS) -> None:
    """Raise ValueError unless every file of the copy has the ``columns`` (role -> column name), naming what it has."""
    for file in released_files(path):
        present = columns_of(file)
        missing = {role: name for role, name in columns.items() if name not in present}
        if missing:
            raise ValueError(f"{file} has no column(s) {sorted(missing.values())} (its columns: {present}); set "
                             f"captions.released.columns {{image: ..., caption: ...}} to its names")


def released_rows(path: Path, columns: dict[str, str]) -> Iterator[tuple[str, str]]:
    """(image path, caption) of one file, streamed."""
    image, caption = columns["image"], columns["caption"]
    if path.suffix == ".jsonl":
        with open(path) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    yield row[image], row[caption]
        return
    if path.suffix == ".csv":
        import pandas as pd

        for frame in pd.read_csv(path, usecols=[image, caption], chunksize=100_000):
            yield from zip(frame[image], frame[caption])
        return
    import pyarrow.parquet as pq

    for batch in pq.ParquetFile(path).iter_batches(columns=[image, caption], batch_size=100_000):
        yield from zip(batch.column(image).to_pylist(), batch.column(caption).to_pylist())


def copy_files(path: str | Path) -> list[dict]:
    """The files of a local copy with their size and modification time: what provenance records (a re-download
    into the same folder shows), without hashing gigabytes in every caption job."""
    return [{"name": str(f), "bytes": f.stat().st_size, "mtime_ns": f.stat().st_mtime_ns} for f in released_files(path)]


def release_key(image_path: str) -> str:
    """Our key of a released ``image_path``: its file stem."""
    return PurePosixPath(str(image_path).replace("\\", "/")).stem


def read_released(path: str | Path, keys: set[str], columns: dict[str, str] = COLUMNS) -> dict[str, str]:
    """key -> released caption for the wanted ``keys`` (the rest of the release is streamed past; no key, no read)."""
    out: dict[str, str] = {}
    if not keys:
        return out
    for file in released_files(path):
        for image_path, caption in released_rows(file, columns):
            key = release_key(image_path)
            if key in keys:
                if out.get(key, caption) != caption:
                    raise ValueError(f"{file}: {image_path} ({key}) has two different released captions")
                out[key] = caption
    return out


class ReleasedRecords:
    """Released captions for the keys the release has; the VLM (built only when needed) for the others."""

    name = "released"

    def __init__(self, path: str | Path, keys: set[str], fallback: Callable[[], RecordCaptioner],
                 columns: dict[str, str] = COLUMNS) -> None:
        self.path = str(path)
        self.files = copy_files(path)
        self.captions = read_released(path, keys, columns)
        self.missing: list[str] = []
        self._fallback_factory, self._fallback = fallback, None
        self.failures: dict[str, dict] = {}

    def caption(self, records: Sequence[dict]) -> list[str | None]:
        lacking = [r for r in records if r["key"] not in self.captions]
        if lacking:
            self.missing += [r["key"] for r in lacking]
            if self._fallback is None:
                self._fallback = self._fallback_factory()
                self.failures = self._fallback.failures
            made = dict(zip((r["key"] for r in lacking), self._fallback.caption(lacking)))
        return [self.captions[r["key"]] if r["key"] in self.captions else made[r["key"]] for r in records]

    def describe(self) -> dict:
        return {"backend": "released", "dataset": "Lucasdegeorge/ImageNet_TA_IA", "path": self.path, "files": self.files,
                "released": len(self.captions), "not_in_release": len(self.missing),
                "not_in_release_first": self.missing[:20],
                "fallback": self._fallback.describe() if self._fallback is not None else None}

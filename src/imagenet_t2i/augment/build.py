"""Build augmented sets (docs/formats.md, "Augmented sets"): one composite per source image.

``chunk=(c, n)`` makes the composites of source rows ``chunk_range(len(source), c, n)`` only, into a
part folder; `augment.merge.merge_augmented` joins the n parts into the set one ``(0, 1)`` build
writes. Unreadable or inconsistent source images are listed in ``skipped.json``, never fatal.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path

from tqdm import tqdm

from imagenet_t2i.augment.geometry import CROP_SCALE, CUTMIX_CHOICES
from imagenet_t2i.augment.record import INDEX, RECORD, complete_record, fingerprint
from imagenet_t2i.augment.released import Released
from imagenet_t2i.augment.rescale import base_records
from imagenet_t2i.augment.source import SourceSplit
from imagenet_t2i.augment.work import Outcome, SetSpec, Worker
from imagenet_t2i.chunks import chunk_range
from imagenet_t2i.io import sha256_file, staged_folder, write_json, write_jsonl
from imagenet_t2i.world.folder import IMAGE_FORMATS


def _outcomes(worker: Worker, stage: Path, rows: range, workers: int) -> Iterator[Outcome]:
    """Outcomes of ``rows`` in row order, made here or by ``workers`` threads."""
    if workers <= 1:
        yield from (worker.one(i, stage) for i in rows)
        return
    with ThreadPoolExecutor(workers) as pool:
        yield from pool.map(partial(worker.one, stage=stage), rows)


def _build(spec: SetSpec, out_dir: str | Path, chunk: tuple[int, int], workers: int, progress: bool,
           released: Released | None = None) -> dict:
    if spec.image_format not in IMAGE_FORMATS:
        raise ValueError(f"unknown image format {spec.image_format!r}: use one of {sorted(IMAGE_FORMATS)}")
    out_dir = Path(out_dir)
    source = SourceSplit(spec.source_dir, spec.size, spec.resize)
    rows = chunk_range(len(source), *chunk)
    settings = {"set": spec.kind, **spec.params(), "seed": spec.seed, "image_format": spec.image_format,
                "size": source.size, **source.hashes()}
    record = {"fingerprint": fingerprint(settings), "settings": settings, "chunk": list(chunk),
              "rows": [rows.start, rows.stop]}
    done = complete_record(out_dir)
    if done is not None and all(done.get(k) == v for k, v in record.items()):
        return done  # this part (or set) is complete with the same inputs and settings
    worker = Worker(spec, source, released)  # fails early (e.g. CutMix with one class), before anything is removed
    (out_dir / INDEX).unlink(missing_ok=True)
    index, scenes, skipped = [], [], []
    name = f"augment {spec.kind} {chunk[0]:04d}-of-{chunk[1]:04d}"
    with staged_folder(out_dir / "images") as stage, \
            tqdm(total=len(rows), desc=name, unit="img", disable=not progress) as bar:
        for out in _outcomes(worker, stage, rows, workers):
            if out.skipped is not None:
                skipped.append(out.skipped)
            else:
                index.append(out.row)
                scenes.append(out.scene)
            bar.update()
    skipped.sort(key=lambda s: s["key"])
    record |= {"written": len(index), "skipped": len(skipped)}
    write_json(out_dir / "skipped.json", skipped)
    write_jsonl(out_dir / "scenes.jsonl", scenes)
    if source.class_names is not None:
        write_json(out_dir / "classes.json", source.class_names)
    else:
        (out_dir / "classes.json").unlink(missing_ok=True)
    write_json(out_dir / RECORD, record)
    write_jsonl(out_dir / INDEX, index)  # last: its presence marks a complete set (or part)
    return record


def build_cutmix_set(
    source_dir: str | Path,
    out_dir: str | Path,
    pattern: str,
    seed: int,
    size: int | None = None,
    image_format: str = "png",
    progress: bool = True,
    chunk: tuple[int, int] = (0, 1),
    workers: int = 1,
    resize: str = "bicubic",
    released: Released | None = None,
    release_files: Sequence[dict] = (),
) -> dict:
    """One CutMix composite per readable source image of ``chunk``, key ``cutmix_<key>``.

    The partner is drawn uniformly among the images of the OTHER classes of the whole source; an
    unreadable partner is redrawn. A base that ``released`` names a composite of gets that composite instead,
    keyed by its release name (`imagenet_t2i.augment.released`); ``release_files`` (`copy_files`) identify the
    release in the build's fingerprint. ``workers`` > 1 makes the images in that many threads (same
    bytes). Returns the build record (``build.json``: fingerprint, settings, chunk, rows, written, skipped).
    """
    if pattern not in CUTMIX_CHOICES:
        raise ValueError(f"unknown CutMix pattern {pattern!r}: use one of {list(CUTMIX_CHOICES)}")
    release = tuple((f["name"], f["bytes"], f["mtime_ns"]) for f in release_files)
    spec = SetSpec("cutmix", str(source_dir), size, int(seed), image_format, pattern=pattern, resize=resize,
                   release=release)
    return _build(spec, out_dir, chunk, workers, progress, released)


def build_crop_set(
    source_dir: str | Path,
    out_dir: str | Path,
    scale: tuple[float, float] = CROP_SCALE,
    seed: int = 0,
    size: int | None = None,
    image_format: str = "png",
    progress: bool = True,
    chunk: tuple[int, int] = (0, 1),
    workers: int = 1,
    resize: str = "bicubic",
    from_original: bool = False,
) -> dict:
    """One random square crop per readable source image of ``chunk``, key ``crop_<key>``; the build record.
    ``from_original``: the window is cut from the stored image at full resolution (`apply_crop`)."""
    spec = SetSpec("crop", str(source_dir), size, int(seed), image_format, scale=(float(scale[0]), float(scale[1])),
                   from_original=from_original, resize=resize)
    return _build(spec, out_dir, chunk, workers, progress)


def build_rescaled_set(
    base_dir: str | Path,
    source_dir: str | Path,
    out_dir: str | Path,
    size: int,
    image_format: str = "png",
    progress: bool = True,
    chunk: tuple[int, int] = (0, 1),
    workers: int = 1,
    resize: str = "bicubic",
    from_original: bool = False,
) -> dict:
    """The augmented set ``base_dir`` made again from ``source_dir`` at side ``size`` (`imagenet_t2i.augment.rescale`:
    same partners, boxes and windows, same keys); the build record."""
    kind, _, _ = base_records(base_dir)
    spec = SetSpec(kind, str(source_dir), size, 0, image_format, pattern="rescaled" if kind == "cutmix" else None,
                   scale=(1.0, 1.0) if kind == "crop" else None, from_original=from_original and kind == "crop",
                   resize=resize, rescale_from=(str(base_dir), sha256_file(Path(base_dir) / "scenes.jsonl")))
    return _build(spec, out_dir, chunk, workers, progress)

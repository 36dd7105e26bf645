"""Encode + shard stage: a folder of images and its captions -> WebDataset tars (docs/formats.md, "Shards").

Each sample holds the preprocessed image, its caption, the autoencoder posterior mean/std and the
unpadded text embedding (all float16). Samples are written in a seeded random order (ImageNet's
index is sorted by class; streaming readers only shuffle locally). Shard ``i`` always holds the
records ``order[i*shard_size : (i+1)*shard_size]`` minus unreadable images, so an interrupted run
resumes at the first unfinished shard, and a finished run with the same inputs is not redone.

At scale the stage runs as ``encode.chunks`` jobs (`chunks`): chunk ``c`` of ``n`` writes the shards
``chunk_range(num_shards, c, n)`` into its own part folder, and `merge_shards` links the parts'
shards into the set's folder with one manifest, identical to the one a single job would write.
"""
from __future__ import annotations

import collections
import hashlib
import io
import itertools
import json
import logging
import os
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds
from PIL import Image
from tqdm import tqdm

from imagenet_t2i.chunks import chunk_range
from imagenet_t2i.encode.autoencoder import Autoencoder
from imagenet_t2i.encode.images import CorruptImageError, load_rgb, preprocess, to_tensor
from imagenet_t2i.encode.text import TextEncoder
from imagenet_t2i.io import atomic_write, read_json, read_jsonl, sha256_file, write_json
from imagenet_t2i.provenance import recorded_hash, sha256_files

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
UNCOND = "uncond.npy"
PROGRESS = ".progress.json"  # finished shards of an interrupted run; removed once manifest.json exists


def shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def npy_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def image_bytes(img: np.ndarray, fmt: str) -> bytes:
    """Encode an (H, W, 3) uint8 image as ``png`` or ``jpg`` (quality 95)."""
    buf = io.BytesIO()
    if fmt == "png":
        Image.fromarray(img).save(buf, format="PNG")
    elif fmt == "jpg":
        Image.fromarray(img).save(buf, format="JPEG", quality=95)
    else:
        raise ValueError(f"image_format must be 'png' or 'jpg', got {fmt!r}")
    return buf.getvalue()


def read_captions(path: str | os.PathLike) -> dict[str, str | None]:
    """key -> caption from a captions JSONL (None: the image was dropped, e.g. its caption came back empty); a key
    listed twice with different captions is an error."""
    captions: dict[str, str | None] = {}
    for row in read_jsonl(path):
        key, caption = row["key"], row["caption"]
        if captions.get(key, caption) != caption:
            raise ValueError(f"{path}: key {key!r} has two different captions; keep one line per key")
        captions[key] = caption
    return captions


class _CaptionCache:
    """Encode each distinct caption once while it stays in a byte-bounded LRU (AIO captions repeat per class)."""

    def __init__(self, encoder: TextEncoder, max_bytes: int = 256 << 20):
        self.encoder, self.max_bytes, self.bytes = encoder, max_bytes, 0
        self.cache: collections.OrderedDict[str, np.ndarray] = collections.OrderedDict()

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        fresh = dict(zip(missing, self.encoder.encode(missing))) if missing else {}
        for t in dict.fromkeys(texts):
            if t in self.cache:
                self.cache.move_to_end(t)
        out = [fresh[t] if t in fresh else self.cache[t] for t in texts]
        for t, emb in fresh.items():
            self.cache[t] = emb
            self.bytes += emb.nbytes
        while self.bytes > self.max_bytes:
            self.bytes -= self.cache.popitem(last=False)[1].nbytes
        return out


def _check_index(records: list[dict], index_path: Path) -> None:
    seen: set[str] = set()
    for rec in records:
        key = rec["key"]
        if "." in key or "/" in key:
            raise ValueError(f"{index_path}: key {key!r} contains '.' or '/', which WebDataset would split; rename it")
        if key in seen:
            raise ValueError(f"{index_path}: key {key!r} is listed twice; keys must be unique")
        seen.add(key)


def _images_hash(split_dir: Path, records: list[dict]) -> str:
    """The hash of the images ``records`` name: the one the split's provenance record holds, else the index's own
    (its rows carry each image's sha256), else computed from the files (a missing one counts as missing)."""
    recorded = recorded_hash(split_dir)
    if recorded is not None:
        return recorded
    if all(isinstance(rec.get("sha256"), str) for rec in records):
        return "index"
    hashes = sha256_files([split_dir / rec["path"] for rec in records], desc="sha256 of the images", progress=False)
    h = hashlib.sha256()
    for rec, digest in zip(records, hashes):
        h.update(f"{rec['path']}\0{digest or 'missing'}\n".encode())
    return h.hexdigest()


def _load(split_dir: Path, rec: dict, resolution: int, resize: str = "bicubic") -> np.ndarray | CorruptImageError:
    try:
        return preprocess(load_rgb(split_dir / rec["path"]), resolution, resize)  # (R, R, 3) uint8
    except CorruptImageError as e:
        return e


def _loaded_batches(pool: ThreadPoolExecutor, work: Iterable[tuple[int, list[dict]]], split_dir: Path,
                    resolution: int, resize: str, depth: int = 2) -> Iterator[tuple[int, list[tuple[dict, Any]]]]:
    """Decode images on the thread pool, ``depth`` batches ahead of the encoder."""
    work = iter(work)
    pending: collections.deque[tuple[int, list[dict], list[Future]]] = collections.deque()

    def submit() -> None:
        for shard_idx, recs in itertools.islice(work, 1):
            pending.append((shard_idx, recs, [pool.submit(_load, split_dir, r, resolution, resize) for r in recs]))

    for _ in range(depth):
        submit()
    while pending:
        shard_idx, recs, futures = pending.popleft()
        submit()
        yield shard_idx, [(r, f.result()) for r, f in zip(recs, futures)]


def _write_shard(path: Path, batches: Iterable[list[tuple[dict, Any]]], captions: dict[str, str],
                 autoencoder: Autoencoder, text_encoder: _CaptionCache, image_format: str,
                 bar: tqdm) -> tuple[int, list[dict]]:
    """Write one tar atomically. -> (samples written, skipped records)."""
    written, skipped = 0, []
    with atomic_write(path, "wb") as f, wds.TarWriter(f, encoder=False, mtime=0) as tar:
        for loaded in batches:
            good = []
            for rec, img in loaded:
                if isinstance(img, CorruptImageError):
                    log.warning("skipping key %s: %s", rec["key"], img)
                    skipped.append({"key": rec["key"], "path": rec["path"], "error": img.reason})
                else:
                    good.append((rec, img))
            bar.update(len(loaded))
            if not good:
                continue
            mean, std = autoencoder.encode(to_tensor([img for _, img in good]))  # (B, C, h, w) each
            mean = mean.cpu().numpy().astype(np.float16)
            std = std.cpu().numpy().astype(np.float16)
            dropped = [rec["key"] for rec, _ in good if captions[rec["key"]] is None]
            good = [(rec, img) for rec, img in good if captions[rec["key"]] is not None]
            skipped += [{"key": key, "dropped": "no caption (empty)"} for key in dropped]
            if not good:
                continue
            texts = [captions[rec["key"]] for rec, _ in good]
            embs = text_encoder.encode(texts)  # B x (L_i, D) float16
            for j, (rec, img) in enumerate(good):
                tar.write({"__key__": rec["key"], image_format: image_bytes(img, image_format),
                           "txt": texts[j].encode("utf-8"), "mean.npy": npy_bytes(mean[j]),
                           "std.npy": npy_bytes(std[j]), "emb.npy": npy_bytes(embs[j].astype(np.float16))})
                written += 1
    return written, skipped


def _intact(out_dir: Path, entries: Iterable[dict]) -> bool:
    """Shard files exist with the recorded sizes (a full re-hash of paper-scale shards is too slow here)."""
    return all((out_dir / e["name"]).is_file() and (out_dir / e["name"]).stat().st_size == e["bytes"]
               for e in entries)


def write_shards(split_dir: str | os.PathLike, captions_path: str | os.PathLike, out_dir: str | os.PathLike,
                 autoencoder: Autoencoder, text_encoder: TextEncoder, resolution: int,
                 shard_size: int = 1000, batch_size: int = 64, progress: bool = True, *,
                 image_format: str = "png", order_seed: int = 0, num_workers: int | None = None,
                 chunk: tuple[int, int] = (0, 1), resize: str = "bicubic") -> dict:
    """Encode ``split_dir`` (index.jsonl + images) with its captions into ``out_dir``; return the manifest.

    ``chunk=(c, n)`` writes only the shards of chunk ``c`` of ``n`` (a part folder for `merge_shards`;
    its manifest says ``"chunk": [c, n]``). ``resize``: how an image is made square (`preprocess`). Unreadable or
    missing images are logged, skipped and listed in ``manifest["skipped"]``, as are images whose caption row says
    they were dropped (``"caption": null``: an empty VLM caption; ``manifest["dropped"]`` counts them); a readable
    image without a caption row raises ValueError before any work is done.
    """
    split_dir, out_dir = Path(split_dir), Path(out_dir)
    index_path, captions_path = split_dir / "index.jsonl", Path(captions_path)
    records = read_jsonl(index_path)
    _check_index(records, index_path)
    captions = read_captions(captions_path)
    # An image the caption stage could not read has no caption: it is skipped (and reported) here too.
    missing = [rec["key"] for rec in records
               if rec["key"] not in captions and not isinstance(_load(split_dir, rec, resolution, resize),
                                                                CorruptImageError)]
    if missing:
        raise ValueError(f"{len(missing)} key(s) of {index_path} have no caption in {captions_path} "
                         f"(first: {missing[:5]}); regenerate the captions for this image set")

    inputs = {"index": {"path": str(index_path), "sha256": sha256_file(index_path)},
              "captions": {"path": str(captions_path), "sha256": sha256_file(captions_path)}}
    # the images' own hash too: a world drawn again (another placement) keeps its index and AIO captions
    settings = {"index_sha256": inputs["index"]["sha256"], "captions_sha256": inputs["captions"]["sha256"],
                "images_sha256": _images_hash(split_dir, records),
                "autoencoder": autoencoder.describe(), "text_encoder": text_encoder.describe(),
                "resolution": resolution, "shard_size": shard_size, "image_format": image_format,
                "order_seed": order_seed, **({"resize": resize} if resize != "bicubic" else {})}
    fingerprint = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()

    manifest_path, progress_path = out_dir / MANIFEST, out_dir / PROGRESS
    if manifest_path.exists():
        old = read_json(manifest_path)
        if old.get("fingerprint") == fingerprint and _intact(out_dir, old["shards"]) and (out_dir / UNCOND).is_file():
            log.info("%s is up to date (%d samples); nothing to do", out_dir, old["num_samples"])
            return old
        manifest_path.unlink()  # stale: never leave a manifest that describes other shards

    done: dict[int, dict] = {}
    if progress_path.exists():
        state = read_json(progress_path)
        if state.get("fingerprint") == fingerprint:
            done = {int(i): s for i, s in state["shards"].items() if _intact(out_dir, [s["entry"]])}

    order = np.random.default_rng(order_seed).permutation(len(records))
    groups = [order[i : i + shard_size] for i in range(0, len(order), shard_size)]  # shard index -> record indices
    mine = chunk_range(len(groups), *chunk)
    work = [(s, [records[k] for k in groups[s][b : b + batch_size]])
            for s in mine if s not in done for b in range(0, len(groups[s]), batch_size)]

    initial = sum(len(groups[s]) for s in done if s in mine)
    cached_encoder = _CaptionCache(text_encoder)
    with ThreadPoolExecutor(num_workers or min(8, os.cpu_count() or 1)) as pool, \
            tqdm(total=sum(len(groups[s]) for s in mine), initial=initial, disable=not progress,
                 desc=f"shards {out_dir.name}") as bar:
        batches = _loaded_batches(pool, work, split_dir, resolution, resize)
        for s, group in itertools.groupby(batches, key=lambda item: item[0]):
            path = out_dir / shard_name(s)
            n, skipped = _write_shard(path, (loaded for _, loaded in group), captions, autoencoder,
                                      cached_encoder, image_format, bar)
            entry = {"name": path.name, "num_samples": n, "sha256": sha256_file(path), "bytes": path.stat().st_size}
            done[s] = {"entry": entry, "skipped": skipped}
            write_json(progress_path, {"fingerprint": fingerprint, "shards": {str(i): v for i, v in done.items()}})

    uncond = text_encoder.encode([""])[0].astype(np.float16)  # (L0, D)
    with atomic_write(out_dir / UNCOND, "wb") as f:
        np.save(f, uncond, allow_pickle=False)

    shards = [done[s]["entry"] for s in mine]
    manifest = {
        "num_samples": sum(e["num_samples"] for e in shards),
        "shards": shards,
        "skipped": [x for s in mine for x in done[s]["skipped"]],
        "dropped": sum(1 for s in mine for x in done[s]["skipped"] if "dropped" in x),
        "autoencoder": autoencoder.describe(),
        "text_encoder": text_encoder.describe(),
        "resolution": resolution,
        "resize": resize,
        "latent_shape": [autoencoder.latent_channels] + [resolution // autoencoder.downsample] * 2,
        "text_dim": text_encoder.dim,
        "uncond_tokens": int(uncond.shape[0]),
        "image_format": image_format,
        "shard_size": shard_size,
        "order_seed": order_seed,
        "inputs": inputs,
        "fingerprint": fingerprint,
        **({"chunk": list(chunk)} if chunk != (0, 1) else {}),
    }
    listed = {e["name"] for e in shards}
    for stale in out_dir.glob("shard-*.tar"):
        if stale.name not in listed:
            stale.unlink()
    write_json(manifest_path, manifest)
    progress_path.unlink(missing_ok=True)
    if manifest["skipped"]:
        log.warning("%s: skipped %d image(s) (%d dropped for an empty caption, the rest unreadable), listed in %s",
                    out_dir, len(manifest["skipped"]), manifest["dropped"], manifest_path)
    return manifest


def _link(src: Path, dst: Path) -> None:
    """``dst`` becomes the same file as ``src`` (a hard link; a copy across file systems)."""
    if dst.exists() and os.path.samefile(src, dst):
        return
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def merge_shards(parts: list[str | os.PathLike], out_dir: str | os.PathLike) -> dict:
    """One shard set from the part folders of its chunks (`write_shards` with ``chunk``); returns its manifest.

    The parts must be every chunk of one run (same fingerprint, chunks 0..n-1 once each). Shards are
    hard-linked (no copy), the manifest is written last, so a half-merged folder has no manifest.
    """
    out_dir = Path(out_dir)
    manifests = [(Path(p), read_json(Path(p) / MANIFEST)) for p in parts]
    count = len(manifests)
    indices = sorted(m.get("chunk", [0, 1])[0] for _, m in manifests)
    if indices != list(range(count)) or any(m.get("chunk", [0, 1])[1] != count for _, m in manifests):
        raise ValueError(f"cannot merge {[str(p) for p, _ in manifests]}: they are not chunks 0..{count - 1} "
                         f"of {count}; rerun the shards stage")
    if len({m["fingerprint"] for _, m in manifests}) != 1:
        raise ValueError(f"the parts of {out_dir} were encoded from different inputs or settings; rerun the shards stage")
    manifests.sort(key=lambda pm: pm[1].get("chunk", [0, 1])[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / MANIFEST).unlink(missing_ok=True)
    for part, m in manifests:
        for entry in m["shards"]:
            _link(part / entry["name"], out_dir / entry["name"])
    _link(manifests[0][0] / UNCOND, out_dir / UNCOND)
    manifest = {k: v for k, v in manifests[0][1].items() if k != "chunk"}
    manifest["shards"] = [e for _, m in manifests for e in m["shards"]]
    manifest["skipped"] = [x for _, m in manifests for x in m["skipped"]]
    manifest["dropped"] = sum(m.get("dropped", 0) for _, m in manifests)
    manifest["num_samples"] = sum(e["num_samples"] for e in manifest["shards"])
    listed = {e["name"] for e in manifest["shards"]}
    for stale in out_dir.glob("shard-*.tar"):
        if stale.name not in listed:
            stale.unlink()
    write_json(out_dir / MANIFEST, manifest)
    return manifest

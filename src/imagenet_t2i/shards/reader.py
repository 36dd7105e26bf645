"""The training data stream: an infinite, deterministic, resumable iterator of batches over shards.

Same code at both scales. Per epoch, the shard order is a permutation seeded by ``(seed, epoch)``,
identical on every rank; the epoch's sample sequence (shards in that order) is cut into
``world_size`` contiguous ranges of equal size (+-1), one per rank, so every rank reads only the
shards overlapping its range, every sample is seen exactly once per epoch, and fewer shards than
ranks still works. Each rank shuffles its range in blocks of ``shuffle_buffer`` samples (seeded by
``(seed, epoch, rank, block)``). Batches run on across epoch ends, so no sample is dropped.

The stream position is one number, the count of batches handed out: `state_dict` is the same on
every rank (saving rank 0's is enough), and a stream restored with `load_state_dict` yields
exactly the batches an uninterrupted stream would have yielded next.
"""
from __future__ import annotations

import dataclasses
import functools
import io
import itertools
import mmap
import os
import queue
import tarfile
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import webdataset as wds

from imagenet_t2i.io import read_json
from imagenet_t2i.shards.writer import MANIFEST, UNCOND

_MEMBERS = (".mean.npy", ".std.npy", ".emb.npy")  # the png/txt members are never read


@functools.lru_cache(maxsize=4096)
def _npy_header(prefix: bytes) -> tuple[np.dtype, tuple[int, ...], bool, int]:
    """Parse an .npy header once per distinct header. -> (dtype, shape, fortran_order, data offset)."""
    f = io.BytesIO(prefix)
    version = np.lib.format.read_magic(f)
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(f)
    return dtype, shape, fortran_order, f.tell()


def _npy(data: bytes) -> np.ndarray:
    """Zero-copy view of .npy bytes (what np.load does, minus the copy and the repeated header parsing)."""
    end = 10 + int.from_bytes(data[8:10], "little") if data[6] == 1 else 12 + int.from_bytes(data[8:12], "little")
    dtype, shape, fortran_order, offset = _npy_header(data[:end])
    a = np.frombuffer(data, dtype=dtype, count=int(np.prod(shape)), offset=offset)
    return a.reshape(shape[::-1]).T if fortran_order else a.reshape(shape)


@functools.lru_cache(maxsize=256)
def tar_index(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, tuple[tuple[str, int, int], ...]], ...]:
    """The samples of one shard in file order as webdataset groups them (consecutive members sharing the name
    before the first dot; lower-case suffixes), with the ``_MEMBERS`` the stream reads:
    ``((key, ((suffix, data offset, size), ...)), ...)``. Built once per shard and process (headers only: the
    random-access reader seeks past the data); ``mtime_ns`` and ``size`` make a rewritten shard a new entry."""
    samples: list[tuple[str, list[tuple[str, int, int]]]] = []
    with tarfile.open(path, "r:") as tar:
        for info in tar:
            if not info.isreg() or not info.name.endswith(_MEMBERS):
                continue
            key, suffix = wds.tariterators.base_plus_ext(info.name)
            if key is None:
                continue
            suffix = suffix.lower()
            if not samples or samples[-1][0] != key:
                samples.append((key, []))
            if any(s == suffix for s, _, _ in samples[-1][1]):
                raise ValueError(f"{path}: duplicate member {info.name}")
            samples[-1][1].append((suffix, info.offset_data, info.size))
    return tuple((key, tuple(members)) for key, members in samples)


def pad_text(embs: Sequence[np.ndarray | torch.Tensor],
             dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad per-sample embeddings (L_i, D) with zeros. -> text (N, Lmax, D), mask (N, Lmax) bool, True = token."""
    if not embs:
        raise ValueError("pad_text needs at least one embedding")
    lengths = [int(e.shape[0]) for e in embs]
    if min(lengths) < 1:
        raise ValueError(f"pad_text got an empty embedding (lengths {lengths}); every caption encodes to >= 1 token")
    text = np.zeros((len(embs), max(lengths), int(embs[0].shape[1])),
                    np.float16 if dtype == torch.float16 else np.float32)  # (N, Lmax, D)
    for i, e in enumerate(embs):
        text[i, : lengths[i]] = np.asarray(e)
    mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]  # (N, Lmax)
    return torch.from_numpy(text).to(dtype), mask


def load_uncond(shard_dir: str | os.PathLike, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The encoding of the empty caption. -> text (1, L0, D), mask (1, L0) all True."""
    path = Path(shard_dir) / UNCOND
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; run the shards stage for {shard_dir} first")
    return pad_text([np.load(path)], dtype)


@dataclasses.dataclass(frozen=True)
class _Plan:
    """Everything that decides which batches a rank reads; holds no reference to the stream."""

    shards: tuple[tuple[Path, int], ...]  # (tar, num_samples), manifest order
    lo: int  # this rank's sample range [lo, hi) of each epoch's sequence
    hi: int
    batch_size: int
    seed: int
    rank: int
    shuffle_buffer: int
    dtype: torch.dtype

    def epoch_pieces(self, epoch: int) -> list[tuple[Path, int, int]]:
        """This rank's (shard, first, stop) sample ranges in one epoch, in reading order."""
        order = np.random.default_rng([self.seed, epoch]).permutation(len(self.shards))
        pieces, pos = [], 0
        for i in order:
            path, n = self.shards[i]
            first, stop = max(self.lo, pos), min(self.hi, pos + n)
            if first < stop:
                pieces.append((path, first - pos, stop - pos))
            pos += n
        return pieces

    @staticmethod
    def read(pieces: list[tuple[Path, int, int]], skip: int) -> Iterator[dict]:
        """Raw samples of ``pieces`` in order, after the first ``skip``: the samples webdataset's tar reader
        yields, read by offset from the shard's member index (`tar_index`) instead of parsing every header again
        each epoch."""
        for path, first, stop in pieces:
            if skip >= stop - first:
                skip -= stop - first
                continue
            stat = path.stat()
            index = tar_index(str(path), stat.st_mtime_ns, stat.st_size)
            with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
                for key, members in index[first + skip : stop]:
                    sample = {"__key__": key, "__url__": str(path)}
                    sample.update((suffix, data[offset : offset + size]) for suffix, offset, size in members)
                    yield sample
            skip = 0

    def epoch_samples(self, epoch: int, start: int) -> Iterator[dict]:
        """This rank's samples of ``epoch`` from local position ``start``, block-shuffled."""
        block_size = self.shuffle_buffer
        first_block = start // block_size
        raw = self.read(self.epoch_pieces(epoch), first_block * block_size)
        for b in itertools.count(first_block):
            block = list(itertools.islice(raw, block_size))
            if not block:
                return
            perm = np.random.default_rng([self.seed, epoch, self.rank, b]).permutation(len(block))
            for j in perm[start - b * block_size if b == first_block else 0 :]:
                yield block[j]

    def batches_from(self, position: int) -> Iterator[dict[str, Any]]:
        """Batches from batch index ``position`` on, running across epoch ends."""
        epoch, offset = divmod(position * self.batch_size, self.hi - self.lo)
        samples = itertools.chain.from_iterable(
            self.epoch_samples(e, offset if e == epoch else 0) for e in itertools.count(epoch))
        while True:
            yield self.collate(list(itertools.islice(samples, self.batch_size)))

    def collate(self, samples: list[dict]) -> dict[str, Any]:
        try:
            mean = np.stack([_npy(s["mean.npy"]) for s in samples])  # (N, C, h, w) float16
            std = np.stack([_npy(s["std.npy"]) for s in samples])
            embs = [_npy(s["emb.npy"]) for s in samples]  # N x (L_i, D)
        except KeyError as e:
            bad = next(s for s in samples if not all(m[1:] in s for m in _MEMBERS))
            raise ValueError(f"sample {bad['__key__']} in {bad['__url__']} lacks member {e}; "
                             "rewrite the shards") from None
        text, mask = pad_text(embs, self.dtype)
        return {"keys": [s["__key__"] for s in samples], "mean": torch.from_numpy(mean).to(self.dtype),
                "std": torch.from_numpy(std).to(self.dtype), "text": text, "mask": mask}


def _produce(source: Iterator[dict[str, Any]], q: queue.Queue, stop: threading.Event) -> None:
    """Prefetch thread body: fill ``q`` from ``source`` until ``stop`` is set; hand errors over."""

    def put(item: object) -> None:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    try:
        for batch in source:
            put(batch)
            if stop.is_set():
                return
    except BaseException as e:  # reader errors surface in the consumer's next()
        put(e)


class ShardStream:
    """Infinite iterator of batches ``{"keys", "mean", "std", "text", "mask"}`` over one shard folder.

    mean/std: (N, C, h, w), text: (N, Lmax, D) zero-padded, all ``dtype`` (float32 by default: the
    only transform applied on the CPU is float16 -> dtype); mask: (N, Lmax) bool, True = real token.
    ``prefetch`` > 0 assembles that many batches ahead on a background thread (same batches); the
    thread stops on `close`, at the end of a ``with`` block, or when the stream is garbage-collected.
    """

    def __init__(self, shard_dir: str | os.PathLike, batch_size: int, seed: int, rank: int = 0,
                 world_size: int = 1, shuffle_buffer: int = 1000, prefetch: int = 2,
                 dtype: torch.dtype = torch.float32):
        shard_dir = Path(shard_dir)
        if not (shard_dir / MANIFEST).is_file():
            raise FileNotFoundError(f"{shard_dir / MANIFEST} is missing; run the shards stage for {shard_dir} first")
        manifest = read_json(shard_dir / MANIFEST)
        shards = tuple((shard_dir / e["name"], int(e["num_samples"])) for e in manifest["shards"] if e["num_samples"])
        for path, _ in shards:
            if not path.is_file():
                raise FileNotFoundError(f"{path} is listed in {shard_dir / MANIFEST} but missing; "
                                        "rerun the shards stage")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world_size {world_size}")
        if batch_size < 1 or shuffle_buffer < 1 or prefetch < 0:
            raise ValueError(f"need batch_size >= 1, shuffle_buffer >= 1, prefetch >= 0 "
                             f"(got {batch_size}, {shuffle_buffer}, {prefetch})")
        self.num_samples = sum(n for _, n in shards)
        if self.num_samples < world_size:
            raise ValueError(f"{shard_dir} holds {self.num_samples} samples, fewer than world_size {world_size}")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.shuffle_buffer, self.prefetch = shuffle_buffer, prefetch
        self._plan = _Plan(shards, rank * self.num_samples // world_size, (rank + 1) * self.num_samples // world_size,
                           batch_size, seed, rank, shuffle_buffer, dtype)
        self.samples_per_epoch = self._plan.hi - self._plan.lo  # this rank's share
        self._batches = 0  # batches handed out: the whole stream position
        self._source: Iterator[dict] | None = None
        self._queue: queue.Queue | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- position -------------------------------------------------------------------------
    @property
    def sample_range(self) -> tuple[int, int]:
        """This rank's [first, stop) range of each epoch's sample sequence (disjoint across ranks)."""
        return self._plan.lo, self._plan.hi

    @property
    def epoch(self) -> int:
        return self._batches * self.batch_size // self.samples_per_epoch

    def state_dict(self) -> dict[str, Any]:
        epoch, offset = divmod(self._batches * self.batch_size, self.samples_per_epoch)
        return {"batches": self._batches, "epoch": epoch, "samples_in_epoch": offset, "seed": self.seed,
                "batch_size": self.batch_size, "world_size": self.world_size,
                "shuffle_buffer": self.shuffle_buffer, "num_samples": self.num_samples}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("seed", "batch_size", "world_size", "shuffle_buffer", "num_samples"):
            if state[key] != getattr(self, key):
                raise ValueError(f"cannot resume this stream: the saved state has {key}={state[key]} but the "
                                 f"stream has {key}={getattr(self, key)}; resume with the same settings and shards")
        self.close()
        self._batches = int(state["batches"])

    # ---- iteration ------------------------------------------------------------------------
    def __iter__(self) -> ShardStream:
        return self

    def __next__(self) -> dict[str, Any]:
        if self.prefetch == 0:
            if self._source is None:
                self._source = self._plan.batches_from(self._batches)
            batch = next(self._source)
        else:
            if self._queue is None:
                self._start_thread()
            batch = self._queue.get()
            if isinstance(batch, BaseException):
                self.close()
                raise batch
        self._batches += 1
        return batch

    def close(self) -> None:
        """Stop the prefetch thread; the next batch restarts reading at the current position."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._source, self._queue, self._thread = None, None, None
        self._stop = threading.Event()

    def __enter__(self) -> ShardStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _start_thread(self) -> None:
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._thread = threading.Thread(target=_produce, args=(self._plan.batches_from(self._batches), self._queue,
                                                               self._stop),
                                        name=f"ShardStream-rank{self.rank}", daemon=True)
        self._thread.start()
        weakref.finalize(self, self._stop.set)  # a forgotten stream does not leave its thread running

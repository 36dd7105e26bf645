"""The training data stream: batch contents, determinism, rank splitting, resume."""
from __future__ import annotations

import gc
import io
import itertools
import json
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import webdataset as wds
from PIL import Image

from imagenet_t2i.encode.autoencoder import PixelAutoencoder
from imagenet_t2i.shards.reader import ShardStream, _Plan, load_uncond, pad_text
from imagenet_t2i.shards.writer import write_shards

N = 230


class HashTextEncoder:
    """Deterministic stand-in encoder: (1 + words % 6, 8) pseudo-random states seeded by the text."""

    dim, max_tokens = 8, 16

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return [np.random.default_rng(zlib.crc32(t.encode())).normal(size=(1 + len(t.split()) % 6, 8))
                .astype(np.float16) for t in texts]

    def describe(self) -> dict:
        return {"backend": "hash", "dim": 8}


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(0)
    (root / "images").mkdir()
    rows, caps = [], []
    for i in range(N):
        key = f"k{i:04d}"
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(root / "images" / f"{key}.png")
        rows.append({"key": key, "class": "c", "path": f"images/{key}.png"})
        caps.append({"key": key, "caption": " ".join(["word"] * (i % 9)) + f" {i}"})
    (root / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "captions.jsonl").write_text("".join(json.dumps(c) + "\n" for c in caps))
    return root, root / "captions.jsonl"


def shards(split: tuple[Path, Path], out: Path, shard_size: int) -> Path:
    write_shards(*split, out, PixelAutoencoder(), HashTextEncoder(), resolution=8, shard_size=shard_size,
                 batch_size=64, progress=False)
    return out


@pytest.fixture(scope="module")
def five_shards(split, tmp_path_factory) -> Path:
    return shards(split, tmp_path_factory.mktemp("five"), 50)  # 50, 50, 50, 50, 30 samples


@pytest.fixture(scope="module")
def one_shard(split, tmp_path_factory) -> Path:
    return shards(split, tmp_path_factory.mktemp("one"), 1000)


def take(stream: ShardStream, n: int) -> list[dict]:
    return [next(stream) for _ in range(n)]


def keys_of(batches: list[dict]) -> list[str]:
    return [k for b in batches for k in b["keys"]]


def same(a: list[dict], b: list[dict]) -> bool:
    return all(x["keys"] == y["keys"] and all(torch.equal(x[f], y[f]) for f in ("mean", "std", "text", "mask"))
               for x, y in zip(a, b, strict=True))


def test_batches_hold_the_shard_contents(five_shards):
    stored = {s["__key__"]: s for s in wds.WebDataset(sorted(map(str, five_shards.glob("*.tar"))), shardshuffle=False)}
    with ShardStream(five_shards, batch_size=16, seed=0) as stream:
        batch = next(stream)
    assert set(batch) == {"keys", "mean", "std", "text", "mask"} and len(batch["keys"]) == 16
    assert batch["mean"].shape == batch["std"].shape == (16, 3, 8, 8) and batch["mean"].dtype == torch.float32
    assert batch["text"].dtype == torch.float32 and batch["mask"].dtype == torch.bool
    lengths = []
    for i, key in enumerate(batch["keys"]):
        mean, emb = (np.load(io.BytesIO(stored[key][m])) for m in ("mean.npy", "emb.npy"))
        assert torch.equal(batch["mean"][i], torch.from_numpy(mean.astype(np.float32)))
        n = emb.shape[0]
        lengths.append(n)
        assert batch["mask"][i].sum() == n and batch["mask"][i, :n].all()
        assert torch.equal(batch["text"][i, :n], torch.from_numpy(emb.astype(np.float32)))
        assert not batch["text"][i, n:].any()
    assert batch["text"].shape == (16, max(lengths), 8) and len(set(lengths)) > 1
    assert not batch["std"].any()


def test_indexed_reader_yields_what_webdataset_yields(five_shards, tmp_path):
    members = (".mean.npy", ".std.npy", ".emb.npy")
    for tar in sorted(five_shards.glob("*.tar")):
        ours = list(_Plan.read([(tar, 0, 10_000)], skip=0))
        theirs = list(wds.tariterators.tarfile_samples([{"url": str(tar)}], select_files=lambda n: n.endswith(members)))
        assert [s["__key__"] for s in ours] == [s["__key__"] for s in theirs] and len(ours) in (50, 30)
        for a, b in zip(ours, theirs):
            assert a == b
    # a part of a shard, after a skip
    tar = sorted(five_shards.glob("*.tar"))[1]
    assert [s["__key__"] for s in _Plan.read([(tar, 10, 20)], skip=3)] == [s["__key__"] for s in ours_of(tar)[13:20]]
    # a shard rewritten in place is indexed again
    copy = tmp_path / "copy.tar"
    copy.write_bytes(tar.read_bytes())
    first = [s["__key__"] for s in _Plan.read([(copy, 0, 100)], skip=0)]
    time.sleep(0.01)
    copy.write_bytes(sorted(five_shards.glob("*.tar"))[-1].read_bytes())
    assert [s["__key__"] for s in _Plan.read([(copy, 0, 100)], skip=0)] != first


def ours_of(tar: Path) -> list[dict]:
    return list(_Plan.read([(tar, 0, 10_000)], skip=0))


def test_pad_text_padding_invariance():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(n, 4)).astype(np.float16) for n in (3, 5, 1))
    text, mask = pad_text([a, b, c])
    assert text.shape == (3, 5, 4) and mask.tolist()[0] == [True] * 3 + [False] * 2
    alone, alone_mask = pad_text([a])
    assert alone.shape == (1, 3, 4) and alone_mask.all()
    # a masked reduction sees the same values however much the batch pads
    pooled = (text * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(pooled[0], alone[0].mean(0)) and torch.allclose(pooled[2], torch.from_numpy(c[0]).float())
    assert torch.equal(text[0, :3], alone[0]) and not text[0, 3:].any() and not text[2, 1:].any()
    assert pad_text([a, b], dtype=torch.bfloat16)[0].dtype == torch.bfloat16
    with pytest.raises(ValueError, match="empty embedding"):
        pad_text([a, np.zeros((0, 4), np.float16)])


def test_load_uncond(five_shards):
    text, mask = load_uncond(five_shards)
    ref = HashTextEncoder().encode([""])[0]
    assert text.shape == (1, *ref.shape) and mask.shape == (1, ref.shape[0]) and mask.all()
    assert torch.equal(text[0], torch.from_numpy(ref.astype(np.float32)))


def test_stream_is_deterministic_and_epochs_cover_every_sample_once(five_shards):
    a = take(ShardStream(five_shards, 32, seed=1, prefetch=0), 16)  # 512 samples: > 2 epochs of 230
    with ShardStream(five_shards, 32, seed=1) as s:
        assert same(a, take(s, 16))  # the prefetch thread changes nothing
    with ShardStream(five_shards, 32, seed=2) as s:
        assert keys_of(take(s, 4)) != keys_of(a[:4])
    keys = keys_of(a)
    epochs = [keys[:N], keys[N : 2 * N]]
    for epoch in epochs:
        assert sorted(epoch) == [f"k{i:04d}" for i in range(N)]
    assert epochs[0] != epochs[1]  # each epoch has its own order
    assert len(a[7]["keys"]) == 32  # batch 7 (samples 224-255) runs across the epoch end


def test_shuffle_buffer_of_one_reads_whole_shards_in_a_shuffled_shard_order(five_shards):
    with ShardStream(five_shards, 10, seed=3, shuffle_buffer=1) as s:
        keys = keys_of(take(s, 23))
    files = sorted(five_shards.glob("*.tar"))
    in_file = [[x["__key__"] for x in wds.WebDataset(str(f), shardshuffle=False)] for f in files]
    runs, pos = [], 0
    while pos < N:
        run = next(k for k in in_file if k[0] == keys[pos])
        assert keys[pos : pos + len(run)] == run
        runs.append(in_file.index(run))
        pos += len(run)
    assert sorted(runs) == list(range(5)) and runs != list(range(5))


@pytest.mark.parametrize("world_size,which", [(2, "five_shards"), (3, "five_shards"),
                                               (2, "one_shard"), (3, "one_shard")])
def test_ranks_split_every_epoch_exactly(world_size, which, request):
    shard_dir = request.getfixturevalue(which)
    streams = [ShardStream(shard_dir, 7, seed=0, rank=r, world_size=world_size, prefetch=0) for r in range(world_size)]
    per_rank = [keys_of(take(s, 2 * s.samples_per_epoch // 7 + 1)) for s in streams]
    assert sum(s.samples_per_epoch for s in streams) == N
    assert max(s.samples_per_epoch for s in streams) - min(s.samples_per_epoch for s in streams) <= 1
    for epoch in range(2):
        parts = [k[epoch * s.samples_per_epoch : (epoch + 1) * s.samples_per_epoch] for k, s in zip(per_rank, streams)]
        assert sorted(itertools.chain(*parts)) == [f"k{i:04d}" for i in range(N)]


@pytest.mark.parametrize("consumed,prefetch", [(3, 0), (9, 2), (11, 0), (20, 2)])
def test_resumed_stream_continues_exactly(five_shards, consumed, prefetch):
    # 9, 11 and 20 batches of 24 fall on both sides of the first epoch end (230 samples)
    make = lambda rank=0: ShardStream(five_shards, 24, seed=5, rank=rank, world_size=2, shuffle_buffer=40,
                                      prefetch=prefetch)
    with make() as uninterrupted:
        take(uninterrupted, consumed)
        state = uninterrupted.state_dict()
        following = take(uninterrupted, 6)
    assert state["batches"] == consumed and state["epoch"] == consumed * 24 // 115
    with make() as resumed:
        resumed.load_state_dict(json.loads(json.dumps(state)))  # survives a JSON checkpoint
        assert same(take(resumed, 6), following)
    # every rank resumes from rank 0's state
    with make(rank=1) as rank1, make(rank=1) as rank1_resumed:
        take(rank1, consumed)
        rank1_resumed.load_state_dict(state)
        assert same(take(rank1_resumed, 3), take(rank1, 3))


def test_resume_with_other_settings_is_refused(five_shards):
    state = ShardStream(five_shards, 8, seed=0).state_dict()
    with pytest.raises(ValueError, match="batch_size=8"):
        ShardStream(five_shards, 16, seed=0).load_state_dict(state)
    with pytest.raises(FileNotFoundError, match="run the shards stage"):
        ShardStream(five_shards / "nowhere", 8, seed=0)


def test_prefetch_thread_stops_with_its_stream(five_shards):
    def alive() -> int:
        return sum(t.name.startswith("ShardStream") for t in threading.enumerate())

    before = alive()
    stream = ShardStream(five_shards, 8, seed=0, prefetch=2)
    next(stream)
    assert alive() == before + 1
    del stream  # never closed: garbage collection stops the thread
    gc.collect()
    for _ in range(50):
        if alive() == before:
            break
        time.sleep(0.05)
    assert alive() == before

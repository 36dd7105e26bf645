"""Encode + shard stage: WebDataset round trip, manifest, skipped images, resume."""
from __future__ import annotations

import io
import json
import logging
import zlib
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds
from PIL import Image

from imagenet_t2i.encode.autoencoder import PixelAutoencoder
from imagenet_t2i.encode.images import load_rgb, preprocess, to_tensor
from imagenet_t2i.encode.text import MiniLMEncoder
from imagenet_t2i.io import read_json, sha256_file, write_json
from imagenet_t2i.provenance import recorded_hash
from imagenet_t2i.shards.writer import MANIFEST, PROGRESS, UNCOND, write_shards

BAD = {"img_corrupt": "corrupt", "img_truncated": "truncated", "img_missing": "missing"}


class HashTextEncoder:
    """Deterministic stand-in encoder: (1 + words % 5, 8) pseudo-random states seeded by the text."""

    dim, max_tokens = 8, 16

    def __init__(self, fail_after_calls: int | None = None):
        self.calls, self.fail_after_calls = 0, fail_after_calls

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        self.calls += 1
        if self.fail_after_calls is not None and self.calls > self.fail_after_calls:
            raise RuntimeError("simulated crash")
        return [np.random.default_rng(zlib.crc32(t.encode())).normal(size=(1 + len(t.split()) % 5, 8))
                .astype(np.float16) for t in texts]

    def describe(self) -> dict:
        return {"backend": "hash", "dim": 8}


def make_split(root: Path, n: int, size: tuple[int, int] = (12, 16), bad: bool = True) -> tuple[Path, Path]:
    """A split folder of ``n`` random PNGs (+ the three BAD images) and its captions JSONL."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for i in range(n):
        key = f"img_{i:04d}"
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "images" / f"{key}.png")
        rows.append({"key": key, "class": f"c{i % 3}", "path": f"images/{key}.png"})
    if bad:
        (root / "images" / "img_corrupt.JPEG").write_bytes(b"\x00garbage" * 50)
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
        (root / "images" / "img_truncated.JPEG").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        rows += [{"key": k, "class": "c0", "path": f"images/{k}.JPEG"} for k in BAD]
    (root / "index.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    captions = root.parent / f"{root.name}_captions.jsonl"
    # repeated captions (like AIO) and distinct ones (like TA)
    caps = [{"key": r["key"], "caption": f"An image of {r['class']}" if i % 2 else f"photo {i} of {r['class']}"}
            for i, r in enumerate(rows)]
    captions.write_text("".join(json.dumps(c) + "\n" for c in caps))
    return root, captions


def read_back(out_dir: Path, manifest: dict) -> dict[str, dict]:
    urls = [str(out_dir / s["name"]) for s in manifest["shards"]]
    return {s["__key__"]: s for s in wds.WebDataset(urls, shardshuffle=False, empty_check=False)}


@pytest.fixture(scope="module")
def minilm() -> MiniLMEncoder:
    return MiniLMEncoder(max_tokens=32)


def test_round_trip_manifest_and_skips(tmp_path, minilm, caplog):
    split, captions_path = make_split(tmp_path / "split", 23)
    out = tmp_path / "shards"
    with caplog.at_level(logging.WARNING):
        manifest = write_shards(split, captions_path, out, PixelAutoencoder(), minilm, resolution=8,
                                shard_size=10, batch_size=4, progress=False)

    # unreadable images are skipped, listed and logged by file name
    assert sorted(s["key"] for s in manifest["skipped"]) == sorted(BAD)
    assert {s["key"]: s["path"] for s in manifest["skipped"]}["img_truncated"] == "images/img_truncated.JPEG"
    assert all(s["error"] for s in manifest["skipped"])
    for key in BAD:
        assert any(key in r.getMessage() and "images/" + key in r.getMessage() for r in caplog.records)

    # manifest counts and hashes match the files
    assert manifest == read_json(out / MANIFEST)
    assert manifest["num_samples"] == 23 and len(manifest["shards"]) == 3  # 26 records in shards of 10
    assert sum(s["num_samples"] for s in manifest["shards"]) == 23
    for entry in manifest["shards"]:
        assert sha256_file(out / entry["name"]) == entry["sha256"]
        assert len(read_back(out, {"shards": [entry]})) == entry["num_samples"]
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "shard-000000.tar", "shard-000001.tar",
                                                     "shard-000002.tar", UNCOND]
    assert manifest["latent_shape"] == [3, 8, 8] and manifest["text_encoder"]["backend"] == "minilm"

    # the samples: same keys, captions, images, latents and embeddings as encoding them directly
    samples = read_back(out, manifest)
    captions = {json.loads(l)["key"]: json.loads(l)["caption"] for l in captions_path.read_text().splitlines()}
    assert sorted(samples) == [f"img_{i:04d}" for i in range(23)]
    order = [s["__key__"] for s in wds.WebDataset(str(out / "shard-000000.tar"), shardshuffle=False)]
    assert order != sorted(order)  # written in a shuffled order
    for key, s in samples.items():
        assert s["txt"].decode() == captions[key]
        img = preprocess(load_rgb(split / "images" / f"{key}.png"), 8)
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(s["png"]))), img)
        mean, std, emb = (np.load(io.BytesIO(s[m])) for m in ("mean.npy", "std.npy", "emb.npy"))
        assert mean.dtype == std.dtype == emb.dtype == np.float16 and mean.shape == std.shape == (3, 8, 8)
        np.testing.assert_allclose(mean, to_tensor([img])[0].numpy(), atol=1e-3)
        assert not std.any()
        np.testing.assert_allclose(emb.astype(np.float32), minilm.encode([captions[key]])[0].astype(np.float32),
                                   atol=3e-3)
    uncond = np.load(out / UNCOND)
    assert uncond.dtype == np.float16 and uncond.shape == (2, 384) == minilm.encode([""])[0].shape
    assert manifest["uncond_tokens"] == 2


def test_missing_caption_is_an_error_naming_key_and_file(tmp_path):
    split, captions_path = make_split(tmp_path / "split", 4, bad=False)
    lines = captions_path.read_text().splitlines()
    captions_path.write_text("\n".join(l for l in lines if '"img_0002"' not in l) + "\n")
    with pytest.raises(ValueError) as err:
        write_shards(split, captions_path, tmp_path / "out", PixelAutoencoder(), HashTextEncoder(), 8, progress=False)
    assert "img_0002" in str(err.value) and str(captions_path) in str(err.value)
    assert not (tmp_path / "out").exists()  # checked before any work


def test_rerun_is_a_no_op_and_changed_inputs_redo(tmp_path):
    split, captions_path = make_split(tmp_path / "split", 12, bad=False)
    out = tmp_path / "out"
    first = write_shards(split, captions_path, out, PixelAutoencoder(), HashTextEncoder(), 8, shard_size=5,
                         progress=False)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    encoder = HashTextEncoder()
    again = write_shards(split, captions_path, out, PixelAutoencoder(), encoder, 8, shard_size=5, progress=False)
    assert again == first
    assert encoder.calls == 0 and stamps == {p.name: p.stat().st_mtime_ns for p in out.iterdir()}

    captions_path.write_text(captions_path.read_text().replace("An image of", "A picture of"))
    second = write_shards(split, captions_path, out, PixelAutoencoder(), HashTextEncoder(), 8, shard_size=5,
                          progress=False)
    assert second["fingerprint"] != first["fingerprint"]
    assert [s["sha256"] for s in second["shards"]] != [s["sha256"] for s in first["shards"]]
    assert b"A picture of" in b"".join((out / s["name"]).read_bytes() for s in second["shards"])


def test_images_drawn_again_under_the_same_index_and_captions_redo(tmp_path):
    """A world drawn again (objects moved) keeps its index and its AIO captions: the images' own hash, from the split's
    provenance record when it has one, marks the shards stale, and the training state of the old ones with them."""
    split, captions_path = make_split(tmp_path / "split", 6, bad=False)
    out = tmp_path / "out"
    first = write_shards(split, captions_path, out, PixelAutoencoder(), HashTextEncoder(), 8, progress=False)
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(split / "images" / "img_0003.png")
    second = write_shards(split, captions_path, out, PixelAutoencoder(), HashTextEncoder(), 8, progress=False)
    assert second["fingerprint"] != first["fingerprint"]
    assert [s["sha256"] for s in second["shards"]] != [s["sha256"] for s in first["shards"]]
    (tmp_path / "split" / "notes.txt").write_text("not an image of the index")  # not hashed
    assert write_shards(split, captions_path, out, PixelAutoencoder(), HashTextEncoder(), 8,
                        progress=False)["fingerprint"] == second["fingerprint"]
    write_json(split / "provenance.json", {"outputs": {str(split): "recorded"}})  # the source stage's record
    assert recorded_hash(split) == "recorded"  # read, not computed again
    third = write_shards(split, captions_path, out, PixelAutoencoder(), HashTextEncoder(), 8, progress=False)
    assert third["fingerprint"] not in (first["fingerprint"], second["fingerprint"])


def test_interrupted_run_resumes_at_the_first_unfinished_shard(tmp_path):
    split, captions_path = make_split(tmp_path / "split", 17)
    args = dict(resolution=8, shard_size=5, batch_size=5, progress=False)
    fresh = write_shards(split, captions_path, tmp_path / "fresh", PixelAutoencoder(), HashTextEncoder(), **args)

    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="simulated crash"):  # dies while encoding the third shard
        write_shards(split, captions_path, out, PixelAutoencoder(), HashTextEncoder(fail_after_calls=2), **args)
    assert not (out / MANIFEST).exists() and (out / PROGRESS).exists()
    finished = sorted(p.name for p in out.glob("shard-*.tar"))
    assert len(finished) == 2  # the unfinished tar never appears under its final name
    stamps = {n: (out / n).stat().st_mtime_ns for n in finished}

    resumed = write_shards(split, captions_path, out, PixelAutoencoder(), HashTextEncoder(), **args)
    assert stamps == {n: (out / n).stat().st_mtime_ns for n in finished}  # not rewritten
    assert not (out / PROGRESS).exists()
    assert resumed["shards"] == fresh["shards"] and resumed["skipped"] == fresh["skipped"]  # byte-identical tars


def test_atomic_write_gives_outputs_the_usual_file_mode(tmp_path):
    import os
    import stat

    from imagenet_t2i.io import atomic_write

    with atomic_write(tmp_path / "out.txt") as f:
        f.write("x")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "out.txt").stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temporary file left behind


def test_chunked_shards_merge_to_the_single_job_set(tmp_path):
    """3 chunk jobs + merge == one job: the same shards (hard-linked, not copied) and the same manifest."""
    from imagenet_t2i.chunks import chunk_names, parse_chunk
    from imagenet_t2i.shards.reader import ShardStream
    from imagenet_t2i.shards.writer import merge_shards

    split, captions = make_split(tmp_path / "split", 37)
    kw = dict(resolution=16, shard_size=8, batch_size=4, progress=False)
    whole = write_shards(split, captions, tmp_path / "whole", PixelAutoencoder(), HashTextEncoder(), **kw)
    parts = [tmp_path / "parts" / name for name in chunk_names(3)]
    for part in parts:
        m = write_shards(split, captions, part, PixelAutoencoder(), HashTextEncoder(), chunk=parse_chunk(part.name), **kw)
        assert m["chunk"] == list(parse_chunk(part.name)) and 1 <= len(m["shards"]) <= 2  # 5 shards over 3 chunks
    merged = merge_shards(parts, tmp_path / "merged")
    assert merged == whole  # the manifest (shard names, sha256, counts, skipped images) is the single job's
    assert sorted(p.name for p in (tmp_path / "merged").iterdir()) == sorted(p.name for p in (tmp_path / "whole").iterdir())
    for e in merged["shards"]:
        assert (tmp_path / "merged" / e["name"]).samefile(next(p / e["name"] for p in parts if (p / e["name"]).exists()))
    assert {s["key"] for s in merged["skipped"]} == set(BAD)
    keys = next(iter(ShardStream(tmp_path / "merged", batch_size=34, seed=0, prefetch=0)))["keys"]
    assert len(set(keys)) == 34


def test_merging_an_incomplete_or_mixed_set_of_chunks_is_refused(tmp_path):
    from imagenet_t2i.chunks import chunk_names, parse_chunk
    from imagenet_t2i.shards.writer import merge_shards

    split, captions = make_split(tmp_path / "split", 20, bad=False)
    kw = dict(resolution=16, shard_size=8, batch_size=4, progress=False)
    parts = [tmp_path / name for name in chunk_names(2)]
    for part in parts:
        write_shards(split, captions, part, PixelAutoencoder(), HashTextEncoder(), chunk=parse_chunk(part.name), **kw)
    with pytest.raises(ValueError, match="not chunks 0..0 of 1"):
        merge_shards(parts[:1], tmp_path / "out")
    other = tmp_path / "0001-of-0002-other"
    write_shards(split, captions, other, PixelAutoencoder(), HashTextEncoder(), chunk=(1, 2), order_seed=1, **kw)
    with pytest.raises(ValueError, match="different inputs or settings"):
        merge_shards([parts[0], other], tmp_path / "out")
    assert not (tmp_path / "out" / MANIFEST).exists()


def test_chunk_ranges_cover_every_item_once():
    from imagenet_t2i.chunks import chunk_names, chunk_range, parse_chunk

    for n_items in (0, 1, 5, 64, 1282):
        for count in (1, 3, 64):
            covered = [i for c in range(count) for i in chunk_range(n_items, c, count)]
            assert covered == list(range(n_items))
    assert [parse_chunk(n) for n in chunk_names(3)] == [(0, 3), (1, 3), (2, 3)]
    with pytest.raises(ValueError, match="index>-of-<count>"):
        parse_chunk("3-of-3")

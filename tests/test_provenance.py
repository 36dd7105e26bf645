"""Folder hashes: a folder with a manifest is hashed through it (members never read); others file by file."""
import hashlib
import json
import os
import sys

import pytest

from imagenet_t2i.io import sha256_file, write_json, write_jsonl
from imagenet_t2i.provenance import members, path_hash, sha256_files
from imagenet_t2i.source.fake_imagenet import write_fake_imagenet
from imagenet_t2i.source.imagenet import build_index

_OPENED: list[str] | None = None  # paths opened while a test listens (sys audit hooks cannot be removed)


def _listen(event: str, args: tuple) -> None:
    if _OPENED is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.path.abspath(os.fsdecode(args[0])))


sys.addaudithook(_listen)


def _opened_by_path_hash(folder) -> tuple[str, set[str]]:
    global _OPENED
    _OPENED = []
    try:
        return path_hash(folder), set(_OPENED)
    finally:
        _OPENED = None


def _shard_set(folder):
    folder.mkdir()
    entries = []
    for i in range(2):
        shard = folder / f"shard-{i:06d}.tar"
        shard.write_bytes(f"shard {i}".encode() * 100)
        entries.append({"name": shard.name, "num_samples": 3, "sha256": sha256_file(shard), "bytes": 600})
    (folder / "uncond.npy").write_bytes(b"uncond")
    write_json(folder / "manifest.json", {"num_samples": 6, "shards": entries})
    return entries


def _old_hash(folder) -> str:
    """The file-by-file folder hash, written out: sorted (relative path, sha256) of every non-hidden file."""
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")
                    and p.name != "provenance.json"):
        h.update(f"{f.relative_to(folder)}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


def test_shard_set_hashed_through_its_manifest(tmp_path):
    folder = tmp_path / "shards"
    _shard_set(folder)
    shards = {str(folder / f"shard-{i:06d}.tar") for i in range(2)}
    before, opened = _opened_by_path_hash(folder)
    assert not opened & shards  # members are never opened
    assert {str(folder / "manifest.json"), str(folder / "uncond.npy")} <= opened
    assert set(members(folder)) == shards

    (folder / "shard-000001.tar").unlink()  # a member gone (or unreadable) does not matter to the hash
    assert path_hash(folder) == before
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["shards"][1]["sha256"] = "0" * 64
    write_json(folder / "manifest.json", manifest)
    assert path_hash(folder) != before  # a changed manifest does
    write_json(folder / "manifest.json", {**manifest, "shards": manifest["shards"][:1]})
    after = path_hash(folder)
    (folder / "shard-000001.tar").write_bytes(b"now unlisted")  # an unlisted file is hashed
    assert path_hash(folder) != after
    (folder / "uncond.npy").write_bytes(b"other")  # and so are the manifest's non-member neighbours
    assert path_hash(folder) not in (before, after)


def test_image_set_hashed_through_its_index(tmp_path):
    folder = tmp_path / "augment"
    (folder / "images").mkdir(parents=True)
    rows = []
    for i in range(3):
        img = folder / "images" / f"crop_{i}.png"
        img.write_bytes(bytes([i]) * 50)
        rows.append({"key": img.stem, "class": "c", "path": f"images/{img.name}", "sha256": sha256_file(img)})
    write_jsonl(folder / "index.jsonl", rows)
    write_json(folder / "classes.json", {"c": "c"})
    before, opened = _opened_by_path_hash(folder)
    assert not any("crop_" in p for p in opened)
    (folder / "images" / "crop_0.png").write_bytes(b"altered")
    assert path_hash(folder) == before
    write_jsonl(folder / "index.jsonl", rows[:2])  # crop_0 is listed, crop_2 is no longer: hashed as a plain file
    assert path_hash(folder) != before
    assert set(members(folder)) == {str(folder / "images" / f"crop_{i}.png") for i in range(2)}


def test_imagenet_index_is_a_manifest_of_images_outside(tmp_path):
    fake = write_fake_imagenet(tmp_path / "imagenet", classes=2, train_per_class=3)
    build_index(fake["root"], "train", fake["synset_mapping"], tmp_path / "train", workers=2)
    listed = members(tmp_path / "train")
    assert set(listed) == {str(p) for p in fake["train"]}
    assert all(m.sha256 == sha256_file(p) and m.listed_in == tmp_path / "train" / "index.jsonl"
               for p, m in listed.items())
    assert path_hash(tmp_path / "train") == _old_hash(tmp_path / "train")  # index + classes only, as before


def test_folders_without_a_manifest_hash_every_file(tmp_path):
    folder = tmp_path / "world"
    (folder / "images").mkdir(parents=True)
    (folder / "images" / "a.png").write_bytes(b"a")
    write_jsonl(folder / "index.jsonl", [{"key": "a", "class": "c", "path": "images/a.png"}])  # no sha256
    (folder / "provenance.json").write_text("{}")
    (folder / ".progress.json").write_text("{}")
    write_json(folder / "manifest.json", {"shards": "not a list"})  # not a manifest of ours
    assert members(folder) == {}
    before = path_hash(folder)
    assert before == _old_hash(folder)
    (folder / "images" / "a.png").write_bytes(b"b")
    assert path_hash(folder) != before
    (folder / "manifest.json").write_text("{not json")
    assert path_hash(folder) == _old_hash(folder)


def test_sha256_files_keeps_order_and_reports_missing(tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"{i}.bin")
        paths[-1].write_bytes(bytes([i]) * (i + 1))
    paths.insert(2, tmp_path / "gone.bin")
    assert sha256_files(paths, workers=2, progress=False) == [
        None if p.name == "gone.bin" else sha256_file(p) for p in paths]
    with pytest.raises(FileNotFoundError, match="cannot hash"):
        path_hash(tmp_path / "nothing")

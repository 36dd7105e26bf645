"""The chunked caption stage: chunks written atomically, merged in order, released captions with a fallback."""
import json

import pandas as pd
import pytest

from imagenet_t2i.captions import AIOCaptioner
from imagenet_t2i.captions.chunked import fingerprint, merge_caption_chunks, summary_path, write_caption_chunk
from imagenet_t2i.captions.records import ImageRecords, TemplateRecords
from imagenet_t2i.captions.released import ReleasedRecords, read_released, release_key
from imagenet_t2i.chunks import chunk_names
from imagenet_t2i.io import read_jsonl, write_jsonl

from .conftest import REPO

CLASSES = {"n01": "tench, Tinca tinca", "n02": "goldfish"}
ROWS = [{"key": f"n0{1 + i % 2}_{i}", "class": f"n0{1 + i % 2}", "path": f"x/{i}.JPEG"} for i in range(7)]


def aio() -> TemplateRecords:
    return TemplateRecords(AIOCaptioner(CLASSES), {"kind": "aio"})


def write_all(tmp_path, count: int, captioner_factory=aio, fp: str = "fp") -> list:
    parts = []
    for i, name in enumerate(chunk_names(count)):
        part = tmp_path / "parts" / f"{name}.jsonl"
        write_caption_chunk(ROWS, captioner_factory(), part, (i, count), fp, batch_size=2, progress=False)
        parts.append(part)
    return parts


def test_chunks_merge_to_the_single_job_file(tmp_path):
    single = write_all(tmp_path / "one", 1)
    merged = tmp_path / "merged.jsonl"
    summary = merge_caption_chunks(list(reversed(write_all(tmp_path / "three", 3))), merged)
    assert merged.read_text() == single[0].read_text()
    assert [r["key"] for r in read_jsonl(merged)] == [r["key"] for r in ROWS]
    assert summary["chunks"] == 3 and summary["written"] == len(ROWS) and summary["failed"] == []
    part = json.loads(summary_path(tmp_path / "three" / "parts" / "0001-of-0003.jsonl").read_text())
    assert part["chunk"] == [1, 3] and part["records"] == 2 and part["captioner"]["backend"] == "aio"


def test_merge_rejects_missing_or_foreign_chunks(tmp_path):
    parts = write_all(tmp_path / "a", 3)
    with pytest.raises(ValueError, match="not chunks 0..1 of 2"):
        merge_caption_chunks(parts[:2], tmp_path / "m.jsonl")
    other = write_all(tmp_path / "b", 3, fp="another")
    with pytest.raises(ValueError, match="different images or settings"):
        merge_caption_chunks([parts[0], parts[1], other[2]], tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


class Interrupted(TemplateRecords):
    """The AIO captioner, killed (KeyboardInterrupt, as SIGINT) on its second batch."""

    def __init__(self) -> None:
        super().__init__(AIOCaptioner(CLASSES), {"kind": "aio"})
        self.calls = 0

    def caption(self, records):
        self.calls += 1
        if self.calls == 2:
            raise KeyboardInterrupt
        return super().caption(records)


def test_an_interrupted_chunk_leaves_nothing(tmp_path):
    part = tmp_path / "0000-of-0001.jsonl"
    with pytest.raises(KeyboardInterrupt):
        write_caption_chunk(ROWS, Interrupted(), part, (0, 1), "fp", batch_size=2, progress=False)
    assert list(tmp_path.iterdir()) == []  # no caption file, no summary, no temporary file


def test_unreadable_images_are_reported_not_captioned(tmp_path):
    """A VLM over index rows: a truncated file gets no caption and is listed in the summary."""
    import numpy as np
    from PIL import Image

    class Sizes:  # a deterministic VLM stand-in for this unit test; the LLaVA one is tested in test_llava.py
        def caption_images(self, images):
            return [f"An image of {img.shape[0]} pixels." for img in images]

        def describe(self):
            return {"backend": "sizes"}

    (tmp_path / "x").mkdir()
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "x" / "a.JPEG")
    (tmp_path / "x" / "b.JPEG").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    rows = [{"key": "a", "path": "x/a.JPEG"}, {"key": "b", "path": "x/b.JPEG"}]
    part = tmp_path / "out" / "0000-of-0001.jsonl"
    summary = write_caption_chunk(rows, ImageRecords(Sizes(), tmp_path, 32), part, (0, 1), "fp", progress=False)
    assert read_jsonl(part) == [{"key": "a", "caption": "An image of 32 pixels."}]
    assert [f["key"] for f in summary["failed"]] == ["b"] and summary["written"] == 1
    assert summary["captioner"]["view"] == "32 px square (bicubic)"


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_released_captions_map_paths_to_keys(tmp_path, fmt):
    frame = pd.DataFrame({"image_path": ["train/n01/n01_0.JPEG", "/data/ILSVRC/train/n01/n01_2.JPEG",
                                         "train/n99/n99_9.JPEG"],
                          "caption": ["A fish on a hand.", "A tench in a net.", "Not ours."]})
    path = tmp_path / "release" / f"part.{fmt}"
    path.parent.mkdir()
    {"jsonl": lambda: frame.to_json(path, orient="records", lines=True),
     "csv": lambda: frame.to_csv(path, index=False), "parquet": lambda: frame.to_parquet(path)}[fmt]()
    assert release_key("C:\\imagenet\\train\\n01_4.JPEG") == "n01_4"
    assert read_released(path.parent, {"n01_0", "n01_2", "n02_1"}) == {"n01_0": "A fish on a hand.",
                                                                       "n01_2": "A tench in a net."}
    keys = {r["key"] for r in ROWS}
    released = ReleasedRecords(path.parent, keys, fallback=aio)
    captions = released.caption(ROWS)
    assert captions[0] == "A fish on a hand." and captions[2] == "A tench in a net."
    assert captions[1] == "An image of goldfish"  # not in the release: captioned by the fallback
    assert released.describe()["not_in_release"] == len(ROWS) - 2
    assert released.describe()["fallback"]["backend"] == "aio"


def test_released_copy_must_exist(tmp_path):
    with pytest.raises(FileNotFoundError, match="huggingface-cli download Lucasdegeorge/ImageNet_TA_IA"):
        read_released(tmp_path, {"a"})


def test_fingerprint_depends_on_index_kind_and_settings():
    base = fingerprint("abc", "ta", {"backend": "llava", "prompt": "Describe this image"})
    assert base == fingerprint("abc", "ta", {"prompt": "Describe this image", "backend": "llava"})
    assert base != fingerprint("abd", "ta", {"backend": "llava", "prompt": "Describe this image"})
    assert base != fingerprint("abc", "ta", {"backend": "llava", "prompt": "Describe the image"})


def test_released_columns_are_the_configs_and_checked_when_the_workflow_starts(tmp_path, monkeypatch):
    from imagenet_t2i.config import ConfigError, load_config
    from imagenet_t2i.workflow import write_resolved_config

    path = tmp_path / "release" / "part.parquet"
    path.parent.mkdir()
    pd.DataFrame({"file": ["train/n01/n01_0.JPEG"], "text": ["A fish on a hand."]}).to_parquet(path)
    assert read_released(path, {"n01_0"}, {"image": "file", "caption": "text"}) == {"n01_0": "A fish on a hand."}
    config = load_config(REPO / "config" / "config.yaml")
    config["captions"].update(backend="released", path=str(tmp_path / "vlm"), released={"path": str(path.parent)})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"captions.released.columns.*\['caption', 'image_path'\].*\['file', 'text'\]"):
        write_resolved_config(config)  # the Snakefile's first step: before any job
    config["captions"]["released"]["columns"] = {"image": "file", "caption": "text"}
    write_resolved_config(config)


def test_the_crop_set_never_streams_the_release(tmp_path, monkeypatch):
    """Crop composites are this pipeline's own: none of their keys can be in the release, so it is not read."""
    from imagenet_t2i.captions import released as released_module
    from imagenet_t2i.captions.records import record_captioner
    from imagenet_t2i.config import load_config

    path = tmp_path / "release.jsonl"
    path.write_text('{"image_path": "train/n01/n01_0.JPEG", "caption": "A fish."}\n')
    crop = tmp_path / "crop"
    crop.mkdir()
    write_jsonl(crop / "index.jsonl", [{"key": "n01_0_crop", "class": 0, "path": "images/x.png"}])
    config = load_config(REPO / "config" / "config.yaml")
    config["captions"].update(backend="released", released={"path": str(path), "vlm": "llava",
                                                            "columns": {"image": "image_path", "caption": "caption"}})
    read = []
    monkeypatch.setattr(released_module, "released_rows", lambda *a: read.append(a) or iter(()))
    _, captioner = record_captioner(config, crop, "ta", (0, 1))
    assert read == [] and captioner.describe()["files"][0]["bytes"] == path.stat().st_size
    record_captioner(config, tmp_path / "crop", "ta", (0, 1))
    train = tmp_path / "train"
    train.mkdir()
    write_jsonl(train / "index.jsonl", [{"key": "n01_0", "class": 0, "path": "images/x.png"}])
    record_captioner(config, train, "ta", (0, 1))
    assert len(read) == 1  # the training set's keys are looked up


def test_an_empty_caption_drops_the_image_from_the_set(tmp_path):
    """Never trained as an unconditional sample: dropped in the caption file, counted in the chunk summary, skipped
    and counted by the shards stage, left out of the FD captions."""
    import numpy as np
    from PIL import Image

    from imagenet_t2i.encode.autoencoder import PixelAutoencoder
    from imagenet_t2i.encode.text import MiniLMEncoder
    from imagenet_t2i.encode.text_cache import read_texts
    from imagenet_t2i.shards.writer import merge_shards, write_shards

    class Mute:  # a VLM stand-in that says nothing about dark images (test_llava.py shows how LLaVA can)
        def caption_images(self, images):
            return ["" if img.mean() < 100 else "A bright image." for img in images]

        def describe(self):
            return {"backend": "mute"}

    (tmp_path / "x").mkdir()
    rows = []
    for i, level in enumerate([200, 10, 220, 30]):
        Image.fromarray(np.full((32, 32, 3), level, np.uint8)).save(tmp_path / "x" / f"{i}.png")
        rows.append({"key": f"k{i}", "path": f"x/{i}.png", "class": "n01"})
    write_jsonl(tmp_path / "index.jsonl", rows)
    parts = []
    for i, name in enumerate(chunk_names(2)):
        parts.append(tmp_path / "parts" / f"{name}.jsonl")
        summary = write_caption_chunk(rows, ImageRecords(Mute(), tmp_path, 32), parts[-1], (i, 2), "fp",
                                      progress=False)
        assert (summary["written"], summary["empty"]) == (1, [f"k{2 * i + 1}"])
    merged = merge_caption_chunks(parts, tmp_path / "ta.jsonl")
    assert merged["written"] == 2 and merged["empty"] == ["k1", "k3"]
    assert read_jsonl(tmp_path / "ta.jsonl")[1] == {"key": "k1", "caption": None, "dropped": "empty caption"}
    assert read_texts(tmp_path / "ta.jsonl", captions_limit=5) == ["A bright image."] * 2
    manifests = []
    for i in range(2):
        manifests.append(tmp_path / "shards" / f"part{i}")
        write_shards(tmp_path, tmp_path / "ta.jsonl", manifests[-1], PixelAutoencoder(), MiniLMEncoder(max_tokens=16),
                     32, shard_size=1, batch_size=4, progress=False, chunk=(i, 2))
    manifest = merge_shards(manifests, tmp_path / "shards" / "all")
    assert (manifest["num_samples"], manifest["dropped"]) == (2, 2)
    assert sorted(x["key"] for x in manifest["skipped"] if x.get("dropped")) == ["k1", "k3"]


def test_released_cutmix_composites_are_rebuilt_and_take_the_papers_captions(tmp_path):
    """A release-format file naming composites of the fake ImageNet (`<base>_<partner>_<x>_<y>_<x2>_<y2>`): the
    CutMix set rebuilds them (partner and box from the name, keyed by it) and the caption stage gives them the
    release's captions; bases the release names no composite of get ours and the fallback's captions."""
    import numpy as np
    from PIL import Image

    from imagenet_t2i.augment import build_cutmix_set
    from imagenet_t2i.augment.cutmix import apply_cutmix
    from imagenet_t2i.augment.geometry import CutMixGeometry
    from imagenet_t2i.augment.images import load_square_rgb
    from imagenet_t2i.augment.released import box_pattern, parse_composite, released_composites
    from imagenet_t2i.captions.released import copy_files
    from imagenet_t2i.io import read_json
    from imagenet_t2i.source.fake_imagenet import write_fake_imagenet
    from imagenet_t2i.source.imagenet import build_index

    fake = write_fake_imagenet(tmp_path / "imagenet", classes=2, train_per_class=3, val_per_class=1, seed=0)
    build_index(fake["root"], "train", fake["synset_mapping"], tmp_path / "train", workers=1)
    rows = read_jsonl(tmp_path / "train" / "index.jsonl")
    good = [r for r in rows if r["path"] != str(fake["odd"]["truncated"])]  # the one unreadable odd file
    assert len(good) == len(rows) - 1
    a, b = good[0], next(r for r in good if r["class"] != good[0]["class"])
    quarter, half = f"{a['key']}_{b['key']}_128_0_256_128", f"{b['key']}_{a['key']}_0_128_256_256"
    write_jsonl(tmp_path / "release" / "part.jsonl", [
        {"image_path": f"train/x/{a['key']}.JPEG", "caption": "The real image, as released."},
        {"image_path": f"cutmix/{quarter}.jpg", "caption": "A quarter composite, as released."},
        {"image_path": f"cutmix/{half}.jpg", "caption": "A half composite, as released."},
        {"image_path": f"cutmix/{a['key']}_{b['key']}_3_3_40_70.jpg", "caption": "No pattern of ours."}])
    assert parse_composite(quarter) == (a["key"], b["key"], (128, 0, 256, 128)) and parse_composite(a["key"]) is None
    assert (box_pattern((128, 0, 256, 128)), box_pattern((0, 128, 256, 256)), box_pattern((3, 3, 40, 70))) == \
        ("quarter", "half", None)
    released = released_composites(tmp_path / "release", ("quarter",))
    assert released == {a["key"]: [(quarter, b["key"], (128, 0, 256, 128))]}  # the half one is another set's

    record = build_cutmix_set(tmp_path / "train", tmp_path / "cutmix_quarter", "quarter", seed=0, size=64,
                              progress=False, released=released, release_files=copy_files(tmp_path / "release"))
    assert record["settings"]["release"][0][0].endswith("part.jsonl")
    scenes = {s["key"]: s for s in read_jsonl(tmp_path / "cutmix_quarter" / "scenes.jsonl")}
    rebuilt = scenes[quarter]
    assert rebuilt["parents"] == [a["key"], b["key"]] and rebuilt["region"] == [32, 0, 64, 32]  # 256 -> 64 px
    assert rebuilt["release_name"] == quarter and sum("release_name" in s for s in scenes.values()) == 1
    base, partner = (load_square_rgb(r["path"], 64) for r in (a, b))
    expected, _ = apply_cutmix(base, {"key": a["key"], "size": 64}, partner, {"key": b["key"], "size": 64},
                               "quarter", np.random.default_rng(0), geo=CutMixGeometry("quarter", 64, 32, 32, 0,
                                                                                       (32, 0, 64, 32)))
    index = {r["key"]: r for r in read_jsonl(tmp_path / "cutmix_quarter" / "index.jsonl")}
    assert np.array_equal(np.asarray(Image.open(tmp_path / "cutmix_quarter" / index[quarter]["path"])), expected)

    set_rows = list(index.values())
    captions = ReleasedRecords(tmp_path / "release", set(index), fallback=aio_for(tmp_path / "cutmix_quarter"))
    by_key = dict(zip(index, captions.caption(set_rows)))
    assert by_key[quarter] == "A quarter composite, as released."
    assert captions.describe()["not_in_release"] == len(set_rows) - 1  # our own composites: the fallback's
    assert read_json(tmp_path / "cutmix_quarter" / "classes.json")  # the set keeps its class names


def aio_for(folder):
    from imagenet_t2i.io import read_json

    return lambda: TemplateRecords(AIOCaptioner(read_json(folder / "classes.json")), {"kind": "aio"})

"""Audit: a hand-made provenance chain over real files, walked from a table cell back to the source images;
folders with manifests, checked through them or member by member."""
import numpy as np
import pytest
import yaml
from PIL import Image

from imagenet_t2i.audit import audit
from imagenet_t2i.io import sha256_file, write_json, write_jsonl
from imagenet_t2i.paper.reference import load_reference
from imagenet_t2i.paper.tables import build_table
from imagenet_t2i.provenance import make_record, write_record

R = "results"


def _pngs(folder, n: int, seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")


def _record(stage: str, output: str, inputs: dict[str, str], outputs: list[str] | None = None) -> None:
    write_record(output, make_record(stage, {"stage": stage}, inputs, outputs or [output], 0.0))


@pytest.fixture()
def chain(tmp_path, monkeypatch):
    """source images -> captions -> shards -> run (final + checkpoint) -> samples -> scores -> table,
    every path relative to the working directory as Snakemake writes them."""
    monkeypatch.chdir(tmp_path)
    _pngs(tmp_path / R / "data/train/images", 3, seed=0)
    (tmp_path / R / "data/train/index.jsonl").write_text('{"key": "k0"}\n')
    _record("source", f"{R}/data/train", {})
    (tmp_path / R / "captions").mkdir()
    (tmp_path / R / "captions/train_ta.jsonl").write_text('{"key": "k0", "caption": "a red circle"}\n')
    _record("captions", f"{R}/captions/train_ta.jsonl", {"images": f"{R}/data/train"})
    (tmp_path / R / "shards/train_ta").mkdir(parents=True)
    (tmp_path / R / "shards/train_ta/shard-000000.tar").write_bytes(b"tar bytes")
    _record("shards", f"{R}/shards/train_ta", {"images": f"{R}/data/train", "captions": f"{R}/captions/train_ta.jsonl"})
    run = tmp_path / R / "runs/r"
    for folder in ("final", "checkpoints/step-0000150"):
        (run / folder).mkdir(parents=True)
        (run / folder / "model.safetensors").write_bytes(folder.encode())
    (run / "train.csv").write_text("step,loss\n150,0.5\n")
    _record("train", f"{R}/runs/r", {"train_ta": f"{R}/shards/train_ta"}, [f"{R}/runs/r/final", f"{R}/runs/r/train.csv"])
    _pngs(tmp_path / R / "samples/r/geneval", 4, seed=1)
    _record("sample", f"{R}/samples/r/geneval", {"model": f"{R}/runs/r/final"})
    write_json(tmp_path / R / "eval/r/geneval/summary.json", {"overall": 0.5, "tags": {}})
    _record("geneval", f"{R}/eval/r/geneval/summary.json", {"samples": f"{R}/samples/r/geneval"})
    write_json(tmp_path / R / "eval/r/fd/final.json", {"fd": 12.0})
    _record("fd", f"{R}/eval/r/fd/final.json", {"model": f"{R}/runs/r/checkpoints/step-0000150",
                                                "real": f"{R}/data/train"})
    ref = tmp_path / "reference.yaml"
    ref.write_text(yaml.safe_dump({"values": {}}))
    spec = {"title": "t", "metrics": ["geneval_overall", "fd"], "rows": [{"label": "R", "runs": ["r"]}]}
    build_table("T-X", spec, R, reference=load_reference(ref))
    return tmp_path


def _reachable(report, path: str) -> set[str]:
    seen, todo = set(), [path]
    while todo:
        node = report.nodes[todo.pop()]
        if node.path not in seen:
            seen.add(node.path)
            todo.extend(child for _, child in node.inputs)
    return seen


def test_clean_chain_reaches_source_images(chain):
    report = audit(f"{R}/tables/T-X.csv")
    assert report.ok and report.findings == []
    assert set(report.cells) == {"R|geneval_overall", "R|fd"}
    assert report.cells["R|geneval_overall"] == [f"{R}/eval/r/geneval/summary.json"]
    assert _reachable(report, report.cells["R|geneval_overall"][0]) == {
        f"{R}/eval/r/geneval/summary.json", f"{R}/samples/r/geneval", f"{R}/runs/r/final", f"{R}/shards/train_ta",
        f"{R}/captions/train_ta.jsonl", f"{R}/data/train"}
    ckpt = report.nodes[f"{R}/runs/r/checkpoints/step-0000150"]  # covered by the run folder's record
    assert ckpt.record == f"{R}/runs/r/provenance.json" and ckpt.stage == "train"
    assert report.nodes[f"{R}/data/train"].stage == "source" and report.nodes[f"{R}/data/train"].inputs == []
    assert report.unrecorded() == ["reference.yaml"]  # absolute in the record, shown relative to the root
    assert report.records_read == 8  # table, 2 scores, samples, run, shards, captions, source
    text = report.text()
    assert "nothing changed" in text and "samples: results/samples/r/geneval [sample] ok" in text
    assert "(chain shown above)" in text  # data/train is reached from several cells, printed once


def test_corrupt_png_in_samples_folder_names_its_record(chain):
    with open(chain / R / "samples/r/geneval/0002.png", "r+b") as f:
        f.seek(40)
        f.write(b"\xff\x00\xff")
    report = audit(f"{R}/tables/T-X.csv")
    assert not report.ok
    folder = f"{R}/samples/r/geneval"
    found = {(f.record, f.role) for f in report.findings if f.path == folder and f.problem == "changed"}
    assert found == {(f"{folder}/provenance.json", "output"),
                     (f"{R}/eval/r/geneval/summary.json.prov.json", "input 'samples'")}
    assert all(f.path == folder for f in report.findings)  # nothing upstream or beside it is blamed
    assert all(f.suspects == ["0002.png"] for f in report.findings)
    assert report.status(folder) == "changed" and report.status(f"{R}/runs/r/final") == "ok"
    text = report.text()
    assert f"CHANGED {folder}: differs from the hash recorded as output by {folder}/provenance.json" in text
    assert "modified after that record: 0002.png" in text


def test_deleted_file_reported_missing(chain):
    (chain / R / "captions/train_ta.jsonl").unlink()
    report = audit(f"{R}/tables/T-X.csv")
    missing = {(f.path, f.record, f.role) for f in report.findings if f.problem == "missing"}
    cap = f"{R}/captions/train_ta.jsonl"
    assert (cap, f"{R}/shards/train_ta/provenance.json", "input 'captions'") in missing
    assert (cap, f"{cap}.prov.json", "output") in missing  # its record survives beside it
    assert report.status(cap) == "missing" and not report.nodes[cap].exists
    assert f"MISSING {cap}: recorded as input 'captions' by {R}/shards/train_ta/provenance.json" in report.text()


def test_edited_table_and_score_file_are_caught(chain):
    score = chain / R / "eval/r/fd/final.json"
    score.write_text(score.read_text().replace("12.0", "2.0"))
    (chain / R / "tables/T-X.md").write_text("hand-edited\n")
    report = audit(f"{R}/tables/T-X.csv")
    changed = {(f.path, f.role) for f in report.findings if f.problem == "changed"}
    assert changed == {(f"{R}/tables/T-X.md", "output"), (f"{R}/eval/r/fd/final.json", "output"),
                       (f"{R}/eval/r/fd/final.json", f"input '{R}/eval/r/fd/final.json'")}


def test_cycles_terminate_and_broken_records_are_reported(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    _record("x", "a.txt", {"b": "b.txt"})
    _record("x", "b.txt", {"a": "a.txt"})
    report = audit("a.txt")
    assert report.ok and report.nodes["a.txt"].inputs == [("b", "b.txt")]
    assert report.nodes["b.txt"].inputs == [("a", "a.txt")] and report.records_read == 2

    (tmp_path / "b.txt.prov.json").write_text("{not json")
    report = audit("a.txt")
    assert [f.problem for f in report.findings] == ["unreadable record"]
    assert report.findings[0].record == "b.txt.prov.json"
    with pytest.raises(FileNotFoundError, match="c.txt has no provenance record"):
        audit("c.txt")


@pytest.fixture()
def manifests(tmp_path, monkeypatch):
    """An image set (index rows with sha256) -> a shard set (manifest.json listing its shards) -> a score file."""
    monkeypatch.chdir(tmp_path)
    images = tmp_path / "data/crop"
    _pngs(images / "images", 3, seed=2)
    write_jsonl(images / "index.jsonl", [{"key": p.stem, "class": "c", "path": f"images/{p.name}",
                                          "sha256": sha256_file(p)} for p in sorted((images / "images").iterdir())])
    _record("augment", "data/crop", {})
    shards = tmp_path / "shards/crop_ta"
    shards.mkdir(parents=True)
    entries = []
    for i in range(2):
        (shards / f"shard-{i:06d}.tar").write_bytes(f"tar {i}".encode())
        entries.append({"name": f"shard-{i:06d}.tar", "sha256": sha256_file(shards / f"shard-{i:06d}.tar")})
    write_json(shards / "manifest.json", {"shards": entries})
    _record("shards", "shards/crop_ta", {"images": "data/crop"})
    write_json(tmp_path / "score.json", {"fd": 1.0})
    _record("fd", "score.json", {"shards": "shards/crop_ta"})
    return tmp_path


def test_normal_audit_checks_manifests_not_members(manifests):
    (manifests / "data/crop/images/0001.png").write_bytes(b"altered")  # a member: not read without members=True
    report = audit("score.json")
    assert report.ok and report.members_hashed == 0
    manifest = manifests / "shards/crop_ta/manifest.json"
    manifest.write_text(manifest.read_text().replace("shard-000001", "shard-000009"))  # lists another shard
    report = audit("score.json")
    changed = {(f.path, f.role, tuple(f.suspects)) for f in report.findings}
    assert changed == {("shards/crop_ta", "output", ("manifest.json",)),
                       ("shards/crop_ta", "input 'shards'", ("manifest.json",))}


def test_members_audit_names_each_altered_member(manifests):
    image = manifests / "data/crop/images/0001.png"
    recorded = sha256_file(image)
    assert audit("score.json", members=True).ok
    image.write_bytes(b"altered")
    (manifests / "shards/crop_ta/shard-000000.tar").unlink()
    report = audit("score.json", members=True)
    assert not report.ok and report.members_hashed == 5  # 3 images + 2 shards, each hashed once
    found = {f.path: f for f in report.findings}
    assert set(found) == {"data/crop/images/0001.png", "shards/crop_ta/shard-000000.tar"}
    img = found["data/crop/images/0001.png"]
    assert (img.problem, img.record, img.folder) == ("changed", "data/crop/index.jsonl", "data/crop")
    assert (img.recorded, img.current) == (recorded, sha256_file(image))
    shard = found["shards/crop_ta/shard-000000.tar"]
    assert (shard.problem, shard.record, shard.current) == ("missing", "shards/crop_ta/manifest.json", None)
    assert report.status("data/crop") == "changed" and report.status("shards/crop_ta") == "changed"
    assert report.status("score.json") == "ok"
    text = report.text()
    assert (f"CHANGED data/crop/images/0001.png: member of data/crop, listed in data/crop/index.jsonl with sha256 "
            f"{recorded}; now {sha256_file(image)}") in text
    assert "MISSING shards/crop_ta/shard-000000.tar: member of shards/crop_ta" in text
    assert "1 changed, 1 missing" in text and "and 5 manifest members" in text

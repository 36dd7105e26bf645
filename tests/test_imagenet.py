"""ImageNet source: a fake ILSVRC2012 folder indexed with every val label format, its oddities, and the errors."""
import shutil

import pytest
from PIL import Image

from imagenet_t2i.encode.images import CorruptImageError, load_rgb
from imagenet_t2i.io import read_json, read_jsonl, sha256_file
from imagenet_t2i.source.fake_imagenet import write_fake_imagenet
from imagenet_t2i.source.imagenet import build_index, read_val_labels


def _index(fake, split, out, **kw):
    n = build_index(fake["root"], split, fake["synset_mapping"], out, workers=2, **kw)
    rows = read_jsonl(out / "index.jsonl")
    assert n == len(rows)
    return rows


def _check_rows(rows, classes: dict[str, str], paths) -> None:
    """Rows carry the right classes and their files' sha256, sorted by (class, key)."""
    assert {r["key"]: r["class"] for r in rows} == classes
    assert [(r["class"], r["key"]) for r in rows] == sorted((r["class"], r["key"]) for r in rows)
    assert sorted(r["path"] for r in rows) == sorted(str(p) for p in paths)
    assert all(r["sha256"] == sha256_file(r["path"]) for r in rows)


@pytest.mark.parametrize("fmt", ["loc_csv", "devkit", "wnid_lines"])
def test_flat_val_with_each_label_format(tmp_path, fmt):
    fake = write_fake_imagenet(tmp_path / "imagenet", classes=3, val_per_class=3, seed=1, val_labels=fmt)
    assert len({w for w in fake["val_classes"].values()}) == 3
    rows = _index(fake, "val", tmp_path / "val", val_labels=fake["val_labels"])  # meta.mat found beside the labels
    _check_rows(rows, fake["val_classes"], fake["val"])
    assert read_json(tmp_path / "val" / "classes.json") == fake["classes"]
    # the format is told by the content, not the name
    renamed = tmp_path / "labels.txt"
    shutil.copy(fake["val_labels"], renamed)
    assert read_val_labels(renamed, meta_mat=fake["meta_mat"]) == fake["val_classes"]


def test_devkit_ids_go_through_meta_mat(tmp_path):
    fake = write_fake_imagenet(tmp_path / "imagenet", classes=5, val_per_class=1, seed=0, val_labels="devkit")
    ids = [int(line) for line in fake["val_labels"].read_text().split()]
    sorted_order = {w: i for i, w in enumerate(sorted(fake["classes"]), 1)}
    assert ids != [sorted_order[fake["val_classes"][k]] for k in sorted(fake["val_classes"])]  # IDs are not wnid order
    assert read_val_labels(fake["val_labels"]) == fake["val_classes"]
    fake["meta_mat"].unlink()
    with pytest.raises(FileNotFoundError, match="meta.mat.*beside the ground-truth file"):
        read_val_labels(fake["val_labels"])


def test_train_and_class_folder_val(tmp_path):
    fake = write_fake_imagenet(tmp_path / "imagenet", classes=2, train_per_class=4, val_labels="folders")
    rows = _index(fake, "train", tmp_path / "train")
    _check_rows(rows, {p.stem: p.parent.name for p in fake["train"]}, fake["train"])
    assert {str(p) for p in fake["odd"].values()} <= {r["path"] for r in rows}  # odd files are indexed, not judged
    rows = _index(fake, "val", tmp_path / "val")
    _check_rows(rows, fake["val_classes"], fake["val"])
    # a labels file given for sorted val is checked against the folders
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"{fake['val_classes'][k]}\n" for k in sorted(fake["val_classes"])))
    assert _index(fake, "val", tmp_path / "val2", val_labels=labels) == rows
    key, wnid = sorted(fake["val_classes"].items())[0]
    other = next(w for w in fake["classes"] if w != wnid)
    shutil.move(fake["root"] / "val" / wnid / f"{key}.JPEG", fake["root"] / "val" / other / f"{key}.JPEG")
    with pytest.raises(ValueError, match=f"sit in another class folder than {labels}.*{key}"):
        _index(fake, "val", tmp_path / "val3", val_labels=labels)


def test_fake_imagenet_odd_files_are_what_they_claim(tmp_path):
    fake = write_fake_imagenet(tmp_path / "imagenet")
    odd = fake["odd"]
    assert all(p.suffix == ".JPEG" and p.parent.parent.name == "train" for p in odd.values())
    with Image.open(odd["cmyk"]) as im:
        assert (im.format, im.mode) == ("JPEG", "CMYK")
    with Image.open(odd["grayscale"]) as im:
        assert (im.format, im.mode) == ("JPEG", "L")
    with Image.open(odd["png_as_jpeg"]) as im:
        assert im.format == "PNG"
    with pytest.raises(CorruptImageError, match="n0.*_.*JPEG"):
        load_rgb(odd["truncated"])
    sizes = set()
    for path in fake["train"] + fake["val"]:
        if path != odd["truncated"]:
            img = load_rgb(path)  # every other file decodes to RGB
            assert img.ndim == 3 and img.shape[2] == 3 and img.shape[0] != img.shape[1]
            assert 60 <= min(img.shape[:2]) and max(img.shape[:2]) <= 120
            sizes.add(img.shape[:2])
    assert len(sizes) > len(fake["train"]) // 2  # varied sizes
    assert fake["classes"]["n01440764"] == "tench, Tinca tinca"
    assert len(fake["train"]) == 3 * 6 and len(fake["val"]) == 3 * 2
    assert all(p.parent.name == "val" and p.name.startswith("ILSVRC2012_val_") for p in fake["val"])  # flat


def _files(root):
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def test_fake_imagenet_deterministic_and_atomic(tmp_path):
    a = write_fake_imagenet(tmp_path / "a", seed=3, val_labels="devkit")
    write_fake_imagenet(tmp_path / "b", seed=3, val_labels="devkit")
    assert _files(a["root"]) == _files(tmp_path / "b")
    write_fake_imagenet(tmp_path / "b", seed=4, val_labels="devkit")  # replaces the earlier fake
    assert _files(a["root"]) != _files(tmp_path / "b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b"]  # no temporary folders left
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "data.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a fake ImageNet"):
        write_fake_imagenet(tmp_path / "real")
    assert (tmp_path / "real" / "data.txt").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "real"]


def test_errors_name_the_file_and_the_fix(tmp_path):
    fake = write_fake_imagenet(tmp_path / "imagenet", val_labels="loc_csv")
    root, mapping, labels = fake["root"], fake["synset_mapping"], fake["val_labels"]
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match="nope.txt does not exist: source.synset_mapping"):
        build_index(root, "train", tmp_path / "nope.txt", out)
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist: the val labels file"):
        build_index(root, "val", mapping, out, val_labels=tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError, match="test does not exist: source.root must hold test/"):
        build_index(root, "test", mapping, out)
    with pytest.raises(ValueError, match="holds images directly .* set source.val_labels"):
        build_index(root, "val", mapping, out)
    bogus = tmp_path / "bogus.txt"
    bogus.write_text("hello world\n")
    with pytest.raises(ValueError, match="bogus.txt: not a val labels file I know; expected Kaggle"):
        build_index(root, "val", mapping, out, val_labels=bogus)

    stray = root / "val" / "ILSVRC2012_val_00000099.JPEG"
    shutil.copy(fake["val"][0], stray)
    with pytest.raises(ValueError, match=r"1 image\(s\) of .*val have no label in .*LOC_val_solution.csv "
                                         r"\(first: ILSVRC2012_val_00000099\)"):
        build_index(root, "val", mapping, out, val_labels=labels)
    stray.unlink()
    gone = fake["val"][1]
    gone.unlink()
    with pytest.raises(ValueError, match=rf"1 label\(s\) of .*LOC_val_solution.csv have no image .*{gone.stem}"):
        build_index(root, "val", mapping, out, val_labels=labels)

    unknown = tmp_path / "unknown.txt"
    unknown.write_text("n09999999\n" * len(fake["val"]))
    shutil.copy(fake["val"][0], gone)
    with pytest.raises(ValueError, match=r"class\(es\) of .*unknown.txt are not in .*LOC_synset_mapping.txt "
                                         r"\(first: n09999999\)"):
        build_index(root, "val", mapping, out, val_labels=unknown)
    (root / "train" / "n09999999").mkdir()
    shutil.copy(fake["train"][0], root / "train" / "n09999999" / "n09999999_1.JPEG")
    with pytest.raises(ValueError, match=r"class folders of .*train are not in .*\(first: n09999999\)"):
        build_index(root, "train", mapping, out)
    assert not out.exists()  # nothing written by a failed index

"""Image augmentations: CutMix geometry and composites, crops, scene bookkeeping, set building, chunks and merge."""
from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from imagenet_t2i.augment import (PATTERNS, CutMixGeometry, apply_crop, apply_cutmix, build_crop_set, build_cutmix_set,
                                  cutmix_geometry, merge_augmented)
from imagenet_t2i.augment.boxes import MIN_VISIBLE
from imagenet_t2i.augment.cutmix import composite_scene
from imagenet_t2i.augment.geometry import scaled
from imagenet_t2i.chunks import chunk_names
from imagenet_t2i.io import read_json, read_jsonl, write_json, write_jsonl
from imagenet_t2i.world import COLORS, build_split, render_scene

AREA = {"half": 1 / 2, "quarter": 1 / 4, "ninth": 1 / 9, "sixteenth": 1 / 16}


def obj(cls, color, box, size="medium"):
    return {"class": cls, "color": color, "size": size, "box": [float(c) for c in box]}


def scene(key, objects, size=64, bg="gray"):
    return {"key": key, "size": size, "source": "render", "backgrounds": [bg], "objects": objects,
            "parents": [], "pattern": None}


def color_bbox(img, color, region=None, tol=45.0):
    """Pixel bbox [x1, y1, x2, y2] of pixels within ``tol`` of ``color`` (optionally inside region mask)."""
    near = np.linalg.norm(img.astype(float) - np.array(COLORS[color], float), axis=2) < tol
    if region is not None:
        near &= region
    ys, xs = np.nonzero(near)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


@pytest.mark.parametrize("size", [32, 64, 256])
@pytest.mark.parametrize("pattern", PATTERNS)
def test_cutmix_mask_areas_and_placements(pattern, size):
    rng = np.random.default_rng(0)
    tol = 0.01 if size == 256 or pattern != "ninth" else 0.02
    for _ in range(200):
        g = cutmix_geometry(pattern, size, rng)
        m = g.mask()
        assert g.pattern == pattern and abs(m.mean() - AREA[pattern]) <= tol
        x1, y1, x2, y2 = g.rect
        assert 0 <= x1 < x2 <= size and 0 <= y1 < y2 <= size
        if pattern == "half":
            assert g.rect in [(size // 2, 0, size, size), (0, size // 2, size, size)] and g.side == size
            continue
        side = scaled({"quarter": 128, "ninth": 85, "sixteenth": 64}[pattern], size)
        assert (x2 - x1, y2 - y1) == (g.side, g.side) == (side, side)
        if pattern == "quarter":
            assert x1 in (0, size - g.side) and y1 in (0, size - g.side)
        elif pattern == "ninth":
            assert x1 == 0 or y1 == 0 or x2 == size or y2 == size
        else:
            lo, hi, c_lo, c_hi = (scaled(v, size) for v in (12, 180, 103, 153))
            assert lo <= x1 <= hi and lo <= y1 <= hi
            overlaps = x1 <= c_hi and x2 >= c_lo and y1 <= c_hi and y2 >= c_lo
            assert not overlaps, g


def test_sixteenth_at_256_matches_the_paper_numbers_and_covers_its_range():
    rng = np.random.default_rng(1)
    gs = [cutmix_geometry("sixteenth", 256, rng) for _ in range(2000)]
    xs = [g.x for g in gs]
    assert min(xs) == 12 and max(xs) == 180 and all(g.side == 64 for g in gs)
    central = np.zeros((256, 256), bool)
    central[103:154, 103:154] = True
    assert not any((g.mask() & central).any() for g in gs)


def test_all_draws_each_pattern_uniformly_and_rejects_unknown():
    rng = np.random.default_rng(2)
    counts = Counter(cutmix_geometry("all", 64, rng).pattern for _ in range(2000))
    assert set(counts) == set(PATTERNS) and min(counts.values()) > 420
    corners = Counter(cutmix_geometry("quarter", 64, rng).rect[:2] for _ in range(800))
    assert len(corners) == 4 and min(corners.values()) > 150
    with pytest.raises(ValueError, match="unknown CutMix pattern 'third'"):
        cutmix_geometry("third", 64, rng)


def test_apply_cutmix_pixels_and_partner_box():
    base_s = scene("b", [obj("circle", "red", (6, 6, 30, 30))])
    partner_s = scene("p", [obj("square", "blue", (16, 16, 48, 48))], bg="beige")
    base, partner = render_scene(base_s), render_scene(partner_s)
    rng = np.random.default_rng(0)
    for _ in range(20):
        state = rng.bit_generator.state
        out, rec = apply_cutmix(base, base_s, partner, partner_s, "quarter", rng)
        rng.bit_generator.state = state
        g = cutmix_geometry("quarter", 64, rng)
        m = g.mask()
        assert np.array_equal(out[~m], base[~m])
        small = np.asarray(Image.fromarray(partner).resize((32, 32), Image.Resampling.BILINEAR))
        assert np.array_equal(out[g.y : g.y + 32, g.x : g.x + 32], small)
        assert rec["parents"] == ["b", "p"] and rec["pattern"] == "quarter" and rec["key"] == "cutmix_b"
        assert rec["source"] == "cutmix" and rec["region"] == list(g.rect) and rec["backgrounds"] == ["gray", "beige"]
        assert rec["placed"] == [g.x, g.y, g.x + 32, g.y + 32]
        blue = [o for o in rec["objects"] if o["color"] == "blue"][0]
        assert blue["box"] == [g.x + 8, g.y + 8, g.x + 24, g.y + 24] and blue["size"] == "small"
        assert np.allclose(color_bbox(out, "blue", m), blue["box"], atol=1)
        red = [o for o in rec["objects"] if o["color"] == "red"]
        if red:  # the base circle is kept only if enough of it stays visible
            assert np.allclose(color_bbox(out, "red", ~m), red[0]["box"], atol=1.5)


def test_composite_scene_clips_and_drops_hidden_objects():
    geo = CutMixGeometry("half", 64, 64, 0, 0, (32, 0, 64, 64))
    base = scene("b", [
        obj("circle", "red", (40, 10, 60, 30)),     # fully under the pasted half -> dropped
        obj("square", "blue", (20, 10, 44, 30)),    # 12/24 = 50 % visible -> kept, clipped
        obj("square", "green", (24, 40, 44, 60)),   # 8/20 = 40 % visible -> kept (threshold)
        obj("square", "pink", (25, 40, 45, 60)),    # 7/20 = 35 % visible -> dropped
        obj("triangle", "brown", (24, 0, 44, 20)),  # 40 % of its box but 32 % of its pixels -> dropped
    ])
    partner = scene("p", [obj("diamond", "white", (0, 8, 20, 28)),  # in the partner's left half: hidden
                          obj("triangle", "black", (36, 4, 60, 28), "large")])
    rec = composite_scene(base, partner, geo)
    assert MIN_VISIBLE == 0.4
    assert [(o["class"], o["box"]) for o in rec["objects"]] == [
        ("square", [20.0, 10.0, 32.0, 30.0]), ("square", [24.0, 40.0, 32.0, 60.0]),
        ("triangle", [36.0, 4.0, 60.0, 28.0])]
    # a 24 px object in a 64 px image is "small" (extent 0.375), whatever its parent label said
    assert rec["objects"][2]["size"] == "small"


def test_visible_box_is_tight_on_the_shape_pixels():
    # the pasted top-left quarter hides the triangle's apex: what shows starts at y = 24, not 8
    geo = CutMixGeometry("quarter", 64, 32, 0, 0, (0, 0, 32, 32))
    base = scene("b", [obj("triangle", "red", (8, 8, 40, 40))])
    rec = composite_scene(base, scene("p", []), geo)
    assert rec["objects"][0]["box"] == [8.0, 24.0, 40.0, 40.0]
    img = np.where(geo.mask()[:, :, None], 128, render_scene(base)).astype(np.uint8)
    assert np.allclose(color_bbox(img, "red"), rec["objects"][0]["box"], atol=1)


def test_apply_crop_maps_boxes_into_the_new_frame():
    s = scene("c", [obj("square", "yellow", (20, 20, 40, 40))])
    img = render_scene(s)
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(30):
        out, rec = apply_crop(img, s, (0.35, 0.8), rng)
        x1, y1, x2, y2 = rec["region"]
        side = x2 - x1
        assert out.shape == img.shape and x2 - x1 == y2 - y1 and 0.35 * 64 - 1 <= side <= 0.8 * 64 + 1
        assert rec["parents"] == ["c"] and rec["key"] == "crop_c" and rec["source"] == "crop"
        assert rec["scale"] == side / 64
        k = 64 / side
        full = [(20 - x1) * k, (20 - y1) * k, (40 - x1) * k, (40 - y1) * k]
        vis = [max(full[0], 0), max(full[1], 0), min(full[2], 64), min(full[3], 64)]
        vw, vh = vis[2] - vis[0], vis[3] - vis[1]
        kept = min(vw, vh) >= 2 and vw * vh >= MIN_VISIBLE * (full[2] - full[0]) ** 2
        assert bool(rec["objects"]) == kept
        if kept:
            seen += 1
            assert np.allclose(rec["objects"][0]["box"], vis, atol=0.01)
            assert np.allclose(color_bbox(out, "yellow"), vis, atol=k + 1)
    assert seen >= 5


def test_apply_cutmix_rejects_mismatched_images():
    s = scene("a", [], size=32)
    with pytest.raises(ValueError, match="'a'.*32"):
        apply_cutmix(np.zeros((64, 64, 3), np.uint8), s, np.zeros((32, 32, 3), np.uint8), s, "half",
                     np.random.default_rng(0))


def files(folder):
    """Every file under ``folder``: relative path -> bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def written(res):
    return res["written"], res["skipped"]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    root = tmp_path_factory.mktemp("src")
    build_split(root, "train", 48, seed=0, size=32, progress=False)
    return root


@pytest.fixture(scope="module")
def broken(tmp_path_factory):
    """A world split with one missing and one corrupt image."""
    root = tmp_path_factory.mktemp("broken")
    build_split(root, "train", 24, seed=0, size=32, progress=False)
    (root / "images/train_000003.png").unlink()
    (root / "images/train_000010.png").write_bytes(b"not a png")
    return root


def jpeg(path, mode, wh, rng):
    chans = {"RGB": 3, "CMYK": 4, "L": 1}[mode]
    arr = rng.integers(0, 255, (wh[1], wh[0], chans), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr.squeeze(), mode=mode).save(path, format="JPEG")


@pytest.fixture(scope="module")
def imagenet(tmp_path_factory):
    """An ImageNet-like split: 12 JPEGs of 3 wnids, sizes differ, one CMYK, one grayscale, one truncated."""
    root = tmp_path_factory.mktemp("imnet")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        wnid = f"n0{i % 3}"
        mode = "CMYK" if i == 4 else "L" if i == 7 else "RGB"
        rel = f"train/{wnid}/{wnid}_{i}.JPEG"
        jpeg(root / rel, mode, (40 + 7 * i, 60 - 2 * i), rng)
        rows.append({"key": f"{wnid}_{i}", "class": wnid, "path": rel})
    truncated = root / rows[9]["path"]
    truncated.write_bytes(truncated.read_bytes()[:300])
    write_jsonl(root / "index.jsonl", rows)
    write_json(root / "classes.json", {f"n0{c}": f"thing {c}" for c in range(3)})
    return root


def test_build_cutmix_set_layout_records_and_determinism(source, tmp_path):
    res = build_cutmix_set(source, tmp_path / "a", "all", seed=1, progress=False)
    assert written(res) == (48, 0) and res["chunk"] == [0, 1] and res["rows"] == [0, 48]
    assert res["settings"]["set"] == "cutmix" and res["settings"]["pattern"] == "all"
    assert read_json(tmp_path / "a/build.json") == res
    index, recs = read_jsonl(tmp_path / "a/index.jsonl"), read_jsonl(tmp_path / "a/scenes.jsonl")
    src_class = {r["key"]: r["class"] for r in read_jsonl(source / "index.jsonl")}
    assert [r["key"] for r in index] == [f"cutmix_train_{i:06d}" for i in range(48)] == [r["key"] for r in recs]
    for row, rec in zip(index, recs):
        base, partner = rec["parents"]
        assert row["class"] == src_class[base] != src_class[partner]
        assert rec["parent_classes"] == [src_class[base], src_class[partner]]
        assert row["path"] == f"images/00000/{row['key']}.png"
        assert row["sha256"] == hashlib.sha256((tmp_path / "a" / row["path"]).read_bytes()).hexdigest()
        assert rec["pattern"] in PATTERNS and rec["source"] == "cutmix"
        (x1, y1, x2, y2), (px1, py1, px2, py2) = rec["region"], rec["placed"]
        assert px1 <= x1 < x2 <= px2 and py1 <= y1 < y2 <= py2
        assert (rec["placed"] == [0, 0, 32, 32]) == (rec["pattern"] == "half")
        assert np.asarray(Image.open(tmp_path / "a" / row["path"])).shape == (32, 32, 3)
    assert len({r["pattern"] for r in recs}) == 4
    assert read_json(tmp_path / "a/skipped.json") == [] and (tmp_path / "a/classes.json").is_file()
    build_cutmix_set(source, tmp_path / "b", "all", seed=1, progress=False)
    build_cutmix_set(source, tmp_path / "c", "all", seed=2, progress=False)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert read_jsonl(tmp_path / "c/scenes.jsonl") != recs


def test_build_sets_skip_missing_and_corrupt_sources(broken, tmp_path):
    res = build_cutmix_set(broken, tmp_path / "cm", "sixteenth", seed=0, progress=False)
    skipped = read_json(tmp_path / "cm/skipped.json")
    assert written(res) == (22, 2)
    assert [s["key"] for s in skipped] == ["train_000003", "train_000010"]
    assert "FileNotFoundError" in skipped[0]["error"] and "UnidentifiedImageError" in skipped[1]["error"]
    used = {p for r in read_jsonl(tmp_path / "cm/scenes.jsonl") for p in r["parents"]}
    assert not used & {"train_000003", "train_000010"}
    res = build_crop_set(broken, tmp_path / "crop", (0.35, 0.8), seed=0, progress=False)
    assert written(res) == (22, 2) and res["settings"]["scale"] == [0.35, 0.8]
    recs = read_jsonl(tmp_path / "crop/scenes.jsonl")
    assert all(r["key"] == f"crop_{r['parents'][0]}" and r["pattern"] == "crop" for r in recs)


def test_imagenet_like_sources_cmyk_truncated_and_records(imagenet, tmp_path):
    res = build_cutmix_set(imagenet, tmp_path / "cm", "quarter", seed=0, size=32, image_format="jpg",
                           progress=False)
    assert written(res) == (11, 1) and res["settings"]["size"] == 32
    [skip] = read_json(tmp_path / "cm/skipped.json")
    assert skip["key"] == "n00_9" and "truncated" in skip["error"].lower() and skip["path"].endswith("n00_9.JPEG")
    rows = {r["key"]: r for r in read_jsonl(imagenet / "index.jsonl")}
    recs = read_jsonl(tmp_path / "cm/scenes.jsonl")
    for rec in recs:
        base, partner = rec["parents"]
        assert rec["objects"] is None and rec["backgrounds"] is None and partner != "n00_9"
        assert rec["parent_classes"] == [rows[base]["class"], rows[partner]["class"]]
        assert rec["parent_classes"][0] != rec["parent_classes"][1]
        assert rec["pattern"] == "quarter" and rec["region"] == rec["placed"]
    img = Image.open(tmp_path / "cm/images/00000/cutmix_n01_4.jpg")  # the CMYK source
    assert img.size == (32, 32) and img.mode == "RGB"
    assert read_json(tmp_path / "cm/classes.json") == read_json(imagenet / "classes.json")

    res = build_crop_set(imagenet, tmp_path / "crop", (0.5, 0.8), seed=0, size=32, progress=False)
    assert written(res) == (11, 1)
    for rec in read_jsonl(tmp_path / "crop/scenes.jsonl"):
        x1, y1, x2, y2 = rec["region"]
        assert x2 - x1 == y2 - y1 and 0 <= x1 < x2 <= 32 and 0 <= y1 < y2 <= 32
        assert rec["scale"] == (x2 - x1) / 32 and 0.5 - 1 / 64 <= rec["scale"] <= 0.8 + 1 / 64
        assert rec["parent_classes"] == [rows[rec["parents"][0]]["class"]]


def build_parts(build, src, root, count, **kw):
    parts = [root / name for name in chunk_names(count)]
    for c, part in enumerate(parts):
        build(src, part, chunk=(c, count), **kw)
    return parts


def test_chunks_merge_into_the_unchunked_set(broken, tmp_path):
    whole = build_cutmix_set(broken, tmp_path / "whole", "all", seed=3, progress=False)
    parts = build_parts(build_cutmix_set, broken, tmp_path / "parts", 3, pattern="all", seed=3, progress=False)
    records = [read_json(p / "build.json") for p in parts]
    assert [r["rows"] for r in records] == [[0, 8], [8, 16], [16, 24]]
    assert {r["fingerprint"] for r in records} == {whole["fingerprint"]}
    # partners come from the whole source, not from the chunk
    part0 = {r["parents"][1] for r in read_jsonl(parts[0] / "scenes.jsonl")}
    assert any(int(k.split("_")[1]) >= 8 for k in part0)
    assert merge_augmented(parts, tmp_path / "merged") == whole
    expected = files(tmp_path / "whole")
    assert files(tmp_path / "merged") == expected and len(expected) == 22 + 5
    row = read_jsonl(tmp_path / "merged/index.jsonl")[12]
    assert (tmp_path / "merged" / row["path"]).samefile(parts[1] / row["path"])  # hard link, not a copy
    # a rerun is idempotent, and removes what an earlier merge left that the index does not list
    (tmp_path / "merged/images/00000/cutmix_stale.png").write_bytes(b"old")
    merge_augmented(parts, tmp_path / "merged")
    assert files(tmp_path / "merged") == expected


def test_workers_do_not_change_the_set(imagenet, tmp_path):
    kw = dict(pattern="all", seed=0, size=32, progress=False)
    one = build_cutmix_set(imagenet, tmp_path / "one", **kw)
    two = build_cutmix_set(imagenet, tmp_path / "two", workers=2, **kw)
    assert one == two and files(tmp_path / "one") == files(tmp_path / "two")


def test_no_folder_holds_more_than_1000_images(imagenet, tmp_path):
    src = tmp_path / "big"
    good = [r for r in read_jsonl(imagenet / "index.jsonl") if r["key"] != "n00_9"]
    # absolute paths, as in an ImageNet index; three files shared by 1003 rows
    rows = [{"key": f"img{i:04d}", "class": "n0", "path": str(imagenet / good[i % 3]["path"])} for i in range(1003)]
    write_jsonl(src / "index.jsonl", rows)
    res = build_crop_set(src, tmp_path / "out", seed=0, size=8, image_format="jpg", progress=False)
    assert written(res) == (1003, 0)
    index = read_jsonl(tmp_path / "out/index.jsonl")
    assert index[999]["path"] == "images/00000/crop_img0999.jpg"
    assert index[1000]["path"] == "images/00001/crop_img1000.jpg"
    counts = {d.name: len(list(d.iterdir())) for d in (tmp_path / "out/images").iterdir()}
    assert counts == {"00000": 1000, "00001": 3}


def test_a_complete_part_is_not_redone(source, tmp_path):
    part = tmp_path / "part"
    first = build_crop_set(source, part, seed=0, chunk=(1, 3), progress=False)
    assert first["rows"] == [16, 32] and written(first) == (16, 0)
    image = part / read_jsonl(part / "index.jsonl")[0]["path"]
    stamps = (part / "index.jsonl").stat().st_mtime_ns, image.stat().st_mtime_ns
    assert build_crop_set(source, part, seed=0, chunk=(1, 3), progress=False) == first
    assert ((part / "index.jsonl").stat().st_mtime_ns, image.stat().st_mtime_ns) == stamps
    other = build_crop_set(source, part, seed=1, chunk=(1, 3), progress=False)  # new settings: rebuilt
    assert other["fingerprint"] != first["fingerprint"] and read_json(part / "build.json") == other
    image = part / read_jsonl(part / "index.jsonl")[0]["path"]
    image.unlink()  # a part with a missing image is incomplete: rebuilt
    build_crop_set(source, part, seed=1, chunk=(1, 3), progress=False)
    assert image.is_file()


def test_merge_rejects_parts_of_different_builds(source, tmp_path):
    parts = build_parts(build_crop_set, source, tmp_path / "p", 3, seed=0, progress=False)
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"not chunks 0\.\.1 of 2.*pass every part folder"):
        merge_augmented([parts[0], parts[2]], out)
    other = tmp_path / "other"
    build_crop_set(source, other, seed=9, chunk=(1, 3), progress=False)
    with pytest.raises(ValueError, match=f"{other}.*different sources or settings.*rerun"):
        merge_augmented([parts[0], other, parts[2]], out)
    (parts[1] / "index.jsonl").unlink()
    with pytest.raises(ValueError, match=f"part {parts[1]} is incomplete.*rerun its augment chunk job"):
        merge_augmented(parts, out)
    assert not (out / "index.jsonl").exists()


def test_cutmix_needs_two_classes(tmp_path):
    src = tmp_path / "one"
    build_split(src, "train", 6, seed=0, size=32, classes=["circle"], progress=False)
    with pytest.raises(ValueError, match="at least two classes"):
        build_cutmix_set(src, tmp_path / "out", "half", seed=0, progress=False)


def test_crop_from_the_original_keeps_its_detail(tmp_path):
    """augment.crop.from_original (paper.yaml): the window is cut from the stored photo at full resolution and
    resized once, instead of cropping the 32-px image and upscaling it; same window, same record."""
    rng = np.random.default_rng(0)
    (tmp_path / "src" / "train").mkdir(parents=True)
    rows = []
    for i in range(4):
        photo = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)  # fine detail that a 32-px copy loses
        Image.fromarray(photo).save(tmp_path / "src" / "train" / f"k{i}.png")
        rows.append({"key": f"k{i}", "class": f"n0{i % 2}", "path": f"train/k{i}.png"})
    write_jsonl(tmp_path / "src" / "index.jsonl", rows)
    resized = build_crop_set(tmp_path / "src", tmp_path / "resized", (0.35, 0.5), seed=0, size=32, progress=False)
    original = build_crop_set(tmp_path / "src", tmp_path / "original", (0.35, 0.5), seed=0, size=32, progress=False,
                              from_original=True)
    assert original["settings"]["from_original"] and "from_original" not in resized["settings"]
    for a, b in zip(read_jsonl(tmp_path / "resized/scenes.jsonl"), read_jsonl(tmp_path / "original/scenes.jsonl")):
        assert a["region"] == b["region"] and b["from_original"] == [300, 400]  # the same window, recorded
        x1, y1, x2, y2 = b["region"]
        photo = np.asarray(Image.open(tmp_path / "src" / "train" / f"{b['parents'][0]}.png"))
        f, left = 300 / 32, 50  # the centre square is photo[:, 50:350]
        window = photo[round(y1 * f):round(y2 * f), left + round(x1 * f):left + round(x2 * f)]
        expected = np.asarray(Image.fromarray(window).resize((32, 32), Image.Resampling.BILINEAR))
        key = b["key"]
        got = np.asarray(Image.open(next((tmp_path / "original" / "images").rglob(f"{key}.png"))))
        upscaled = np.asarray(Image.open(next((tmp_path / "resized" / "images").rglob(f"{key}.png"))))
        assert np.array_equal(got, expected)
        # the upscaled 32-px crop is far smoother: its neighbouring pixels differ much less than the real ones
        sharp, smooth = (np.abs(np.diff(x.astype(int), axis=1)).mean() for x in (got, upscaled))
        assert sharp > 2 * smooth


@pytest.mark.parametrize("kind", ["cutmix", "crop"])
def test_a_set_made_again_at_twice_the_side_keeps_partners_boxes_windows_and_keys(tmp_path, kind):
    """The resolution stage's augmented sets: every composite of the 32-px set rebuilt from the 64-px world with the
    same partner and box (CutMix) or window (Crop), doubled, under the same key; the pixels are those of a direct
    build at that geometry."""
    from imagenet_t2i.augment import build_rescaled_set
    from imagenet_t2i.augment.rescale import scaled_geometry
    from imagenet_t2i.world.build import rescale_split

    build_split(tmp_path / "train", "train", 12, seed=0, size=32, progress=False)
    rescale_split(tmp_path / "train", tmp_path / "train_64px", 64, progress=False)
    base = tmp_path / kind
    if kind == "cutmix":
        build_cutmix_set(tmp_path / "train", base, "all", seed=3, progress=False)
    else:
        build_crop_set(tmp_path / "train", base, seed=3, progress=False)
    record = build_rescaled_set(base, tmp_path / "train_64px", tmp_path / f"{kind}_64px", 64, progress=False)
    small = {s["key"]: s for s in read_jsonl(base / "scenes.jsonl")}
    big = {s["key"]: s for s in read_jsonl(tmp_path / f"{kind}_64px" / "scenes.jsonl")}
    assert set(big) == set(small) and record["written"] == len(small) and record["skipped"] == 0
    sources = {s["key"]: s for s in read_jsonl(tmp_path / "train_64px" / "scenes.jsonl")}
    index = {r["key"]: r for r in read_jsonl(tmp_path / "train_64px" / "index.jsonl")}
    rows = {r["key"]: r for r in read_jsonl(tmp_path / f"{kind}_64px" / "index.jsonl")}
    for key, s in big.items():
        assert s["size"] == 64 and s["parents"] == small[key]["parents"]
        assert s["region"] == [2 * v for v in small[key]["region"]]
        parent = s["parents"][0]
        img = np.asarray(Image.open(tmp_path / "train_64px" / index[parent]["path"]).convert("RGB"))
        if kind == "cutmix":
            partner_key = s["parents"][1]
            partner = np.asarray(Image.open(tmp_path / "train_64px" / index[partner_key]["path"]).convert("RGB"))
            direct, _ = apply_cutmix(img, sources[parent], partner, sources[partner_key], s["pattern"],
                                     np.random.default_rng(0), geo=scaled_geometry(small[key], 64))
        else:
            x, y, x2, _ = s["region"]
            direct, _ = apply_crop(img, sources[parent], (1.0, 1.0), np.random.default_rng(0), window=(x, y, x2 - x))
        made = np.asarray(Image.open(tmp_path / f"{kind}_64px" / rows[key]["path"]).convert("RGB"))
        assert np.array_equal(made, direct)


def test_a_cutmix_placement_scaled_to_any_side_stays_in_the_frame_and_is_exact_at_a_multiple():
    """ImageNet's composites are stored at 256 px: a stage at another side scales their placement, down too (the
    paper smoke's 128 px), with rounding that must not push the pasted square out of the frame."""
    from imagenet_t2i.augment.rescale import scaled_geometry

    rng = np.random.default_rng(0)
    for _ in range(500):
        g = cutmix_geometry("all", 256, rng)
        record = {"size": 256, "pattern": g.pattern, "placed": [g.x, g.y, g.x + g.side, g.y + g.side],
                  "region": list(g.rect)}
        for side in (64, 100, 128, 512):
            h = scaled_geometry(record, side)
            x1, y1, x2, y2 = h.rect
            assert 0 <= h.x and h.x + h.side <= side and 0 <= h.y and h.y + h.side <= side
            assert 0 <= x1 < x2 <= side and 0 <= y1 < y2 <= side
        h = scaled_geometry(record, 512)
        assert (h.side, h.x, h.y, h.rect) == (2 * g.side, 2 * g.x, 2 * g.y, tuple(2 * v for v in g.rect))

"""GenEval perception: the portable backend with tiny random-init Mask2Former and CLIP folders, the official
backend's pure parts (mmdet result parsing, colour crop, driver) with a recorded mmdet result, and the
stand-alone rules of the env-side script."""
from __future__ import annotations

import ast
import json
import os
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imagenet_t2i.evaluation.geneval import official as geneval_official
from imagenet_t2i.evaluation.geneval.official import (COLORS, ColourClassifier, colour_crop, colour_prompts,
                                                      colour_weights, list_samples, mmdet_detections, perceive_folder)
from imagenet_t2i.evaluation.geneval.paper_prompts import geneval_object_names
from imagenet_t2i.evaluation.geneval.portable import (MAX_PER_IMAGE, Mask2FormerDetector, instance_postprocess,
                                                      masks_to_boxes, perceive_portable)
from imagenet_t2i.evaluation.geneval.prompts import iter_samples, prepare_layout
from imagenet_t2i.evaluation.geneval.score import ScoringOptions, score_images, summarize
from imagenet_t2i.evaluation.geneval.tiny_models import save_tiny_clip, save_tiny_mask2former
from imagenet_t2i.io import read_json, read_jsonl
from imagenet_t2i.weights import write_manifest

SMALL = {"shortest_edge": 64, "longest_edge": 128}
NAMES = geneval_object_names()
PROMPTS = [
    {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}], "prompt": "a photo of a red car"},
    {"tag": "single_object", "include": [{"class": "dog", "count": 1}], "prompt": "a photo of a dog"},
    {"tag": "color_attr", "include": [{"class": "cup", "count": 1, "color": "blue"},
                                      {"class": "bench", "count": 1, "color": "white"}],
     "prompt": "a photo of a blue cup and a white bench"},
]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("perception_models")
    save_tiny_mask2former(root / "mask2former")
    save_tiny_clip(root / "clip")
    write_manifest(root / "mask2former")  # as the weights rule leaves it; the CLIP folder has none
    return root / "mask2former", root / "clip"


def layout(root: Path, rows: list[dict], sizes: list[tuple[int, int]], seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for group in prepare_layout(root, rows, n_samples=len(sizes)):
        for path, (h, w) in zip(group, sizes):
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return root


# ---- portable backend, through the real code ----------------------------------------------------------

def test_portable_perception_end_to_end(models, tmp_path):
    root = layout(tmp_path / "images", PROMPTS, [(48, 64), (40, 40)])
    out = tmp_path / "detections.jsonl"
    meta = perceive_portable(root, out, *models, image_size=SMALL, progress=False)
    rows = read_jsonl(out)
    samples = list(iter_samples(root))
    assert [r["image"] for r in rows] == [rel for rel, _ in samples]  # every image, in layout order
    coloured = 0
    for row, (rel, metadata) in zip(rows, samples):
        w, h = Image.open(root / rel).size
        wanted = {req["class"] for req in metadata["include"] if "color" in req}
        assert len(row["detections"]) == MAX_PER_IMAGE  # all (query, class) pairs kept: no threshold
        for d in row["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert d["class"] in NAMES and 0 <= d["score"] <= 1
            assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
            if d["class"] in wanted and d["box"] != [0, 0, 0, 0]:  # non-empty mask of a coloured class
                assert d["color"] == max(COLORS, key=d["color_scores"].get) and list(d["color_scores"]) == list(COLORS)
                coloured += 1
            else:
                assert "color" not in d and "color_scores" not in d
    assert coloured == meta["coloured_detections"] > 0
    manifest = {f["name"]: f["sha256"] for f in read_json(models[0] / "manifest.json")["files"]}
    assert meta["perception"] == "portable" and meta["images"] == 6 and meta["detections"] == 6 * MAX_PER_IMAGE
    assert meta["detector"] == {"path": str(models[0]), "sha256": manifest, "image_size": SMALL,
                                "max_per_image": MAX_PER_IMAGE}
    assert meta["colour_model"] == {"path": str(models[1]), "sha256": None}
    assert meta["colour_templates"] == ["a photo of a {c} {cls}", "a photo of a {c}-colored {cls}",
                                        "a photo of a {c} object"] and meta["colour_background"] == "#999999"
    assert read_json(Path(f"{out}.meta.json")) == meta
    # scoring reads it: official thresholds, and threshold 0 (every coloured detection then needs its colour)
    for options in (ScoringOptions(), ScoringOptions(threshold=0.0, counting_threshold=0.0)):
        results = score_images(root, out, options)
        assert len(results) == 6 and summarize(results, allow_missing_tags=True)["images"] == 6
    again = tmp_path / "again.jsonl"
    perceive_portable(root, again, *models, image_size=SMALL, progress=False)
    assert again.read_bytes() == out.read_bytes()  # deterministic


def test_unreadable_image_is_an_error_naming_it(models, tmp_path):
    root = layout(tmp_path / "images", PROMPTS[:2], [(32, 32)])
    (root / "00001" / "samples" / "0000.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "detections.jsonl"
    with pytest.raises(ValueError, match=r"00001/samples/0000.png is not a readable image"):
        perceive_portable(root, out, *models, image_size=SMALL, progress=False)
    assert not out.exists()


def test_detector_records_its_input_size(models):
    assert Mask2FormerDetector(models[0], NAMES, image_size=None).description == {
        "image_size": {"shortest_edge": 64, "longest_edge": 128}, "max_per_image": MAX_PER_IMAGE}  # the folder's


def test_detector_refuses_labels_out_of_geneval_order(models, tmp_path):
    folder = tmp_path / "shuffled"
    shutil.copytree(models[0], folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"]["1"], config["id2label"]["2"] = config["id2label"]["2"], config["id2label"]["1"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"\(1, 'car', 'bicycle'\), \(2, 'bicycle', 'car'\)"):
        Mask2FormerDetector(folder, NAMES)


def test_coco_spellings_and_class_count():
    coco = [geneval_official.COCO_SPELLINGS.get(n, n) for n in NAMES]
    assert coco[NAMES.index("computer mouse")] == "mouse" and coco[NAMES.index("tv remote")] == "remote"
    assert geneval_official.coco_class_names(coco, NAMES) == NAMES
    assert geneval_official.coco_class_names([n.replace(" ", "_").upper() for n in NAMES], NAMES) == NAMES
    with pytest.raises(ValueError, match="133 classes, GenEval 80"):
        geneval_official.coco_class_names(coco + ["wall"] * 53, NAMES)


def brute_force(class_logits: np.ndarray, mask_logits: np.ndarray, k: int) -> list[tuple]:
    """Sorted (label, score, box) of the top-k (query, class) pairs, by loops over pixels."""
    e = np.exp(class_logits - class_logits.max(1, keepdims=True))
    probs = (e / e.sum(1, keepdims=True))[:, :-1]
    pairs = sorted(((probs[q, c], q, c) for q in range(probs.shape[0]) for c in range(probs.shape[1])), reverse=True)
    out = []
    for p, q, c in pairs[:k]:
        m = mask_logits[q] > 0
        ys, xs = np.nonzero(m)
        box = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (0, 0, 0, 0)
        score = p * (1 / (1 + np.exp(-mask_logits[q][m]))).mean() if len(xs) else 0.0
        out.append((c, round(float(score), 5), tuple(float(v) for v in box)))
    return sorted(out)


def test_instance_postprocess_matches_brute_force():
    rng = np.random.default_rng(0)
    cls = rng.normal(size=(3, 5)).astype(np.float32)  # 3 queries, 4 classes + no-object
    masks = rng.normal(size=(3, 6, 6)).astype(np.float32)
    masks[2] = -1.0  # an empty mask
    labels, boxes, scores, bin_masks = instance_postprocess(torch.tensor(cls), torch.tensor(masks), (6, 6), (6, 6),
                                                            (6, 6), max_per_image=7)
    got = sorted((int(c), round(float(s), 5), tuple(b)) for c, s, b in zip(labels, scores, boxes.tolist()))
    assert got == brute_force(cls, masks, 7) and bin_masks.shape == (7, 6, 6)
    assert any(s == 0.0 and b == (0, 0, 0, 0) for _, s, b in got)
    # padding: the input is 8 x 8 of which the image fills the top-left 4 x 6
    pad = np.full((2, 8, 8), -3.0, dtype=np.float32)
    pad[0, 5:, :] = 3.0  # only in the padding: empty once cut
    pad[1, 0:2, 1:4] = 3.0
    labels, boxes, scores, bin_masks = instance_postprocess(torch.tensor(cls[:2]), torch.tensor(pad), (8, 8), (4, 6),
                                                            (4, 6), max_per_image=8)
    assert bin_masks.shape == (8, 4, 6)
    by_query = {tuple(b): float(s) for b, s in zip(boxes.tolist(), scores)}
    assert set(by_query) == {(0.0, 0.0, 0.0, 0.0), (1.0, 0.0, 4.0, 2.0)} and by_query[(0.0, 0.0, 0.0, 0.0)] == 0.0


def test_masks_to_boxes():
    rng = np.random.default_rng(1)
    masks = rng.random((5, 7, 9)) > 0.85
    masks[3] = False
    want = [(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) if len(xs) else (0, 0, 0, 0)
            for ys, xs in (np.nonzero(m) for m in masks)]
    assert masks_to_boxes(torch.tensor(masks)).tolist() == [list(map(float, b)) for b in want]


# ---- colour step -----------------------------------------------------------------------------------------

def test_colour_crop_pastes_on_grey_and_cuts_to_box():
    img = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    mask = np.zeros((6, 8), dtype=bool)
    mask[1:4, 2:5] = True
    mask[2, 3] = False  # a hole shows the background too
    crop = np.asarray(colour_crop(Image.fromarray(img), [1, 0, 6, 5], mask))
    assert crop.shape == (5, 5, 3)
    inside = mask[0:5, 1:6]
    assert (crop[inside] == img[0:5, 1:6][inside]).all() and (crop[~inside] == 153).all()
    assert np.asarray(colour_crop(Image.fromarray(img), [1.4, 0.6, 5.5, 4.2], None)).shape == (3, 5, 3)  # PIL rounds
    with pytest.raises(ValueError, match="mask shape"):
        colour_crop(Image.fromarray(img), [0, 0, 2, 2], mask.T)


def test_colour_classifier_protocol():
    texts_seen: list[list[str]] = []
    text_features = torch.tensor(np.random.default_rng(2).normal(size=(30, 4)), dtype=torch.float32)

    def embed_texts(texts):
        texts_seen.append(texts)
        return text_features

    batches = []

    def embed_images(crops):
        batches.append(len(crops))
        return torch.tensor([np.asarray(c, dtype=np.float32).mean((0, 1)).tolist() + [1.0] for c in crops])

    clf = ColourClassifier(embed_texts, embed_images, batch_size=2)
    crops = [Image.new("RGB", (3, 3), c) for c in ("red", "blue", "green")]
    scores = clf(crops, "car")
    clf(crops[:1], "car")
    assert texts_seen == [colour_prompts("car")] and batches == [2, 1, 1]  # weights cached per class
    assert colour_prompts("car")[:4] == ["a photo of a red car", "a photo of a red-colored car",
                                         "a photo of a red object", "a photo of a orange car"]
    t = text_features.numpy() / np.linalg.norm(text_features.numpy(), axis=1, keepdims=True)
    w = t.reshape(10, 3, 4).mean(1)
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    np.testing.assert_allclose(colour_weights(text_features).numpy(), w.T, rtol=1e-6)
    x = np.array([[255, 0, 0, 1], [0, 0, 255, 1], [0, 128, 0, 1]], dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.testing.assert_allclose(scores, x @ w.T, rtol=1e-5)


# ---- official backend's pure parts -----------------------------------------------------------------------

def recorded_mmdet_result(h: int, w: int) -> tuple[list[np.ndarray], list[list[np.ndarray]]]:
    """mmdet 2.x Mask2Former output for one image: 80 (n, 5) float32 arrays and 80 lists of (H, W) bool masks."""
    bbox = [np.zeros((0, 5), dtype=np.float32) for _ in NAMES]
    segm: list[list[np.ndarray]] = [[] for _ in NAMES]
    dog = NAMES.index("dog")
    m = np.zeros((h, w), dtype=bool)
    m[2:6, 1:5] = True
    bbox[dog] = np.array([[1, 2, 5, 6, 0.9], [0, 0, 0, 0, 0.0], [1, 2, 5, 6, 0.1]], dtype=np.float32)
    segm[dog] = [m, np.zeros((h, w), dtype=bool), m]
    bbox[0] = np.array([[0, 0, 3, 3, 0.8]], dtype=np.float32)
    segm[0] = [np.ones((h, w), dtype=bool)]
    return bbox, segm


def test_mmdet_result_parsing():
    bbox, segm = recorded_mmdet_result(8, 10)
    dets = mmdet_detections((bbox, segm), NAMES)
    assert [(d["class"], d["box"], d["score"]) for d in dets] == [
        ("person", [0.0, 0.0, 3.0, 3.0], float(np.float32(0.8))), ("dog", [1.0, 2.0, 5.0, 6.0], float(np.float32(0.9))),
        ("dog", [0.0, 0.0, 0.0, 0.0], 0.0), ("dog", [1.0, 2.0, 5.0, 6.0], float(np.float32(0.1)))]
    assert dets[1]["mask"].dtype == bool and (dets[1]["mask"] == segm[16][0]).all()
    assert all(d["mask"] is None for d in mmdet_detections(bbox, NAMES))  # a bbox-only result
    with pytest.raises(ValueError, match="79 classes, expected 80"):
        mmdet_detections((bbox[:-1], segm[:-1]), NAMES)
    with pytest.raises(ValueError, match=r"shape \(1, 4\)"):
        mmdet_detections([b if i else np.zeros((1, 4)) for i, b in enumerate(bbox)], NAMES)
    with pytest.raises(ValueError, match="'dog' has 3 boxes but 2 masks"):
        mmdet_detections((bbox, [s[:2] for s in segm]), NAMES)


def test_official_driver_with_recorded_results(tmp_path):
    rows = [{"tag": "colors", "include": [{"class": "dog", "count": 1, "color": "red"}],
             "prompt": "a photo of a red dog"}]
    root = tmp_path / "images"
    for group in prepare_layout(root, rows, n_samples=2):
        for path, colour in zip(group, ((230, 20, 20), (20, 20, 230))):
            img = np.full((8, 10, 3), 153, dtype=np.uint8)
            img[2:6, 1:5] = colour  # the dog, under its mask
            Image.fromarray(img).save(path)

    def classify(crops, cls):  # stand-in CLIP: red if the crop is redder than blue
        red = [np.asarray(c, dtype=float)[..., 0].mean() > np.asarray(c, dtype=float)[..., 2].mean() for c in crops]
        return np.array([[1.0 if r else 0.0] + [0.0] * 3 + [0.0 if r else 1.0] + [0.0] * 5 for r in red])

    out = tmp_path / "detections.jsonl"
    meta = perceive_folder(root, out, lambda path, image: mmdet_detections(recorded_mmdet_result(8, 10), NAMES),
                           classify, {"perception": "official", "detector": {"checkpoint": "recorded"}}, progress=False)
    got = read_jsonl(out)
    assert [r["image"] for r in got] == ["00000/samples/0000.png", "00000/samples/0001.png"]
    assert [[d.get("color") for d in r["detections"]] for r in got] == [[None, "red", None, "red"],
                                                                        [None, "blue", None, "blue"]]
    assert set(got[0]["detections"][1]) == {"class", "box", "score", "color", "color_scores"}
    assert meta["coloured_detections"] == 4 and meta["detector"] == {"checkpoint": "recorded"}
    results = score_images(root, out)
    assert [(r["correct"], r["reason"]) for r in results] == [
        (True, ""), (False, "expected red dog>=1, found 0 red; and 1 blue")]


def test_layout_walk_matches_iter_samples(tmp_path):
    root = layout(tmp_path / "images", PROMPTS, [(8, 8), (8, 8)])
    (root / "provenance.json").write_text("{}")
    (root / ".done").write_text("")
    assert list_samples(root) == list(iter_samples(root))
    for bad in ("stray", "00000/samples/0000.jpg", "00001/grid.png"):
        target = root / bad
        target.mkdir() if "." not in bad else target.write_bytes(b"x")
        for walk in (list_samples, lambda r: list(iter_samples(r))):
            with pytest.raises(ValueError, match="unexpected"):
                walk(root)
        target.rmdir() if target.is_dir() else target.unlink()


# ---- the env-side script stands alone ------------------------------------------------------------------

ALLOWED_TOP_LEVEL = {"__future__", "argparse", "contextlib", "csv", "hashlib", "json", "os", "re", "sys", "tempfile",
                     "pathlib", "typing", "numpy", "torch", "torch.nn.functional", "PIL", "tqdm"}


def check_stand_alone(path: Path, env_modules: set[str]) -> None:
    """Python 3.8 syntax, stand-alone imports at top level, env-only modules only inside functions, no
    runtime use of 3.9+ typing forms (``list[...]``, ``X | Y``) outside annotations."""
    tree = ast.parse(path.read_text(), feature_version=(3, 8))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert set(mods) <= ALLOWED_TOP_LEVEL, mods
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module]
            assert not any(m.startswith("imagenet_t2i") for m in mods), mods
    inner = {a.name.split(".")[0] if isinstance(n, ast.Import) else n.module.split(".")[0]
             for f in tree.body if isinstance(f, ast.FunctionDef)
             for n in ast.walk(f) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names}
    assert env_modules <= inner
    annotations = {id(a) for n in ast.walk(tree) for a in ast.walk(getattr(n, "annotation", None) or ast.Pass())}
    annotations |= {id(a) for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.returns
                    for a in ast.walk(n.returns)}
    for node in ast.walk(tree):
        if id(node) in annotations:
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            assert node.value.id not in {"list", "dict", "tuple", "set", "type"}, ast.unparse(node)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            assert not any(isinstance(s, ast.Name) and s.id in {"str", "int", "float", "None"}
                           for s in (node.left, node.right)), ast.unparse(node)


def test_official_script_stands_alone():
    check_stand_alone(Path(geneval_official.__file__), {"mmdet", "open_clip"})
    with pytest.raises(SystemExit) as exit_info:
        geneval_official.main(["--help"])
    assert exit_info.value.code == 0


class _StandInOpenClip(types.ModuleType):
    """``open_clip`` as far as the official script uses it (the real package needs torch < 2.2 and cannot be
    installed beside ours): records the loading arguments and, like open_clip 2.20 given a file as ``pretrained``,
    fails on one (it builds the plain-GELU model and ``torch.load``s a TorchScript archive)."""

    def __init__(self) -> None:
        super().__init__("open_clip")
        self.calls: list[dict] = []

    def create_model_and_transforms(self, name: str, pretrained: str, device: str, cache_dir: str | None = None):
        self.calls.append({"name": name, "pretrained": pretrained, "device": device, "cache_dir": cache_dir})
        if os.path.exists(pretrained):
            raise RuntimeError(f"{pretrained} is a TorchScript archive, not a state dict")

        def encode(x: torch.Tensor) -> torch.Tensor:
            return torch.ones(len(x), 4)

        model = types.SimpleNamespace(eval=lambda: None, encode_text=encode, encode_image=encode)
        return model, None, lambda image: torch.zeros(3, 4, 4)

    def get_tokenizer(self, name: str):
        return lambda texts: torch.zeros(len(texts), 77, dtype=torch.long)


def test_official_geneval_loads_clip_as_geneval_does(tmp_path, monkeypatch):
    """`pretrained="openai"` with the downloaded file's folder as open_clip's cache, never the file itself."""
    stand_in = _StandInOpenClip()
    monkeypatch.setitem(sys.modules, "open_clip", stand_in)
    (tmp_path / "ViT-L-14.pt").write_bytes(b"torchscript")
    classify = geneval_official.load_open_clip_classifier("ViT-L-14", "openai", "cpu", amp=False,
                                                           cache_dir=str(tmp_path))
    assert stand_in.calls == [{"name": "ViT-L-14", "pretrained": "openai", "device": "cpu", "cache_dir": str(tmp_path)}]
    assert classify.weights("dog").shape[-1] == len(COLORS)
    with pytest.raises(ValueError, match="is a file; give the tag 'openai'"):
        geneval_official.load_open_clip_classifier("ViT-L-14", str(tmp_path / "ViT-L-14.pt"), "cpu")
    assert len(stand_in.calls) == 1  # refused before open_clip could load it wrongly


def test_official_geneval_finds_the_mmdet_config_in_the_installed_mmdet(tmp_path, monkeypatch):
    package = tmp_path / "mmdetection" / "mmdet"
    package.mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "mmdet", types.SimpleNamespace(__file__=str(package / "__init__.py")))
    with pytest.raises(FileNotFoundError, match="no source tree with configs/"):
        geneval_official.mmdet_config_path()
    config = tmp_path / "mmdetection" / "configs" / "mask2former" / f"{geneval_official.CONFIG_NAME}.py"
    config.parent.mkdir(parents=True)
    config.write_text("model = dict()\n")
    assert geneval_official.mmdet_config_path() == str(config)
    assert geneval_official.mmdet_config_path("other.py") == "other.py"

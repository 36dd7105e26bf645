"""A tiny fake ImageNet in the ILSVRC2012 layout, for offline end-to-end tests of the ImageNet source.

Real wnids and names, JPEGs of varied non-square sizes, a flat val folder with a labels file in one of the
formats `imagenet.read_val_labels` reads, and ImageNet's oddities among the train images: a CMYK JPEG, a
grayscale JPEG, a PNG named .JPEG and a truncated file. Deterministic for a seed; written to a staging
folder that is renamed onto ``root`` (`imagenet_t2i.io.staged_folder`).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from imagenet_t2i.io import staged_folder
from imagenet_t2i.source.imagenet import val_key

# The first classes of ILSVRC2012's LOC_synset_mapping.txt.
SYNSETS = [
    ("n01440764", "tench, Tinca tinca"),
    ("n01443537", "goldfish, Carassius auratus"),
    ("n01484850", "great white shark, white shark, man-eater, man-eating shark, Carcharodon carcharias"),
    ("n01491361", "tiger shark, Galeocerdo cuvieri"),
    ("n01494475", "hammerhead, hammerhead shark"),
    ("n01496331", "electric ray, crampfish, numbfish, torpedo"),
    ("n01498041", "stingray"),
    ("n01514668", "cock"),
    ("n01514859", "hen"),
    ("n01518878", "ostrich, Struthio camelus"),
]
VAL_LABEL_FORMATS = ("loc_csv", "devkit", "wnid_lines", "folders")
ODD_KINDS = ("cmyk", "grayscale", "png_as_jpeg", "truncated")
MARKER = "FAKE_IMAGENET.txt"
DEVKIT_DATA = Path("ILSVRC2012_devkit_t12") / "data"


def _image(rng: np.random.Generator, base: np.ndarray) -> Image.Image:
    """A non-square picture: a class-tinted backdrop with one coloured rectangle or ellipse."""
    w, h = rng.choice(np.arange(60, 121), size=2, replace=False)
    backdrop = np.clip(base + rng.integers(-30, 31, 3), 0, 255).astype(np.uint8)
    img = Image.new("RGB", (int(w), int(h)), tuple(int(c) for c in backdrop))
    x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
    box = (x1, y1, x1 + int(rng.integers(w // 4, w // 2)), y1 + int(rng.integers(h // 4, h // 2)))
    colour = tuple(int(c) for c in rng.integers(0, 256, 3))
    draw = ImageDraw.Draw(img)
    (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour)
    return img


def _encode(img: Image.Image, kind: str | None) -> bytes:
    """JPEG bytes of ``img``, or the bytes of one of ImageNet's odd files."""
    buf = io.BytesIO()
    if kind == "png_as_jpeg":
        img.save(buf, format="PNG")
    else:
        mode = {"cmyk": "CMYK", "grayscale": "L"}.get(kind or "", "RGB")
        img.convert(mode).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    return data[: len(data) // 2] if kind == "truncated" else data


def _write(path: Path, data: bytes | str) -> None:
    """Write into the staging folder (renamed as a whole at the end)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode())


def _meta_mat(wnids: list[str], names: dict[str, str], rng: np.random.Generator) -> tuple[bytes, dict[str, int]]:
    """A devkit-like ``meta.mat`` (leaf synsets with shuffled ILSVRC2012_IDs, plus one inner node) and wnid -> ID."""
    from scipy.io import savemat

    ids = {wnid: int(i) + 1 for wnid, i in zip(wnids, rng.permutation(len(wnids)))}
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    rows = [(np.uint16(ids[w]), w, names[w], np.uint16(0)) for w in wnids]
    rows.append((np.uint16(len(wnids) + 1), "n00001740", "entity", np.uint16(len(wnids))))
    buf = io.BytesIO()
    savemat(buf, {"synsets": np.array(rows, dtype=dtype).reshape(-1, 1)})
    header = b"MATLAB 5.0 MAT-file, written by imagenet_t2i.source.fake_imagenet".ljust(116)  # no creation date
    return header + buf.getvalue()[116:], ids


def _val_labels(tmp: Path, fmt: str, val: dict[str, str], names: dict[str, str], rng: np.random.Generator,
                image_sizes: dict[str, tuple[int, int]]) -> dict[str, Path]:
    """Write val's labels file in ``fmt``; -> {"val_labels": path[, "meta_mat": path]} (relative to the root)."""
    keys = sorted(val)
    if fmt == "loc_csv":
        lines = ["ImageId,PredictionString"]
        for key in (keys[i] for i in rng.permutation(len(keys))):  # Kaggle's rows are not sorted
            w, h = image_sizes[key]
            boxes = []
            for _ in range(int(rng.integers(1, 3))):
                x1, y1 = int(rng.integers(0, w // 2)), int(rng.integers(0, h // 2))
                x2, y2 = x1 + int(rng.integers(5, w // 2)), y1 + int(rng.integers(5, h // 2))
                boxes.append(f"{val[key]} {x1} {y1} {x2} {y2}")
            lines.append(f"{key}," + " ".join(boxes) + " ")
        _write(tmp / "LOC_val_solution.csv", "\n".join(lines) + "\n")
        return {"val_labels": Path("LOC_val_solution.csv")}
    if fmt == "wnid_lines":
        name = Path("imagenet_2012_validation_synset_labels.txt")
        _write(tmp / name, "".join(f"{val[k]}\n" for k in keys))
        return {"val_labels": name}
    mat, ids = _meta_mat(sorted(names), names, rng)
    _write(tmp / DEVKIT_DATA / "meta.mat", mat)
    _write(tmp / DEVKIT_DATA / "ILSVRC2012_validation_ground_truth.txt", "".join(f"{ids[val[k]]}\n" for k in keys))
    return {"val_labels": DEVKIT_DATA / "ILSVRC2012_validation_ground_truth.txt", "meta_mat": DEVKIT_DATA / "meta.mat"}


def write_fake_imagenet(root: str | os.PathLike, classes: int = 3, train_per_class: int = 6, val_per_class: int = 2,
                        seed: int = 0, val_labels: str = "loc_csv") -> dict:
    """Write a fake ILSVRC2012 folder at ``root``; ``val_labels`` = ``loc_csv`` (Kaggle's LOC_val_solution.csv),
    ``devkit`` (ground truth + meta.mat), ``wnid_lines`` (TensorFlow's synset labels) or ``folders`` (val sorted
    into class folders, no labels file).

    Returns the paths written: ``root``, ``synset_mapping``, ``classes`` (wnid -> names), ``train`` and ``val``
    (image paths), ``val_classes`` (val key -> wnid), ``val_labels`` and ``meta_mat`` (None when not written)
    and ``odd`` (kind -> the train file: cmyk, grayscale, png_as_jpeg, truncated)."""
    if not 1 <= classes <= len(SYNSETS):
        raise ValueError(f"classes must be 1..{len(SYNSETS)}, got {classes}")
    if classes * train_per_class < len(ODD_KINDS) or val_per_class < 1:
        raise ValueError(f"need at least {len(ODD_KINDS)} train images (one per odd kind) and one val image per class")
    if val_labels not in VAL_LABEL_FORMATS:
        raise ValueError(f"val_labels must be one of {VAL_LABEL_FORMATS}, got {val_labels!r}")
    root = Path(os.path.abspath(root))
    if root.is_dir() and any(root.iterdir()) and not (root / MARKER).is_file():
        raise FileExistsError(f"{root} exists and is not a fake ImageNet (no {MARKER}); choose an empty folder")
    rng = np.random.default_rng(seed)
    names = dict(SYNSETS[:classes])
    bases = {wnid: rng.integers(40, 216, 3) for wnid in names}
    with staged_folder(root) as tmp:
        tmp.chmod(0o755)  # mkdtemp makes it private
        _write(tmp / MARKER, "A fake ImageNet written by imagenet_t2i.source.fake_imagenet for offline tests; not ImageNet.\n")
        _write(tmp / "LOC_synset_mapping.txt", "".join(f"{w} {n}\n" for w, n in names.items()))
        train = [Path("train") / w / f"{w}_{n}.JPEG" for w in names for n in range(1, train_per_class + 1)]
        odd = dict(zip(ODD_KINDS, (train[i] for i in rng.choice(len(train), len(ODD_KINDS), replace=False))))
        kind_of = {path: kind for kind, path in odd.items()}
        for path in train:
            _write(tmp / path, _encode(_image(rng, bases[path.parent.name]), kind_of.get(path)))

        val_wnids = [w for w in names for _ in range(val_per_class)]
        val_classes = {val_key(i): val_wnids[j] for i, j in enumerate(rng.permutation(len(val_wnids)), 1)}
        sizes, val = {}, []
        for key, wnid in val_classes.items():
            img = _image(rng, bases[wnid])
            sizes[key] = img.size
            val.append(Path("val") / (wnid if val_labels == "folders" else "") / f"{key}.JPEG")
            _write(tmp / val[-1], _encode(img, None))
        labels = {} if val_labels == "folders" else _val_labels(tmp, val_labels, val_classes, names, rng, sizes)
    return {"root": root, "synset_mapping": root / "LOC_synset_mapping.txt", "classes": names,
            "train": [root / p for p in train], "val": [root / p for p in val], "val_classes": val_classes,
            "val_labels": root / labels["val_labels"] if "val_labels" in labels else None,
            "meta_mat": root / labels["meta_mat"] if "meta_mat" in labels else None,
            "odd": {kind: root / p for kind, p in odd.items()}}

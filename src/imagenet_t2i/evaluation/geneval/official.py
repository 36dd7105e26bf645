"""GenEval perception: the driver both backends share, and the official backend's script.

The official backend (Mask2Former Swin-S through mmdet 2.x, open_clip ViT-L-14 ``openai``) runs INSIDE
GenEval's own environment (``envs/geneval.yaml``: Python 3.9, mmcv-full 1.7, mmdet 2.27), where this
package cannot be installed (it needs Python 3.11). So this file stands alone: the standard library,
numpy, PIL, torch and tqdm at top level, mmdet / mmcv / open_clip only inside the two ``load_*``
functions, Python 3.8 syntax (a test parses it so), nothing imported from ``imagenet_t2i``. The main
environment imports its pure parts; ``geneval_portable`` runs the same driver with transformers models.

UNTESTED HERE: the mmdet and open_clip calls (``load_mmdet_detector``, ``load_open_clip_classifier``,
``main``) have never run; the machines this project is developed on have no CUDA and no conda
channel. Tested offline: the layout walk, the parsing of mmdet's per-class result structure, the
colour crop and colour math, and the driver with stand-in models.

Run inside the GenEval environment, from the repository root:
    python src/imagenet_t2i/evaluation/geneval/official.py --images ROOT --out DETECTIONS.jsonl \
        --checkpoint mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth \
        --clip-cache-dir DIR_HOLDING_ViT-L-14.pt

Models are loaded as GenEval's ``evaluate_images.py`` loads them: the mmdet config from the installed mmdet's
source tree (``<mmdet>/../configs/mask2former/...``, unless ``--config`` names one) and CLIP as
``open_clip.create_model_and_transforms("ViT-L-14", pretrained="openai")``, which builds the QuickGELU model and
reads OpenAI's TorchScript file ``ViT-L-14.pt`` from ``--clip-cache-dir`` (open_clip checks its sha256 against
the URL's), downloading it there only when it is absent.

Output (eval-spec "Our file formats"): one line per image of the layout, in sorted order,
``{"image", "detections": [{"class", "box": [x1, y1, x2, y2], "score", "color"?, "color_scores"?}]}``
with every raw detection (mmdet keeps the top 100 (query, class) pairs; no threshold), plus
``<out>.meta.json`` saying which perception, models and weights hashes produced it.

Colour policy: the colour classifier runs on every detection, whatever its score, of each class the
image's prompt asks a colour of (``colors`` and ``color_attr`` prompts), so a rescore with any
threshold finds the colour of whichever detections it keeps; detections with an empty mask are
skipped (their score is exactly 0, so no threshold keeps them). The official evaluator classifies
only the kept ones; each crop is classified alone, so the labels agree.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from tqdm import tqdm

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
COLOUR_TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")
BACKGROUND = "#999999"  # the official ``bgcolor`` "#999"
COLOUR_POLICY = "every detection with a non-empty mask of each class the prompt asks a colour of"
CONFIG_NAME = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco"
CHECKPOINT_NAME = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth"
MMDET3_CHECKPOINT_TAG = "c9d0c4f2"  # the mmdet 3.x file GenEval's download script fetched before 2024-07: wrong keys
OBJECT_NAMES = Path(__file__).resolve().parent / "data" / "object_names.txt"
# GenEval names that COCO (and so every COCO-trained detector's label list) spells differently.
COCO_SPELLINGS = {"computer mouse": "mouse", "tv remote": "remote", "computer keyboard": "keyboard"}
PROVENANCE_NAME = "provenance.json"  # the image root's own provenance record (not a prompt folder)
_SAMPLE_NAME = re.compile(r"\d+\.png")

Detection = Dict[str, Any]  # {"class", "box", "score", "mask": (H, W) bool array or None}
DetectFn = Callable[[Path, Image.Image], List[Detection]]
ClassifyFn = Callable[[List[Image.Image], str], np.ndarray]  # crops, class -> (N, len(COLORS)) cosines


# ---------------------------------------------------------------- files

def read_names(path: str | os.PathLike = OBJECT_NAMES) -> List[str]:
    """One class name per line, in detector index order."""
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def list_samples(root: str | os.PathLike) -> List[Tuple[str, dict]]:
    """``(relative image path, prompt metadata)`` in sorted order over ``<root>/<00000>/samples/<0000>.png``.

    Strict like ``prompts.iter_samples`` (the official evaluator silently skips strays): any
    other entry is an error, except hidden files and the root's provenance record."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"GenEval image root {root} is not a folder")
    out = []
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or folder.name == PROVENANCE_NAME:
            continue
        if not (folder.is_dir() and folder.name.isdigit()):
            raise ValueError(f"unexpected entry {folder} in GenEval image root {root}: only prompt folders "
                             "named by digits (00000, 00001, ...) belong there")
        extra = sorted(p.name for p in folder.iterdir() if p.name not in ("metadata.jsonl", "samples"))
        if extra:
            raise ValueError(f"unexpected entries {extra} in {folder}: only metadata.jsonl and samples/ belong there")
        if not (folder / "metadata.jsonl").is_file() or not (folder / "samples").is_dir():
            raise FileNotFoundError(f"{folder} lacks metadata.jsonl or samples/: regenerate this prompt folder")
        with open(folder / "metadata.jsonl") as f:
            metadata = json.load(f)
        for image in sorted((folder / "samples").iterdir()):
            if not (image.is_file() and _SAMPLE_NAME.fullmatch(image.name)):
                raise ValueError(f"unexpected entry {image}: samples/ holds only PNG files named by digits")
            out.append((f"{folder.name}/samples/{image.name}", metadata))
    return out


def read_image(path: str | os.PathLike) -> Image.Image:
    """The image as the official colour step sees it (EXIF orientation applied, RGB); unreadable -> error."""
    try:
        with Image.open(path) as im:
            return ImageOps.exif_transpose(im).convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{path} is not a readable image ({err}); regenerate this sample") from None


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike) -> Iterator[Any]:
    """A text file that appears at ``path`` only when the block succeeds (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "w") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def meta_path_for(out_path: str | os.PathLike) -> Path:
    """Where the perception record of a detections file goes: ``<out>.meta.json``."""
    return Path(str(out_path) + ".meta.json")


# ---------------------------------------------------------------- detections

def coco_class_names(labels: Sequence[str], names: Sequence[str]) -> List[str]:
    """Detector label i -> GenEval name i, after checking label i IS name i (or COCO's spelling of it)."""
    if len(labels) != len(names):
        raise ValueError(f"the detector has {len(labels)} classes, GenEval {len(names)}: use a COCO instance "
                         "segmentation checkpoint (80 classes), not a panoptic or other one")
    bad = [(i, label, name) for i, (label, name) in enumerate(zip(labels, names))
           if label.strip().lower().replace("_", " ") not in (name, COCO_SPELLINGS.get(name))]
    if bad:
        raise ValueError(f"detector labels do not match GenEval's object_names.txt in index order: "
                         f"(index, detector label, GenEval name) {bad[:5]} ({len(bad)} mismatches)")
    return list(names)


def mmdet_detections(result: Any, names: Sequence[str]) -> List[Detection]:
    """mmdet 2.x ``inference_detector`` output -> detections, class by class in index order.

    ``result`` is ``(bbox_results, segm_results)`` or ``bbox_results`` alone: ``bbox_results[i]`` an
    (n_i, 5) array of [x1, y1, x2, y2, score] for class i, ``segm_results[i]`` its n_i (H, W) masks."""
    if isinstance(result, tuple):
        bbox_results, segm_results = result[0], (result[1] if len(result) > 1 else None)
    else:
        bbox_results, segm_results = result, None
    if len(bbox_results) != len(names) or (segm_results is not None and len(segm_results) != len(names)):
        raise ValueError(f"mmdet result has {len(bbox_results)} classes, expected {len(names)} (object_names.txt)")
    dets = []
    for index, name in enumerate(names):
        boxes = np.asarray(bbox_results[index], dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 5)
        if boxes.ndim != 2 or boxes.shape[1] != 5:
            raise ValueError(f"mmdet result: class {name!r} boxes have shape {boxes.shape}, expected (n, 5)")
        masks = None if segm_results is None else segm_results[index]
        if masks is not None and len(masks) != len(boxes):
            raise ValueError(f"mmdet result: class {name!r} has {len(boxes)} boxes but {len(masks)} masks")
        for j, row in enumerate(boxes):
            dets.append({"class": name, "box": [float(v) for v in row[:4]], "score": float(row[4]),
                         "mask": None if masks is None else np.asarray(masks[j], dtype=bool)})
    return dets


# ---------------------------------------------------------------- colour

def colour_classes(metadata: dict) -> List[str]:
    """Classes the prompt asks a colour of, in include order."""
    out: List[str] = []
    for req in metadata.get("include", []):
        if "color" in req and req["class"] not in out:
            out.append(req["class"])
    return out


def colour_crop(image: Image.Image, box: Sequence[float], mask: Optional[np.ndarray],
                background: str = BACKGROUND) -> Image.Image:
    """The official crop: the object pasted by its mask onto a flat background, cut to its box."""
    if mask is not None:
        if tuple(mask.shape) != (image.height, image.width):
            raise ValueError(f"mask shape {tuple(mask.shape)} != image (H, W) {(image.height, image.width)}")
        blank = Image.new("RGB", image.size, background)
        image = Image.composite(image, blank, Image.fromarray(np.asarray(mask, dtype=bool)))
    return image.crop(tuple(box[:4]))


def colour_prompts(cls: str) -> List[str]:
    """The 10 x 3 zero-shot texts for ``cls``, colour-major (all templates of red, then orange, ...)."""
    return [t.format(c=c, cls=cls) for c in COLORS for t in COLOUR_TEMPLATES]


def colour_weights(text_features: torch.Tensor) -> torch.Tensor:
    """(10 * 3, D) text features, colour-major -> (D, 10): each normalised, averaged per colour, renormalised."""
    f = F.normalize(text_features.float(), dim=-1).reshape(len(COLORS), len(COLOUR_TEMPLATES), -1)
    return F.normalize(f.mean(dim=1), dim=-1).T


class ColourClassifier:
    """Zero-shot CLIP colour classifier over ``COLORS``: crops -> (N, 10) cosine similarities.

    ``embed_texts`` (list of str -> (T, D)) and ``embed_images`` (list of crops -> (N, D)) wrap a CLIP
    model; they run without gradients and, on CUDA with ``amp``, under fp16 autocast like the official
    clip_benchmark calls. Text weights are cached per class."""

    def __init__(self, embed_texts: Callable[[List[str]], torch.Tensor],
                 embed_images: Callable[[List[Image.Image]], torch.Tensor], device: str = "cpu",
                 amp: bool = True, batch_size: int = 16) -> None:
        self.embed_texts, self.embed_images, self.batch_size = embed_texts, embed_images, batch_size
        fp16 = amp and str(device).startswith("cuda")
        self._autocast = (lambda: torch.autocast("cuda", dtype=torch.float16)) if fp16 else contextlib.nullcontext
        self._weights: Dict[str, torch.Tensor] = {}

    def weights(self, cls: str) -> torch.Tensor:
        """(D, 10) colour weights of ``cls``."""
        if cls not in self._weights:
            with torch.no_grad(), self._autocast():
                feats = self.embed_texts(colour_prompts(cls))  # (30, D)
            self._weights[cls] = colour_weights(feats)
        return self._weights[cls]

    def __call__(self, crops: List[Image.Image], cls: str) -> np.ndarray:
        weights = self.weights(cls)
        feats = []
        for start in range(0, len(crops), self.batch_size):
            with torch.no_grad(), self._autocast():
                feats.append(self.embed_images(crops[start:start + self.batch_size]).float())  # (B, D)
        if not feats:
            return np.zeros((0, len(COLORS)))
        image = F.normalize(torch.cat(feats), dim=-1)  # (N, D)
        return (image @ weights.to(image.device)).cpu().numpy()  # (N, 10)


# ---------------------------------------------------------------- driver

def perceive_folder(root: str | os.PathLike, out_path: str | os.PathLike, detect: DetectFn, classify: ClassifyFn,
                    description: dict, meta_path: Optional[str | os.PathLike] = None,
                    progress: bool = True) -> dict:
    """Detect and colour-classify every image of a GenEval layout; write the detections JSONL and the
    meta record (``description`` plus counts and the colour protocol), both atomically; return the meta.

    An unreadable image is an error naming it: no image is ever skipped."""
    samples = list_samples(root)
    if not samples:
        raise ValueError(f"no images under {root}: generate samples first")
    n_dets = n_coloured = 0
    with atomic_open(out_path) as f:
        for rel, metadata in tqdm(samples, desc="geneval perception", disable=not progress):
            image = read_image(Path(root) / rel)
            dets = detect(Path(root) / rel, image)
            for cls in colour_classes(metadata):
                todo = [d for d in dets if d["class"] == cls and d.get("mask") is not None and d["mask"].any()]
                crops = [colour_crop(image, d["box"], d["mask"]) for d in todo]
                scores = classify(crops, cls) if crops else np.zeros((0, len(COLORS)))
                for d, s in zip(todo, scores):
                    d["color"] = COLORS[int(np.argmax(s))]
                    d["color_scores"] = {c: round(float(v), 6) for c, v in zip(COLORS, s)}
                n_coloured += len(todo)
            rows = [{k: v for k, v in d.items() if k != "mask"} for d in dets]
            n_dets += len(rows)
            f.write(json.dumps({"image": rel, "detections": rows}) + "\n")
    meta = {**description, "images": len(samples), "detections": n_dets, "coloured_detections": n_coloured,
            "colour_policy": COLOUR_POLICY, "colour_background": BACKGROUND,
            "colour_templates": list(COLOUR_TEMPLATES), "colors": list(COLORS)}
    with atomic_open(meta_path or meta_path_for(out_path)) as f:
        json.dump(meta, f, indent=2, sort_keys=True)
        f.write("\n")
    return meta


# ---------------------------------------------------------------- official models (GenEval environment only)

def mmdet_config_path(config: Optional[str] = None) -> str:
    """``config``, or GenEval's choice: the Mask2Former config of the installed mmdet's source tree."""
    if config:
        return config
    import mmdet

    path = Path(mmdet.__file__).resolve().parent.parent / "configs" / "mask2former" / f"{CONFIG_NAME}.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the installed mmdet has no source tree with configs/ (install mmdet 2.27 "
                                "from its git clone, as envs/geneval.post-deploy.sh does), or pass --config")
    return str(path)


def load_mmdet_detector(config: str, checkpoint: str, names: Sequence[str], device: str) -> DetectFn:
    """Mask2Former through mmdet 2.x ``init_detector`` / ``inference_detector`` (which reads the file itself)."""
    from mmdet.apis import inference_detector, init_detector

    if MMDET3_CHECKPOINT_TAG in Path(checkpoint).name:
        raise ValueError(f"{checkpoint} is the mmdet 3.x checkpoint GenEval's download script fetched until 2024-07; "
                         f"mmdet 2.x loads it with missing keys (geneval issue #8). Use {CHECKPOINT_NAME}")
    model = init_detector(config, checkpoint, device=device)
    coco_class_names(list(model.CLASSES), names)

    def detect(path: Path, image: Image.Image) -> List[Detection]:
        return mmdet_detections(inference_detector(model, str(path)), names)

    return detect


def load_open_clip_classifier(model_name: str, pretrained: str, device: str, amp: bool = True, batch_size: int = 16,
                              cache_dir: Optional[str] = None) -> ColourClassifier:
    """open_clip ``model_name`` with the ``pretrained`` tag ("openai", as GenEval), its file found in (or downloaded
    to) ``cache_dir``. A file path as ``pretrained`` is refused: open_clip 2.20 would build ``CLIP(**ViT-L-14.json)``
    with plain GELU instead of OpenAI's QuickGELU and ``torch.load`` the TorchScript archive, which fails (and a
    converted state dict would load silently into the wrong activation: wrong colour labels)."""
    if os.path.sep in pretrained or os.path.isfile(pretrained) or pretrained.endswith((".pt", ".pth", ".bin")):
        raise ValueError(f"--clip-pretrained {pretrained!r} is a file; give the tag 'openai' and the file's folder as "
                         "--clip-cache-dir (open_clip then loads it as OpenAI's model, QuickGELU, checking its sha256)")
    import open_clip

    model, _, transform = open_clip.create_model_and_transforms(model_name, pretrained=pretrained, device=device,
                                                                cache_dir=cache_dir)
    model.eval()
    tokenizer = open_clip.get_tokenizer(model_name)
    return ColourClassifier(lambda texts: model.encode_text(tokenizer(texts).to(device)),
                            lambda crops: model.encode_image(torch.stack([transform(c) for c in crops]).to(device)),
                            device=device, amp=amp, batch_size=batch_size)


def _versions() -> dict:
    out = {"python": sys.version.split()[0], "torch": torch.__version__}
    for name in ("mmdet", "mmcv", "open_clip"):
        with contextlib.suppress(ImportError):
            out[name] = __import__(name).__version__
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="GenEval perception with the official models (GenEval environment).")
    parser.add_argument("--images", required=True, help="GenEval image root (<root>/<00000>/samples/<0000>.png)")
    parser.add_argument("--out", required=True, help="detections JSONL to write")
    parser.add_argument("--config",
                        help=f"mmdet 2.x config {CONFIG_NAME}.py (default: the installed mmdet's, as GenEval)")
    parser.add_argument("--checkpoint", required=True, help=CHECKPOINT_NAME)
    parser.add_argument("--clip-model", default="ViT-L-14")
    parser.add_argument("--clip-pretrained", default="openai", help="open_clip pretrained tag (GenEval: openai)")
    parser.add_argument("--clip-cache-dir", help="folder holding the tag's file (ViT-L-14.pt); default open_clip's")
    parser.add_argument("--object-names", default=str(OBJECT_NAMES))
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--meta", default=None, help="meta record path (default <out>.meta.json)")
    args = parser.parse_args(argv)
    names = read_names(args.object_names)
    config = mmdet_config_path(args.config)
    detect = load_mmdet_detector(config, args.checkpoint, names, args.device)
    classify = load_open_clip_classifier(args.clip_model, args.clip_pretrained, args.device, batch_size=args.batch_size,
                                         cache_dir=args.clip_cache_dir)
    clip_file = Path(args.clip_cache_dir or "", f"{args.clip_model}.pt")
    clip_sha256 = sha256_file(clip_file) if args.clip_cache_dir and clip_file.is_file() else None
    description = {
        "perception": "official",
        "detector": {"config": config, "config_sha256": sha256_file(config),
                     "checkpoint": args.checkpoint, "checkpoint_sha256": sha256_file(args.checkpoint)},
        "colour_model": {"open_clip_model": args.clip_model, "pretrained": args.clip_pretrained,
                         "cache_dir": args.clip_cache_dir,
                         "file_sha256": clip_sha256},
        "object_names_sha256": sha256_file(args.object_names), "versions": _versions(),
    }
    meta = perceive_folder(args.images, args.out, detect, classify, description, args.meta)
    print(f"{meta['images']} images, {meta['detections']} detections -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

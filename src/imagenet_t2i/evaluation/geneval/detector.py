"""Shapes detector for the tiny world: the GenEval perception backend that reads PIXELS only.

1. Colour segmentation. Every pixel is explained as a blend alpha * colour + (1 - alpha) * backdrop
   of one of the ten palette colours and one of the world's backgrounds present in the image.
   Explaining anti-aliased edges as blends keeps, e.g., red-on-light-gray fringes from reading as
   pink; a blend must beat the plain backdrop by a margin, so gradients and noise stay background.
2. Connected components (8-connectivity) of pixels with alpha >= 0.5, per colour; tiny ones and
   ones spanning the whole image (a coloured backdrop, not an object) are dropped.
3. Shape classification by soft template matching: each class is drawn (anti-aliased) into
   candidate squares around the component and compared with its soft coverage by IoU. Pixels
   that cannot show the object - outside the image, covered by another colour, or on another
   backdrop (across a CutMix seam) - are left out of the IoU (amodal completion).

score = shape (template IoU) x size (pixel count) x colour (mean residual) x visibility (share of
the fitted template inside the image) confidences, in (0, 1]. Output rows follow eval-spec "Our
file formats" (GenEval detections): all raw detections, no score threshold; boxes are the visible
pixel extent [x1, y1, x2, y2] (x2/y2 exclusive).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

from imagenet_t2i.evaluation.geneval.prompts import iter_samples
from imagenet_t2i.io import write_jsonl
from imagenet_t2i.world.palette import BACKGROUNDS, COLORS
from imagenet_t2i.world.shapes import SHAPES, coverage_window

MIN_ALPHA = 0.5  # blend weight of the palette colour that makes a pixel part of an object
MAX_RESIDUAL = 40.0  # RGB distance from the best blend beyond which a pixel is unexplained
CLEAN_RESIDUAL = 12.0  # mean residual at or below which colour confidence is 1
BACKGROUND_RESIDUAL = 30.0  # a pixel this close to a world background counts towards it
BACKGROUND_SHARE = 0.03  # share of pixels that makes a world background "present" in an image
BACKGROUND_MARGIN = 20.0  # a blend must beat the plain backdrop by this much (gradient + noise)
SQUARE_TOLERANCE = 0.08  # pixel boxes whose sides differ by less (relative) are taken as unclipped
MIN_PIXELS = 3  # smaller components are not candidates
FULL_SIZE_PIXELS = 20  # components with at least this many pixels get size confidence 1
IOU_FLOOR, IOU_FULL = 0.45, 0.82  # template IoU mapped linearly onto shape confidence [0, 1]
VISIBLE_FLOOR, VISIBLE_FULL = 0.25, 0.55  # visible template share mapped onto visibility confidence
MIN_SCORE = 0.01  # candidates scoring lower are not reported

_PALETTE = np.array(list(COLORS.values()), dtype=np.float32)  # (C, 3)
_BACKS = np.array(list(BACKGROUNDS.values()), dtype=np.float32)  # (B, 3)
_COLOR_NAMES = list(COLORS)
_EIGHT = np.ones((3, 3), dtype=bool)


@dataclass
class Segmentation:
    """Per-pixel maps, each (H, W): palette index of the best blend (-1 = unexplained), its alpha
    (0 where unexplained), its residual, and the nearest present backdrop's index."""

    label: np.ndarray
    soft: np.ndarray
    resid: np.ndarray
    backdrop: np.ndarray


def present_backgrounds(img: np.ndarray) -> np.ndarray:
    """Indices of the world backgrounds that explain at least ``BACKGROUND_SHARE`` of the pixels
    (all of them when none does, e.g. for an image with an unfamiliar backdrop)."""
    x = img.reshape(-1, 3).astype(np.float32)  # (P, 3)
    dist = np.linalg.norm(x[:, None, :] - _BACKS[None], axis=-1)  # (P, B)
    near = dist.argmin(1)[dist.min(1) <= BACKGROUND_RESIDUAL]
    share = np.bincount(near, minlength=len(_BACKS)) / len(x)
    present = np.nonzero(share >= BACKGROUND_SHARE)[0]
    return present if len(present) else np.arange(len(_BACKS))


def segment_colors(img: np.ndarray) -> Segmentation:
    """Explain each pixel by the best blend of a palette colour and a present backdrop.

    A pixel is explained when that blend's residual is <= MAX_RESIDUAL and it beats the plain
    backdrop by BACKGROUND_MARGIN; its soft coverage is then the blend's alpha.
    """
    present = present_backgrounds(img)
    backs = _BACKS[present]  # (B, 3)
    h, w = img.shape[:2]
    x = img.reshape(-1, 3).astype(np.float32)  # (P, 3)
    d = _PALETTE[:, None, :] - backs[None, :, :]  # (C, B, 3) segment directions
    rel = x[:, None, None, :] - backs[None, None, :, :]  # (P, 1, B, 3)
    alpha = np.clip((rel * d[None]).sum(-1) / (d * d).sum(-1)[None], 0.0, 1.0)  # (P, C, B)
    resid = np.linalg.norm(rel - alpha[..., None] * d[None], axis=-1).reshape(len(x), -1)  # (P, C*B)
    best = resid.argmin(1)
    c, b = np.unravel_index(best, alpha.shape[1:])
    a = alpha[np.arange(len(x)), c, b]
    r = resid[np.arange(len(x)), best]
    back_dist = np.linalg.norm(rel[:, 0], axis=-1)  # (P, B)
    explained = (r <= MAX_RESIDUAL) & (r + BACKGROUND_MARGIN < back_dist.min(1))
    return Segmentation(
        label=np.where(explained, c, -1).reshape(h, w),
        soft=np.where(explained, a, 0.0).astype(np.float32).reshape(h, w),
        resid=r.reshape(h, w),
        backdrop=present[back_dist.argmin(1)].reshape(h, w),
    )


def _candidate_boxes(x1: int, y1: int, x2: int, y2: int) -> list[tuple[float, float, float, float]]:
    """Square boxes a shape may fill, given its hard pixel box (x2/y2 exclusive).

    A (nearly) square pixel box gives centred squares grown or shrunk by half a pixel (edge pixels
    are at least half covered); an elongated one was clipped (image border, CutMix seam), so the
    square of its long side is anchored at either end of its short side.
    """
    w, h = x2 - x1, y2 - y1
    side = max(w, h)
    if abs(w - h) <= max(1.0, SQUARE_TOLERANCE * side):
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        return [(cx - r, cy - r, cx + r, cy + r) for r in (side / 2 - 0.5, side / 2, side / 2 + 0.5) if r >= 0.5]
    if w < h:
        boxes = [(x2 - side, y1, x2, y2), (x1, y1, x1 + side, y2)]
    else:
        boxes = [(x1, y2 - side, x2, y2), (x1, y1, x2, y1 + side)]
    return [tuple(float(c) for c in b) for b in boxes]


def _template(cls: str, box: Sequence[float], canvas: tuple[int, int, int, int]) -> np.ndarray:
    """Coverage of ``cls`` in ``box`` over the pixel rectangle ``canvas`` = (x1, y1, x2, y2)."""
    cx1, cy1, cx2, cy2 = canvas
    shifted = (box[0] - cx1, box[1] - cy1, box[2] - cx1, box[3] - cy1)
    out = np.zeros((cy2 - cy1, cx2 - cx1), dtype=np.float32)
    x0, y0, cov = coverage_window(cls, shifted, cy2 - cy1, cx2 - cx1)
    out[y0 : y0 + cov.shape[0], x0 : x0 + cov.shape[1]] = cov
    return out


def classify_shape(
    soft: np.ndarray, valid: np.ndarray, box: Sequence[int], frame: tuple[int, int, int, int] | None = None
) -> tuple[str, float, float]:
    """Best class, its soft IoU and the visible share of its template, for one component.

    ``soft`` (h, w) is the component's soft coverage in a window (zero elsewhere), ``valid`` (h, w)
    marks the pixels that could show it, ``box`` is its hard pixel box in window coordinates and
    ``frame`` the image's extent in them (default: the window is the image). Template parts
    outside the image count as hidden.
    """
    h, w = soft.shape
    fx1, fy1, fx2, fy2 = frame or (0, 0, w, h)
    best = ("", -1.0, 0.0)
    for cand in _candidate_boxes(*box):
        full = (int(np.floor(cand[0])), int(np.floor(cand[1])), int(np.ceil(cand[2])), int(np.ceil(cand[3])))
        inside = (max(full[0], fx1, 0), max(full[1], fy1, 0), min(full[2], fx2, w), min(full[3], fy2, h))
        win = (slice(inside[1], inside[3]), slice(inside[0], inside[2]))
        s, v = soft[win], valid[win]
        crop = (slice(inside[1] - full[1], inside[3] - full[1]), slice(inside[0] - full[0], inside[2] - full[0]))
        for cls in SHAPES:
            template = _template(cls, cand, full)  # (h, w) over the candidate's whole pixel box
            total = template.sum()
            t = template[crop]  # (h', w'): its visible part
            iou = float((np.minimum(t, s) * v).sum() / max((np.maximum(t, s) * v).sum(), 1e-6))
            if iou > best[1]:
                best = (cls, iou, float((t * v).sum() / max(total, 1e-6)))
    return best


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


def detect(img: np.ndarray) -> list[dict]:
    """Detections ``{"class", "box", "score", "color"}`` in an (H, W, 3) uint8 image, best first."""
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"detect expects an (H, W, 3) RGB image, got shape {img.shape}")
    height, width = img.shape[:2]
    seg = segment_colors(img)
    dets = []
    for ci, color in enumerate(_COLOR_NAMES):
        soft_c = np.where(seg.label == ci, seg.soft, 0.0).astype(np.float32)  # (H, W)
        comps, _ = ndimage.label(soft_c >= MIN_ALPHA, structure=_EIGHT)
        for k, sl in enumerate(ndimage.find_objects(comps), 1):
            y1, y2, x1, x2 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
            npix = int((comps[sl] == k).sum())
            if npix < MIN_PIXELS or (x1 == 0 and y1 == 0 and x2 == width and y2 == height):
                continue
            # work in a window that holds every candidate square (the component grown by its side)
            m = max(x2 - x1, y2 - y1) + 1
            wx1, wy1, wx2, wy2 = max(x1 - m, 0), max(y1 - m, 0), min(x2 + m, width), min(y2 + m, height)
            win = (slice(wy1, wy2), slice(wx1, wx2))
            comp, label, backdrop = comps[win], seg.label[win], seg.backdrop[win]
            mask = comp == k  # (h, w)
            ring = ndimage.binary_dilation(mask, _EIGHT) & (label == -1)
            own_back = np.bincount(backdrop[ring]).argmax() if ring.any() else -1
            # pixels that could show this object: its colour, or unexplained on its own backdrop
            valid = ((label == ci) & ((comp == k) | (comp == 0))) | (
                (label == -1) & ((backdrop == own_back) | (own_back == -1)))
            cls, iou, visible = classify_shape(
                np.where(valid, soft_c[win], 0.0), valid, (x1 - wx1, y1 - wy1, x2 - wx1, y2 - wy1),
                frame=(-wx1, -wy1, width - wx1, height - wy1))
            mean_resid = float(seg.resid[win][mask].mean())
            score = (_ramp(iou, IOU_FLOOR, IOU_FULL) * min(1.0, npix / FULL_SIZE_PIXELS)
                     * _ramp(-mean_resid, -MAX_RESIDUAL, -CLEAN_RESIDUAL) * _ramp(visible, VISIBLE_FLOOR, VISIBLE_FULL))
            if score >= MIN_SCORE:
                dets.append({"class": cls, "box": [float(x1), float(y1), float(x2), float(y2)],
                             "score": round(score, 4), "color": color})
    return sorted(dets, key=lambda d: -d["score"])


def detect_folder(root: str | os.PathLike, out_path: str | os.PathLike, progress: bool = True) -> int:
    """Run ``detect`` on every sample of a GenEval-layout folder (``<root>/<00000>/samples/<0000>.png``)
    and write the detections JSONL (one line per image, sorted); returns the number of images."""
    samples = [rel for rel, _ in iter_samples(root)]
    if not samples:
        raise ValueError(f"no images under {root}: generate samples first")
    rows = []
    for rel in tqdm(samples, desc="detect", disable=not progress):
        path = Path(root) / rel
        try:
            with Image.open(path) as im:
                img = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise ValueError(f"{path} is not a readable image ({e}); regenerate this sample") from None
        rows.append({"image": rel, "detections": detect(img)})
    write_jsonl(out_path, rows)
    return len(rows)


def match_detections(
    detections: Sequence[dict], objects: Sequence[dict], threshold: float = 0.3, min_iou: float = 0.5
) -> tuple[int, int, int]:
    """(true positives, kept detections, ground-truth objects): a detection with score > threshold
    is a true positive when it matches a still-unmatched object of the same class and colour with
    box IoU >= ``min_iou`` (greedy, best score first)."""
    kept = [d for d in sorted(detections, key=lambda d: -d["score"]) if d["score"] > threshold]
    free = list(objects)
    tp = 0
    for d in kept:
        for o in free:
            if o["class"] == d["class"] and o["color"] == d["color"] and _iou(o["box"], d["box"]) >= min_iou:
                free.remove(o)
                tp += 1
                break
    return tp, len(kept), len(objects)


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    iw = max(min(a[2], b[2]) - max(a[0], b[0]), 0.0)
    ih = max(min(a[3], b[3]) - max(a[1], b[1]), 0.0)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0

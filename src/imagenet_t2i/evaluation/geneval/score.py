"""GenEval scoring: the official rules (djghosh13/geneval ``evaluation/evaluate_images.py``, MIT)
as pure functions over the detections file, so a rescore never needs a GPU.

Detections file: one JSON object per image,
``{"image": "00012/samples/0003.png", "detections": [{"class", "box": [x1, y1, x2, y2], "score",
"color"?}]}`` with ALL raw detections; thresholds, the per-class cap and NMS are applied here.
Differences from the official script, none of which changes a score: rows come in sorted order
(official: ``os.listdir`` order), several relations in a reason string are sorted (official: set
order), and malformed input raises instead of being skipped.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from imagenet_t2i.evaluation.geneval.position import relative_position
from imagenet_t2i.evaluation.geneval.prompts import COLORS, TAGS, iter_samples
from imagenet_t2i.io import read_jsonl, write_jsonl


@dataclass(frozen=True)
class ScoringOptions:
    """The official evaluator's ``--options`` (defaults are the official ones)."""

    threshold: float = 0.3           # keep score > threshold
    counting_threshold: float = 0.9  # used for every class when the prompt's tag is "counting"
    max_objects: int = 16            # per class, after the threshold
    max_overlap: float = 1.0         # NMS IoU bound; 1.0 = NMS off
    position_threshold: float = 0.1  # relative_position margin, as a fraction of the two sizes
    colors: tuple[str, ...] = COLORS  # order used in colour reason strings


def compute_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU with the official inclusive-pixel convention (width = x2 - x1 + 1)."""
    def area(b: Sequence[float]) -> float:
        return max(b[2] - b[0] + 1, 0) * max(b[3] - b[1] + 1, 0)

    inter = area([max(box_a[0], box_b[0]), max(box_a[1], box_b[1]),
                  min(box_a[2], box_b[2]), min(box_a[3], box_b[3])])
    union = area(box_a) + area(box_b) - inter
    return inter / union if union else 0.0


def filter_detections(
    detections: Sequence[dict], tag: str, options: ScoringOptions = ScoringOptions()
) -> dict[str, list[dict]]:
    """Class -> kept detections, highest score first: score strictly above the threshold, at most
    ``max_objects`` per class, then greedy NMS when ``max_overlap`` < 1; empty classes dropped."""
    threshold = options.counting_threshold if tag == "counting" else options.threshold
    by_class: dict[str, list[dict]] = {}
    for det in detections:
        by_class.setdefault(det["class"], []).append(det)
    kept: dict[str, list[dict]] = {}
    for cls, dets in by_class.items():
        scores = np.asarray([d["score"] for d in dets], dtype=np.float64)
        # Reversed stable argsort: ties come out in reverse input order, as numpy's default sort
        # does for the short per-class arrays the official script sorts.
        order = [int(i) for i in np.argsort(scores, kind="stable")[::-1] if scores[i] > threshold]
        order = order[: options.max_objects]
        chosen = []
        while order:
            best = order.pop(0)
            chosen.append(dets[best])
            if options.max_overlap < 1:
                order = [i for i in order if compute_iou(dets[best]["box"], dets[i]["box"]) < options.max_overlap]
        if chosen:
            kept[cls] = chosen
    return kept


def _colors_of(found: list[dict], cls: str, allowed: tuple[str, ...]) -> list[str]:
    labels = []
    for det in found:
        if "color" not in det:
            raise ValueError(
                f"a detection of {cls!r} needed for a colour check has no 'color' label: the perception "
                "step must classify the colour of every kept detection of the prompt's coloured classes"
            )
        if det["color"] not in allowed:
            raise ValueError(f"colour label {det['color']!r} of a {cls!r} detection is not one of {list(allowed)}")
        labels.append(det["color"])
    return labels


def evaluate(
    objects: dict[str, list[dict]], metadata: dict, options: ScoringOptions = ScoringOptions()
) -> tuple[bool, str]:
    """Official correctness of one image from its kept detections; returns (correct, reason)."""
    correct = True
    reasons: list[str] = []
    groups: list[list[dict] | None] = []
    for req in metadata.get("include", []):
        cls, count = req["class"], req["count"]
        found = objects.get(cls, [])[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in req:
                labels = _colors_of(found, cls, options.colors)
                want = req["color"]
                if labels.count(want) < count:
                    matched = False
                    reasons.append(
                        f"expected {want} {cls}>={count}, found {labels.count(want)} {want}; and "
                        + ", ".join(f"{labels.count(c)} {c}" for c in options.colors if c in labels)
                    )
            if "position" in req and matched:
                relation, target = req["position"]
                if not 0 <= target < len(groups):
                    raise ValueError(
                        f"metadata {json.dumps(metadata)}: position target {target} is not an earlier include item"
                    )
                if groups[target] is None:
                    matched = False
                    reasons.append(f"no target for {cls} to be {relation}")
                else:
                    for obj in found:
                        for tgt in groups[target]:
                            rels = relative_position(obj["box"], tgt["box"], options.position_threshold)
                            if relation not in rels:
                                matched = False
                                found_rels = " and ".join(sorted(rels))
                                reasons.append(f"expected {cls} {relation} target, found {found_rels} target")
                                break
                        if not matched:
                            break
        correct = correct and matched
        groups.append(found if matched else None)
    for req in metadata.get("exclude", []):
        cls = req["class"]
        if len(objects.get(cls, [])) >= req["count"]:
            correct = False
            reasons.append(f"expected {cls}<{req['count']}, found {len(objects[cls])}")
    return correct, "\n".join(reasons)


def _check_detection(det: object, where: str) -> None:
    if not isinstance(det, dict) or not isinstance(det.get("class"), str):
        raise ValueError(f"{where}: each detection needs a 'class' string, got {det!r}")
    box = det.get("box")
    if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, (int, float)) for v in box)):
        raise ValueError(f"{where}: detection 'box' must be [x1, y1, x2, y2] in pixels, got {box!r}")
    if not isinstance(det.get("score"), (int, float)):
        raise ValueError(f"{where}: detection 'score' must be a number, got {det.get('score')!r}")


def read_detections(path: str | os.PathLike) -> dict[str, list[dict]]:
    """Image relative path -> raw detections, validated."""
    out: dict[str, list[dict]] = {}
    for n, row in enumerate(read_jsonl(path), 1):
        where = f"{path} line {n}"
        if not isinstance(row.get("image"), str) or not isinstance(row.get("detections"), list):
            raise ValueError(f"{where}: each line needs 'image' (relative path) and 'detections' (list)")
        if row["image"] in out:
            raise ValueError(f"{where}: image {row['image']!r} appears twice; keep one line per image")
        for det in row["detections"]:
            _check_detection(det, where)
        out[row["image"]] = row["detections"]
    return out


def score_images(
    images_root: str | os.PathLike,
    detections_path: str | os.PathLike,
    options: ScoringOptions = ScoringOptions(),
) -> list[dict]:
    """One official result row per image of the layout under ``images_root``:
    {filename, tag, prompt, correct, reason, metadata (JSON string), details (JSON string)}."""
    detections = read_detections(detections_path)
    samples = list(iter_samples(images_root))
    if not samples:
        raise ValueError(f"no images under {images_root}: nothing to score")
    images = {rel for rel, _ in samples}
    missing = sorted(images - detections.keys())
    unknown = sorted(detections.keys() - images)
    if missing or unknown:
        raise ValueError(
            f"{detections_path} does not match the images under {images_root}: "
            f"{len(missing)} images without detections (e.g. {missing[:3]}), "
            f"{len(unknown)} detection lines for absent images (e.g. {unknown[:3]}); rerun perception"
        )
    rows = []
    for rel, metadata in samples:
        kept = filter_detections(detections[rel], metadata["tag"], options)
        correct, reason = evaluate(kept, metadata, options)
        rows.append({
            "filename": os.path.join(str(images_root), rel),
            "tag": metadata["tag"],
            "prompt": metadata["prompt"],
            "correct": correct,
            "reason": reason,
            "metadata": json.dumps(metadata),
            "details": json.dumps({cls: [[*d["box"], d["score"]] for d in dets] for cls, dets in kept.items()}),
        })
    return rows


def write_results(path: str | os.PathLike, rows: Sequence[dict]) -> None:
    """Results JSONL, one row per image, atomically."""
    write_jsonl(path, rows)


def summarize(results: Sequence[dict], allow_missing_tags: bool = False) -> dict:
    """Per-tag accuracy over images and overall = unweighted mean over the six tags.

    A missing tag raises unless ``allow_missing_tags`` (then overall averages the tags present and
    ``missing_tags`` names the others)."""
    if not results:
        raise ValueError("summarize: no result rows")
    by_tag: dict[str, list[bool]] = {}
    by_prompt: dict[str, bool] = {}
    for row in results:
        if row["tag"] not in TAGS:
            raise ValueError(f"summarize: unknown tag {row['tag']!r} (known: {list(TAGS)})")
        by_tag.setdefault(row["tag"], []).append(bool(row["correct"]))
        by_prompt[row["metadata"]] = by_prompt.get(row["metadata"], False) or bool(row["correct"])
    missing = [t for t in TAGS if t not in by_tag]
    if missing and not allow_missing_tags:
        raise ValueError(
            f"summarize: results have no images for tags {missing}; the overall score averages all six "
            "tags. Score the full prompt set, or pass allow_missing_tags=True and report the omission"
        )
    tags = {
        t: {"score": float(np.mean(v)), "correct": int(sum(v)), "images": len(v)}
        for t in TAGS if (v := by_tag.get(t))
    }
    all_correct = [c for v in by_tag.values() for c in v]
    return {
        "overall": float(np.mean([s["score"] for s in tags.values()])),
        "tags": tags,
        "missing_tags": missing,
        "images": len(all_correct),
        "prompts": len(by_prompt),
        "correct_images": float(np.mean(all_correct)),
        "correct_prompts": float(np.mean(list(by_prompt.values()))),
    }


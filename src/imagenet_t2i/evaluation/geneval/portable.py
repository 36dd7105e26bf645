"""GenEval perception, portable: the official roles through transformers, in the main environment.

Detector: ``Mask2FormerForUniversalSegmentation`` from a COCO instance-segmentation folder
(``facebook/mask2former-swin-small-coco-instance`` at paper scale: the same architecture as the
official mmdet model, trained in detectron2). Colours: ``colour_clip`` (transformers CLIP ViT-L/14).
Both run through ``official.perceive_folder``, so layout, colour step and file format are the
official backend's.

Post-processing follows mmdet 2.x's instance branch, not transformers' ``post_process_instance_
segmentation`` (which rounds masks through 384 x 384, applies a score threshold and drops empty
masks): mask logits are upsampled bilinearly to the network input, cut to the image's part of it,
upsampled to the image; (query, class) pairs by softmax score, top ``MAX_PER_IMAGE``; mask = logit > 0;
score = class probability x mean sigmoid over the mask; box = the mask's extent [x1, y1, x2 + 1, y2 + 1]
(zeros for an empty mask). Every pair is reported (no threshold). Input size: mmdet's test scale
(shortest side 800, longest at most 1333) unless ``image_size`` says otherwise; transformers resizes
to a multiple of 32 where mmdet pads, a small difference for non-square images.
Known differences from the official backend: transformers' Swin/Mask2Former and PIL resizing instead of
mmcv's; CLIP preprocessing by transformers instead of torchvision. Results are recorded as
perception ``portable`` and are not the official numbers.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from imagenet_t2i.evaluation.geneval.colour_clip import load_clip_colour_classifier
from imagenet_t2i.evaluation.geneval.official import (OBJECT_NAMES, Detection, coco_class_names, perceive_folder,
                                                      read_names, sha256_file)
from imagenet_t2i.io import read_json

PERCEPTION = "portable"
MMDET_TEST_SIZE = {"shortest_edge": 800, "longest_edge": 1333}  # mmdet's test img_scale (1333, 800)
MAX_PER_IMAGE = 100  # mmdet's test_cfg max_per_image


def masks_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool -> (N, 4) float [x1, y1, x2 + 1, y2 + 1] of each mask's pixels; zeros if empty."""
    n, h, w = masks.shape
    cols, rows = masks.any(dim=1), masks.any(dim=2)  # (N, W), (N, H)
    x1 = cols.float().argmax(dim=1)
    x2 = w - cols.flip(1).float().argmax(dim=1)
    y1 = rows.float().argmax(dim=1)
    y2 = h - rows.flip(1).float().argmax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()  # (N, 4)
    return boxes * cols.any(dim=1, keepdim=True)


def instance_postprocess(
    class_logits: torch.Tensor, mask_logits: torch.Tensor, input_hw: tuple[int, int], valid_hw: tuple[int, int],
    image_hw: tuple[int, int], max_per_image: int = MAX_PER_IMAGE,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """mmdet's instance post-processing of one image.

    ``class_logits`` (Q, K + 1) with the no-object class last, ``mask_logits`` (Q, h, w) at the network's
    mask resolution; ``input_hw`` the network input, ``valid_hw`` the image's part of it (the rest is
    padding), ``image_hw`` the original image. -> labels (N,), boxes (N, 4), scores (N,), masks (N, H, W)."""
    n_classes = class_logits.shape[-1] - 1
    probs = class_logits.softmax(dim=-1)[:, :-1]  # (Q, K)
    scores, pairs = probs.flatten().topk(min(max_per_image, probs.numel()), sorted=False)  # (N,)
    labels, queries = pairs % n_classes, pairs // n_classes
    logits = F.interpolate(mask_logits[queries][None], size=input_hw, mode="bilinear", align_corners=False)
    logits = logits[..., : valid_hw[0], : valid_hw[1]]
    logits = F.interpolate(logits, size=image_hw, mode="bilinear", align_corners=False)[0]  # (N, H, W)
    masks = logits > 0
    mask_scores = (logits.sigmoid() * masks).flatten(1).sum(1) / (masks.flatten(1).sum(1) + 1e-6)  # (N,)
    return labels, masks_to_boxes(masks), scores * mask_scores, masks


class Mask2FormerDetector:
    """``(path, image) -> detections`` with a transformers Mask2Former COCO instance-segmentation folder."""

    def __init__(self, path: str | os.PathLike, names: list[str], device: str = "cpu",
                 image_size: dict | None = MMDET_TEST_SIZE, max_per_image: int = MAX_PER_IMAGE) -> None:
        from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(path).to(device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path)
        id2label = self.model.config.id2label
        self.names = coco_class_names([id2label[i] for i in range(len(id2label))], names)
        self.device, self.image_size, self.max_per_image = device, image_size, max_per_image

    @property
    def description(self) -> dict:
        """The input size actually used (``image_size``, else the folder's processor's) and the top-k."""
        size = self.image_size or {k: v for k, v in self.processor.to_dict()["size"].items() if v is not None}
        return {"image_size": size, "max_per_image": self.max_per_image}

    def __call__(self, path: Path, image: Image.Image) -> list[Detection]:
        size = {"size": self.image_size} if self.image_size else {}
        inputs = self.processor(images=[image], return_tensors="pt", **size)
        pixels, pixel_mask = inputs["pixel_values"].to(self.device), inputs["pixel_mask"].to(self.device)
        with torch.no_grad():
            out = self.model(pixel_values=pixels, pixel_mask=pixel_mask)  # (1, Q, K + 1), (1, Q, h, w)
        valid = (int(pixel_mask[0].any(dim=1).sum()), int(pixel_mask[0].any(dim=0).sum()))
        labels, boxes, scores, masks = instance_postprocess(
            out.class_queries_logits[0], out.masks_queries_logits[0], tuple(pixels.shape[-2:]), valid,
            (image.height, image.width), self.max_per_image)
        order = torch.argsort(labels, stable=True).tolist()  # class by class, like mmdet's bbox2result
        labels, boxes, scores, masks = labels.tolist(), boxes.tolist(), scores.tolist(), masks.cpu().numpy()
        return [{"class": self.names[labels[i]], "box": boxes[i], "score": scores[i], "mask": masks[i]} for i in order]


def weights_record(path: str | os.PathLike) -> dict:
    """A model folder and, when the ``weights`` rule's ``manifest.json`` is there, its files' sha256."""
    manifest = Path(path) / "manifest.json"
    files = {f["name"]: f["sha256"] for f in read_json(manifest)["files"]} if manifest.is_file() else None
    return {"path": str(path), "sha256": files}


def perceive_portable(
    images_root: str | os.PathLike, out_path: str | os.PathLike, detector_path: str | os.PathLike,
    clip_path: str | os.PathLike, device: str = "cpu", image_size: dict | None = MMDET_TEST_SIZE,
    object_names: str | os.PathLike = OBJECT_NAMES, meta_path: str | os.PathLike | None = None,
    batch_size: int = 16, progress: bool = True,
) -> dict:
    """Portable GenEval perception over a layout: detections JSONL + ``<out>.meta.json``; returns the meta."""
    import transformers

    names = read_names(object_names)
    detect = Mask2FormerDetector(detector_path, names, device, image_size)
    classify = load_clip_colour_classifier(clip_path, device, batch_size=batch_size)
    description = {
        "perception": PERCEPTION,
        "detector": {**weights_record(detector_path), **detect.description},
        "colour_model": weights_record(clip_path),
        "object_names_sha256": sha256_file(object_names),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "numpy": np.__version__},
    }
    return perceive_folder(images_root, out_path, detect, classify, description, meta_path, progress)

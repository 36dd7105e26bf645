"""TA captions for the synthetic world: a long VLM-style description written from a scene record.

Each caption has 2-5 sentences naming every object's colour, class, size and place in the frame,
the background and, for several objects, their pairwise relative positions. Stated relations are
exactly GenEval's relative-position rule on the objects' boxes (the scorer's own function, so a
caption never says "left of" where GenEval would not). Templates, synonyms and sentence order vary per key; the same
(seed, key) always gives the same caption.
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence

import numpy as np

from imagenet_t2i.captions.base import Captioner
from imagenet_t2i.evaluation.geneval.position import relative_position

SIZE_WORDS = {
    "small": ("small", "little", "tiny", "small"),
    "medium": ("medium-sized", "mid-sized", "moderately sized"),
    "large": ("large", "big", "large"),
}
# Region of the object centre: column (left/centre/right) x row (top/middle/bottom).
PLACE_WORDS = {
    (0, 0): ("in the upper left", "in the top-left part of the image", "toward the upper left corner"),
    (1, 0): ("near the top", "at the top center", "in the upper part of the frame"),
    (2, 0): ("in the upper right", "in the top-right part of the image", "toward the upper right corner"),
    (0, 1): ("on the left side", "toward the left", "in the left part of the frame"),
    (1, 1): ("near the center", "in the middle of the image", "at the center of the frame"),
    (2, 1): ("on the right side", "toward the right", "in the right part of the frame"),
    (0, 2): ("in the lower left", "in the bottom-left part of the image", "toward the lower left corner"),
    (1, 2): ("near the bottom", "at the bottom center", "in the lower part of the frame"),
    (2, 2): ("in the lower right", "in the bottom-right part of the image", "toward the lower right corner"),
}
RELATION_WORDS = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
SHAPE_REMARKS = {
    "circle": ("The circle is perfectly round.", "Its outline is a smooth, round curve."),
    "square": ("The square has four straight edges of equal length.", "Its corners are sharp right angles."),
    "triangle": ("The triangle points upward.", "It has a flat base and a pointed top."),
    "diamond": ("The diamond looks like a square turned on its corner.",
                "Its four points face up, down, left and right."),
    "cross": ("The cross has four arms of equal length.", "It looks like a plus sign."),
    "ring": ("The ring has a hollow center through which the background shows.",
             "It is a thick circular band with a hole in the middle."),
}
NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}
REGION_BOUNDS = (0.42, 0.58)  # centre fraction below the first -> left/top, above the second -> right/bottom


def article(word: str) -> str:
    """'an' before a vowel letter, else 'a'."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def place_of(box: Sequence[float], size: int) -> tuple[int, int]:
    """(column, row) region of the box centre, each 0, 1 or 2."""
    lo, hi = REGION_BOUNDS
    cx, cy = (box[0] + box[2]) / (2 * size), (box[1] + box[3]) / (2 * size)
    return (0 if cx < lo else 2 if cx > hi else 1), (0 if cy < lo else 2 if cy > hi else 1)


class SceneCaptioner(Captioner):
    """Template TA captions from scene records (the tiny world's stand-in for the VLM)."""

    name = "ta"

    def __init__(self, seed: int = 0, class_names: Mapping[str, str] | None = None) -> None:
        self.seed = seed
        self.class_names = dict(class_names or {})

    def caption(self, records: Sequence[dict]) -> list[str]:
        return [self._one(r) for r in records]

    def _one(self, record: dict) -> str:
        key = record.get("key")
        if not isinstance(record.get("objects"), list) or not isinstance(record.get("size"), int):
            raise ValueError(
                f"record {key!r} is not a scene record (needs 'objects' and 'size'): TA captions for the "
                "synthetic world are written from scenes.jsonl, not index.jsonl"
            )
        rng = np.random.default_rng([self.seed, zlib.crc32(str(key).encode("utf-8"))])
        objects = record["objects"]
        if not objects:
            return self._empty(record, rng)
        if len(objects) == 1:
            return self._single(record, rng)
        return self._multi(record, rng)

    # -- pieces ---------------------------------------------------------------------------------
    def _cls(self, obj: dict) -> str:
        return self.class_names.get(obj["class"], obj["class"])

    @staticmethod
    def _pick(rng: np.random.Generator, options: Sequence[str]) -> str:
        return options[rng.integers(len(options))]

    def _noun_phrase(self, obj: dict, rng: np.random.Generator) -> str:
        """'a small red circle' (size word varies)."""
        words = f"{self._pick(rng, SIZE_WORDS[obj['size']])} {obj['color']} {self._cls(obj)}"
        return f"{article(words)} {words}"

    def _background(self, record: dict, rng: np.random.Generator) -> str:
        bgs = record.get("backgrounds") or []
        if len(bgs) >= 2:
            return self._pick(rng, (
                f"The background is mostly {bgs[0]}, with a rectangular {bgs[1]} area.",
                f"The background is divided between {bgs[0]} and {bgs[1]} regions.",
                f"Behind the shapes, the backdrop is {bgs[0]} in one part and {bgs[1]} in another.",
            ))
        bg = bgs[0] if bgs else "plain"
        return self._pick(rng, (
            f"The background is a plain {bg} color.",
            f"It is set against a smooth {bg} background.",
            f"The backdrop is {bg} with a subtle gradient.",
            f"The background is {bg} and slightly textured.",
        ))

    def _refs(self, objects: list[dict]) -> list[str]:
        """Definite references: 'the red circle', or 'the first/second red circle' for repeats."""
        names = [f"{o['color']} {self._cls(o)}" for o in objects]
        ordinals = ("first", "second", "third", "fourth", "fifth")
        out = []
        for i, n in enumerate(names):
            if names.count(n) > 1:
                out.append(f"the {ordinals[names[:i].count(n)]} {n}")
            else:
                out.append(f"the {n}")
        return out

    # -- caption layouts ------------------------------------------------------------------------
    def _empty(self, record: dict, rng: np.random.Generator) -> str:
        bg = " ".join((record.get("backgrounds") or [])[:1])
        first = self._pick(rng, (
            f"The image shows a plain {bg} background.".replace("  ", " "),
            f"This picture is an empty {bg} surface.".replace("  ", " "),
        ))
        return " ".join([first, self._pick(rng, ("There is no distinct object in view.",
                                                  "No shape or object can be seen."))])

    def _single(self, record: dict, rng: np.random.Generator) -> str:
        obj, size = record["objects"][0], record["size"]
        np_ = self._noun_phrase(obj, rng)
        cls, color = self._cls(obj), obj["color"]
        place = self._pick(rng, PLACE_WORDS[place_of(obj["box"], size)])
        if rng.random() < 0.5:  # object and place in one sentence
            intro = self._pick(rng, (
                f"The image shows {np_} {place}.",
                f"In this picture, {np_} is positioned {place}.",
                f"{np_[0].upper()}{np_[1:]} appears {place}.",
            ))
            body = [intro]
        else:
            intro = self._pick(rng, (
                f"The image shows {np_}.",
                f"This is a simple picture of {np_}.",
                f"{np_[0].upper()}{np_[1:]} is the only object in this image.",
                f"In this image, there is {np_}.",
            ))
            body = [intro, self._pick(rng, (
                f"It is located {place}.",
                f"The {cls} sits {place}.",
                f"The {color} {cls} is placed {place}.",
            ))]
        background = self._background(record, rng)
        extras = [
            self._pick(rng, SHAPE_REMARKS.get(obj["class"], (f"The {cls} has clean, sharp edges.",))),
            self._pick(rng, (
                f"The {cls} is filled with a solid {color} color.",
                "There are no other objects in the scene.",
                "The composition is simple and minimalistic.",
            )),
        ]
        n_extra = int(rng.integers(0, min(len(extras), 4 - len(body)) + 1))  # total 2-5 sentences
        chosen = [extras[i] for i in sorted(rng.choice(len(extras), size=n_extra, replace=False))]
        if rng.random() < 0.3:  # sometimes describe the background first
            return " ".join([background, *body, *chosen])
        return " ".join([*body, background, *chosen])

    def _multi(self, record: dict, rng: np.random.Generator) -> str:
        objects, size = record["objects"], record["size"]
        phrases = [self._noun_phrase(o, rng) for o in objects]
        listing = ", ".join(phrases[:-1]) + f" and {phrases[-1]}"
        count = NUMBER_WORDS.get(len(objects), str(len(objects)))
        intro = self._pick(rng, (
            f"The image shows {count} objects: {listing}.",
            f"This picture contains {listing}.",
            f"In this image, there are {count} shapes, {listing}.",
        ))
        refs = self._refs(objects)
        places = [f"{r} is {self._pick(rng, PLACE_WORDS[place_of(o['box'], size)])}" for r, o in zip(refs, objects)]
        where = ", while ".join(places[:2]) if len(places) == 2 else "; ".join(places)
        where = f"{where[0].upper()}{where[1:]}."
        relations = []
        for i in range(len(objects)):
            for j in range(i + 1, len(objects)):
                rel = relative_position(objects[i]["box"], objects[j]["box"])
                a, b = refs[i], refs[j]
                if rel:
                    words = " and ".join(RELATION_WORDS[r] for r in sorted(rel, key=list(RELATION_WORDS).index))
                    relations.append(f"{a[0].upper()}{a[1:]} is {words} {b}.")
                else:
                    relations.append(f"{a[0].upper()}{a[1:]} and {b} are close together.")
        relations = relations[:2]
        body = [intro, where, *relations] if rng.random() < 0.5 else [intro, *relations, where]
        bg = self._background(record, rng)
        if len(body) >= 5:
            return " ".join(body[:5])
        return " ".join([*body, bg] if rng.random() < 0.7 else [intro, bg, *body[1:]])

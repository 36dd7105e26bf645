"""AIO captions: the paper's class-name baseline, "An image of {class name}"."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

from imagenet_t2i.captions.base import Captioner


class AIOCaptioner(Captioner):
    """``An image of {name}`` with the class's human name from ``classes.json``.

    The class comes from an index row's ``class``; a scene record without one must hold exactly
    one object, whose class is used.
    """

    name = "aio"

    def __init__(self, class_names: Mapping[str, str]) -> None:
        if not class_names:
            raise ValueError("AIOCaptioner needs a non-empty class-id -> name mapping (classes.json)")
        self.class_names = dict(class_names)

    def caption(self, records: Sequence[dict]) -> list[str]:
        return [f"An image of {self._name(r)}" for r in records]

    def _name(self, record: dict) -> str:
        key = record.get("key")
        cls = record.get("class")
        if cls is None:
            objects = record.get("objects") or []
            if len(objects) != 1:
                raise ValueError(
                    f"record {key!r} has no 'class' and {len(objects)} objects: AIO captions need "
                    "index rows (with 'class') or single-object scene records"
                )
            cls = objects[0]["class"]
        if cls not in self.class_names:
            raise KeyError(f"record {key!r}: class {cls!r} is not in classes.json ({len(self.class_names)} classes)")
        return self.class_names[cls]

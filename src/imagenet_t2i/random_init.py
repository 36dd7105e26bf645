"""Random-init stand-ins for the ``weights`` entries (``weights.<name>.random_init: <kind>``): tiny models saved in
the real layouts, built offline from configs, which offline smoke runs and tests load through the same code as the
real weights. Each builder lives next to what it stands in for; this module only dispatches, so `imagenet_t2i.weights`
(resolve, fetch, check) imports none of them.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from imagenet_t2i.config import ConfigError
from imagenet_t2i.weights import INCEPTION_FILE, fill_folder


def builders() -> dict[str, Callable[[Path], None]]:
    """``random_init`` kind -> a function that writes the stand-in's folder (imported here, on use)."""
    from imagenet_t2i.captions.tiny_llava import save_tiny_llava_next
    from imagenet_t2i.encode.tiny_encoders import save_tiny_autoencoder_kl, save_tiny_t5
    from imagenet_t2i.evaluation.fid.tiny_models import save_random_inception, save_tiny_dinov2
    from imagenet_t2i.evaluation.geneval.tiny_models import save_tiny_clip, save_tiny_mask2former
    from imagenet_t2i.sampling.released import save_random_release

    def inception(out: Path) -> None:
        out.mkdir(parents=True)
        save_random_inception(out / INCEPTION_FILE)

    return {"llava_next": save_tiny_llava_next, "autoencoder_kl": save_tiny_autoencoder_kl, "t5": save_tiny_t5,
            "mask2former": save_tiny_mask2former, "clip": save_tiny_clip, "dinov2": save_tiny_dinov2,
            "inception": inception, "cad_i_release": save_random_release}


def build(kind: str, out_dir: str | os.PathLike) -> str:
    """Write the ``kind`` stand-in to ``out_dir`` atomically, with its manifest; -> a description."""
    make = builders().get(kind)
    if make is None:
        raise ConfigError(f"weights random_init '{kind}': use one of {sorted(builders())}")

    def write(tmp: Path) -> str:
        make(tmp)
        return f"random-init {kind} (seed 0), built offline"

    return fill_folder(out_dir, write)

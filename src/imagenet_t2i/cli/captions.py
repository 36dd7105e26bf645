"""Commands of the caption stage (workflow/rules/captions.smk): one chunk of AIO or TA captions, and the merge."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from imagenet_t2i.cli.common import config_of, provenance


def _caption_settings(config: dict, kind: str) -> dict:
    """What a caption file depends on besides its images (the chunks' fingerprint)."""
    if kind == "aio":
        return {"backend": "aio"}
    caps = {k: v for k, v in config["captions"].items() if k not in ("chunks", "batch_size", "vllm_requests")}
    resize = config["source"].get("resize", "bicubic")
    return {**caps, "resolution": config["source"]["resolution"], "seed": config["seed"],
            **({"resize": resize} if resize != "bicubic" else {})}


def cmd_captions(args: argparse.Namespace) -> None:
    from imagenet_t2i.captions.chunked import fingerprint, write_caption_chunk
    from imagenet_t2i.captions.records import images_per_call, record_captioner
    from imagenet_t2i.chunks import parse_chunk
    from imagenet_t2i.io import sha256_file

    config = config_of(args.config, gpu=args.kind == "ta")
    images, chunk = Path(args.images), parse_chunk(args.chunk)
    t0 = time.time()
    records, captioner = record_captioner(config, images, args.kind, chunk)
    fp = fingerprint(sha256_file(images / "index.jsonl"), args.kind, _caption_settings(config, args.kind))
    summary = write_caption_chunk(records, captioner, args.out, chunk, fp, batch_size=images_per_call(config))
    inputs = {"images": args.images, **({"weights": args.weights} if args.weights else {})}
    provenance("captions", {"kind": args.kind, "chunk": args.chunk, **_caption_settings(config, args.kind),
                             "captioner": summary["captioner"], "failed": summary["failed"],
                             "empty": summary["empty"]}, inputs, args.out, t0)


def cmd_captions_merge(args: argparse.Namespace) -> None:
    from imagenet_t2i.captions.chunked import merge_caption_chunks

    t0 = time.time()
    summary = merge_caption_chunks(args.parts, args.out)
    print(f"{args.out}: {summary['written']} captions from {summary['chunks']} chunk(s), "
          f"{len(summary['failed'])} unreadable image(s), {len(summary['empty'])} empty caption(s)")
    provenance("captions_merge", summary, {f"part_{i}": p for i, p in enumerate(args.parts)}, args.out, t0)

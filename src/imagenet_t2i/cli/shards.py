"""Commands of the shard stage (workflow/rules/shards.smk): encode one chunk of images + captions into WebDataset
shards, and the merge."""
from __future__ import annotations

import argparse
import time

from imagenet_t2i.cli.common import config_of, provenance
from imagenet_t2i.weights import resolved


def cmd_shards(args: argparse.Namespace) -> None:
    from imagenet_t2i.chunks import parse_chunk
    from imagenet_t2i.encode.autoencoder import make_autoencoder
    from imagenet_t2i.encode.text import make_text_encoder
    from imagenet_t2i.shards.writer import write_shards

    config = config_of(args.config, gpu=True)
    enc = config["encode"]
    t0 = time.time()
    side = args.resolution or config["source"]["resolution"]
    manifest = write_shards(args.images, args.captions, args.out, make_autoencoder(resolved(config, "autoencoder")),
                            make_text_encoder(resolved(config, "text")), side,
                            shard_size=enc["shard_size"], batch_size=enc["batch_size"], chunk=parse_chunk(args.chunk),
                            resize=config["source"].get("resize", "bicubic"))
    print(f"{args.out}: chunk {args.chunk}: {manifest['num_samples']} samples in {len(manifest['shards'])} shards, "
          f"{len(manifest['skipped'])} skipped")
    provenance("shards", {**enc, "resolution": side}, {"images": args.images, "captions": args.captions}, args.out, t0)


def cmd_shards_merge(args: argparse.Namespace) -> None:
    from imagenet_t2i.shards.writer import merge_shards

    t0 = time.time()
    manifest = merge_shards(args.parts, args.out)
    print(f"{args.out}: {manifest['num_samples']} samples in {len(manifest['shards'])} shards from "
          f"{len(args.parts)} chunk(s), {len(manifest['skipped'])} skipped")
    provenance("shards_merge", {"chunks": len(args.parts)}, {f"part_{i}": p for i, p in enumerate(args.parts)},
                args.out, t0)

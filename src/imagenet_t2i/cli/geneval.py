"""GenEval commands (workflow/rules/geneval.smk): prompts, sampling, perception, official scoring, summary."""
from __future__ import annotations

import argparse
import time

from imagenet_t2i.cli.common import config_of, provenance, require_gpu
from imagenet_t2i.cli.sampling_args import (embeddings_input, eval_backends, eval_sample_cfg, require_tiny_perception,
                                            sampling_record)
from imagenet_t2i.weights import weights_location


def cmd_geneval_prompts(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.geneval.prompts import generate_prompts, read_class_names, write_prompts

    config = config_of(args.config)
    g = config["eval"]["geneval"]
    t0 = time.time()
    if g["vocabulary"] == "coco":  # the official 553 prompts (80 COCO names, seed 43), byte for byte
        from imagenet_t2i.evaluation.geneval.paper_prompts import paper_geneval_prompts

        rows = paper_geneval_prompts(seed=g["seed"])
    else:
        if g["vocabulary"] == "world":
            classes, colors = config["source"]["classes"], config["source"]["colors"]
        else:
            classes, colors = read_class_names(g["vocabulary"]), None
        rows = generate_prompts(classes, seed=g["seed"], n_per_task=g["n_per_task"],
                                **({"colors": colors} if colors else {}))
    write_prompts(args.out, rows)
    print(f"{args.out}: {len(rows)} prompts")
    provenance("geneval_prompts", g, {}, args.out, t0)


def cmd_geneval_sample(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.geneval.sample import sample_geneval
    from imagenet_t2i.io import resumable_folder

    config = config_of(args.config, gpu=True)
    t0 = time.time()
    with resumable_folder(args.out) as work:  # what a killed try sampled is kept for the next
        n = sample_geneval(args.model, args.prompts, work, *eval_backends(config, args.uncond, args.embeddings),
                           eval_sample_cfg(config, args), config["eval"]["geneval"]["samples_per_prompt"],
                           args.batch_size)
    print(f"{args.out}: {n} samples written (complete prompts of an earlier, killed try kept)")
    provenance("geneval_sample", sampling_record(config, args),
                {"model": args.model, "prompts": args.prompts, "uncond": args.uncond, **embeddings_input(args)},
                args.out, t0)


def cmd_geneval_detect(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.geneval.detector import detect_folder

    config = config_of(args.config)
    perception, g = config["eval"]["perception"], config["eval"]["geneval"]
    t0 = time.time()
    if perception == "portable":  # transformers Mask2Former + CLIP: not the official number (docs/evaluation.md)
        require_gpu(config)
        from imagenet_t2i.encode.autoencoder import default_device
        from imagenet_t2i.evaluation.geneval.portable import MMDET_TEST_SIZE, perceive_portable

        size = g.get("image_size", "mmdet")
        image_size = MMDET_TEST_SIZE if size == "mmdet" else None if size is None else {"shortest_edge": size}
        meta = perceive_portable(args.images, args.out, weights_location(config, g["detector"]),
                                 weights_location(config, g["clip"]), device=default_device(), image_size=image_size)
        provenance("geneval_detect", {"perception": "portable", **meta}, {"images": args.images}, args.out, t0)
        return
    require_tiny_perception(config, "GenEval detector (Mask2Former + CLIP)")
    detect_folder(args.images, args.out)
    provenance("geneval_detect", {"perception": "tiny"}, {"images": args.images}, args.out, t0)


def cmd_geneval_score(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.geneval.score import score_images, write_results

    t0 = time.time()
    rows = score_images(args.images, args.detections)
    write_results(args.out, rows)
    print(f"{args.out}: {sum(r['correct'] for r in rows)}/{len(rows)} images correct")
    provenance("geneval_score", {}, {"images": args.images, "detections": args.detections}, args.out, t0)


def cmd_geneval_summary(args: argparse.Namespace) -> None:
    import json

    from imagenet_t2i.evaluation.geneval.score import summarize
    from imagenet_t2i.io import read_jsonl, write_json

    t0 = time.time()
    summary = summarize(read_jsonl(args.results), allow_missing_tags=args.allow_missing_tags)
    for tag, v in summary["tags"].items():
        print(f"{tag:>14}: {v['score']:.4f}")
    print(f"{'overall':>14}: {summary['overall']:.4f}")
    if args.out:
        write_json(args.out, summary)
        provenance("geneval_summary", {"allow_missing_tags": args.allow_missing_tags}, {"results": args.results},
                    args.out, t0)
    else:
        print(json.dumps(summary))

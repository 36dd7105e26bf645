"""FID-and-friends commands (workflow/rules/fid.smk): the tiny world's feature network, the paper's reference
statistics, and FD / FID, PRDC, IS and CLIPScore of one sample per val caption."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from imagenet_t2i.cli.common import config_of, provenance
from imagenet_t2i.cli.sampling_args import embeddings_input, eval_backends, eval_sample_cfg, sampling_record
from imagenet_t2i.config import ConfigError
from imagenet_t2i.weights import weights_location


def cmd_fd_train_net(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.fid.tiny_net import train_feature_net

    config = config_of(args.config)
    net = config["eval"]["fd"]["feature_net"]
    t0 = time.time()
    metrics = train_feature_net(args.train, args.out, seed=net["seed"], epochs=net["epochs"], val_dir=args.val)
    print(f"{args.out}: {metrics}")
    provenance("feature_net", net, {"train": args.train, "val": args.val}, args.out, t0)


def cmd_fd_reference(args: argparse.Namespace) -> None:
    from imagenet_t2i.encode.autoencoder import default_device
    from imagenet_t2i.evaluation.fid.metrics import write_reference_stats
    from imagenet_t2i.evaluation.fid.paper import load_extractors, reference_images

    config = config_of(args.config, gpu=True)
    fid = config["eval"]["fid"]
    t0 = time.time()
    extractors, _ = load_extractors(config, default_device())
    res = config["source"]["resolution"]
    resize = config["source"].get("resize", "bicubic")
    paths = write_reference_stats(reference_images(args.images, res, resize), extractors,
                                  f"{args.images}: {config['source']['backend']} val, {res} px square ({resize})",
                                  args.out, batch_size=fid["batch_size"])
    print(f"{args.out}: reference statistics {sorted(paths)}")
    provenance("fd_reference", fid, {"images": args.images, **{n: weights_location(config, fid[n]) for n in
                                                                 ("inception", "dinov2", "clip") if fid.get(n)}},
                args.out, t0)


def cmd_fd_sample(args: argparse.Namespace) -> None:
    """Paper scale: one chunk of the FID samples (one per val caption), kept as their features."""
    from imagenet_t2i.chunks import chunk_range, parse_chunk
    from imagenet_t2i.encode.autoencoder import default_device
    from imagenet_t2i.evaluation.fid.metrics import write_features
    from imagenet_t2i.evaluation.fid.paper import load_extractors
    from imagenet_t2i.evaluation.fid.sample import caption_samples

    config = config_of(args.config, gpu=True)
    fid = require_fid(config)
    t0 = time.time()
    index, count = parse_chunk(args.chunk)
    items = chunk_range(fid["num_samples"], index, count)
    extractors, scorer = load_extractors(config, default_device())
    batches, captions = caption_samples(args.model, args.captions, fid["num_samples"],
                                        *eval_backends(config, args.uncond, args.embeddings),
                                        eval_sample_cfg(config, args, fid=True), args.batch_size, items)
    n = write_features(batches, extractors, args.out, batch_size=fid["batch_size"], prompts=captions,
                       clip_scorer=scorer, meta={"captions": [items.start, items.stop]})
    print(f"{args.out}: features of captions {items.start}..{items.stop - 1} ({n} samples, chunk {args.chunk})")
    provenance("fd_sample", {**fid, "chunk": args.chunk, "sample": sampling_record(config, args, fid=True)},
                {"model": args.model, "captions": args.captions, **embeddings_input(args)}, args.out, t0)


def cmd_fd_merge(args: argparse.Namespace) -> None:
    """Paper scale: FID, FD-DINOv2, FD-CLIP, IS, PRDC and CLIPScore from the chunks' features."""
    from imagenet_t2i.evaluation.fid.metrics import fid_report_from_features
    from imagenet_t2i.evaluation.fid.paper import flat_scores
    from imagenet_t2i.io import write_json

    config = config_of(args.config)
    fid = require_fid(config)
    t0 = time.time()
    report = fid_report_from_features(args.features, _reference_files(args.reference), k=fid["k"],
                                      batch_size=fid["batch_size"])
    scores = flat_scores(report)
    if scores["num_fake"] != fid["num_samples"]:
        raise ValueError(f"{args.out}: the chunks hold {scores['num_fake']} samples, eval.fid.num_samples is "
                         f"{fid['num_samples']}: delete the chunk files of another count and sample them again")
    write_json(args.out, scores)
    print(f"{args.out}: FID {scores['fd']:.3f} from {len(args.features)} chunk(s)")
    provenance("fd", fid, {"reference": args.reference,
                           **{f"chunk_{i:04d}": path for i, path in enumerate(args.features)}}, args.out, t0)


def _reference_files(folder: str) -> dict[str, Path]:
    """The reference statistics `fd reference` wrote, by network name."""
    paths = {p.stem: p for p in sorted(Path(folder).glob("*.npz"))}
    if not paths:
        raise FileNotFoundError(f"{folder}: no reference statistics (*.npz); run 'imagenet-t2i fd reference'")
    return paths


def require_fid(config: dict) -> dict:
    """``eval.fid`` (the paper-scale FID's settings); a ConfigError naming the key in the tiny world."""
    if not config["eval"].get("fid"):
        raise ConfigError("config key 'eval.fid': this command is the paper-scale FID's; the tiny world's is "
                          "'imagenet-t2i fd score'")
    return config["eval"]["fid"]


def cmd_fd_score(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.fid.sample import sample_captions
    from imagenet_t2i.evaluation.fid.tiny_net import fd_report, load_feature_net, load_images
    from imagenet_t2i.io import write_json

    config = config_of(args.config, gpu=True)
    t0 = time.time()
    if config["eval"].get("fid"):
        raise ConfigError("config key 'eval.fid': paper-scale FID is sampled in chunks ('imagenet-t2i fd sample') "
                          "and merged ('imagenet-t2i fd merge'); 'fd score' is the tiny world's")
    fd = config["eval"]["fd"]
    fake = sample_captions(args.model, args.captions, fd["num_samples"],
                           *eval_backends(config, args.uncond, args.embeddings), eval_sample_cfg(config, args),
                           args.batch_size)
    report = fd_report(load_feature_net(args.net), load_images(args.reference), fake, k=fd["k"])
    report["reference"] = args.reference
    write_json(args.out, report)
    print(f"{args.out}: FD {report['fd']:.3f}")
    provenance("fd", {**fd, "sample": sampling_record(config, args)},
                {"model": args.model, "captions": args.captions, "reference": args.reference, "feature_net": args.net,
                 **embeddings_input(args)}, args.out, t0)

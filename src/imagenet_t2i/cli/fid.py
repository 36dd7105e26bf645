"""FID-and-friends commands (workflow/rules/fid.smk): the tiny world's feature network, the paper's reference
statistics, and FD / FID, PRDC, IS and CLIPScore of one sample per val caption."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from imagenet_t2i.cli.common import config_of, provenance
from imagenet_t2i.cli.sampling_args import embeddings_input, eval_backends, eval_sample_cfg, sampling_record
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
    paths = write_reference_stats(reference_images(args.images, res), extractors,
                                  f"{args.images}: {config['source']['backend']} val, resize {res} + centre crop",
                                  args.out, batch_size=fid["batch_size"])
    print(f"{args.out}: reference statistics {sorted(paths)}")
    provenance("fd_reference", fid, {"images": args.images, **{n: weights_location(config, fid[n]) for n in
                                                                 ("inception", "dinov2", "clip") if fid.get(n)}},
                args.out, t0)


def _fd_paper(args: argparse.Namespace, config: dict, t0: float) -> None:
    """FID, FD-DINOv2, FD-CLIP, IS, PRDC and CLIPScore of one sample per val caption, streamed."""
    from imagenet_t2i.encode.autoencoder import default_device
    from imagenet_t2i.evaluation.fid.metrics import fid_report
    from imagenet_t2i.evaluation.fid.paper import flat_scores, load_extractors
    from imagenet_t2i.evaluation.fid.sample import caption_samples
    from imagenet_t2i.io import write_json

    fid = config["eval"]["fid"]
    extractors, scorer = load_extractors(config, default_device())
    batches, captions = caption_samples(args.model, args.captions, fid["num_samples"],
                                        *eval_backends(config, args.uncond, args.embeddings),
                                        eval_sample_cfg(config, args), args.batch_size)
    report = fid_report(batches, extractors, {e.name: Path(args.reference) / f"{e.name}.npz" for e in extractors},
                        k=fid["k"], batch_size=fid["batch_size"], prompts=captions, clip_scorer=scorer)
    scores = flat_scores(report)
    write_json(args.out, scores)
    print(f"{args.out}: FID {scores['fd']:.3f}")
    provenance("fd", {**fid, "sample": sampling_record(config, args)},
                {"model": args.model, "captions": args.captions, "reference": args.reference,
                 **embeddings_input(args)}, args.out, t0)


def cmd_fd_score(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.fid.sample import sample_captions
    from imagenet_t2i.evaluation.fid.tiny_net import fd_report, load_feature_net, load_images
    from imagenet_t2i.io import write_json

    config = config_of(args.config, gpu=True)
    t0 = time.time()
    if config["eval"].get("fid"):
        _fd_paper(args, config, t0)
        return
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

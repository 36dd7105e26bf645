"""Commands of the T-AES stage (workflow/rules/aesthetic.smk): the aesthetic prompt files, the tiny world's scorer,
and one scorer's scores of a run's samples."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from imagenet_t2i.cli.common import config_of, provenance
from imagenet_t2i.config import ConfigError


def _spec(config: dict) -> dict:
    spec = config.get("aesthetic")
    if not spec:
        raise ConfigError("config key 'aesthetic': not set (set, prompts, scorers; config/config.yaml has one)")
    return spec


def cmd_aesthetic_prompts(args: argparse.Namespace) -> None:
    from imagenet_t2i.io import atomic_write, write_jsonl

    config = config_of(args.config)
    prompts = _spec(config)["prompts"]
    t0, out = time.time(), Path(args.out)
    write_jsonl(out / "prompts.jsonl", [{"prompt": p} for p in prompts])  # the prompt-embedding cache reads it
    with atomic_write(out / "prompts.txt") as f:  # the sampler reads it, one prompt a line
        f.write("".join(f"{p}\n" for p in prompts))
    provenance("aesthetic_prompts", {"prompts": prompts}, {}, out / "prompts.jsonl", t0)


def cmd_aesthetic_train_net(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.aesthetic.world_scorer import train_world_scorer

    config = config_of(args.config)
    net = _spec(config)["net"]
    t0 = time.time()
    metrics = train_world_scorer(args.train, args.out, args.val, seed=net["seed"], epochs=net["epochs"])
    print(f"{args.out}: aesthetic scorer, val accuracy {metrics['val_accuracy']}")
    provenance("aesthetic_net", net, {"train": args.train, "val": args.val}, args.out, t0)


def cmd_aesthetic_score(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.aesthetic.score import write_scores

    config = config_of(args.config)
    if args.scorer not in _spec(config)["scorers"]:
        raise ConfigError(f"config key 'aesthetic.scorers': '{args.scorer}' is not one of {_spec(config)['scorers']}")
    t0 = time.time()
    if args.scorer == "world":
        from imagenet_t2i.evaluation.aesthetic.world_scorer import world_scores

        if not args.net:
            raise ConfigError("scorer world: --net (the trained scorer's folder, eval/aesthetic_net) is required")
        result = write_scores(args.images, args.scorer, lambda paths: world_scores(args.net, paths), args.out)
        inputs = {"images": args.images, "net": args.net}
    print(f"{args.out}: {args.scorer} mean {result['mean']:.4f} over {result['n']} samples")
    provenance("aesthetic_score", {"scorer": args.scorer}, inputs, args.out, t0)

"""Commands of the T-AES stage (workflow/rules/aesthetic.smk): the aesthetic prompt files, the tiny world's scorer,
and one scorer's scores of a run's samples."""
from __future__ import annotations

import argparse
import time
from collections.abc import Callable
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

    config = config_of(args.config, gpu=args.scorer != "world")
    spec = _spec(config)
    if args.scorer not in spec["scorers"]:
        raise ConfigError(f"config key 'aesthetic.scorers': '{args.scorer}' is not one of {spec['scorers']}")
    t0 = time.time()
    if args.scorer == "world":
        from imagenet_t2i.evaluation.aesthetic.world_scorer import world_scores

        if not args.net:
            raise ConfigError("scorer world: --net (the trained scorer's folder, eval/aesthetic_net) is required")
        score, inputs = (lambda paths: world_scores(args.net, paths)), {"net": args.net}
    else:
        score, inputs = clip_scorer(config, args.scorer, args.prompts)
    result = write_scores(args.images, args.scorer, score, args.out)
    print(f"{args.out}: {args.scorer} mean {result['mean']:.4f} over {result['n']} samples")
    provenance("aesthetic_score", {"scorer": args.scorer, "weights": spec["weights"]},
               {"images": args.images, **inputs}, args.out, t0)


def clip_scorer(config: dict, scorer: str,
                prompts_file: str | None) -> tuple[Callable[[list[Path]], list[float]], dict[str, str]]:
    """PickScore or LAION Aesthetics v2 over sample paths (the sampler's ``NNN_MM.png``: prompt NNN); the scoring
    function and what it reads."""
    import re

    import numpy as np
    import torch
    from PIL import Image

    from imagenet_t2i.evaluation.aesthetic import clip_scorers
    from imagenet_t2i.weights import weights_file, weights_location

    names = config["aesthetic"]["weights"]

    def pixels(paths: list[Path]) -> torch.Tensor:  # (N, 3, H, W) uint8
        return torch.from_numpy(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths])).permute(0, 3, 1, 2)

    if scorer == "laion_aesthetics":
        clip, head = weights_location(config, names["clip"]), weights_file(config, names["laion_aesthetics"])
        return (lambda paths: clip_scorers.laion_aesthetics(clip, head, pixels(paths))), {"clip": clip, "head": head}
    if not prompts_file:
        raise ConfigError("scorer pickscore: --prompts (eval/aesthetic/prompts.txt) is required")
    prompts = [line.strip() for line in Path(prompts_file).read_text().splitlines() if line.strip()]
    model, tokenizer = (weights_location(config, names[k]) for k in ("pickscore", "pickscore_tokenizer"))

    def score(paths: list[Path]) -> list[float]:
        texts = [prompts[int(re.match(r"(\d+)_", p.name).group(1))] for p in paths]
        return clip_scorers.pickscore(model, tokenizer, pixels(paths), texts)

    return score, {"model": model, "tokenizer": tokenizer, "prompts": prompts_file}

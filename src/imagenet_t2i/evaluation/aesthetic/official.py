"""HPSv2.1 and ImageReward scores of a folder of samples, through the official packages, in their own conda
environments (envs/hpsv2.yaml, envs/imagereward.yaml: neither package installs beside this project's torch).

Stand-alone: imports nothing of imagenet_t2i (Python 3.8 syntax). The samples are the sampler's ``NNN_MM.png`` (prompt
NNN of the prompts file, sample MM); the output is the format of ``imagenet_t2i.evaluation.aesthetic.score``
(``scorer``, ``mean``, ``std``, ``n``, ``images``: one score per file).

    python official.py --scorer hpsv21 --images DIR --prompts prompts.txt --checkpoint HPS_v2.1_compressed.pt --out OUT
    python official.py --scorer imagereward --images DIR --prompts prompts.txt --checkpoint ImageReward.pt \\
        --med-config med_config.json --out OUT

- HPSv2.1: ``hpsv2.score(paths, prompt, cp=<checkpoint>, hps_version="v2.1")`` (hpsv2's ``img_score.score``: a list,
  one score per image). It builds its open_clip ViT-H-14 with ``pretrained="laion2B-s32B-b79K"``: run it where the
  hub cache holds that model (it cannot be passed as a file).
- ImageReward: ``ImageReward.load(<checkpoint>, device, med_config=<med_config>)`` then ``model.score(prompt,
  paths)`` (a float for one path, a list for several; normalised inside by the package).

UNTESTED with the real packages here (no GPU, no network); tests/test_aesthetic.py runs it against stand-in modules
that record the calls.
"""
from __future__ import annotations

import argparse
import json
import os
import re
from typing import Callable, Dict, List, Optional

SAMPLE = re.compile(r"^(\d+)_(\d+)\.png$")
Scorer = Callable[[str, List[str]], List[float]]


def samples_by_prompt(images: str, prompts: List[str]) -> Dict[int, List[str]]:
    """Prompt index -> its sample paths (sorted), from the sampler's ``NNN_MM.png`` names."""
    groups: Dict[int, List[str]] = {}
    for name in sorted(os.listdir(images)):
        match = SAMPLE.match(name)
        if match is None:
            continue
        index = int(match.group(1))
        if index >= len(prompts):
            raise ValueError(f"{images}/{name}: prompt {index} is past the {len(prompts)} prompts of the prompts file")
        groups.setdefault(index, []).append(os.path.join(images, name))
    if not groups:
        raise FileNotFoundError(f"{images}: no NNN_MM.png samples")
    return groups


def hps_scorer(checkpoint: str) -> Scorer:
    import hpsv2

    def score(prompt: str, paths: List[str]) -> List[float]:
        return [float(v) for v in hpsv2.score(paths, prompt, cp=checkpoint, hps_version="v2.1")]

    return score


def imagereward_scorer(checkpoint: str, med_config: Optional[str], device: str) -> Scorer:
    import ImageReward

    model = ImageReward.load(checkpoint, device=device, med_config=med_config)

    def score(prompt: str, paths: List[str]) -> List[float]:
        out = model.score(prompt, paths)
        return [float(v) for v in out] if isinstance(out, (list, tuple)) else [float(out)]

    return score


def score_folder(images: str, prompts: List[str], scorer: str, score: Scorer) -> dict:
    """Every sample scored with its prompt; the output record."""
    values: Dict[str, float] = {}
    for index, paths in samples_by_prompt(images, prompts).items():
        got = score(prompts[index], paths)
        if len(got) != len(paths):
            raise ValueError(f"{scorer}: {len(got)} scores for the {len(paths)} samples of prompt {index}")
        values.update({os.path.basename(p): v for p, v in zip(paths, got)})
    scores = list(values.values())
    mean = sum(scores) / len(scores)
    std = (sum((v - mean) ** 2 for v in scores) / len(scores)) ** 0.5  # as numpy's std (ddof 0)
    return {"scorer": scorer, "mean": mean, "std": std, "n": len(scores), "images": values}


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scorer", choices=["hpsv21", "imagereward"], required=True)
    p.add_argument("--images", required=True, help="the sampler's NNN_MM.png folder")
    p.add_argument("--prompts", required=True, help="one prompt a line (eval/aesthetic/prompts.txt)")
    p.add_argument("--checkpoint", required=True, help="HPS_v2.1_compressed.pt / ImageReward.pt")
    p.add_argument("--med-config", help="ImageReward: its med_config.json")
    p.add_argument("--device", default="cuda")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    with open(args.prompts) as f:
        prompts = [line.strip() for line in f if line.strip()]
    if args.scorer == "hpsv21":
        score = hps_scorer(args.checkpoint)
    else:
        score = imagereward_scorer(args.checkpoint, args.med_config, args.device)
    result = score_folder(args.images, prompts, args.scorer, score)
    tmp = f"{args.out}.tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2, sort_keys=True)
    os.replace(tmp, args.out)
    print(f"{args.out}: {args.scorer} mean {result['mean']:.4f} over {result['n']} samples")


if __name__ == "__main__":
    main()

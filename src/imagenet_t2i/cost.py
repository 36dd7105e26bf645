"""What a config costs before launch: images processed, GPU-hours and disk, per stage and per training run.

Counts come from the config (the image sets its runs plan, the steps, batches, prompts and samples). GPU-hours come
from a rate per stage (`RATES`): each names its source, since none has been measured on a GPU by this project yet
(benchmarks/README.md): the paper's own figure, a measurement in performance.md, or a stated assumption. Disk sizes
rest on stated per-sample sizes (`BYTES`). Perception (Mask2Former, mPLUG) and FID feature extraction are not
counted: their rates are not known to us.
"""
from __future__ import annotations

from dataclasses import dataclass

from imagenet_t2i.config import (RELEASED_RUN, evaluated_runs, resolve_run, run_resolution, run_shard_sets, set_images,
                                 split_resolution)


@dataclass(frozen=True)
class Rate:
    images_per_gpu_s: float  # per GPU (H100); for sampling: image x sampling steps per second
    source: str


RATES = {
    "train": Rate(284.0, "paper: 500k steps x 1,024 images in about 500 H100-hours (performance.md); not measured here"),
    "captions": Rate(2.0, "assumption: transformers generate of LLaVA-NeXT-8B at about 1-3 img/s per H100 "
                          "(performance.md); not measured on a GPU here; captions.view full shows a 500 x 375 photo "
                          "as about 2.3k image tokens (crop view: 1.2k), so expect the low end"),
    "encode": Rate(213.0, "assumption: performance.md's target of 5 H100-hours for ImageNet, CutMix and Crop "
                          "(3.84M images); not measured on a GPU here"),
    "sample": Rate(1 / 0.000804, "performance.md: a 417M DiT-I proxy on one H100, 205.9 ms per guided network "
                                 "evaluation of 256 prompts, i.e. 0.80 ms per image and sampling step"),
}
BYTES = {  # per sample, on disk
    "image": 2.0,  # per pixel: a PNG of a photo (assumption)
    "latent": 2 * 2,  # mean and std of the posterior, fp16, per latent element
    "text": 2,  # fp16 per text-embedding element, unpadded
    "fid_features": 4 * (2048 + 1008 + 1024 + 1024) + 9,  # per FID sample, float32: Inception pool + logits, DINOv2,
}                                                          # CLIP; a float64 CLIPScore and its truncation flag
TEXT_TOKENS = {"ta": 200, "aio": 8}  # assumption: a 200-token VLM caption, "An image of a <class>"


SIDE_SCALING = ("assumption: at another side than source.resolution (runs.<run>.resolution) training, encoding and "
                "sampling cost per image in proportion to the pixels (tokens), a lower bound: attention grows faster")


def _gpu_hours(images: float, rate: str, area: float = 1.0) -> float:
    """GPU-hours of ``images`` at ``rate``; ``area``: pixels per image relative to source.resolution (SIDE_SCALING)."""
    return images * area / RATES[rate].images_per_gpu_s / 3600


def _area(config: dict, side: int) -> float:
    return (side / config["source"]["resolution"]) ** 2


def _shard_sets(config: dict) -> set[tuple[str, str]]:
    """(image set, caption kind) of every shard set the runs train on, and the val sets with ``encode.val``."""
    sets = {tuple(name.rsplit("_", 1)) for run in config["runs"]
            for name in run_shard_sets(resolve_run(config, run)).values()}
    if config["encode"].get("val"):
        sets |= {("val", kind) for kind in {spec["captions"] for spec in config["runs"].values()}}
    return sets


def _prompts(config: dict) -> tuple[int, int]:
    """GenEval and DPG-Bench prompts of the config."""
    from imagenet_t2i.evaluation.dpg.paper_prompts import DPG_N_PROMPTS
    from imagenet_t2i.evaluation.geneval.paper_prompts import paper_geneval_prompts
    from imagenet_t2i.evaluation.geneval.prompts import generate_prompts, read_class_names

    g, src = config["eval"]["geneval"], config["source"]
    if g["vocabulary"] == "coco":
        geneval = len(paper_geneval_prompts(seed=g["seed"]))  # the official suite
    elif g["vocabulary"] == "world":
        geneval = len(generate_prompts(src["classes"], seed=g["seed"], n_per_task=g["n_per_task"], colors=src["colors"]))
    else:
        geneval = len(generate_prompts(read_class_names(g["vocabulary"]), seed=g["seed"], n_per_task=g["n_per_task"]))
    d = config["eval"]["dpg"]
    return geneval, DPG_N_PROMPTS if d.get("questions") else d["n_items"]


def _vlm_images(config: dict, backend: str, caption_sets: set[tuple[str, str]]) -> int:
    """Images the VLM captions. With ``released`` the release captions train and the CutMix composites it names (how
    many: known from the copy only), the VLM the rest: counted as an upper bound, every CutMix composite by the VLM."""
    if backend not in ("llava", "vllm", "released"):
        return 0
    return sum(set_images(config, s) for s, kind in caption_sets
               if kind == "ta" and (backend != "released" or s != "train"))


def cost(config: dict) -> dict:
    """``runs.<name>.{steps, global_batch, images, gpu_hours}``, ``stages.<name>.{images, gpu_hours, disk_gb}`` and
    the ``rates`` used, with their sources."""
    res = config["source"]["resolution"]
    pixel = config["encode"]["autoencoder"]["backend"] == "pixel"
    latent_elems = 3 * res * res if pixel else 4 * (res // 8) ** 2
    text_dim = {"minilm": 384, "t5": 2048}[config["encode"]["text"]["backend"]]
    shard_sets = _shard_sets(config)
    side = {s: split_resolution(s)[1] or res for s, _ in shard_sets}
    # another side: the same captions; the aesthetic fine-tune set comes with its own
    caption_sets = {(split_resolution(s)[0], kind) for s, kind in shard_sets if split_resolution(s)[0] != "aesthetic"}
    caption_sets |= {("val", kind) for _, kind in caption_sets}
    backend = config["captions"]["backend"]
    ta_images = sum(set_images(config, s) for s, kind in caption_sets if kind == "ta")
    vlm_images = _vlm_images(config, backend, caption_sets)
    augmented = {s for s, _ in shard_sets if split_resolution(s)[0] not in ("train", "val")}
    image_gb = BYTES["image"] * res * res / 1e9
    encoded = sum(set_images(config, s) for s, _ in shard_sets)
    stages = {
        "augment": {"images": sum(set_images(config, s) for s in augmented), "gpu_hours": 0.0,
                    "disk_gb": sum(set_images(config, s) * image_gb * _area(config, side[s]) for s in augmented)},
        "captions": {"images": ta_images, "gpu_hours": _gpu_hours(vlm_images, "captions"),
                     "disk_gb": 0.001 * ta_images / 1e3},  # about 1 kB of text per caption
        "encode": {"images": encoded,
                   "gpu_hours": 0.0 if pixel else sum(_gpu_hours(set_images(config, s), "encode",
                                                                 _area(config, side[s])) for s, _ in shard_sets),
                   "disk_gb": sum(set_images(config, s) * (_area(config, side[s]) * (res * res * BYTES["image"]
                                                                                     + latent_elems * BYTES["latent"])
                                                           + TEXT_TOKENS[kind] * text_dim * BYTES["text"])
                                  for s, kind in shard_sets) / 1e9},
    }
    runs = {}
    for name in config["runs"]:
        run_cfg = resolve_run(config, name)
        train = run_cfg["train"]
        images = train["steps"] * train["batch_size"]
        runs[name] = {"steps": train["steps"], "global_batch": train["batch_size"], "images": images,
                      "resolution": run_cfg["resolution"],
                      "gpu_hours": _gpu_hours(images, "train", _area(config, run_cfg["resolution"]))}
    stages["train"] = {"images": sum(r["images"] for r in runs.values()),
                       "gpu_hours": sum(r["gpu_hours"] for r in runs.values()), "disk_gb": 0.0}
    geneval, dpg = _prompts(config)
    fid = config["eval"].get("fid") or config["eval"]["fd"]
    overfit = {r for panel in config.get("figures", {}).get("F-OVERFIT", {}).get("panels", [])
               for line in panel["lines"] for r in line["runs"]}
    checkpoints = len(config["train"].get("eval_checkpoints", []))
    sampled = image_steps = fid_images = fid_steps = 0
    for run in evaluated_runs(config):
        released = run == RELEASED_RUN
        steps = config["eval"]["released"]["steps"] if released else config["eval"]["steps"]
        n = geneval * config["eval"]["geneval"]["samples_per_prompt"] + 4 * dpg
        area = _area(config, run_resolution(config, run))
        sampled, image_steps = sampled + n, image_steps + n * steps * area
        if run_resolution(config, run) != res:
            continue  # no FD at another side than the reference's (config: FD_METRICS)
        n = fid["num_samples"] * (1 + (checkpoints if run in overfit else 0))  # FID's own sampler (eval.fid.sampling)
        steps = steps if released else fid.get("sampling", {}).get("steps", steps)
        fid_images, fid_steps = fid_images + n, fid_steps + n * steps
    per_run = len(config["sample"]["grid_prompts"]) * config["sample"]["samples_per_prompt"]
    grid = per_run * len(config["runs"])
    sampled += grid
    image_steps += per_run * config["sample"]["steps"] * sum(_area(config, run_resolution(config, r))
                                                             for r in config["runs"])
    stages["sample"] = {"images": sampled, "gpu_hours": _gpu_hours(image_steps, "sample"),
                        "disk_gb": sampled * image_gb}
    stages["fid_sample"] = {"images": fid_images, "gpu_hours": _gpu_hours(fid_steps, "sample"),
                            "disk_gb": fid_images * BYTES["fid_features"] / 1e9}
    for stage in stages.values():
        stage["gpu_hours"], stage["disk_gb"] = round(stage["gpu_hours"], 1), round(stage["disk_gb"], 1)
    for run in runs.values():
        run["gpu_hours"] = round(run["gpu_hours"], 1)
    return {"runs": runs, "stages": stages, "rates": {k: {"per_gpu_s": round(v.images_per_gpu_s, 1),
                                                          "source": v.source} for k, v in RATES.items()},
            "side_scaling": SIDE_SCALING,
            "not_counted": ([] if not any(split_resolution(s)[0] == "aesthetic" and not set_images(config, s)
                                          for s, _ in shard_sets)
                            else ["the aesthetic fine-tune set's encoding: its size is unknown until the folder is "
                                  "there (aesthetic.images)"]),
            "assumed_bytes": {**BYTES, "text_tokens": TEXT_TOKENS},
            "total": {"gpu_hours": round(sum(s["gpu_hours"] for s in stages.values()), 1),
                      "disk_gb": round(sum(s["disk_gb"] for s in stages.values()), 1)}}


def format_cost(report: dict) -> str:
    """The report as text: stages, runs, total, and where each rate comes from."""
    lines = [f"{'stage':<10} {'images':>14} {'GPU-hours':>10} {'disk GB':>9}"]
    lines += [f"{name:<10} {s['images']:>14,} {s['gpu_hours']:>10,.1f} {s['disk_gb']:>9,.1f}"
              for name, s in report["stages"].items()]
    lines += [f"{'total':<10} {'':>14} {report['total']['gpu_hours']:>10,.1f} {report['total']['disk_gb']:>9,.1f}", "",
              f"{'run':<28} {'steps':>9} {'batch':>6} {'images':>14} {'GPU-hours':>10}"]
    lines += [f"{name:<28} {r['steps']:>9,} {r['global_batch']:>6,} {r['images']:>14,} {r['gpu_hours']:>10,.1f}"
              for name, r in report["runs"].items()]
    lines += ["", "rates (per GPU; none measured on a GPU by this project yet):"]
    lines += [f"  {name}: {r['per_gpu_s']:,} /s: {r['source']}" for name, r in report["rates"].items()]
    lines += [f"  {report['side_scaling']}"]
    lines += [f"not counted: {item}" for item in report["not_counted"]]
    lines += ["disk: PNG images at about 2 bytes per pixel, fp16 latents and unpadded fp16 text embeddings of "
              "200 (TA) or 8 (AIO) tokens (assumptions); perception and FID feature extraction are not counted"]
    return "\n".join(lines)

"""`imagenet-t2i`: one console script, a subcommand per pipeline stage (the Snakemake rules call these)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .config import ConfigError, load_config, resolve_run


def _config(paths: list[str]) -> dict:
    return load_config(*paths)


def cmd_validate(args: argparse.Namespace) -> None:
    config = _config(args.config)
    print(f"{', '.join(args.config)}: valid ({len(config['runs'])} runs, models {sorted(config['models'])})")


def cmd_models(args: argparse.Namespace) -> None:
    """Print every configured model's name and parameter count (built on the meta device: no memory used)."""
    import torch

    from .models import build_model, count_parameters

    config = _config(args.config)
    shape = _model_shape(config)
    for name, spec in config["models"].items():
        kwargs = {**shape, **{k: v for k, v in spec.items() if k != "arch"}}
        with torch.device("meta"):
            model = build_model(spec["arch"], **kwargs)
        n = count_parameters(model)
        print(f"{name}\t{spec['arch']}\t{n:,}\t{n / 1e6:.1f}M")


def _model_shape(config: dict) -> dict:
    """Model input kwargs implied by the config's encoders (without loading them)."""
    ae = config["encode"]["autoencoder"]["backend"]
    channels, down = (3, 1) if ae == "pixel" else (4, 8)
    text_dim = {"minilm": 384, "t5": 2048}[config["encode"]["text"]["backend"]]
    return {"in_channels": channels, "input_size": config["source"]["resolution"] // down, "text_dim": text_dim}


def cmd_source(args: argparse.Namespace) -> None:
    config = _config(args.config)
    src = config["source"]
    t0 = time.time()
    if src["backend"] == "synthetic":
        from .world.build import build_split

        n = src["num_train"] if args.split == "train" else src["num_val"]
        seed = config["seed"] * 1000 + (0 if args.split == "train" else 1)
        build_split(args.out, args.split, n, seed, src["resolution"], src["classes"], src["colors"], src["backgrounds"])
    else:
        from .imagenet import build_index

        build_index(src["root"], args.split, src["synset_mapping"], args.out)
    _provenance("source", src, {}, args.out, t0)


def cmd_augment(args: argparse.Namespace) -> None:
    from .augment import build_crop_set, build_cutmix_set

    config = _config(args.config)
    aug = config["augment"]
    t0 = time.time()
    if args.kind == "cutmix":
        build_cutmix_set(args.source, args.out, aug["cutmix"]["pattern"], seed=config["seed"])
    else:
        build_crop_set(args.source, args.out, tuple(aug["crop"]["scale"]), seed=config["seed"])
    _provenance("augment", {args.kind: aug[args.kind]}, {"source": args.source}, args.out, t0)


def cmd_captions(args: argparse.Namespace) -> None:
    from .captions import AIOCaptioner, SceneCaptioner, write_captions
    from .io import read_json, read_jsonl

    config = _config(args.config)
    images = Path(args.images)
    t0 = time.time()
    if args.kind == "aio":
        records, captioner = read_jsonl(images / "index.jsonl"), AIOCaptioner(read_json(images / "classes.json"))
    elif config["captions"]["backend"] == "scene":
        records, captioner = read_jsonl(images / "scenes.jsonl"), SceneCaptioner(seed=config["seed"])
    else:
        raise ConfigError("config key 'captions.backend': the LLaVA-NeXT captioner is not implemented yet; "
                          "use 'scene' (synthetic world) or supply a captions JSONL (docs/formats.md)")
    write_captions(records, captioner, args.out)
    _provenance("captions", {"kind": args.kind, **config["captions"]}, {"images": args.images}, args.out, t0)


def cmd_shards(args: argparse.Namespace) -> None:
    from .encode.autoencoder import make_autoencoder
    from .encode.text import make_text_encoder
    from .shards import write_shards

    config = _config(args.config)
    enc = config["encode"]
    t0 = time.time()
    manifest = write_shards(args.images, args.captions, args.out, make_autoencoder(enc["autoencoder"]),
                            make_text_encoder(enc["text"]), config["source"]["resolution"],
                            shard_size=enc["shard_size"], batch_size=enc["batch_size"])
    print(f"{args.out}: {manifest['num_samples']} samples in {len(manifest['shards'])} shards, "
          f"{len(manifest['skipped'])} skipped")
    _provenance("shards", enc, {"images": args.images, "captions": args.captions}, args.out, t0)


def cmd_train(args: argparse.Namespace) -> None:
    from .train.launcher import launch

    config = _config(args.config)
    run_cfg = resolve_run(config, args.run)
    cluster = dict(config["cluster"])
    if args.cluster:
        cluster["backend"] = args.cluster
    record = launch(run_cfg, cluster, args.shards, args.out, args.state, until=args.until)
    if record.get("finished") is False:
        print(f"[{args.run}] stopped at step {record['step']} as asked (--until); rerun to continue")
    else:
        print(f"[{args.run}] done: {record['summary']}")


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from .encode.autoencoder import make_autoencoder
    from .encode.text import make_text_encoder
    from .loader import load_uncond
    from .sample import make_grid, sample_prompts

    config = _config(args.config)
    sample_cfg = dict(config["sample"])
    prompts = Path(args.prompts).read_text().splitlines() if args.prompts else sample_cfg["grid_prompts"]
    prompts = [p.strip() for p in prompts if p.strip()]
    t0 = time.time()
    uncond, _ = load_uncond(args.uncond)
    paths = sample_prompts(args.model, make_autoencoder(config["encode"]["autoencoder"]),
                           make_text_encoder(config["encode"]["text"]), uncond[0], prompts, sample_cfg, args.out)
    if args.grid:
        from .io import atomic_write

        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        with atomic_write(args.grid, "wb") as f:
            make_grid(images, prompts, sample_cfg["samples_per_prompt"]).save(f, format="PNG")
        _provenance("sample", sample_cfg, {"model": args.model, "uncond": args.uncond}, args.grid, t0)
    _provenance("sample", sample_cfg, {"model": args.model, "uncond": args.uncond}, args.out, t0)


def _provenance(stage: str, cfg: dict, inputs: dict, output: str, t0: float) -> None:
    from .provenance import make_record, write_record

    write_record(output, make_record(stage, cfg, inputs, [output], time.time() - t0))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagenet-t2i", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn, help: str) -> argparse.ArgumentParser:  # noqa: A002, ANN001
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--config", nargs="+", default=["config/config.yaml"],
                        help="config YAML file(s), deep-merged in order (default: config/config.yaml)")
        sp.set_defaults(fn=fn)
        return sp

    add("validate", cmd_validate, "check a config against the schema")
    add("models", cmd_models, "print every configured model's name and parameter count")
    sp = add("source", cmd_source, "render the synthetic world or index ImageNet for one split")
    sp.add_argument("--split", choices=["train", "val"], required=True)
    sp.add_argument("--out", required=True)
    sp = add("augment", cmd_augment, "build the CutMix or Crop set from the training images")
    sp.add_argument("--kind", choices=["cutmix", "crop"], required=True)
    sp.add_argument("--source", required=True)
    sp.add_argument("--out", required=True)
    sp = add("captions", cmd_captions, "caption an image set (AIO or TA)")
    sp.add_argument("--images", required=True)
    sp.add_argument("--kind", choices=["aio", "ta"], required=True)
    sp.add_argument("--out", required=True)
    sp = add("shards", cmd_shards, "encode images + captions into WebDataset shards")
    sp.add_argument("--images", required=True)
    sp.add_argument("--captions", required=True)
    sp.add_argument("--out", required=True)
    sp = add("train", cmd_train, "train one run through submitit (blocks; resumes from --state)")
    sp.add_argument("--run", required=True)
    sp.add_argument("--shards", required=True, help="folder holding the shard sets")
    sp.add_argument("--out", required=True)
    sp.add_argument("--state", required=True, help="resumable state (keep outside Snakemake outputs)")
    sp.add_argument("--until", type=int, help="stop (resumably) after this step")
    sp.add_argument("--cluster", choices=["local", "slurm"], help="override cluster.backend")
    sp = add("sample", cmd_sample, "sample a trained model (PNG per image, optional labelled grid)")
    sp.add_argument("--model", required=True, help="folder with model.safetensors + config.json")
    sp.add_argument("--uncond", required=True, help="shard folder whose uncond.npy is the empty caption")
    sp.add_argument("--prompts", help="text file, one prompt a line (default: sample.grid_prompts)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--grid")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.fn(args)
    except ConfigError as e:
        print(f"imagenet-t2i {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

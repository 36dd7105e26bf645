"""Commands of the data stage (workflow/rules/data.smk): the source images (rendered world or ImageNet index),
the fake ImageNet of offline smoke runs, model weights, and the CutMix / Crop sets."""
from __future__ import annotations

import argparse
import time

from imagenet_t2i.cli.common import config_of, provenance
from imagenet_t2i.config import ConfigError, split_resolution


def cmd_source(args: argparse.Namespace) -> None:
    config = config_of(args.config)
    src = config["source"]
    t0 = time.time()
    _, size = split_resolution(args.split)
    if args.split == "aesthetic":  # T-AES's fine-tune set
        cmd_aesthetic_set(config, args)
        return
    if size is not None:  # the resolution stage's images: the base split's scenes drawn again at that side
        if src["backend"] != "synthetic":
            raise ConfigError(f"source split '{args.split}': only the synthetic world draws its images again at "
                              "another side; an ImageNet run at another side reads the same index (data/<split>)")
        from imagenet_t2i.world.build import rescale_split

        rescale_split(args.base, args.out, size)
        provenance("source", {**src, "resolution": size}, {"base": args.base}, args.out, t0)
        return
    if src["backend"] == "synthetic":
        from imagenet_t2i.world.build import build_split

        n = src["num_train"] if args.split == "train" else src["num_val"]
        seed = config["seed"] * 1000 + (0 if args.split == "train" else 1)
        build_split(args.out, args.split, n, seed, src["resolution"], src["classes"], src["colors"], src["backgrounds"],
                    sizes=src.get("sizes", ("small", "medium", "large")), placement=src.get("placement", "random"))
    else:
        from imagenet_t2i.source.imagenet import build_index

        build_index(src["root"], args.split, src["synset_mapping"], args.out,
                    val_labels=src.get("val_labels") if args.split == "val" else None, workers=src["workers"],
                    meta_mat=src.get("val_meta_mat"))
    provenance("source", src, {}, args.out, t0)


def cmd_aesthetic_set(config: dict, args: argparse.Namespace) -> None:
    """The aesthetic fine-tune set (``aesthetic.set``): the world's training images with its property, or an image +
    caption folder indexed in place."""
    spec = config.get("aesthetic")
    if not spec:
        raise ConfigError("config key 'aesthetic': not set, so there is no aesthetic fine-tune set")
    t0 = time.time()
    if spec["set"] == "world":
        from imagenet_t2i.world.aesthetic import aesthetic_split

        n = aesthetic_split(args.base, args.out)
        inputs = {"base": args.base}
    else:
        from pathlib import Path

        from imagenet_t2i.source.caption_folder import CAPTIONS, index_caption_folder

        if not (Path(spec["set"]) / CAPTIONS).is_file():
            raise ConfigError(f"config key 'aesthetic.set': {spec['set']} has no {CAPTIONS} (one {{\"path\", "
                              "\"caption\"}} row per image); download the fine-tune set (LAION-POP in the paper) "
                              "there or name another folder")
        n = index_caption_folder(spec["set"], args.out)
        inputs = {"folder": spec["set"]}
    print(f"{args.out}: {n} images of the aesthetic fine-tune set ({spec['set']})")
    provenance("source", {"aesthetic": spec["set"]}, inputs, args.out, t0)


def cmd_fake_imagenet(args: argparse.Namespace) -> None:
    from imagenet_t2i.source.fake_imagenet import write_fake_imagenet

    config = config_of(args.config)
    fake = config["source"].get("fake")
    if not fake:
        raise ConfigError("config key 'source.fake': not set; a fake ImageNet is for offline smoke runs only")
    t0 = time.time()
    written = write_fake_imagenet(args.out, **fake)
    print(f"{args.out}: fake ImageNet ({fake})")
    provenance("fake_imagenet", {"fake": fake, "written": _jsonable(written)}, {}, args.out, t0)


def _jsonable(obj: object) -> object:
    """Paths and tuples inside a helper's report, as JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj if isinstance(obj, (str, int, float, bool)) or obj is None else str(obj)


def cmd_weights(args: argparse.Namespace) -> None:
    from imagenet_t2i.random_init import build
    from imagenet_t2i.weights import fetch

    config = config_of(args.config)
    spec = config["weights"].get(args.name)
    if spec is None:
        raise ConfigError(f"config key 'weights.{args.name}': no such entry (defined: {sorted(config['weights'])})")
    t0 = time.time()
    what = build(spec["random_init"], args.out) if "random_init" in spec else fetch(spec, args.out)
    print(f"{args.out}: {what}")
    provenance("weights", {"name": args.name, **spec, "fetched": what}, {}, args.out, t0)


def cmd_augment(args: argparse.Namespace) -> None:
    from imagenet_t2i.augment import build_crop_set, build_cutmix_set
    from imagenet_t2i.chunks import parse_chunk

    config = config_of(args.config)
    aug = config["augment"]
    chunk = parse_chunk(args.chunk)
    common = {"seed": config["seed"], "image_format": aug["image_format"], "chunk": chunk, "workers": aug["workers"],
              "resize": config["source"].get("resize", "bicubic")}
    t0 = time.time()
    base_set, size = split_resolution(args.set)
    if size is not None:  # the resolution stage: the base set's composites made again at that side
        from imagenet_t2i.augment import build_rescaled_set

        unseeded = {k: v for k, v in common.items() if k != "seed"}  # nothing is drawn: the base set's geometry
        result = build_rescaled_set(args.base, args.source, args.out, size, **unseeded,
                                    from_original=aug.get("crop", {}).get("from_original", False))
        print(f"{args.out}: chunk {args.chunk}: {result}")
        provenance("augment", {"rescaled": base_set, "resolution": size, "chunk": args.chunk,
                               "image_format": aug["image_format"], "resize": common["resize"]},
                   {"source": args.source, "base": args.base}, args.out, t0)
        return
    if args.set.startswith("cutmix_"):
        settings = {"cutmix": {"pattern": args.set.removeprefix("cutmix_")}}
        result = build_cutmix_set(args.source, args.out, settings["cutmix"]["pattern"], **common,
                                  **release_composites(config, settings["cutmix"]["pattern"]))
    elif args.set == "crop":
        settings = {"crop": aug["crop"]}
        result = build_crop_set(args.source, args.out, tuple(aug["crop"]["scale"]), **common,
                                from_original=aug["crop"].get("from_original", False))
    else:
        raise ConfigError(f"augmented set '{args.set}': use crop or cutmix_<half|quarter|ninth|sixteenth|all>")
    print(f"{args.out}: chunk {args.chunk}: {result}")
    provenance("augment", {**settings, "chunk": args.chunk, "image_format": aug["image_format"],
                           "resize": common["resize"]},
                {"source": args.source}, args.out, t0)


def release_composites(config: dict, pattern: str) -> dict:
    """With ``captions.backend: released``: the release's composites of ``pattern`` and the copy's files, for
    `build_cutmix_set` (the paper's own CutMix images, rebuilt so that their released captions apply)."""
    if config["captions"]["backend"] != "released":
        return {}
    from imagenet_t2i.augment.geometry import PATTERNS
    from imagenet_t2i.augment.released import released_composites
    from imagenet_t2i.captions.released import copy_files

    rel = config["captions"]["released"]
    released = released_composites(rel["path"], PATTERNS if pattern == "all" else (pattern,), rel["columns"])
    print(f"release {rel['path']}: composites of {sum(map(len, released.values()))} base image(s) to rebuild")
    return {"released": released, "release_files": copy_files(rel["path"])}


def cmd_augment_merge(args: argparse.Namespace) -> None:
    from imagenet_t2i.augment.merge import merge_augmented

    t0 = time.time()
    result = merge_augmented(args.parts, args.out)
    print(f"{args.out}: {result} from {len(args.parts)} chunk(s)")
    provenance("augment_merge", {"chunks": len(args.parts)}, {f"part_{i}": p for i, p in enumerate(args.parts)},
                args.out, t0)

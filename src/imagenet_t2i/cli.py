"""`imagenet-t2i`: one console script, a subcommand per pipeline stage (the Snakemake rules call these)."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ConfigError, load_config, resolve_run
from .malloc import keep_freed_memory
from .weights import resolved, weights_location

if TYPE_CHECKING:
    from .encode.text import TextEncoder


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

        build_index(src["root"], args.split, src["synset_mapping"], args.out,
                    val_labels=src.get("val_labels") if args.split == "val" else None, workers=src["workers"],
                    meta_mat=src.get("val_meta_mat"))
    _provenance("source", src, {}, args.out, t0)


def cmd_fake_imagenet(args: argparse.Namespace) -> None:
    from .fake_imagenet import write_fake_imagenet

    config = _config(args.config)
    fake = config["source"].get("fake")
    if not fake:
        raise ConfigError("config key 'source.fake': not set; a fake ImageNet is for offline smoke runs only")
    t0 = time.time()
    written = write_fake_imagenet(args.out, **fake)
    print(f"{args.out}: fake ImageNet ({fake})")
    _provenance("fake_imagenet", {"fake": fake, "written": _jsonable(written)}, {}, args.out, t0)


def _jsonable(obj: object) -> object:
    """Paths and tuples inside a helper's report, as JSON."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj if isinstance(obj, (str, int, float, bool)) or obj is None else str(obj)


def cmd_weights(args: argparse.Namespace) -> None:
    from .weights import fetch

    config = _config(args.config)
    spec = config["weights"].get(args.name)
    if spec is None:
        raise ConfigError(f"config key 'weights.{args.name}': no such entry (defined: {sorted(config['weights'])})")
    t0 = time.time()
    what = fetch(spec, args.out)
    print(f"{args.out}: {what}")
    _provenance("weights", {"name": args.name, **spec, "fetched": what}, {}, args.out, t0)


def cmd_augment(args: argparse.Namespace) -> None:
    from .augment import build_crop_set, build_cutmix_set
    from .chunks import parse_chunk

    config = _config(args.config)
    aug = config["augment"]
    chunk = parse_chunk(args.chunk)
    common = {"seed": config["seed"], "image_format": aug["image_format"], "chunk": chunk, "workers": aug["workers"]}
    t0 = time.time()
    if args.set.startswith("cutmix_"):
        settings = {"cutmix": {"pattern": args.set.removeprefix("cutmix_")}}
        result = build_cutmix_set(args.source, args.out, settings["cutmix"]["pattern"], **common)
    elif args.set == "crop":
        settings = {"crop": aug["crop"]}
        result = build_crop_set(args.source, args.out, tuple(aug["crop"]["scale"]), **common)
    else:
        raise ConfigError(f"augmented set '{args.set}': use crop or cutmix_<half|quarter|ninth|sixteenth|all>")
    print(f"{args.out}: chunk {args.chunk}: {result}")
    _provenance("augment", {**settings, "chunk": args.chunk, "image_format": aug["image_format"]},
                {"source": args.source}, args.out, t0)


def cmd_augment_merge(args: argparse.Namespace) -> None:
    from .augment.merge import merge_augmented

    t0 = time.time()
    result = merge_augmented(args.parts, args.out)
    print(f"{args.out}: {result} from {len(args.parts)} chunk(s)")
    _provenance("augment_merge", {"chunks": len(args.parts)}, {f"part_{i}": p for i, p in enumerate(args.parts)},
                args.out, t0)


def _caption_settings(config: dict, kind: str) -> dict:
    """What a caption file depends on besides its images (the chunks' fingerprint)."""
    if kind == "aio":
        return {"backend": "aio"}
    caps = {k: v for k, v in config["captions"].items() if k not in ("chunks", "batch_size")}
    return {**caps, "resolution": config["source"]["resolution"], "seed": config["seed"]}


def cmd_captions(args: argparse.Namespace) -> None:
    from .captions.chunked import fingerprint, write_caption_chunk
    from .captions.records import record_captioner
    from .chunks import parse_chunk
    from .io import sha256_file

    config = _config(args.config)
    images, chunk = Path(args.images), parse_chunk(args.chunk)
    t0 = time.time()
    records, captioner = record_captioner(config, images, args.kind, chunk)
    fp = fingerprint(sha256_file(images / "index.jsonl"), args.kind, _caption_settings(config, args.kind))
    summary = write_caption_chunk(records, captioner, args.out, chunk, fp,
                                  batch_size=4 * config["captions"]["batch_size"])
    inputs = {"images": args.images, **({"weights": args.weights} if args.weights else {})}
    _provenance("captions", {"kind": args.kind, "chunk": args.chunk, **_caption_settings(config, args.kind),
                             "captioner": summary["captioner"], "failed": summary["failed"],
                             "empty": summary["empty"]}, inputs, args.out, t0)


def cmd_captions_merge(args: argparse.Namespace) -> None:
    from .captions.chunked import merge_caption_chunks

    t0 = time.time()
    summary = merge_caption_chunks(args.parts, args.out)
    print(f"{args.out}: {summary['written']} captions from {summary['chunks']} chunk(s), "
          f"{len(summary['failed'])} unreadable image(s), {len(summary['empty'])} empty caption(s)")
    _provenance("captions_merge", summary, {f"part_{i}": p for i, p in enumerate(args.parts)}, args.out, t0)


def cmd_shards(args: argparse.Namespace) -> None:
    from .chunks import parse_chunk
    from .encode.autoencoder import make_autoencoder
    from .encode.text import make_text_encoder
    from .shards import write_shards

    config = _config(args.config)
    enc = config["encode"]
    t0 = time.time()
    manifest = write_shards(args.images, args.captions, args.out, make_autoencoder(resolved(config, "autoencoder")),
                            make_text_encoder(resolved(config, "text")), config["source"]["resolution"],
                            shard_size=enc["shard_size"], batch_size=enc["batch_size"], chunk=parse_chunk(args.chunk))
    print(f"{args.out}: chunk {args.chunk}: {manifest['num_samples']} samples in {len(manifest['shards'])} shards, "
          f"{len(manifest['skipped'])} skipped")
    _provenance("shards", enc, {"images": args.images, "captions": args.captions}, args.out, t0)


def cmd_shards_merge(args: argparse.Namespace) -> None:
    from .shards import merge_shards

    t0 = time.time()
    manifest = merge_shards(args.parts, args.out)
    print(f"{args.out}: {manifest['num_samples']} samples in {len(manifest['shards'])} shards from "
          f"{len(args.parts)} chunk(s), {len(manifest['skipped'])} skipped")
    _provenance("shards_merge", {"chunks": len(args.parts)}, {f"part_{i}": p for i, p in enumerate(args.parts)},
                args.out, t0)


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


def cmd_released(args: argparse.Namespace) -> None:
    from .encode.text import make_text_encoder
    from .released import convert_released
    from .world.folder import staged_folder

    config = _config(args.config)
    spec = config["eval"].get("released")
    if not spec:
        raise ConfigError("config key 'eval.released': not set; add {weights: <entry of a CAD-I snapshot>, guidance, "
                          "clamp, steps} (config/paper.yaml) to evaluate the released CAD-I")
    t0 = time.time()
    text = resolved(config, "text")
    uncond = make_text_encoder(text).encode([""])[0]  # (L0, D): the prompts' encoder, as the shards stage does it
    sampling = {k: spec[k] for k in ("steps", "guidance", "clamp")}
    with staged_folder(args.out) as tmp:
        record = convert_released(args.snapshot, tmp, uncond, sampling)
    print(f"{args.out}: released CAD-I from {args.snapshot} (model.safetensors sha256 "
          f"{record['sha256']['model.safetensors']})")
    _provenance("released", {"released": spec, "text": text, "release_sampling": record["release_sampling"],
                             "our_sampling": record["our_sampling"], "snapshot_sha256": record["sha256"]},
                {"snapshot": args.snapshot, **({"text_weights": text["path"]} if "path" in text else {})}, args.out, t0)


def cmd_sample(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from .encode.autoencoder import make_autoencoder
    from .loader import load_uncond
    from .sample import make_grid, sample_prompts, sampling_provenance

    config = _config(args.config)
    sample_cfg = dict(config["sample"])
    prompts = _prompt_lines(Path(args.prompts).read_text().splitlines() if args.prompts else sample_cfg["grid_prompts"])
    t0 = time.time()
    uncond, _ = load_uncond(args.uncond)
    paths = sample_prompts(args.model, make_autoencoder(resolved(config, "autoencoder")),
                           _text_encoder(config, args.embeddings), uncond[0], prompts, sample_cfg, args.out,
                           batch_size=args.batch_size)
    inputs = {"model": args.model, "uncond": args.uncond, **_embeddings_input(args)}
    record = {**sample_cfg, **sampling_provenance(args.batch_size)}
    if args.grid:
        from .io import atomic_write

        images = [np.asarray(Image.open(p).convert("RGB")) for p in paths]
        with atomic_write(args.grid, "wb") as f:
            make_grid(images, prompts, sample_cfg["samples_per_prompt"]).save(f, format="PNG")
        _provenance("sample", record, inputs, args.grid, t0)
    _provenance("sample", record, inputs, args.out, t0)


def _prompt_lines(lines: list[str]) -> list[str]:
    """Prompts as sampled: stripped, blank lines dropped."""
    return [p.strip() for p in lines if p.strip()]


def cmd_embed(args: argparse.Namespace) -> None:
    from .encode.text import make_text_encoder
    from .encode.text_cache import read_texts, write_text_cache

    config = _config(args.config)
    texts = _prompt_lines(config["sample"]["grid_prompts"]) + [row["prompt"] for row in _probe_rows(config)]
    for path in args.texts_from:
        texts += read_texts(path, args.captions_limit)
    t0 = time.time()
    n = write_text_cache(make_text_encoder(resolved(config, "text")), texts, args.out)
    print(f"{args.out}: {n} distinct texts ({len(texts)} read)")
    _provenance("embed", {"text": resolved(config, "text"), "grid_prompts": config["sample"]["grid_prompts"],
                          "captions_limit": args.captions_limit}, {p: p for p in args.texts_from}, args.out, t0)


def _probe_rows(config: dict) -> list[dict]:
    """The colour probe's prompts: the synthetic world's colour x class; none at paper scale."""
    from .evaluation.colour_probe import probe_prompts

    src = config["source"]
    return probe_prompts(src["classes"], src["colors"]) if src["backend"] == "synthetic" else []


def cmd_colour_probe(args: argparse.Namespace) -> None:
    from .evaluate import sample_colour_probe
    from .evaluation.colour_probe import probe_accuracy
    from .io import write_json

    config = _config(args.config)
    rows, k = _probe_rows(config), config["eval"]["colour_probe"]["samples_per_prompt"]
    if not rows:
        raise ConfigError("config key 'source.backend': the colour probe is a diagnostic of the synthetic world "
                          "(its colours and classes); drop colour_probe from the tables of this config")
    t0 = time.time()
    images = sample_colour_probe(args.model, rows, args.images, *_eval_backends(config, args.uncond, args.embeddings),
                                 _eval_sample_cfg(config, args), k, args.batch_size)
    result = probe_accuracy(images, rows, k)
    write_json(args.out, result)
    print(f"{args.out}: colour probe accuracy {result['accuracy']:.3f} (chance {result['chance']:.3f})")
    inputs = {"model": args.model, "uncond": args.uncond, **_embeddings_input(args)}
    _provenance("colour_probe_sample", {**_sampling_record(config, args), "samples_per_prompt": k}, inputs,
                args.images, t0)
    _provenance("colour_probe", {"samples_per_prompt": k}, {"images": args.images}, args.out, t0)


def cmd_denoise_profile(args: argparse.Namespace) -> None:
    from .encode.autoencoder import default_device
    from .evaluation.denoise_profile import denoise_profile, fixed_samples, format_profile
    from .io import write_json
    from .models import load_pretrained
    from .sample import model_objective

    config = _config(args.config)
    cfg = config["eval"]["denoise"]
    t0 = time.time()
    x0, text, mask = fixed_samples(args.shards, cfg["num_samples"], cfg["seed"])
    objective = model_objective(args.model)
    profile = denoise_profile(load_pretrained(args.model), x0, text, mask, cfg["gammas"], objective, cfg["seed"],
                              args.batch_size, default_device())
    profile.update(shards=args.shards, seed=cfg["seed"], objective=objective,
                   self_conditioning="none (one pass, the first sampling step's input)")
    print(f"{args.model} on {profile['num_samples']} samples of {args.shards}: x0-prediction MSE\n"
          f"{format_profile(profile)}")
    if args.out:
        write_json(args.out, profile)
        _provenance("denoise_profile", {**cfg, "batch_size": args.batch_size},
                    {"model": args.model, "shards": args.shards}, args.out, t0)


def _text_encoder(config: dict, embeddings: str | None) -> TextEncoder:
    """The prompt-embedding cache when given (no text encoder is loaded), else the configured encoder."""
    if embeddings:
        from .encode.text_cache import TextEmbeddingCache

        return TextEmbeddingCache(embeddings, expect=resolved(config, "text"))
    from .encode.text import make_text_encoder

    return make_text_encoder(resolved(config, "text"))


def _embeddings_input(args: argparse.Namespace) -> dict:
    """The cache as a provenance input (audit re-hashes it), when one was used."""
    return {"embeddings": args.embeddings} if args.embeddings else {}


def _eval_backends(config: dict, uncond_dir: str, embeddings: str | None) -> tuple:
    from .encode.autoencoder import make_autoencoder
    from .loader import load_uncond

    return (make_autoencoder(resolved(config, "autoencoder")), _text_encoder(config, embeddings),
            load_uncond(uncond_dir)[0][0])


SAMPLING_OVERRIDES = ("steps", "guidance", "clamp")


def _eval_sample_cfg(config: dict, args: argparse.Namespace) -> dict:
    """``sample`` with the benchmarks' steps (``eval.steps``), then any ``--steps/--guidance/--clamp`` given."""
    given = {k: getattr(args, k) for k in SAMPLING_OVERRIDES if getattr(args, k, None) is not None}
    return {**config["sample"], "steps": config["eval"]["steps"], **given}


def _sampling_record(config: dict, args: argparse.Namespace) -> dict:
    """The evaluation sampling settings as used and how they ran (seed rule, device, precision, batch size);
    ``overridden`` names the settings given on the command line (the released CAD-I's, eval.released)."""
    from .sample import sampling_provenance

    given = sorted(k for k in SAMPLING_OVERRIDES if getattr(args, k, None) is not None)
    return {**_eval_sample_cfg(config, args), **sampling_provenance(args.batch_size),
            **({"overridden": given} if given else {})}


def _require_tiny_perception(config: dict, what: str) -> None:
    if config["eval"]["perception"] != "tiny":
        raise ConfigError(f"config key 'eval.perception': this command is the tiny world's; the official {what} "
                          "runs in its own conda environment through the Snakemake rule (docs/evaluation.md)")


def cmd_geneval_prompts(args: argparse.Namespace) -> None:
    from .evaluation.geneval_prompts import generate_prompts, read_class_names, write_prompts

    config = _config(args.config)
    g = config["eval"]["geneval"]
    t0 = time.time()
    if g["vocabulary"] == "coco":  # the official 553 prompts (80 COCO names, seed 43), byte for byte
        from .evaluation.official_files import paper_geneval_prompts

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
    _provenance("geneval_prompts", g, {}, args.out, t0)


def cmd_geneval_sample(args: argparse.Namespace) -> None:
    from .evaluate import sample_geneval

    config = _config(args.config)
    t0 = time.time()
    n = sample_geneval(args.model, args.prompts, args.out, *_eval_backends(config, args.uncond, args.embeddings),
                       _eval_sample_cfg(config, args), config["eval"]["geneval"]["samples_per_prompt"], args.batch_size)
    print(f"{args.out}: {n} samples written (complete prompts of an earlier run kept)")
    _provenance("geneval_sample", _sampling_record(config, args),
                {"model": args.model, "prompts": args.prompts, "uncond": args.uncond, **_embeddings_input(args)},
                args.out, t0)


def cmd_geneval_detect(args: argparse.Namespace) -> None:
    from .evaluation.detector import detect_folder

    config = _config(args.config)
    perception, g = config["eval"]["perception"], config["eval"]["geneval"]
    t0 = time.time()
    if perception == "portable":  # transformers Mask2Former + CLIP: not the official number (docs/evaluation.md)
        from .encode.autoencoder import default_device
        from .evaluation.geneval_portable import MMDET_TEST_SIZE, perceive_portable

        size = g.get("image_size", "mmdet")
        image_size = MMDET_TEST_SIZE if size == "mmdet" else None if size is None else {"shortest_edge": size}
        meta = perceive_portable(args.images, args.out, weights_location(config, g["detector"]),
                                 weights_location(config, g["clip"]), device=default_device(), image_size=image_size)
        _provenance("geneval_detect", {"perception": "portable", **meta}, {"images": args.images}, args.out, t0)
        return
    _require_tiny_perception(config, "GenEval detector (Mask2Former + CLIP)")
    detect_folder(args.images, args.out)
    _provenance("geneval_detect", {"perception": "tiny"}, {"images": args.images}, args.out, t0)


def cmd_geneval_score(args: argparse.Namespace) -> None:
    from .evaluation.geneval_score import score_images, write_results

    t0 = time.time()
    rows = score_images(args.images, args.detections)
    write_results(args.out, rows)
    print(f"{args.out}: {sum(r['correct'] for r in rows)}/{len(rows)} images correct")
    _provenance("geneval_score", {}, {"images": args.images, "detections": args.detections}, args.out, t0)


def cmd_geneval_summary(args: argparse.Namespace) -> None:
    import json

    from .evaluation.geneval_score import summarize
    from .io import read_jsonl, write_json

    t0 = time.time()
    summary = summarize(read_jsonl(args.results), allow_missing_tags=args.allow_missing_tags)
    for tag, v in summary["tags"].items():
        print(f"{tag:>14}: {v['score']:.4f}")
    print(f"{'overall':>14}: {summary['overall']:.4f}")
    if args.out:
        write_json(args.out, summary)
        _provenance("geneval_summary", {"allow_missing_tags": args.allow_missing_tags}, {"results": args.results},
                    args.out, t0)
    else:
        print(json.dumps(summary))


def cmd_dpg_benchmark(args: argparse.Namespace) -> None:
    from .evaluation.dpg_tiny import benchmark_items, write_benchmark

    config = _config(args.config)
    src, d = config["source"], config["eval"]["dpg"]
    t0 = time.time()
    if d.get("questions"):  # paper scale: the 1,065 official prompts and the official question file
        import shutil

        from .evaluation.official_files import check_dpg_csv, dpg_prompts
        from .io import atomic_write, write_jsonl
        from .weights import weights_file

        csv = weights_file(config, d["questions"])
        blob = check_dpg_csv(csv)
        out = Path(args.out)
        write_jsonl(out / "prompts.jsonl", dpg_prompts())
        with atomic_write(out / "questions.csv", "wb") as f, open(csv, "rb") as src_f:
            shutil.copyfileobj(src_f, f)
        for name in ("prompts.jsonl", "questions.csv"):
            _provenance("dpg_benchmark", {"official": True, "questions_blob": blob}, {"questions": csv}, out / name, t0)
        return
    _require_tiny_perception(config, "DPG-Bench question set (dpg_bench.csv + mPLUG)")
    paths = write_benchmark(args.out, benchmark_items(src["classes"], src["colors"], src["backgrounds"], d["n_items"],
                                                      d["seed"], src["resolution"]))
    for p in paths.values():
        _provenance("dpg_benchmark", d, {}, p, t0)


def cmd_dpg_sample(args: argparse.Namespace) -> None:
    from .evaluate import sample_dpg

    config = _config(args.config)
    t0 = time.time()
    n = sample_dpg(args.model, args.prompts, args.out, *_eval_backends(config, args.uncond, args.embeddings),
                   _eval_sample_cfg(config, args), args.batch_size)
    print(f"{args.out}: {n} grids written (grids of an earlier run kept)")
    _provenance("dpg_sample", _sampling_record(config, args),
                {"model": args.model, "prompts": args.prompts, "uncond": args.uncond, **_embeddings_input(args)},
                args.out, t0)


def cmd_dpg_answer(args: argparse.Namespace) -> None:
    from .evaluation.dpg_tiny import answer_grids

    config = _config(args.config)
    _require_tiny_perception(config, "DPG VQA model (mPLUG)")
    t0 = time.time()
    answer_grids(args.grids, args.questions, args.out)
    _provenance("dpg_answer", {"perception": "tiny"}, {"grids": args.grids, "questions": args.questions}, args.out, t0)


def cmd_dpg_score(args: argparse.Namespace) -> None:
    from .evaluation.dpg_score import score_dpg, write_scores

    t0 = time.time()
    result = score_dpg(args.questions, args.answers, skip_first_row=args.skip_first_row,
                       last_cell_categories=args.last_cell_categories)
    write_scores(args.out, result)
    print(f"{args.out}: DPG overall {result['overall']:.2f}")
    _provenance("dpg_score", result["flags"], {"questions": args.questions, "answers": args.answers}, args.out, t0)


def cmd_fd_train_net(args: argparse.Namespace) -> None:
    from .evaluation.features import train_feature_net

    config = _config(args.config)
    net = config["eval"]["fd"]["feature_net"]
    t0 = time.time()
    metrics = train_feature_net(args.train, args.out, seed=net["seed"], epochs=net["epochs"], val_dir=args.val)
    print(f"{args.out}: {metrics}")
    _provenance("feature_net", net, {"train": args.train, "val": args.val}, args.out, t0)


def cmd_fd_reference(args: argparse.Namespace) -> None:
    from .encode.autoencoder import default_device
    from .evaluation.image_metrics import write_reference_stats
    from .evaluation.paper_metrics import load_extractors, reference_images

    config = _config(args.config)
    fid = config["eval"]["fid"]
    t0 = time.time()
    extractors, _ = load_extractors(config, default_device())
    res = config["source"]["resolution"]
    paths = write_reference_stats(reference_images(args.images, res), extractors,
                                  f"{args.images}: {config['source']['backend']} val, resize {res} + centre crop",
                                  args.out, batch_size=fid["batch_size"])
    print(f"{args.out}: reference statistics {sorted(paths)}")
    _provenance("fd_reference", fid, {"images": args.images, **{n: weights_location(config, fid[n]) for n in
                                                                 ("inception", "dinov2", "clip") if fid.get(n)}},
                args.out, t0)


def _fd_paper(args: argparse.Namespace, config: dict, t0: float) -> None:
    """FID, FD-DINOv2, FD-CLIP, IS, PRDC and CLIPScore of one sample per val caption, streamed."""
    from .encode.autoencoder import default_device
    from .evaluate import caption_samples
    from .evaluation.image_metrics import fid_report
    from .evaluation.paper_metrics import flat_scores, load_extractors
    from .io import write_json

    fid = config["eval"]["fid"]
    extractors, scorer = load_extractors(config, default_device())
    batches, captions = caption_samples(args.model, args.captions, fid["num_samples"],
                                        *_eval_backends(config, args.uncond, args.embeddings),
                                        _eval_sample_cfg(config, args), args.batch_size)
    report = fid_report(batches, extractors, {e.name: Path(args.reference) / f"{e.name}.npz" for e in extractors},
                        k=fid["k"], batch_size=fid["batch_size"], prompts=captions, clip_scorer=scorer)
    scores = flat_scores(report)
    write_json(args.out, scores)
    print(f"{args.out}: FID {scores['fd']:.3f}")
    _provenance("fd", {**fid, "sample": _sampling_record(config, args)},
                {"model": args.model, "captions": args.captions, "reference": args.reference,
                 **_embeddings_input(args)}, args.out, t0)


def cmd_fd_score(args: argparse.Namespace) -> None:
    from .evaluate import sample_captions
    from .evaluation.features import fd_report, load_feature_net, load_images
    from .io import write_json

    config = _config(args.config)
    t0 = time.time()
    if config["eval"].get("fid"):
        _fd_paper(args, config, t0)
        return
    fd = config["eval"]["fd"]
    fake = sample_captions(args.model, args.captions, fd["num_samples"],
                           *_eval_backends(config, args.uncond, args.embeddings), _eval_sample_cfg(config, args),
                           args.batch_size)
    report = fd_report(load_feature_net(args.net), load_images(args.reference), fake, k=fd["k"])
    report["reference"] = args.reference
    write_json(args.out, report)
    print(f"{args.out}: FD {report['fd']:.3f}")
    _provenance("fd", {**fd, "sample": _sampling_record(config, args)},
                {"model": args.model, "captions": args.captions, "reference": args.reference, "feature_net": args.net,
                 **_embeddings_input(args)}, args.out, t0)


def cmd_table(args: argparse.Namespace) -> None:
    from .paper.tables import build_table

    config = _config(args.config)
    if args.table not in config["tables"]:
        raise ConfigError(f"config key 'tables.{args.table}': no such table (defined: {sorted(config['tables'])})")
    table = build_table(args.table, config["tables"][args.table], Path(args.out).parents[1], out=args.out, config=config)
    print(f"{args.out}: {len(table.rows)} rows")


def cmd_figure(args: argparse.Namespace) -> None:
    from .paper.figures import figure_denoise, figure_overfit, figure_qual

    config = _config(args.config)
    root = Path(args.out).parents[1]
    spec = config["figures"].get(args.figure)
    if spec is None:
        raise ConfigError(f"config key 'figures.{args.figure}': not declared")
    if args.figure == "F-OVERFIT":
        figure_overfit(args.figure, spec, root, args.out)
        return
    if args.figure == "F-DENOISE":
        figure_denoise(args.figure, spec, root, args.out)
        return
    prompts = config["sample"]["grid_prompts"]
    images = {(run, prompts[i]): root / "samples" / run / "images" / f"{i:03d}_00.png"  # first sample of prompt i
              for i in spec["prompts"] for run in spec["runs"]}
    figure_qual(images, args.out, title="TA vs TA+IA, same prompts and seeds")


def cmd_audit(args: argparse.Namespace) -> int:
    from .audit import audit

    report = audit(args.target, members=args.members)
    print(report.text())
    return 0 if report.ok else 1


def _provenance(stage: str, cfg: dict, inputs: dict, output: str, t0: float) -> None:
    from .provenance import make_record, write_record

    write_record(output, make_record(stage, cfg, inputs, [output], time.time() - t0))


EMBEDDINGS_HELP = "prompt-embedding cache (imagenet-t2i embed) to read instead of loading the text encoder"
BATCH_HELP = "images sampled at once (the images do not depend on it; default 64)"


def _sampling_options(sp: argparse.ArgumentParser) -> None:
    """``--steps/--guidance/--clamp``: override the config's benchmark sampling (the released CAD-I's settings)."""
    sp.add_argument("--steps", type=int, help="DDIM steps (default: eval.steps)")
    sp.add_argument("--guidance", type=float, help="guidance scale (default: sample.guidance)")
    sp.add_argument("--clamp", type=float, help="x0 clamp (default: sample.clamp)")


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
    sp = add("fake-imagenet", cmd_fake_imagenet, "write the fake ImageNet of source.fake (offline smoke runs)")
    sp.add_argument("--out", required=True)
    sp = add("weights", cmd_weights, "fetch one entry of the weights block (hub download, or a tiny random-init model)")
    sp.add_argument("--name", required=True)
    sp.add_argument("--out", required=True)
    sp = add("augment", cmd_augment, "build one chunk of the CutMix or Crop set from the training images")
    sp.add_argument("--set", required=True, help="crop or cutmix_<pattern>")
    sp.add_argument("--source", required=True)
    sp.add_argument("--out", required=True, help="the chunk's part folder")
    sp.add_argument("--chunk", default="0000-of-0001", help="<index>-of-<count> (augment.chunks)")
    sp = add("augment-merge", cmd_augment_merge, "merge the chunk folders of one augmented set into the set's folder")
    sp.add_argument("--parts", nargs="+", required=True, help="every chunk folder of the set")
    sp.add_argument("--out", required=True)
    sp = add("captions", cmd_captions, "caption one chunk of an image set (AIO or TA): <out>.jsonl + <out>.json summary")
    sp.add_argument("--images", required=True)
    sp.add_argument("--kind", choices=["aio", "ta"], required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--chunk", default="0000-of-0001", help="<index>-of-<count> (captions.chunks)")
    sp.add_argument("--weights", help="the VLM's weights folder (recorded in provenance)")
    sp = add("captions-merge", cmd_captions_merge, "merge the caption chunks of one set into its caption file")
    sp.add_argument("--parts", nargs="+", required=True, help="every chunk's .jsonl, in any order")
    sp.add_argument("--out", required=True)
    sp = add("shards", cmd_shards, "encode images + captions into WebDataset shards")
    sp.add_argument("--images", required=True)
    sp.add_argument("--captions", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--chunk", default="0000-of-0001", help="write only this chunk's shards (<index>-of-<count>)")
    sp = add("shards-merge", cmd_shards_merge, "merge the chunk folders of one shard set into the set's folder")
    sp.add_argument("--parts", nargs="+", required=True, help="every chunk folder of the set")
    sp.add_argument("--out", required=True)
    sp = add("train", cmd_train, "train one run through submitit (blocks; resumes from --state)")
    sp.add_argument("--run", required=True)
    sp.add_argument("--shards", required=True, help="folder holding the shard sets")
    sp.add_argument("--out", required=True)
    sp.add_argument("--state", required=True, help="resumable state (keep outside Snakemake outputs)")
    sp.add_argument("--until", type=int, help="stop (resumably) after this step")
    sp.add_argument("--cluster", choices=["local", "slurm"], help="override cluster.backend")
    sp = add("released", cmd_released,
             "the released CAD-I snapshot (eval.released) as a model folder our sampling reads, with uncond.npy")
    sp.add_argument("--snapshot", required=True, help="a release snapshot folder: config.json + model.safetensors")
    sp.add_argument("--out", required=True)
    sp = add("sample", cmd_sample, "sample a trained model (PNG per image, optional labelled grid)")
    sp.add_argument("--model", required=True, help="folder with model.safetensors + config.json")
    sp.add_argument("--uncond", required=True, help="shard folder whose uncond.npy is the empty caption")
    sp.add_argument("--prompts", help="text file, one prompt a line (default: sample.grid_prompts)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--grid")
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    sp = add("embed", cmd_embed, "encode the evaluation prompts once into a prompt-embedding cache (safetensors)")
    sp.add_argument("--texts-from", nargs="*", default=[], metavar="JSONL",
                    help="prompts JSONL ('prompt': GenEval, DPG) or captions JSONL ('caption'); "
                         "sample.grid_prompts and the colour probe's prompts are always included")
    sp.add_argument("--captions-limit", type=int, help="use only the first N captions of each captions file")
    sp.add_argument("--out", required=True)
    sp = add("colour-probe", cmd_colour_probe,
             "tiny-world diagnostic: does the model paint the prompted colour? ('a photo of a {colour} {class}')")
    for a in ("--model", "--uncond", "--images", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)

    sp = add("denoise-profile", cmd_denoise_profile,
             "x0-prediction MSE of a model per noise level beside predicting 0 and x_t/sqrt(gamma) (eval.denoise)")
    sp.add_argument("--model", required=True, help="a model folder (runs/<run>/final, a checkpoint)")
    sp.add_argument("--shards", required=True, help="a shard set folder (shards/<set>)")
    sp.add_argument("--out", help="write the profile as JSON (with a provenance record)")
    sp.add_argument("--batch-size", type=int, default=256, help="samples per forward pass (the result does not depend on it)")

    def group(name: str, help: str) -> argparse._SubParsersAction:  # noqa: A002
        return sub.add_parser(name, help=help, description=help).add_subparsers(dest="action", required=True)

    def leaf(parent: argparse._SubParsersAction, name: str, fn, help: str, config: bool = True) -> argparse.ArgumentParser:  # noqa: A002, ANN001
        sp = parent.add_parser(name, help=help, description=help)
        if config:
            sp.add_argument("--config", nargs="+", default=["config/config.yaml"], help="config YAML file(s)")
        sp.set_defaults(fn=fn)
        return sp

    ge = group("geneval", "GenEval: prompts, sampling, perception, official scoring")
    sp = leaf(ge, "prompts", cmd_geneval_prompts, "write the GenEval metadata (official generator)")
    sp.add_argument("--out", required=True)
    sp = leaf(ge, "sample", cmd_geneval_sample, "sample every prompt into the official folder layout")
    for a in ("--model", "--prompts", "--uncond", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    _sampling_options(sp)
    sp = leaf(ge, "detect", cmd_geneval_detect, "tiny-world perception: detections JSONL of a GenEval folder")
    sp.add_argument("--images", required=True)
    sp.add_argument("--out", required=True)
    sp = leaf(ge, "score", cmd_geneval_score, "official scoring rules over a detections file", config=False)
    for a in ("--images", "--detections", "--out"):
        sp.add_argument(a, required=True)
    sp = leaf(ge, "summary", cmd_geneval_summary, "per-tag and overall scores of a results file", config=False)
    sp.add_argument("results")
    sp.add_argument("--out")
    sp.add_argument("--allow-missing-tags", action="store_true",
                    help="average over the tags present (a small vocabulary can lack one); reported in the output")
    dp = group("dpg", "DPG-Bench: benchmark, sampling, perception, official scoring")
    sp = leaf(dp, "benchmark", cmd_dpg_benchmark, "write the tiny world's DPG-style prompts and questions")
    sp.add_argument("--out", required=True)
    sp = leaf(dp, "sample", cmd_dpg_sample, "one 2x2 grid per prompt")
    for a in ("--model", "--prompts", "--uncond", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    _sampling_options(sp)
    sp = leaf(dp, "answer", cmd_dpg_answer, "tiny-world perception: answers JSONL of a grid folder")
    for a in ("--grids", "--questions", "--out"):
        sp.add_argument(a, required=True)
    sp = leaf(dp, "score", cmd_dpg_score, "official DPG-Bench scoring", config=False)
    for a in ("--questions", "--answers", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--skip-first-row", action="store_true", help="reproduce the official script's first-row bug")
    sp.add_argument("--last-cell-categories", action="store_true",
                    help="reproduce the official script's last-cell category bug")
    fdp = group("fd", "Frechet distance and precision/recall/density/coverage")
    sp = leaf(fdp, "train-net", cmd_fd_train_net, "train the tiny world's feature network")
    for a in ("--train", "--val", "--out"):
        sp.add_argument(a, required=True)
    sp = leaf(fdp, "score", cmd_fd_score, "sample val captions and compare with the val images")
    for a in ("--model", "--captions", "--reference", "--uncond", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--net", help="the tiny world's feature network (paper scale: the eval.fid weights)")
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    _sampling_options(sp)
    sp = leaf(fdp, "reference", cmd_fd_reference, "paper scale: reference statistics of the val images, once")
    for a in ("--images", "--out"):
        sp.add_argument(a, required=True)
    sp = add("table", cmd_table, "build one paper table (CSV, Markdown, LaTeX) from the score files")
    sp.add_argument("--table", required=True)
    sp.add_argument("--out", required=True, help="results/<cfg>/tables/<id>.csv")
    sp = add("figure", cmd_figure, "build one paper figure (PNG + PDF)")
    sp.add_argument("--figure", choices=["F-OVERFIT", "F-QUAL", "F-DENOISE"], required=True)
    sp.add_argument("--out", required=True, help="results/<cfg>/figures/<id>.png")
    sp = sub.add_parser("audit", help="trace a table back to its inputs and re-hash them",
                        description="trace every cell of a table back through provenance records and re-hash")
    sp.add_argument("target", help="a table CSV (or any file with a provenance record)")
    sp.add_argument("--members", action="store_true",
                    help="also re-hash every member a manifest lists (shards, images): slow at paper scale")
    sp.set_defaults(fn=cmd_audit)
    return p


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args) or 0
    except ConfigError as e:
        print(f"imagenet-t2i {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`imagenet-t2i`: one console script, a subcommand per pipeline stage (the Snakemake rules call these).

The commands of a stage live in the module of this package named like its rules file (``workflow/rules/<stage>.smk``
-> ``cli/<stage>.py``; ``check.py``: validate, models, audit, status, cost). The parser below names each command's function as
``"<module>:<function>"`` and imports that module only when the command runs, so a command's imports are its stage's
code.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from imagenet_t2i.code_closure import COMMAND_ENV
from imagenet_t2i.config import ConfigError
from imagenet_t2i.malloc import keep_freed_memory


def command(spec: str) -> Callable[[argparse.Namespace], int | None]:
    """The function a parser entry names (``"<module>:<function>"``), its stage module imported now."""
    module, name = spec.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


EMBEDDINGS_HELP = "prompt-embedding cache (imagenet-t2i embed) to read instead of loading the text encoder"
BATCH_HELP = "images sampled at once (the images do not depend on it; default 64)"


def _sampling_options(sp: argparse.ArgumentParser) -> None:
    """Override the config's benchmark sampling (the released CAD-I's settings, eval.released)."""
    sp.add_argument("--sampler", choices=["ddim", "ddpm"], help="default: sample.sampler (FID: eval.fid.sampling)")
    sp.add_argument("--steps", type=int, help="sampling steps (default: eval.steps; FID: eval.fid.sampling)")
    sp.add_argument("--guidance", type=float, help="guidance scale (default: sample.guidance)")
    sp.add_argument("--clamp", type=float, help="x0 clamp (default: sample.clamp)")
    sp.add_argument("--schedule", choices=["cosine", "linear"], help="inference schedule (default: sample.schedule)")
    sp.add_argument("--unguided-steps", type=int, help="first steps without guidance (default: sample.unguided_steps)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="imagenet-t2i", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, fn: str, help: str) -> argparse.ArgumentParser:  # noqa: A002
        sp = sub.add_parser(name, help=help, description=help)
        sp.add_argument("--config", nargs="+", default=["config/config.yaml"],
                        help="config YAML file(s), deep-merged in order (default: config/config.yaml)")
        sp.set_defaults(fn=fn)
        return sp

    add("validate", "check:cmd_validate", "check a config against the schema")
    add("models", "check:cmd_models", "print every configured model's name and parameter count")
    sp = add("source", "data:cmd_source", "render the synthetic world or index ImageNet for one split")
    sp.add_argument("--split", required=True, help="train | val; <split>_<R>px: --base drawn again at R px")
    sp.add_argument("--base", help="<split>_<R>px: the base split's folder")
    sp.add_argument("--out", required=True)
    sp = add("fake-imagenet", "data:cmd_fake_imagenet", "write the fake ImageNet of source.fake (offline smoke runs)")
    sp.add_argument("--out", required=True)
    sp = add("weights", "data:cmd_weights", "fetch one entry of the weights block (hub download, or a tiny random-init model)")
    sp.add_argument("--name", required=True)
    sp.add_argument("--out", required=True)
    sp = add("augment", "data:cmd_augment", "build one chunk of the CutMix or Crop set from the training images")
    sp.add_argument("--set", required=True, help="crop or cutmix_<pattern>; <set>_<R>px: --base made again at R px")
    sp.add_argument("--source", required=True)
    sp.add_argument("--base", help="<set>_<R>px: the base set's folder")
    sp.add_argument("--out", required=True, help="the chunk's part folder")
    sp.add_argument("--chunk", default="0000-of-0001", help="<index>-of-<count> (augment.chunks)")
    sp = add("augment-merge", "data:cmd_augment_merge", "merge the chunk folders of one augmented set into the set's folder")
    sp.add_argument("--parts", nargs="+", required=True, help="every chunk folder of the set")
    sp.add_argument("--out", required=True)
    sp = add("captions", "captions:cmd_captions", "caption one chunk of an image set (AIO or TA): <out>.jsonl + <out>.json summary")
    sp.add_argument("--images", required=True)
    sp.add_argument("--kind", choices=["aio", "ta"], required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--chunk", default="0000-of-0001", help="<index>-of-<count> (captions.chunks)")
    sp.add_argument("--weights", help="the VLM's weights folder (recorded in provenance)")
    sp = add("captions-merge", "captions:cmd_captions_merge", "merge the caption chunks of one set into its caption file")
    sp.add_argument("--parts", nargs="+", required=True, help="every chunk's .jsonl, in any order")
    sp.add_argument("--out", required=True)
    sp = add("shards", "shards:cmd_shards", "encode images + captions into WebDataset shards")
    sp.add_argument("--images", required=True)
    sp.add_argument("--captions", required=True)
    sp.add_argument("--out", required=True)
    sp.add_argument("--chunk", default="0000-of-0001", help="write only this chunk's shards (<index>-of-<count>)")
    sp.add_argument("--resolution", type=int, help="image side (default source.resolution; runs.<run>.resolution)")
    sp = add("shards-merge", "shards:cmd_shards_merge", "merge the chunk folders of one shard set into the set's folder")
    sp.add_argument("--parts", nargs="+", required=True, help="every chunk folder of the set")
    sp.add_argument("--out", required=True)
    sp = add("train", "train:cmd_train", "train one run through submitit (blocks; resumes from --state)")
    sp.add_argument("--run", required=True)
    sp.add_argument("--shards", required=True, help="folder holding the shard sets")
    sp.add_argument("--out", required=True)
    sp.add_argument("--state", required=True, help="resumable state (keep outside Snakemake outputs)")
    sp.add_argument("--until", type=int, help="stop (resumably) after this step")
    sp.add_argument("--cluster", choices=["local", "slurm"], help="override cluster.backend")
    sp = add("released", "sample:cmd_released",
             "the released CAD-I snapshot (eval.released) as a model folder our sampling reads, with uncond.npy")
    sp.add_argument("--snapshot", required=True, help="a release snapshot folder: config.json + model.safetensors")
    sp.add_argument("--out", required=True)
    sp = add("sample", "sample:cmd_sample", "sample a trained model (PNG per image, optional labelled grid)")
    sp.add_argument("--model", required=True, help="folder with model.safetensors + config.json")
    sp.add_argument("--uncond", required=True, help="shard folder whose uncond.npy is the empty caption")
    sp.add_argument("--prompts", help="text file, one prompt a line (default: sample.grid_prompts)")
    sp.add_argument("--out", required=True)
    sp.add_argument("--grid")
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    sp = add("embed", "sample:cmd_embed", "encode the evaluation prompts once into a prompt-embedding cache (safetensors)")
    sp.add_argument("--texts-from", nargs="*", default=[], metavar="JSONL",
                    help="prompts JSONL ('prompt': GenEval, DPG) or captions JSONL ('caption'); "
                         "sample.grid_prompts and the colour probe's prompts are always included")
    sp.add_argument("--captions-limit", type=int, help="use only the first N captions of each captions file")
    sp.add_argument("--out", required=True)
    sp = add("colour-probe", "diagnostics:cmd_colour_probe",
             "tiny-world diagnostic: does the model paint the prompted colour? ('a photo of a {colour} {class}')")
    for a in ("--model", "--uncond", "--images", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)

    sp = add("denoise-profile", "diagnostics:cmd_denoise_profile",
             "x0-prediction MSE of a model per noise level beside predicting 0 and x_t/sqrt(gamma) (eval.denoise)")
    sp.add_argument("--model", required=True, help="a model folder (runs/<run>/final, a checkpoint)")
    sp.add_argument("--shards", required=True, help="a shard set folder (shards/<set>)")
    sp.add_argument("--out", help="write the profile as JSON (with a provenance record)")
    sp.add_argument("--batch-size", type=int, default=256, help="samples per forward pass (the result does not depend on it)")

    def group(name: str, help: str) -> argparse._SubParsersAction:  # noqa: A002
        return sub.add_parser(name, help=help, description=help).add_subparsers(dest="action", required=True)

    def leaf(parent: argparse._SubParsersAction, name: str, fn: str, help: str,  # noqa: A002
             config: bool = True) -> argparse.ArgumentParser:
        sp = parent.add_parser(name, help=help, description=help)
        if config:
            sp.add_argument("--config", nargs="+", default=["config/config.yaml"], help="config YAML file(s)")
        sp.set_defaults(fn=fn)
        return sp

    ge = group("geneval", "GenEval: prompts, sampling, perception, official scoring")
    sp = leaf(ge, "prompts", "geneval:cmd_geneval_prompts", "write the GenEval metadata (official generator)")
    sp.add_argument("--out", required=True)
    sp = leaf(ge, "sample", "geneval:cmd_geneval_sample", "sample every prompt into the official folder layout")
    for a in ("--model", "--prompts", "--uncond", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    _sampling_options(sp)
    sp = leaf(ge, "detect", "geneval:cmd_geneval_detect", "tiny-world perception: detections JSONL of a GenEval folder")
    sp.add_argument("--images", required=True)
    sp.add_argument("--out", required=True)
    sp = leaf(ge, "score", "geneval:cmd_geneval_score", "official scoring rules over a detections file", config=False)
    for a in ("--images", "--detections", "--out"):
        sp.add_argument(a, required=True)
    sp = leaf(ge, "summary", "geneval:cmd_geneval_summary", "per-tag and overall scores of a results file", config=False)
    sp.add_argument("results")
    sp.add_argument("--out")
    sp.add_argument("--allow-missing-tags", action="store_true",
                    help="average over the tags present (a small vocabulary can lack one); reported in the output")
    ae = group("aesthetic", "T-AES: the aesthetic prompts, the world's scorer, scores of a run's samples")
    sp = leaf(ae, "prompts", "aesthetic:cmd_aesthetic_prompts", "write aesthetic.prompts (prompts.jsonl, prompts.txt)")
    sp.add_argument("--out", required=True, help="folder")
    sp = leaf(ae, "train-net", "aesthetic:cmd_aesthetic_train_net", "train the tiny world's aesthetic scorer")
    for a in ("--train", "--val", "--out"):
        sp.add_argument(a, required=True)
    sp = leaf(ae, "score", "aesthetic:cmd_aesthetic_score", "score a folder of samples with one of aesthetic.scorers")
    for a in ("--scorer", "--images", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--net", help="scorer world: the trained scorer's folder")
    sp.add_argument("--prompts", help="scorer pickscore: the sampled prompts, one a line (eval/aesthetic/prompts.txt)")
    dp = group("dpg", "DPG-Bench: benchmark, sampling, perception, official scoring")
    sp = leaf(dp, "benchmark", "dpg:cmd_dpg_benchmark", "write the tiny world's DPG-style prompts and questions")
    sp.add_argument("--out", required=True)
    sp = leaf(dp, "sample", "dpg:cmd_dpg_sample", "one 2x2 grid per prompt")
    for a in ("--model", "--prompts", "--uncond", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    _sampling_options(sp)
    sp = leaf(dp, "answer", "dpg:cmd_dpg_answer", "tiny-world perception: answers JSONL of a grid folder")
    for a in ("--grids", "--questions", "--out"):
        sp.add_argument(a, required=True)
    sp = leaf(dp, "score", "dpg:cmd_dpg_score", "DPG-Bench scoring: the official script's scores (published numbers "
              "come from it) and the corrected ones, both in one file", config=False)
    for a in ("--questions", "--answers", "--out"):
        sp.add_argument(a, required=True)
    fdp = group("fd", "Frechet distance and precision/recall/density/coverage")
    sp = leaf(fdp, "train-net", "fid:cmd_fd_train_net", "train the tiny world's feature network")
    for a in ("--train", "--val", "--out"):
        sp.add_argument(a, required=True)
    sp = leaf(fdp, "score", "fid:cmd_fd_score", "tiny world: sample val captions and compare with the val images")
    for a in ("--model", "--captions", "--reference", "--net", "--uncond", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    _sampling_options(sp)
    sp = leaf(fdp, "sample", "fid:cmd_fd_sample", "paper scale: sample one chunk of the val captions (eval.fid.chunks) "
              "and keep the samples' features (Inception, DINOv2, CLIP, CLIPScore)")
    for a in ("--model", "--captions", "--uncond", "--out"):
        sp.add_argument(a, required=True)
    sp.add_argument("--chunk", required=True, help="<index>-of-<count>, e.g. 0003-of-0010")
    sp.add_argument("--embeddings", help=EMBEDDINGS_HELP)
    sp.add_argument("--batch-size", type=int, default=64, help=BATCH_HELP)
    _sampling_options(sp)
    sp = leaf(fdp, "merge", "fid:cmd_fd_merge", "paper scale: FID and friends from the chunks' features")
    sp.add_argument("--features", nargs="+", required=True, help="the chunk files of 'fd sample', in chunk order")
    for a in ("--reference", "--out"):
        sp.add_argument(a, required=True)
    sp = leaf(fdp, "reference", "fid:cmd_fd_reference", "paper scale: reference statistics of the val images, once")
    for a in ("--images", "--out"):
        sp.add_argument(a, required=True)
    sp = add("cost", "check:cmd_cost", "images, GPU-hours and disk per stage and run, before launch (rates and their sources)")
    sp.add_argument("--json", action="store_true", help="runs.<name>.{steps, global_batch, images, gpu_hours}, "
                    "stages.<name>.{images, gpu_hours, disk_gb}, rates")
    add("status", "check:cmd_status", "list the results made by other code than their command runs today "
        "(rerun.heavy_code_changes: false keeps them; README: re-run policy)")
    sp = add("table", "paper:cmd_table", "build one paper table (CSV, Markdown, LaTeX) from the score files")
    sp.add_argument("--table", required=True)
    sp.add_argument("--out", required=True, help="results/<cfg>/tables/<id>.csv")
    sp = add("figure", "paper:cmd_figure", "build one paper figure (PNG + PDF)")
    sp.add_argument("--figure", choices=["F-OVERFIT", "F-QUAL", "F-GALLERY", "F-BUBBLE", "F-DENOISE"], required=True)
    sp.add_argument("--out", required=True, help="results/<cfg>/figures/<id>.png")
    sp = sub.add_parser("audit", help="trace a table back to its inputs and re-hash them",
                        description="trace every cell of a table back through provenance records and re-hash")
    sp.add_argument("target", help="a table CSV (or any file with a provenance record)")
    sp.add_argument("--members", action="store_true",
                    help="also re-hash every member a manifest lists (shards, images): slow at paper scale")
    sp.set_defaults(fn="check:cmd_audit")
    return p


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    args = build_parser().parse_args(argv)
    previous = os.environ.get(COMMAND_ENV)
    os.environ[COMMAND_ENV] = args.fn  # recorded with the code it runs in every provenance record
    try:
        return command(args.fn)(args) or 0
    except ConfigError as e:
        print(f"imagenet-t2i {args.command}: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    finally:  # main() also runs in-process (tests, Python users)
        if previous is None:
            os.environ.pop(COMMAND_ENV, None)
        else:
            os.environ[COMMAND_ENV] = previous

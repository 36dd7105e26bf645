"""DPG-Bench commands (workflow/rules/dpg.smk): benchmark, sampling, perception, official scoring."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from imagenet_t2i.cli.common import config_of, provenance
from imagenet_t2i.cli.sampling_args import (embeddings_input, eval_backends, eval_sample_cfg, require_tiny_perception,
                                            sampling_record)


def cmd_dpg_benchmark(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.dpg.tiny import benchmark_items, write_benchmark

    config = config_of(args.config)
    src, d = config["source"], config["eval"]["dpg"]
    t0 = time.time()
    if d.get("questions"):  # paper scale: the 1,065 official prompts and the official question file
        import shutil

        from imagenet_t2i.evaluation.dpg.paper_prompts import check_dpg_csv, dpg_prompts
        from imagenet_t2i.io import atomic_write, write_jsonl
        from imagenet_t2i.weights import weights_file

        csv = weights_file(config, d["questions"])
        blob = check_dpg_csv(csv)
        out = Path(args.out)
        write_jsonl(out / "prompts.jsonl", dpg_prompts())
        with atomic_write(out / "questions.csv", "wb") as f, open(csv, "rb") as src_f:
            shutil.copyfileobj(src_f, f)
        for name in ("prompts.jsonl", "questions.csv"):
            provenance("dpg_benchmark", {"official": True, "questions_blob": blob}, {"questions": csv}, out / name, t0)
        return
    require_tiny_perception(config, "DPG-Bench question set (dpg_bench.csv + mPLUG)")
    paths = write_benchmark(args.out, benchmark_items(src["classes"], src["colors"], src["backgrounds"], d["n_items"],
                                                      d["seed"], src["resolution"]))
    for p in paths.values():
        provenance("dpg_benchmark", d, {}, p, t0)


def cmd_dpg_sample(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.dpg.sample import sample_dpg
    from imagenet_t2i.io import resumable_folder

    config = config_of(args.config, gpu=True)
    t0 = time.time()
    with resumable_folder(args.out) as work:  # what a killed try sampled is kept for the next
        n = sample_dpg(args.model, args.prompts, work, *eval_backends(config, args.uncond, args.embeddings),
                       eval_sample_cfg(config, args), args.batch_size)
    print(f"{args.out}: {n} grids written (grids of an earlier, killed try kept)")
    provenance("dpg_sample", sampling_record(config, args),
                {"model": args.model, "prompts": args.prompts, "uncond": args.uncond, **embeddings_input(args)},
                args.out, t0)


def cmd_dpg_answer(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.dpg.tiny import answer_grids

    config = config_of(args.config)
    require_tiny_perception(config, "DPG VQA model (mPLUG)")
    t0 = time.time()
    answer_grids(args.grids, args.questions, args.out)
    provenance("dpg_answer", {"perception": "tiny"}, {"grids": args.grids, "questions": args.questions}, args.out, t0)


def cmd_dpg_score(args: argparse.Namespace) -> None:
    from imagenet_t2i.evaluation.dpg.score import score_both, write_scores

    t0 = time.time()
    result = score_both(args.questions, args.answers)
    write_scores(args.out, result)
    print(f"{args.out}: DPG overall {result['overall']:.2f} (official script), {result['overall_corrected']:.2f} "
          "(corrected)")
    provenance("dpg_score", result["flags"], {"questions": args.questions, "answers": args.answers}, args.out, t0)

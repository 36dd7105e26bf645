"""Cluster settings from config: sbatch options of the training job, stage resources, batch layout checks."""
import copy
from pathlib import Path

import pytest

from imagenet_t2i.config import ConfigError, load_config, validate_config
from imagenet_t2i.workflow import stage_resources, stage_threads

from .conftest import REPO


@pytest.fixture(scope="module")
def paper():
    return load_config(REPO / "config" / "paper.yaml")


def test_unknown_cluster_keys_and_bad_values_are_rejected_naming_the_key(paper):
    bad = copy.deepcopy(paper)
    bad["cluster"]["acount"] = "typo"
    with pytest.raises(ConfigError, match="config key 'cluster'.*acount"):
        validate_config(bad)
    bad = copy.deepcopy(paper)
    bad["cluster"]["stages"]["gpu"]["gpus"] = -1
    with pytest.raises(ConfigError, match="cluster.stages.gpu.gpus"):
        validate_config(bad)


def test_a_global_batch_that_does_not_split_over_the_ranks_is_rejected_at_start_up(paper):
    bad = copy.deepcopy(paper)
    bad["train"]["batch_size"] = 1020  # 8 GPUs x accumulation 1: not a multiple of 8
    with pytest.raises(ConfigError, match=r"train.batch_size.*1020.*8 rank\(s\) x 1 accumulation"):
        validate_config(bad)
    ok = copy.deepcopy(paper)
    ok["train"]["accumulation"] = 4  # 1024 = 8 ranks x 4 x 32
    validate_config(ok)


def test_stage_resources_reach_the_slurm_plugin_only_where_configured(paper):
    gpu = stage_resources(paper, "gpu", mem_mb=2000)
    assert gpu == {"runtime": 720, "gpu": 1, "mem_mb": 64000} and stage_threads(paper, "gpu") == 8
    assert "gpu" not in stage_resources(paper, "cpu", mem_mb=2000)
    tiny = load_config(REPO / "config" / "config.yaml")
    assert stage_resources(tiny, "gpu", mem_mb=2000) == {"mem_mb": 2000} and stage_threads(tiny, "gpu") == 1
    custom = copy.deepcopy(paper)
    custom["cluster"]["stages"]["gpu"].update(partition="a100", account="proj", qos="q", sbatch_extra="--exclusive")
    res = stage_resources(validate_config(custom), "gpu", mem_mb=2000)
    assert (res["slurm_partition"], res["slurm_account"], res["qos"], res["slurm_extra"]) == ("a100", "proj", "q",
                                                                                              "--exclusive")


def test_paper_dry_run_plans_gpu_jobs_for_captions_shards_and_sampling(paper, tmp_path):
    """`snakemake -n reproduce_all evaluate_released --configfile config/paper.yaml --profile workflow/profiles/slurm`,
    no data at all."""
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "snakemake", "-n", "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
           "reproduce_all", "evaluate_released", "--configfile", str(REPO / "config" / "paper.yaml"),
           "--profile", str(REPO / "workflow" / "profiles" / "slurm"), "--printshellcmds"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=dict(os.environ)).stdout
    jobs, rule, wildcards = {}, None, {}
    for line in out.splitlines():
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[1].rstrip(":")
        elif line.strip().startswith("wildcards:") and rule:
            wildcards = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
        elif line.strip().startswith("resources:") and rule:
            jobs.setdefault(rule, []).append((wildcards, line))
            wildcards = {}
    for set_ in ("train", "val", "cutmix_all", "crop"):  # every chunk of every TA caption set, on a GPU
        chunks = [r for w, r in jobs["captions_ta_chunk"] if w.get("set") == set_]
        assert len(chunks) == (5 if set_ == "val" else paper["captions"]["chunks"]), set_  # val: 50k images, not 1.28M
    for aug in ("cutmix_all", "crop"):  # augmentation chunks on CPU nodes
        chunks = [r for w, r in jobs["augment_chunk"] if w.get("aug") == aug]
        assert len(chunks) == paper["augment"]["chunks"] and all("gpu=" not in r and "runtime=240" in r for r in chunks)
    for set_ in ("train_ta", "train_aio", "val_ta", "val_aio", "cutmix_all_ta", "crop_ta"):  # encoding, val included
        chunks = [r for w, r in jobs["shards_chunk"] if f"{w.get('set')}_{w.get('kind')}" == set_]
        assert len(chunks) == (3 if set_.startswith("val") else paper["encode"]["chunks"]), set_  # no empty val jobs
    for rule in ("captions_ta_chunk", "shards_chunk", "sample_grid", "prompt_embeddings"):
        assert jobs[rule] and all("gpu=1" in r and "runtime=720" in r and "mem_mb=64000" in r for _, r in jobs[rule]), rule
    assert sorted(w["weights"] for w, _ in jobs["weights"]) == sorted(paper["weights"])  # downloads, planned
    runs = paper["runs"]
    started = sorted(r for r, spec in runs.items() if spec.get("init_from"))  # T-RES's 512 stage, T-AES's fine-tunes
    staged = [r for r in started if r.endswith("_512")]
    assert staged == ["cad_i_ta_cutmix_512", "dit_i_ta_cutmix_512"] and len(started) == 4
    assert len(jobs["train"]) == len(runs) - 4 and sorted(w["run"] for w, _ in jobs["train_from"]) == started
    for set_ in ("train_512px_ta", "cutmix_all_512px_ta"):  # re-encoded at 512 with the 256 sets' captions
        assert len([r for w, r in jobs["shards_chunk"] if f"{w.get('set')}_{w.get('kind')}" == set_]) == 64, set_
    assert len([r for w, r in jobs["augment_chunk"] if w.get("aug") == "cutmix_all_512px"]) == 64
    assert not [w for w, _ in jobs["captions_ta_chunk"] if "512px" in w.get("set", "")]
    assert "--resolution 512 --out results/paper/shards/parts/train_512px_ta/" in out
    assert "--set cutmix_all_512px --source results/paper/data/train --base results/paper/augment/cutmix_all " in out
    # evaluation of every run and of the released CAD-I (evaluate_released): benchmark sampling on GPUs, the official
    # perception, scoring, FID and friends
    evaluated = sorted([*runs, "released_cad_i"])
    fine_tuned = sorted(r for r, spec in runs.items() if spec.get("data") == "aesthetic")  # T-AES: its scorers only
    for rule in ("geneval_sample", "geneval_detect", "geneval_score", "dpg_sample", "dpg_answer", "dpg_score"):
        assert sorted(w["run"] for w, _ in jobs[rule]) == sorted(set(evaluated) - set(fine_tuned)), rule
    scored = {(w["run"], w["scorer"]) for rule in ("aesthetic_score_clip", "aesthetic_score_hpsv21",
                                                    "aesthetic_score_imagereward") for w, _ in jobs[rule]}
    assert scored == {(r, s) for r in [*staged, *fine_tuned] for s in paper["aesthetic"]["scorers"]}
    for scorer in ("hpsv21", "imagereward"):  # in their own environments
        assert out.count(f"aesthetic/official.py --scorer {scorer}") == len(staged) + len(fine_tuned)
    gpu_rules = ("geneval_sample", "geneval_detect", "dpg_sample", "dpg_answer", "fd_sample", "fd_reference",
                 "released_model")
    for rule in gpu_rules:
        assert all("gpu=1" in r for _, r in jobs[rule]), rule
    assert {w["run"] for w, _ in jobs["fd"] if w["ckpt"] == "final"} == set(evaluated) - set(started)  # no FD at 512
    # FID-50k sampled by 10 jobs of 5,000 each (a preemption loses one chunk), merged by a CPU job
    assert len(jobs["fd_sample"]) == paper["eval"]["fid"]["chunks"] * len(jobs["fd"]) == 10 * len(jobs["fd"])
    assert not any("gpu=" in r for _, r in jobs["fd"])
    assert len(jobs["fd_reference"]) == 1 and len(jobs["table"]) == len(paper["tables"]) == 8
    assert len(jobs["released_model"]) == 1 and len(jobs["evaluate_released"]) == 1
    benchmarked = len(evaluated) - len(fine_tuned)
    assert out.count("geneval/official.py --images") == benchmarked  # the official scripts, in their conda envs
    assert out.count("dpg/official.py --grids") == benchmarked
    assert "geneval/official.py --images results/paper/eval/released_cad_i/geneval/images" in out
    # CLIP loaded as GenEval loads it (the tag, the downloaded file's folder as open_clip's cache); the mmdet config
    # from the installed mmdet (paper.yaml: mmdet_config null)
    models = ("--checkpoint results/paper/weights/mask2former_mmdet/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_"
              "20220504_001756-743b7d99.pth --clip-pretrained openai --clip-cache-dir "
              "results/paper/weights/open_clip_vit_l14 --meta")
    assert out.count(models) == benchmarked, out[out.find("geneval/official.py"):][:600]
    released = paper["eval"]["released"]
    options = (f"--sampler ddim --steps {released['steps']} --guidance {released['guidance']} --clamp "
               f"{released['clamp']} --schedule linear --unguided-steps 1")
    assert out.count(options) == 2 + paper["eval"]["fid"]["chunks"]  # GenEval, DPG and the FID chunks of the released
    # CAD-I, at the release's settings
    assert "imagenet-t2i released --config results/paper/config.yaml --snapshot results/paper/weights/cad_i_released" \
        in out


def test_official_perception_rules_name_existing_conda_environments():
    """The official GenEval / DPG / HPSv2.1 / ImageReward rules run in their own environments (never imported by the
    main one)."""
    import re

    rules = "\n".join(p.read_text() for p in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    envs = re.findall(r'conda:\s*\n\s*"([^"]+)"', rules)
    assert sorted(Path(e).name for e in envs) == ["dpg.yaml", "geneval.yaml", "hpsv2.yaml", "imagereward.yaml"]
    for env in envs:
        text = (REPO / "workflow" / "rules" / env).resolve().read_text()
        assert "UNTESTED" in text and "dependencies:" in text


def test_partition_and_account_set_once_reach_every_stage_job(paper):
    """Set at the top of ``cluster:`` (as paper.yaml's comments show), they reach the data and evaluation jobs as they
    reach training; a stage's own value wins."""
    custom = copy.deepcopy(paper)
    custom["cluster"].update(partition="gpu", account="proj42", qos="high", constraint="h100")
    custom["cluster"]["stages"]["cpu"]["partition"] = "cpu"
    gpu, cpu = (stage_resources(validate_config(custom), kind, mem_mb=2000) for kind in ("gpu", "cpu"))
    assert {gpu[k] for k in ("slurm_partition", "slurm_account", "qos", "constraint")} == {"gpu", "proj42", "high",
                                                                                           "h100"}
    assert cpu["slurm_partition"] == "cpu" and cpu["slurm_account"] == "proj42"


@pytest.mark.parametrize("tasks, effect", [(4, "4 GPU.s. per node would idle"), (16, "ranks would share a GPU")])
def test_one_rank_per_gpu_is_checked_at_start_up(paper, tasks, effect):
    bad = copy.deepcopy(paper)
    bad["cluster"]["tasks_per_node"] = tasks
    with pytest.raises(ConfigError, match=rf"cluster.tasks_per_node' \({tasks}\).*cluster.gpus_per_node' \(8\).*{effect}"):
        validate_config(bad)


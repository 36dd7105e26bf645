"""Against a real SLURM cluster (slurmctld, slurmd, slurmdbd) that the session fixture brings up on this machine.

The real Snakefile with the slurm profile: the heavy rules become SLURM jobs of the executor plugin, the
train rule submits a 2-task submitit job (gloo DDP) and watches it; preemption is a real
`scancel --signal=USR2`, resume a real `scontrol requeue`.
"""
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from imagenet_t2i.config import load_config
from imagenet_t2i.io import read_json
from imagenet_t2i.train.launcher import make_executor

from .conftest import REPO

pytestmark = pytest.mark.slurm

SCRIPTS = REPO / "tests" / "slurm_cluster"
SLURM_DIR = "/tmp/imagenet-t2i-slurm"
ACCOUNT = "proj42"  # tests/data/slurm.yaml's
RUNS = ("dit_i_ta", "dit_i_ta_again", "dit_i_ta_term")  # tests/data/slurm.yaml's, identical
PLUGIN_FLAGS = ["--slurm-init-seconds-before-status-checks", "2"]  # the default 40 s per check is for real clusters


@pytest.fixture(scope="session")
def slurm_env():
    """Start the test cluster (or skip saying why); stop and wipe it at the end of the session."""
    if os.geteuid() != 0:
        pytest.skip("bringing up SLURM needs root (apt packages and daemons); CI runs these tests as root")
    env = dict(os.environ, SLURM_TEST_DIR=SLURM_DIR, FAKE_GPUS="2", FAKE_CPUS="12", RESET="1",
               SLURM_CONF=f"{SLURM_DIR}/etc/slurm.conf")
    try:
        proc = subprocess.run(["bash", str(SCRIPTS / "start_slurm.sh")], env=env, capture_output=True, text=True,
                              timeout=600)
        failure = None if proc.returncode == 0 else f"rc {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    except subprocess.TimeoutExpired as e:
        failure = f"timed out after 600 s\n{e.stdout}"
    if failure:
        message = f"the SLURM test cluster did not come up ({SCRIPTS / 'start_slurm.sh'}): {failure}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    env["HF_HUB_OFFLINE"] = env["TRANSFORMERS_OFFLINE"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"  # imagenet-t2i and snakemake
    # tests/data/slurm.yaml's cluster.account: the SLURM executor plugin refuses an account sacctmgr does not list
    for argv in (["add", "account", ACCOUNT], ["add", "user", pwd.getpwuid(os.geteuid()).pw_name, f"account={ACCOUNT}"]):
        subprocess.run(["sacctmgr", "-i", *argv], env=env, capture_output=True, text=True, timeout=60, check=True)
    yield env
    subprocess.run(["bash", str(SCRIPTS / "stop_slurm.sh")], env={**env, "WIPE": "1"}, capture_output=True,
                   timeout=120)


def test_the_paper_training_job_asks_sbatch_for_what_the_config_says(slurm_env, tmp_path):
    """The sbatch script of a paper training job (submitit's SLURM executor needs ``srun``, so this runs once the
    test cluster is up: on a machine without SLURM it would fail whatever the code does)."""
    paper = load_config(REPO / "config" / "paper.yaml")
    cluster = {**paper["cluster"], "partition": "gpu", "account": "proj42", "qos": "high", "constraint": "h100",
               "nodes": 2, "sbatch_extra": {"reservation": "paper", "exclusive": True}}
    executor = make_executor(cluster, tmp_path, threads=paper["train"]["threads"])
    text = executor._executor._make_submission_file_text("python -m job", "uid")
    sbatch = {line.split()[1] for line in text.splitlines() if line.startswith("#SBATCH")}
    for option in ("--partition=gpu", "--account=proj42", "--qos=high", "--constraint=h100", "--nodes=2",
                   "--gpus-per-node=8", "--ntasks-per-node=8", "--cpus-per-task=8", "--mem=480GB", "--time=2880",
                   "--signal=USR2@300", "--reservation=paper", "--exclusive", "--requeue"):
        assert option in sbatch, (option, sorted(sbatch))
    assert executor._executor.max_num_timeout == 100  # cluster.max_timeouts: submitit's 3 would end a paper run
    srun = next(line for line in text.splitlines() if line.startswith("srun "))
    assert "--cpus-per-task 8" in srun, srun  # srun does not inherit it from sbatch on SLURM 22.05-23.02


def test_the_slurm_profile_runs_every_training_launcher_and_the_merges_at_once(slurm_env, tmp_path):
    """Local rules run in a pool of `cores` + 5 threads under the SLURM executor: the profile's `cores` lets 15
    training launchers (each waits on its job for days) and local merges proceed together, not 5 at a time."""
    (tmp_path / "Snakefile").write_text(
        "localrules: launcher, merge\n"
        "rule all:\n    input: expand('out/launch_{i}', i=range(15)), expand('out/merge_{i}', i=range(3))\n"
        "rule launcher:\n    output: 'out/launch_{i}'\n    threads: 8\n"
        "    shell: 'date +%s.%N > {output}.start; sleep 8; touch {output}'\n"
        "rule merge:\n    output: 'out/merge_{i}'\n    shell: 'date +%s.%N > {output}.start; sleep 8; touch {output}'\n")
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(tmp_path / "Snakefile"), "--directory", str(tmp_path),
           "--profile", str(REPO / "workflow" / "profiles" / "slurm"), *PLUGIN_FLAGS]
    proc = subprocess.run(cmd, env=slurm_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    starts = sorted(float(p.read_text()) for p in (tmp_path / "out").glob("*.start"))
    assert len(starts) == 18 and starts[-1] - starts[0] < 6, starts  # one wave; 5 at a time would take 4 waves


def _snakemake(env: dict, workdir: Path, config: Path, *targets: str, timeout: int = 600,
               wait: bool = True) -> subprocess.CompletedProcess | subprocess.Popen:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--profile", str(REPO / "workflow" / "profiles" / "slurm"), *PLUGIN_FLAGS, *targets,
           "--configfile", str(config)]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _sacct(env: dict, job_id: str, fields: str) -> list[str]:
    out = subprocess.run(["sacct", "-j", job_id, "-X", "-n", "-P", "-o", fields], env=env, capture_output=True,
                         text=True, timeout=30).stdout
    return out.strip().splitlines()


@pytest.fixture(scope="module")
def trained(slurm_env, tmp_path_factory):
    """Data stages as SLURM jobs, then the three runs trained at once by 2-task SLURM jobs, all through Snakemake."""
    workdir = tmp_path_factory.mktemp("slurm")
    config = workdir / "slurm.yaml"
    shutil.copy(REPO / "tests" / "data" / "slurm.yaml", config)
    proc = _snakemake(slurm_env, workdir, config, *(f"results/slurm/runs/{run}/provenance.json" for run in RUNS))
    assert proc.returncode == 0, f"{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return workdir, config


def test_three_training_runs_proceed_at_once_under_the_slurm_profile(trained, slurm_env):
    """The three launchers (local rules, each waiting on its job) submit together and their SLURM jobs run side by
    side: every job started before any ended (12 CPUs: 3 jobs x 2 ranks x 2 CPUs)."""
    workdir, _ = trained
    spans = []
    for run in RUNS:
        job_id = str(read_json(workdir / "results" / "slurm" / "runs" / run / "provenance.json")["job"]["id"])
        start, end = _sacct(slurm_env, job_id, "Start,End")[0].split("|")
        spans.append((start, end))
    assert max(s for s, _ in spans) < min(e for _, e in spans), spans  # ISO times compare as strings


def test_two_task_training_job_runs_on_slurm_through_snakemake(trained, slurm_env):
    workdir, _ = trained
    run = workdir / "results" / "slurm" / "runs" / "dit_i_ta"
    prov = read_json(run / "provenance.json")
    assert prov["job"]["cluster"] == "slurm" and prov["job"]["state"] == "COMPLETED"
    summary = prov["summary"]
    assert (summary["world_size"], summary["per_rank_batch"], summary["global_batch"]) == (2, 4, 8)
    (lo0, hi0), (lo1, hi1) = (r["data"]["train"]["range"] for r in sorted(prov["ranks"], key=lambda r: r["rank"]))
    assert lo0 == 0 and hi0 == lo1 < hi1  # disjoint halves of the training set
    assert {r["data"]["train"]["batches"] for r in prov["ranks"]} == {60}
    rows = subprocess.run(["sacct", "-j", str(prov["job"]["id"]), "-n", "-P", "-o", "JobID,State,NTasks,AllocCPUS"],
                          env=slurm_env, capture_output=True, text=True, timeout=30).stdout.split()
    fields = {r.split("|")[0]: r.split("|")[1:] for r in rows}
    assert fields[str(prov["job"]["id"])][0] == "COMPLETED", rows
    assert fields[f"{prov['job']['id']}.0"] == ["COMPLETED", "2", "4"], rows  # the 2 DDP ranks, 2 CPUs each
    assert _sacct(slurm_env, str(prov["job"]["id"]), "Partition,Account") == ["gpu|proj42"]
    assert (run / "final" / "model.safetensors").exists()


def test_a_data_rule_runs_as_a_slurm_job_with_its_declared_resources(trained, slurm_env):
    """A `shards_chunk` job asks for the gpu stage (1 GPU, 1 CPU, 2000 MB, 10 min) in the partition and account set
    once at the top of ``cluster:`` (not the cluster's defaults): sacct shows what SLURM granted."""
    workdir, _ = trained
    text = "".join(p.read_text() for p in (workdir / ".snakemake" / "log").glob("*.snakemake.log"))
    found = re.search(r"submitted with SLURM jobid (\d+) \(log: \S*/rule_shards_chunk/", text)
    assert found, "the shards_chunk rule was not submitted as a SLURM job"
    job_id = found.group(1)
    state, alloc, limit, partition, account = _sacct(slurm_env, job_id,
                                                     "State,AllocTRES,TimelimitRaw,Partition,Account")[0].split("|")
    assert state == "COMPLETED" and (partition, account) == ("gpu", "proj42")
    assert "gres/gpu=1" in alloc and "mem=2000M" in alloc, alloc
    assert limit == "10"


def _interrupt_and_resume(trained: tuple, slurm_env: dict, run: str, signal_cmd: list[str]) -> tuple[str, str, int]:
    """Train ``run`` through the profile, send ``signal_cmd + [job id]`` once it has saved a state, and wait for the
    run to end; -> (Snakemake's output, the job id, the step it resumed from), its weights checked against the
    uninterrupted ``dit_i_ta``'s, bit for bit, and its job id against the first submission's."""
    workdir, config = trained
    results = workdir / "results" / "slurm"
    shutil.rmtree(results / "state" / run)  # the fixture trained it to the end: start again from step 0
    proc = _snakemake(slurm_env, workdir, config, f"results/slurm/runs/{run}/provenance.json", "--forcerun", "train",
                      wait=False)
    state, sidecar = results / "state" / run / "last.pt", results / "state" / run / "job.json"
    deadline = time.time() + 300
    while not state.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert state.exists(), proc.stdout.read() if proc.poll() is not None else "no state after 300 s"
    job_id = str(read_json(sidecar)["job_id"])
    subprocess.run([*signal_cmd, job_id], env=slurm_env, check=True, timeout=30)
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-6000:]
    prov = read_json(results / "runs" / run / "provenance.json")
    assert str(prov["job"]["id"]) == job_id  # requeued, not resubmitted
    resumed = prov["summary"]["resumed_from"]
    assert len(resumed) == 1 and 0 < resumed[0] < 60, out[-4000:]
    a = load_file(str(results / "runs" / "dit_i_ta" / "final" / "model.safetensors"))
    b = load_file(str(results / "runs" / run / "final" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)
    return out, job_id, resumed[0]


def test_preempted_training_resumes_under_the_same_job_id_bitwise(trained, slurm_env):
    """`scancel --signal=USR2` mid-run: every rank stops at one step, submitit requeues the job, the weights match."""
    out, _, step = _interrupt_and_resume(trained, slurm_env, "dit_i_ta_again", ["scancel", "--signal=USR2"])
    assert f"state saved at step {step}, requeueing" in out


def test_a_job_requeued_by_slurm_resumes_from_the_step_sigterm_stopped_it_bitwise(trained, slurm_env):
    """`scontrol requeue` mid-run is SLURM's preemption path (SIGTERM, then requeue): every rank stops at one step,
    the state is saved there and the job ends; SLURM restarts it under the same id and it resumes from that step,
    not from the last periodic checkpoint, ending with the uninterrupted run's weights."""
    out, _, step = _interrupt_and_resume(trained, slurm_env, "dit_i_ta_term", ["scontrol", "requeue"])
    assert f"SIGTERM: state saved at step {step};" in out


@pytest.mark.parametrize("key, value, message", [
    ("partition", "no_such_partition", "invalid partition"),
    ("gpus_per_node", 4, "requested node configuration is not available"),  # the node has 2 (4 ranks: see below)
])
def test_a_wrong_cluster_setting_fails_fast_with_slurms_message(trained, slurm_env, key, value, message):
    workdir, _ = trained
    config = yaml.safe_load((REPO / "tests" / "data" / "slurm.yaml").read_text())
    config["cluster"][key] = value
    if key == "gpus_per_node":
        config["cluster"]["tasks_per_node"] = value  # one rank per GPU (and 8 / 4 ranks divides), or the config is
        # refused at start-up, before sbatch could say anything
    path = workdir / f"bad_{key}.yaml"
    path.write_text(yaml.safe_dump(config))
    t0 = time.time()
    proc = _snakemake(slurm_env, workdir, path, "results/slurm/runs/dit_i_ta_again/provenance.json", "--forcerun",
                      "train", timeout=180)
    assert proc.returncode != 0
    assert time.time() - t0 < 120
    log = (workdir / "results" / "slurm" / "logs" / "train_dit_i_ta_again.log").read_text()
    assert message in log.lower(), f"{log[-3000:]}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def test_a_time_limit_above_the_partitions_fails_fast_naming_the_key(trained, slurm_env):
    """A job whose `--time` exceeds the partition's MaxTime pends forever (reason PartitionTimeLimit): the launcher
    sees that reason, cancels the job and stops naming `cluster.timeout_min`, instead of waiting for days."""
    workdir, config = trained
    update = ["scontrol", "update", "PartitionName=gpu"]
    subprocess.run([*update, "MaxTime=5"], env=slurm_env, check=True, timeout=30)  # the config asks for 10 minutes
    try:
        t0 = time.time()
        proc = _snakemake(slurm_env, workdir, config, "results/slurm/runs/dit_i_ta_again/provenance.json",
                          "--forcerun", "train", timeout=180)
        assert proc.returncode != 0 and time.time() - t0 < 120
    finally:
        subprocess.run([*update, "MaxTime=INFINITE"], env=slurm_env, check=True, timeout=30)
    log = (workdir / "results" / "slurm" / "logs" / "train_dit_i_ta_again.log").read_text()
    assert "PartitionTimeLimit" in log and "cluster.timeout_min" in log, log[-3000:]
    job_id = str(read_json(workdir / "results" / "slurm" / "state" / "dit_i_ta_again" / "job.json")["job_id"])
    assert _sacct(slurm_env, job_id, "State")[0].startswith("CANCELLED")

"""Launch a training run through submitit (local or SLURM), block on it, and record provenance.

Snakemake calls this from a local rule: it submits the job, writes a job-id sidecar in the run's
state folder (outside declared outputs) so a restarted workflow re-attaches to a live SLURM job,
streams the job's log, exits non-zero when the job fails, and cancels the job on Ctrl-C / SIGTERM.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import submitit

from imagenet_t2i.config import run_shard_sets
from imagenet_t2i.io import read_json, write_json
from imagenet_t2i.provenance import make_record, path_hash, write_record
from imagenet_t2i.train.trainer import Trainer


class TrainingFailed(RuntimeError):
    """The training job ended in failure; the message names its log files."""


SLURM_PARAMETERS = {"partition": "slurm_partition", "account": "slurm_account", "qos": "slurm_qos",
                    "constraint": "slurm_constraint", "signal_delay_s": "slurm_signal_delay_s", "mem_gb": "mem_gb"}


def executor_parameters(cluster: dict, threads: int) -> dict:
    """submitit parameters of a training job from the ``cluster`` config block (see the schema)."""
    params: dict = {"timeout_min": cluster["timeout_min"], "cpus_per_task": max(threads, cluster.get("cpus_per_task", 1)),
                    "tasks_per_node": cluster.get("tasks_per_node", 1), "gpus_per_node": cluster.get("gpus_per_node", 0)}
    if cluster["backend"] == "slurm":
        params["nodes"] = cluster.get("nodes", 1)
        params.update({sub: cluster[key] for key, sub in SLURM_PARAMETERS.items() if key in cluster})
        # --requeue: clusters with JobRequeue=0 refuse submitit's `scontrol requeue` without it
        params["slurm_additional_parameters"] = {"requeue": True, **cluster.get("sbatch_extra", {})}
        # srun does not inherit sbatch's --cpus-per-task on SLURM 22.05-23.02: without this, every rank's threads
        # and its loader share one core
        params["slurm_srun_args"] = ["--cpus-per-task", str(params["cpus_per_task"])]
    elif cluster.get("nodes", 1) > 1:
        raise ValueError("cluster.nodes > 1 needs cluster.backend: slurm (the local executor runs on one machine)")
    return params


def make_executor(cluster: dict, folder: Path, threads: int) -> submitit.Executor:
    """An executor for ``cluster.backend`` (always explicit: AutoExecutor picks SLURM whenever srun exists).

    SLURM: ``cluster.max_timeouts`` requeues after the time limit (submitit's default of 3 ends any run longer than
    4 time limits; preemptions do not count)."""
    extra = {"slurm_max_num_timeout": cluster.get("max_timeouts", 100)} if cluster["backend"] == "slurm" else {}
    executor = submitit.AutoExecutor(folder=folder, cluster=cluster["backend"], **extra)
    executor.update_parameters(**executor_parameters(cluster, threads))
    return executor


def _reattach(sidecar: Path, cluster: dict, folder: Path) -> submitit.Job | None:
    """The still-running SLURM job recorded in the sidecar, if any (local jobs die with their parent)."""
    if cluster["backend"] != "slurm" or not sidecar.exists():
        return None
    job = submitit.SlurmJob(folder=folder, job_id=read_json(sidecar)["job_id"])
    return None if job.state in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY") else job


# Pending reasons that never clear by waiting, and the config key that causes each (squeue's %r).
NEVER_STARTS = {"PartitionTimeLimit": "cluster.timeout_min", "QOSMaxWallDurationPerJobLimit": "cluster.timeout_min",
                "AssocMaxWallDurationPerJobLimit": "cluster.timeout_min", "PartitionNodeLimit": "cluster.nodes",
                "InvalidAccount": "cluster.account", "InvalidQOS": "cluster.qos"}


def _never_starts(job: submitit.Job) -> str | None:
    """Why a pending SLURM job can never start (a reason of `NEVER_STARTS`), else None."""
    out = subprocess.run(["squeue", "-h", "-j", str(job.job_id), "-o", "%T|%r"], capture_output=True, text=True,
                         timeout=30).stdout.strip()
    state, _, reason = out.partition("|")
    return reason if state == "PENDING" and reason in NEVER_STARTS else None


class _Tail:
    """Forward new lines of the job's log files to our stdout (a live progress view)."""

    def __init__(self, job: submitit.Job) -> None:
        self.files = [job.paths.stdout, job.paths.stderr]
        self.offsets = [0, 0]

    def pump(self) -> None:
        for i, path in enumerate(self.files):
            try:
                with open(path, "rb") as f:
                    f.seek(self.offsets[i])
                    data = f.read()
            except FileNotFoundError:
                continue
            if data:
                self.offsets[i] += len(data)
                sys.stdout.write(data.decode(errors="replace"))
                sys.stdout.flush()


def launch(run_cfg: dict, cluster: dict, shard_root: str | Path, out_dir: str | Path, state_dir: str | Path,
           until: int | None = None, poll_s: float | None = None) -> dict:
    """Run ``Trainer`` as a submitit job and block until it ends; returns the provenance record.

    ``poll_s``: seconds between looks at the job; default 0.2 for a local job (a process poll: the job's end is seen
    within 0.2 s, not 1 s, which adds up over the tiny world's 15 runs) and 1 for SLURM (each look may query the
    scheduler).
    """
    out_dir, state_dir = Path(out_dir), Path(state_dir)
    poll_s = poll_s if poll_s is not None else 0.2 if cluster["backend"] == "local" else 1.0
    state_dir.mkdir(parents=True, exist_ok=True)
    folder = state_dir / "submitit"
    sidecar = state_dir / "job.json"
    t0 = time.time()
    job = _reattach(sidecar, cluster, folder)
    if job is None:
        executor = make_executor(cluster, folder, run_cfg["train"]["threads"])
        job = executor.submit(Trainer(run_cfg, str(shard_root), str(out_dir), str(state_dir), until))
        write_json(sidecar, {"job_id": job.job_id, "cluster": cluster["backend"], "submitted": t0})
    print(f"[{run_cfg['name']}] job {job.job_id} on {cluster['backend']}; logs: {job.paths.stderr}", flush=True)

    def cancel(signum: int, _frame: FrameType | None) -> None:
        print(f"[{run_cfg['name']}] signal {signum}: cancelling job {job.job_id}", flush=True)
        job.cancel(check=False)
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, cancel) for s in (signal.SIGINT, signal.SIGTERM)}
    tail = _Tail(job)
    next_check = time.time() + 2.0
    try:
        while not job.done():
            tail.pump()
            if cluster["backend"] == "slurm" and time.time() >= next_check:
                reason = _never_starts(job)
                if reason:
                    job.cancel(check=False)
                    raise TrainingFailed(f"training run '{run_cfg['name']}': job {job.job_id} can never start, SLURM "
                                         f"keeps it pending for {reason}: change config key '{NEVER_STARTS[reason]}' "
                                         "(see `scontrol show partition` and `sacctmgr show qos` for the limits); "
                                         "the job was cancelled")
                next_check = time.time() + 15.0
            time.sleep(poll_s)
        tail.pump()
        try:
            ranks = job.results()  # one summary per task, in rank order
        except Exception as e:  # submitit re-raises the job's failure
            raise TrainingFailed(f"training run '{run_cfg['name']}' failed (job {job.job_id}); see "
                                 f"{job.paths.stderr}\n{e}") from None
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    summary = {k: v for k, v in ranks[0].items() if k not in ("rank", "data")}
    if not summary.get("finished"):
        return {"finished": False, "step": summary["step"], "job_id": job.job_id}
    sidecar.unlink(missing_ok=True)
    inputs = {name: Path(shard_root) / name for name in run_shard_sets(run_cfg).values()}
    if run_cfg.get("init_from"):  # the resolution stage: the parent's final weights (an audit walks back through them)
        inputs["init"] = out_dir.parent / run_cfg["init_from"] / "final"
    record = make_record("train", run_cfg, inputs, [out_dir / "final", out_dir / "train.csv"], time.time() - t0,
                         {"job": {"id": job.job_id, "cluster": cluster["backend"], "state": _final_state(job),
                                  "attempts": _attempts(state_dir)}, "summary": summary,
                          "ranks": [{"rank": r["rank"], "data": r["data"]} for r in ranks],
                          "checkpoint_sha256": path_hash(out_dir / "final" / "model.safetensors")})
    write_record(out_dir, record)
    return record


def _final_state(job: submitit.Job, wait_s: float = 60.0) -> str:
    """The job's state once the scheduler has seen it end (SLURM: its result file can come first)."""
    if not isinstance(job, submitit.SlurmJob):
        return job.state
    deadline = time.time() + wait_s
    state = job.get_info(mode="force").get("State", "UNKNOWN")
    while state in ("RUNNING", "COMPLETING") and time.time() < deadline:
        time.sleep(1.0)
        state = job.get_info(mode="force").get("State", state)
    return state


def _attempts(state_dir: Path) -> int:
    return len(list((state_dir / "submitit").glob("*_submitted.pkl")))

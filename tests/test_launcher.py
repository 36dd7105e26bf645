"""The submitit launcher with the real local executor: success, failure, resume after a kill."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

from imagenet_t2i.io import read_json
from imagenet_t2i.train.launcher import TrainingFailed, launch

from .conftest import tiny_run

LOCAL = {"backend": "local", "timeout_min": 10}


def test_launch_success_writes_provenance(tiny_shards, tmp_path):
    record = launch(tiny_run("dit_i", steps=5), LOCAL, tiny_shards, tmp_path / "run", tmp_path / "state", poll_s=0.2)
    prov = read_json(tmp_path / "run" / "provenance.json")
    assert prov == record
    assert prov["job"]["cluster"] == "local" and prov["job"]["state"] in ("DONE", "COMPLETED", "FINISHED")
    assert set(prov["inputs"]) == {"train_ta", "cutmix_all_ta"}
    assert prov["summary"]["step"] == 5 and len(prov["config_hash"]) == 16
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()
    assert not (tmp_path / "state" / "job.json").exists()


def test_launch_failure_raises_and_names_the_log(tiny_shards, tmp_path):
    cfg = tiny_run("dit_i", steps=5)
    cfg["model"]["hidden_size"] = 33  # not divisible by the heads: the job fails inside
    with pytest.raises(TrainingFailed, match="failed .*see .*log"):
        launch(cfg, LOCAL, tiny_shards, tmp_path / "run", tmp_path / "state", poll_s=0.2)
    assert not (tmp_path / "run" / "provenance.json").exists()


def test_killed_launch_resumes_to_the_same_weights(tiny_shards, tmp_path):
    cfg = tiny_run("dit_i", steps=40, checkpoint_every=5, eval_checkpoints=[])
    launch(cfg, LOCAL, tiny_shards, tmp_path / "ref", tmp_path / "ref_state", poll_s=0.2)
    script = (f"import json,sys; from imagenet_t2i.train.launcher import launch; "
              f"launch(json.loads(sys.argv[1]), {LOCAL!r}, {str(tiny_shards)!r}, {str(tmp_path / 'run')!r}, "
              f"{str(tmp_path / 'state')!r}, poll_s=0.2)")
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(cfg)], start_new_session=True)
    state = tmp_path / "state" / "last.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.1)
    assert state.exists(), "no checkpoint was written"
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher and its job die mid-run, like a lost node
    proc.wait()
    assert not (tmp_path / "run" / "final").exists()
    killed_at = torch.load(state, weights_only=False)["step"]
    assert 0 < killed_at < 40
    launch(cfg, LOCAL, tiny_shards, tmp_path / "run", tmp_path / "state", poll_s=0.2)
    a, b = load_file(str(tmp_path / "ref" / "final" / "model.safetensors")), load_file(
        str(tmp_path / "run" / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    prov = read_json(tmp_path / "run" / "provenance.json")
    assert prov["job"]["attempts"] == 2


def _ranks_partition_the_data(record: dict, cfg: dict) -> None:
    """From the recorded numbers: 2 ranks read disjoint halves of every set, the same number of batches each."""
    ranks = sorted(record["ranks"], key=lambda r: r["rank"])
    assert [r["rank"] for r in ranks] == [0, 1]
    s = record["summary"]
    assert s["global_batch"] == s["per_rank_batch"] * s["world_size"] * s["accumulation"] == cfg["train"]["batch_size"]
    for role in ranks[0]["data"]:
        (lo0, hi0), (lo1, hi1) = ranks[0]["data"][role]["range"], ranks[1]["data"][role]["range"]
        assert lo0 == 0 and hi0 == lo1 and hi1 > lo1  # disjoint, together the whole set
        assert ranks[0]["data"][role]["batches"] == ranks[1]["data"][role]["batches"] == \
            cfg["train"]["steps"] * s["accumulation"]


def test_two_rank_ddp_job_on_cpu(tiny_shards, tmp_path):
    """Two submitit tasks form a gloo DDP job: rank 0 alone writes, both ranks train in step on disjoint data."""
    cfg = tiny_run("dit_i", steps=4, batch_size=8, accumulation=2, checkpoint_every=2, eval_checkpoints=[])
    record = launch(cfg, {**LOCAL, "tasks_per_node": 2}, tiny_shards, tmp_path / "run", tmp_path / "state", poll_s=0.2)
    assert record["summary"]["finished"] and record["summary"]["step"] == 4
    assert (record["summary"]["world_size"], record["summary"]["per_rank_batch"]) == (2, 2)
    _ranks_partition_the_data(record, cfg)
    state = torch.load(tmp_path / "state" / "last.pt", weights_only=False)
    assert len(state["generators"]) == 2 and not torch.equal(state["generators"][0], state["generators"][1])
    rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert len(rows) == 5  # header + one row per step, written once (rank 0)


def test_two_rank_job_preempted_by_usr2_resumes_bitwise(tiny_shards, tmp_path):
    """USR2 to both ranks mid-run (what SLURM sends on preemption): one state at one step, requeue, same weights."""
    import psutil

    from imagenet_t2i.train.launcher import make_executor
    from imagenet_t2i.train.trainer import Trainer

    cfg = tiny_run("cad_i", steps=30, batch_size=4, checkpoint_every=5, eval_checkpoints=[])
    cluster = {**LOCAL, "tasks_per_node": 2}
    launch(cfg, cluster, tiny_shards, tmp_path / "ref", tmp_path / "ref_state", poll_s=0.2)
    job = make_executor(cluster, tmp_path / "state" / "submitit", 1).submit(
        Trainer(cfg, str(tiny_shards), str(tmp_path / "run"), str(tmp_path / "state")))
    state = tmp_path / "state" / "last.pt"
    deadline = time.time() + 120
    while not state.exists() and time.time() < deadline:
        time.sleep(0.05)
    assert state.exists(), "no checkpoint was written"
    tasks = psutil.Process(job._process.pid).children()
    assert len(tasks) == 2
    for t in tasks:
        t.send_signal(signal.SIGUSR2)
    results = job.results()  # the local executor requeues the job when rank 0 asks, then it runs to the end
    assert all(r["finished"] for r in results)
    log = (tmp_path / "state" / "submitit" / f"{job.job_id}_0_log.out").read_text()
    saved_at = [int(line.split("state saved at step ")[1].split(",")[0]) for line in log.splitlines()
                if "state saved at step" in line]
    assert len(saved_at) == 1 and 5 <= saved_at[0] < 30, log[-2000:]
    assert f"resumed from step {saved_at[0]}" in log
    a = load_file(str(tmp_path / "ref" / "final" / "model.safetensors"))
    b = load_file(str(tmp_path / "run" / "final" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_launcher_imports_no_torch():
    """The launcher process waits on its job for the whole run: torch (1.2 s) is imported in the job's process only."""
    code = "import sys, imagenet_t2i.cli, imagenet_t2i.train.launcher; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout == "False\n"

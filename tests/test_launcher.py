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


def test_two_rank_ddp_job_on_cpu(tiny_shards, tmp_path):
    """Two submitit tasks form a gloo DDP job: rank 0 alone writes, both ranks train in step."""
    cfg = tiny_run("dit_i", steps=4, checkpoint_every=2, eval_checkpoints=[])
    record = launch(cfg, {**LOCAL, "tasks_per_node": 2}, tiny_shards, tmp_path / "run", tmp_path / "state", poll_s=0.2)
    assert record["summary"]["finished"] and record["summary"]["step"] == 4
    state = torch.load(tmp_path / "state" / "last.pt", weights_only=False)
    assert len(state["generators"]) == 2 and not torch.equal(state["generators"][0], state["generators"][1])
    rows = (tmp_path / "run" / "train.csv").read_text().splitlines()
    assert len(rows) == 5  # header + one row per step, written once (rank 0)

import csv

import pytest
import torch
from safetensors.torch import load_file

from imagenet_t2i.models import load_pretrained
from imagenet_t2i.train.loop import NonFiniteLossError
from imagenet_t2i.train.trainer import Trainer

from .conftest import tiny_run


def _weights(folder):
    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("model", ["dit_i", "cad_i"])
def test_resumed_run_ends_with_the_same_weights(tiny_shards, tmp_path, model):
    cfg = tiny_run(model, steps=8)
    full = Trainer(cfg, str(tiny_shards), str(tmp_path / "full"), str(tmp_path / "full_state"))()
    assert full["finished"] and full["step"] == 8
    part = Trainer(cfg, str(tiny_shards), str(tmp_path / "part"), str(tmp_path / "part_state"), until=5)()
    assert part["finished"] is False and part["step"] == 5
    assert not (tmp_path / "part" / "final").exists()
    resumed = Trainer(cfg, str(tiny_shards), str(tmp_path / "part"), str(tmp_path / "part_state"))()
    assert resumed["finished"]
    a, b = _weights(tmp_path / "full" / "final"), _weights(tmp_path / "part" / "final")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    rows = list(csv.DictReader(open(tmp_path / "part" / "train.csv")))
    assert [int(r["step"]) for r in rows] == list(range(1, 9))
    full_rows = list(csv.DictReader(open(tmp_path / "full" / "train.csv")))
    assert [(r["step"], r["loss"]) for r in rows] == [(r["step"], r["loss"]) for r in full_rows]
    assert (tmp_path / "full" / "checkpoints" / "step-0000004" / "model.safetensors").exists()
    model_obj = load_pretrained(tmp_path / "full" / "final")
    assert model_obj.arch == model


def test_loss_falls_on_a_fixed_batch(tiny_shards, tmp_path):
    cfg = tiny_run("dit_i", augment="none", steps=60, checkpoint_every=60, eval_checkpoints=[])
    cfg["train"]["optimizer"]["lr"] = 3e-3
    Trainer(cfg, str(tiny_shards), str(tmp_path / "out"), str(tmp_path / "state"))()
    losses = [float(r["loss"]) for r in csv.DictReader(open(tmp_path / "out" / "train.csv"))]
    assert sum(losses[-10:]) / 10 < 0.8 * sum(losses[:10]) / 10


def test_non_finite_losses_stop_the_run(tiny_shards, tmp_path):
    cfg = tiny_run("dit_i", augment="none", steps=20, max_nonfinite=3)
    cfg["train"]["optimizer"]["lr"] = 1e30  # the weights blow up after the first update
    cfg["train"]["grad_clip"] = 1e30
    with pytest.raises(NonFiniteLossError, match="3 consecutive non-finite losses"):
        Trainer(cfg, str(tiny_shards), str(tmp_path / "out"), str(tmp_path / "state"))()


def test_global_batch_is_split_by_accumulation_and_recorded(tiny_shards, tmp_path):
    cfg = tiny_run("dit_i", augment="none", steps=4, batch_size=8, accumulation=2, checkpoint_every=4)
    summary = Trainer(cfg, str(tiny_shards), str(tmp_path / "out"), str(tmp_path / "state"))()
    assert (summary["world_size"], summary["per_rank_batch"], summary["accumulation"], summary["global_batch"]) == (1, 4, 2, 8)
    assert summary["data"]["train"]["batches"] == 4 * 2  # two micro-batches of 4 per optimiser step
    rows = list(csv.DictReader(open(tmp_path / "out" / "train.csv")))
    assert {(r["world_size"], r["per_rank_batch"], r["accumulation"], r["global_batch"]) for r in rows} == {("1", "4", "2", "8")}


def test_a_global_batch_that_does_not_divide_stops_naming_the_numbers(tiny_shards, tmp_path):
    cfg = tiny_run("dit_i", augment="none", steps=4, batch_size=6, accumulation=4)
    with pytest.raises(ValueError, match=r"batch_size 6 .* 1 rank\(s\) x 4 accumulation"):
        Trainer(cfg, str(tiny_shards), str(tmp_path / "out"), str(tmp_path / "state"))()


@pytest.mark.parametrize("where", ["mid_step", "between_steps"])
def test_usr2_stops_at_a_step_boundary_and_the_resumed_run_is_bitwise_identical(tiny_shards, tmp_path, monkeypatch,
                                                                                where):
    """A preemption signal, wherever it lands, saves one consistent state; the rerun ends as if never stopped."""
    import os
    import signal

    from imagenet_t2i.train import loop

    cfg = tiny_run("cad_i", steps=9, checkpoint_every=100, eval_checkpoints=[])
    Trainer(cfg, str(tiny_shards), str(tmp_path / "full"), str(tmp_path / "full_state"))()
    target, name = (loop, "diffusion_loss") if where == "mid_step" else (loop, "scheduled_lr")
    original, calls = getattr(target, name), []

    def signalling(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGUSR2)
        return original(*args, **kwargs)

    monkeypatch.setattr(target, name, signalling)
    stopped = Trainer(cfg, str(tiny_shards), str(tmp_path / "part"), str(tmp_path / "part_state"))()
    monkeypatch.undo()
    assert stopped["finished"] is False and stopped.get("preempted") and 0 < stopped["step"] < 9
    assert torch.load(tmp_path / "part_state" / "last.pt", weights_only=False)["step"] == stopped["step"]
    assert signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL  # the trainer put the previous handler back
    Trainer(cfg, str(tiny_shards), str(tmp_path / "part"), str(tmp_path / "part_state"))()
    a, b = _weights(tmp_path / "full" / "final"), _weights(tmp_path / "part" / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_non_finite_last_step_still_saves_the_final_weights(tiny_shards, tmp_path):
    cfg = tiny_run("dit_i", augment="none", steps=3, max_nonfinite=5, checkpoint_every=100, eval_checkpoints=[])
    cfg["train"]["optimizer"]["lr"] = 1e30  # the weights blow up after the first update: steps 2 and 3 are non-finite
    cfg["train"]["grad_clip"] = 1e30
    summary = Trainer(cfg, str(tiny_shards), str(tmp_path / "out"), str(tmp_path / "state"))()
    assert summary["finished"] and (tmp_path / "out" / "final" / "model.safetensors").exists()
    rows = list(csv.DictReader(open(tmp_path / "out" / "train.csv")))
    assert [r["step"] for r in rows] == ["1", "2", "3"] and rows[-1]["grad_norm"] == "nan"


def test_hyperparameters_come_from_the_config_on_resume(tiny_shards, tmp_path):
    cfg = tiny_run("dit_i", augment="none", steps=6, checkpoint_every=100, eval_checkpoints=[])
    Trainer(cfg, str(tiny_shards), str(tmp_path / "out"), str(tmp_path / "state"), until=3)()
    cfg["train"]["ema"]["decay"] = 0.5
    cfg["train"]["optimizer"]["weight_decay"] = 0.2
    Trainer(cfg, str(tiny_shards), str(tmp_path / "out"), str(tmp_path / "state"))()
    state = torch.load(tmp_path / "state" / "last.pt", weights_only=False)
    assert state["ema"]["decay"] == 0.5
    assert {g["weight_decay"] for g in state["optimizer"]["param_groups"]} == {0.2, 0.0}


def test_a_rerun_restores_removed_outputs_and_restarts_on_new_shards(tiny_shards, tmp_path):
    """Snakemake removes a rerun job's outputs: a finished state brings the evaluation checkpoints back without
    training; a state trained on other shards (a rebuilt set) or with another caption dropout is not resumed."""
    import json
    import shutil

    cfg = tiny_run("dit_i", augment="none", steps=6)
    out, state = tmp_path / "out", tmp_path / "state"
    Trainer(cfg, str(tiny_shards), str(out), str(state))()
    ckpt = _weights(out / "checkpoints" / "step-0000004")
    shutil.rmtree(out)
    again = Trainer(cfg, str(tiny_shards), str(out), str(state))()
    assert again["resumed_from"] == [6]  # nothing retrained
    restored = _weights(out / "checkpoints" / "step-0000004")
    assert all(torch.equal(ckpt[k], restored[k]) for k in ckpt)
    shards = tmp_path / "shards"
    shutil.copytree(tiny_shards, shards)
    manifest = shards / "train_ta" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "fingerprint": "rebuilt"}))
    fresh = Trainer(cfg, str(shards), str(out), str(state))()
    assert fresh["resumed_from"] == [] and fresh["step"] == 6
    cfg["train"]["cfg_dropout"] = 0.3  # another recipe: the finished state would train nothing of it
    redone = Trainer(cfg, str(shards), str(out), str(state))()
    assert redone["resumed_from"] == [] and redone["step"] == 6


def test_progress_lines_average_the_loss_since_the_previous_line_and_keep_train_csv_current(tiny_shards, tmp_path,
                                                                                          capsys):
    """Every ``total // 20`` steps (here 2) and at least every ``report_every_s``: the loss of the logged steps since the
    previous line (not of the whole run), and train.csv rewritten with every row so far."""
    cfg = tiny_run(steps=40, log_every=2, checkpoint_every=100, eval_checkpoints=[])
    Trainer(cfg, str(tiny_shards), str(tmp_path / "out"), str(tmp_path / "state"))()
    rows = {int(r["step"]): float(r["loss"]) for r in csv.DictReader(open(tmp_path / "out" / "train.csv"))}
    lines = [line for line in capsys.readouterr().out.splitlines() if "/40 loss" in line]
    assert len(lines) == 20 and "step 40/40" in lines[-1]
    assert f"loss {rows[40]:.4f} (mean of the 1 logged step(s)" in lines[-1]  # one row since step 38's line
    cfg = tiny_run(steps=40, log_every=2, checkpoint_every=100, eval_checkpoints=[], report_every_s=0)
    Trainer(cfg, str(tiny_shards), str(tmp_path / "again"), str(tmp_path / "again_state"), until=7)()
    lines = [line for line in capsys.readouterr().out.splitlines() if "/40 loss" in line]
    assert [line.split()[2] for line in lines] == [f"{s}/40" for s in range(1, 8)]  # by time: every step
    assert [int(r["step"]) for r in csv.DictReader(open(tmp_path / "again" / "train.csv"))] == [2, 4, 6, 7]


def test_sigterm_saves_at_the_step_boundary_and_ends_the_job_and_the_rerun_is_bitwise_identical(tiny_shards,
                                                                                               tmp_path, monkeypatch):
    """SLURM's preemption and cancel signal: one consistent state at the step where it landed, then the job ends with
    no result (SLURM requeues a preempted job; it resumes from that step, not from an older checkpoint)."""
    import os
    import signal

    from imagenet_t2i.train import loop

    cfg = tiny_run("dit_i", steps=9, checkpoint_every=4, eval_checkpoints=[])
    Trainer(cfg, str(tiny_shards), str(tmp_path / "full"), str(tmp_path / "full_state"))()
    original, calls = loop.diffusion_loss, []

    def signalling(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # mid-step 6, after the periodic save at step 4
            os.kill(os.getpid(), signal.SIGTERM)
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "diffusion_loss", signalling)
    with pytest.raises(SystemExit) as stopped:
        Trainer(cfg, str(tiny_shards), str(tmp_path / "part"), str(tmp_path / "part_state"))()
    monkeypatch.undo()
    assert stopped.value.code == 0 and not (tmp_path / "part" / "final").exists()
    assert torch.load(tmp_path / "part_state" / "last.pt", weights_only=False)["step"] == 6  # not 4
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the trainer put the previous handler back
    resumed = Trainer(cfg, str(tiny_shards), str(tmp_path / "part"), str(tmp_path / "part_state"))()
    assert resumed["resumed_from"] == [6]
    a, b = _weights(tmp_path / "full" / "final"), _weights(tmp_path / "part" / "final")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_state_is_also_saved_by_time(tiny_shards, tmp_path, monkeypatch):
    """``train.checkpoint_every_min`` beside ``checkpoint_every``: rank 0's clock decides, all ranks save together."""
    saves = []
    original = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: (saves.append(obj["step"]), original(obj, f, *a, **k)))
    cfg = tiny_run(steps=6, checkpoint_every=100, eval_checkpoints=[])
    Trainer(cfg, str(tiny_shards), str(tmp_path / "steps"), str(tmp_path / "steps_state"))()
    assert saves == [6]  # by steps: only the last
    saves.clear()
    cfg = tiny_run(steps=6, checkpoint_every=100, eval_checkpoints=[], checkpoint_every_min=1e-9)
    Trainer(cfg, str(tiny_shards), str(tmp_path / "time"), str(tmp_path / "time_state"))()
    assert saves == [0, 1, 2, 3, 4, 5, 6]  # due at every step boundary (and the last step's save)

import csv

import pytest
import torch
from safetensors.torch import load_file

from imagenet_t2i.models import load_pretrained
from imagenet_t2i.train.loop import NonFiniteLossError, Trainer

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

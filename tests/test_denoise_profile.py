"""The denoising profile: its x0 algebra against oracle models, real tiny models on real shards, the table
metric, the F-DENOISE figure and the command."""
import json

import pytest
import torch

from imagenet_t2i.cli import main
from imagenet_t2i.diffusion.schedule import flow_gamma
from imagenet_t2i.evaluation.diagnostics.denoise_metrics import metric_gamma, profile_value
from imagenet_t2i.evaluation.diagnostics.denoise_profile import denoise_profile, fixed_samples
from imagenet_t2i.io import read_json, write_json
from imagenet_t2i.models import build_model, save_pretrained
from imagenet_t2i.paper.figures import figure_denoise
from imagenet_t2i.paper.tables import metric_value, score_file

from .conftest import REPO, TINY_MODELS

GAMMAS = [0.9, 0.5, 0.05]


class Oracle(torch.nn.Module):
    """Knows x0 (smuggled in as the 'text'): predicts eps (or v) exactly, or zero with ``zero=True``."""

    def __init__(self, objective: str, zero: bool = False):
        super().__init__()
        self.objective, self.zero = objective, zero

    def forward(self, x, gamma, text, mask, prev_latents=None):  # noqa: ANN001
        if self.zero:
            return torch.zeros_like(x), None
        x0 = text[:, 0].view_as(x)
        g = gamma.view(-1, 1, 1, 1)
        if self.objective == "flow":  # x = (1 - t) x0 + t eps with flow_gamma(t) = g; v = eps - x0
            t = 1 / (1 + (g / (1 - g)).sqrt())
            return (x - (1 - t) * x0) / t - x0, None
        return (x - g.sqrt() * x0) / (1 - g).sqrt(), None


def _data(n: int = 16) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x0 = torch.randn(n, 3, 8, 8, generator=torch.Generator().manual_seed(1)) * 0.5
    return x0, x0.reshape(n, 1, -1).clone(), torch.ones(n, 1, dtype=torch.bool)


@pytest.mark.parametrize("objective", ["eps", "flow"])
def test_oracle_recovers_x0_and_zero_output_is_a_baseline(objective):
    x0, text, mask = _data()
    exact = denoise_profile(Oracle(objective), x0, text, mask, GAMMAS, objective, seed=3, batch_size=5)
    assert max(exact["x0_mse"]["model"]) < 1e-8
    assert exact["x0_mse"]["predict_zero"] == pytest.approx([float((x0**2).mean())] * 3, rel=1e-6)
    # E[eps^2] ~ 1: predicting x_t / sqrt(g) costs about (1 - g) / g
    assert exact["x0_mse"]["predict_scaled_xt"] == pytest.approx([(1 - g) / g for g in GAMMAS], rel=0.15)
    zero = denoise_profile(Oracle(objective, zero=True), x0, text, mask, GAMMAS, objective, seed=3)
    if objective == "eps":  # eps_hat = 0 is exactly the x_t / sqrt(gamma) prediction
        assert zero["x0_mse"]["model"] == pytest.approx(zero["x0_mse"]["predict_scaled_xt"], rel=1e-5)
    else:  # v_hat = 0 returns the flow input x_t = (1 - t) x0 + t eps itself: error t^2 (E[eps^2] + E[x0^2])
        t = [1 / (1 + (g / (1 - g)) ** 0.5) for g in GAMMAS]
        assert [float(flow_gamma(torch.tensor(v))) for v in t] == pytest.approx(GAMMAS, rel=1e-5)
        expected = [v**2 * (1 + float((x0**2).mean())) for v in t]
        assert zero["x0_mse"]["model"] == pytest.approx(expected, rel=0.15)


@pytest.mark.parametrize("arch", ["dit_i", "cad_i"])
def test_tiny_models_on_real_shards_paired_and_batch_invariant(tiny_shards, arch):
    x0, text, mask = fixed_samples(tiny_shards / "train_ta", 12, seed=0)
    assert x0.shape == (12, 3, 32, 32) and text.shape[:2] == mask.shape and mask.any(1).all()
    again = fixed_samples(tiny_shards / "train_ta", 12, seed=0)
    assert torch.equal(again[0], x0) and torch.equal(again[1], text)
    assert not torch.equal(fixed_samples(tiny_shards / "train_ta", 12, seed=1)[0], x0)
    spec = dict(TINY_MODELS[arch])
    torch.manual_seed(0)
    model = build_model(spec.pop("arch"), **spec, in_channels=3, input_size=32, text_dim=text.shape[2])
    a = denoise_profile(model, x0, text, mask, GAMMAS, seed=0, batch_size=12)
    b = denoise_profile(model, x0, text, mask, GAMMAS, seed=0, batch_size=5)
    assert a["num_samples"] == 12 and a["gammas"] == GAMMAS
    assert a["x0_mse"]["model"] == pytest.approx(b["x0_mse"]["model"], rel=1e-4)
    # an untrained model: far worse than predicting zero at low gamma (its eps error is amplified by (1-g)/g)
    assert a["x0_mse"]["model"][-1] > a["x0_mse"]["predict_zero"][-1]
    # fewer samples in the set than asked: all of them
    assert fixed_samples(tiny_shards / "train_ta", 10_000, seed=0)[0].shape[0] == 40


def test_table_metric_and_errors(tmp_path):
    profile = {"gammas": [0.5, 0.05], "x0_mse": {"model": [0.02, 0.1], "predict_zero": [0.2, 0.2],
                                                 "predict_scaled_xt": [1.0, 19.0]}, "num_samples": 4}
    path = tmp_path / "denoise_profile.json"
    assert score_file("x0_mse_g0.05") == "denoise_profile.json"
    assert metric_gamma("fd") is None and metric_gamma("x0_mse_g0.5") == 0.5
    assert metric_value("x0_mse_g0.05", profile, path) == 0.1
    with pytest.raises(ValueError, match="no noise level gamma=0.2"):
        profile_value(profile, 0.2, path)
    with pytest.raises(ValueError, match="gamma must lie in"):
        score_file("x0_mse_g2")
    with pytest.raises(ValueError, match="needs a number"):
        score_file("x0_mse_gbig")


def test_figure_denoise(tmp_path):
    for run, scale in (("a", 1.0), ("b", 2.0)):
        write_json(tmp_path / "eval" / run / "denoise_profile.json",
                   {"gammas": [0.5, 0.05], "x0_mse": {"model": [0.02 * scale, 0.1 * scale], "predict_zero": [0.2, 0.2],
                                                      "predict_scaled_xt": [1.0, 19.0]}, "num_samples": 4})
    spec = {"panels": [{"title": "DiT-I", "lines": [{"label": "TA", "runs": ["a", "b"]}]}]}
    out = figure_denoise("F-DENOISE", spec, tmp_path, tmp_path / "figures" / "F-DENOISE.png")
    assert out["png"].stat().st_size > 1000 and out["pdf"].is_file()
    assert out["series"]["DiT-I"]["TA"]["mean"] == pytest.approx([0.03, 0.15])
    record = read_json(tmp_path / "figures" / "F-DENOISE.png.prov.json")
    assert set(record["inputs"]) == {str(tmp_path / "eval" / r / "denoise_profile.json") for r in "ab"}
    spec["panels"][0]["lines"][0]["runs"].append("missing")
    with pytest.raises(FileNotFoundError, match="missing/denoise_profile.json"):
        figure_denoise("F-DENOISE", spec, tmp_path, tmp_path / "figures" / "F-DENOISE.png")


def test_command_prints_and_writes(tiny_shards, tmp_path, capsys):
    spec = dict(TINY_MODELS["dit_i"])
    torch.manual_seed(0)
    model = build_model(spec.pop("arch"), **spec, in_channels=3, input_size=32, text_dim=384)
    save_pretrained(model, tmp_path / "model")
    config = tmp_path / "extra.yaml"
    config.write_text("eval: {denoise: {num_samples: 8, gammas: [0.5, 0.01]}}\n")
    out = tmp_path / "profile.json"
    assert main(["denoise-profile", "--config", str(REPO / "config" / "config.yaml"), str(config), "--model",
                 str(tmp_path / "model"), "--shards", str(tiny_shards / "train_ta"), "--out", str(out)]) in (0, None)
    printed = capsys.readouterr().out
    assert "predict 0" in printed and "0.01" in printed
    profile = json.loads(out.read_text())
    assert profile["gammas"] == [0.5, 0.01] and profile["num_samples"] == 8 and profile["objective"] == "eps"
    assert read_json(f"{out}.prov.json")["inputs"]["model"]["path"]

"""Sampling: per-sample seeds (batch-size invariance), CPU fp32, resumable per-prompt writers, CLI options."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

from imagenet_t2i.cli import build_parser
from imagenet_t2i.encode.autoencoder import PixelAutoencoder
from imagenet_t2i.evaluation.diagnostics.probe_sampling import sample_colour_probe
from imagenet_t2i.evaluation.dpg.sample import sample_dpg
from imagenet_t2i.evaluation.fid.sample import sample_captions
from imagenet_t2i.evaluation.geneval.sample import sample_geneval
from imagenet_t2i.io import write_jsonl
from imagenet_t2i.models import build_model, save_pretrained
from imagenet_t2i.sampling import sample as sample_mod
from imagenet_t2i.sampling.sample import (RESUME_FILE, generate, initial_noise, noise_generators, sample_prompts,
                                          sample_seed, sampling_provenance)

TEXT_DIM = 16
SAMPLE_CFG = {"steps": 3, "guidance": 5.0, "clamp": 1.0, "seed": 7, "samples_per_prompt": 2}
PROMPTS = ["a red circle", "a blue square in the lower right", "x", "a yellow triangle", "a green diamond"]


class HashText:
    """A text encoder stand-in: a fixed (L, D) embedding per text, L = 2..6 varying with the text."""

    def encode(self, texts: list[str]) -> list[np.ndarray]:
        out = []
        for t in texts:
            rng = np.random.default_rng(int(hashlib.sha256(t.encode()).hexdigest()[:8], 16))
            out.append(rng.standard_normal((2 + len(t) % 5, TEXT_DIM)).astype(np.float32))
        return out

    def describe(self) -> dict:
        return {"backend": "hash"}


def tiny_model(arch: str = "dit_i") -> torch.nn.Module:
    kwargs = ({"patch_size": 4, "hidden_size": 32, "depth": 2, "num_heads": 2} if arch == "dit_i" else
              {"patch_size": 4, "data_dim": 32, "num_latents": 8, "latents_dim": 32, "num_blocks": 1,
               "num_processing_layers": 1, "compute_heads": 2, "text_heads": 2})
    torch.manual_seed(0)
    model = build_model(arch, in_channels=3, input_size=16, text_dim=TEXT_DIM, **kwargs)
    with torch.no_grad():  # move off the zero-initialised output layers: the images must depend on the text
        for p in model.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("model")
    save_pretrained(tiny_model(), folder)
    return folder


def backends() -> tuple:
    return PixelAutoencoder(), HashText(), torch.linspace(-1, 1, 3 * TEXT_DIM).view(3, TEXT_DIM)


class Spy:
    """Wraps `sample.generate`: records the prompts and seeds it is asked for; can fail after some batches."""

    def __init__(self, monkeypatch, fail_after: int | None = None):
        self.prompts: list[str] = []
        self.seeds: list[int] = []
        self.fail_after = fail_after
        monkeypatch.setattr(sample_mod, "generate", self)

    def __call__(self, model, autoencoder, text_encoder, uncond, prompts, seeds, *args, **kwargs):  # noqa: ANN001
        self.prompts += prompts
        self.seeds += seeds
        for n, batch in enumerate(generate(model, autoencoder, text_encoder, uncond, prompts, seeds, *args, **kwargs)):
            if n == self.fail_after:
                raise RuntimeError("killed")
            yield batch


def test_seed_rule_is_per_sample():
    seeds = [sample_seed(0, i, j) for i in range(3) for j in range(4)]
    assert len(set(seeds)) == len(seeds) and seeds == [sample_seed(0, i, j) for i in range(3) for j in range(4)]
    assert sample_seed(1, 0, 0) != sample_seed(0, 0, 0)
    all_noise = initial_noise(noise_generators(seeds), (3, 4, 4))  # (12, 3, 4, 4)
    assert torch.equal(all_noise[5:6], initial_noise(noise_generators(seeds[5:6]), (3, 4, 4)))
    assert not torch.equal(all_noise[0], all_noise[1])


@pytest.mark.parametrize("arch", ["dit_i", "cad_i"])
def test_images_do_not_depend_on_batch_size(arch):
    """x_T of each sample is exactly the same whatever the batch; the images agree up to the rounding of
    BLAS kernels chosen by the batch shape (at most one uint8 level, in under 1% of the values)."""
    model, seen = tiny_model(arch), []
    forward = model.forward

    def spy(x, gamma, text, mask, **kwargs):  # noqa: ANN001, ANN202
        assert x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")  # CPU: plain fp32
        seen.append(x)
        return forward(x, gamma, text, mask, **kwargs)

    model.forward = spy
    seeds = [sample_seed(3, i, 0) for i in range(len(PROMPTS))]
    images, first_x = {}, {}
    for bs in (1, 3, len(PROMPTS)):
        seen.clear()
        images[bs] = np.concatenate(list(generate(model, *backends(), PROMPTS, seeds, SAMPLE_CFG, batch_size=bs)))
        steps = SAMPLE_CFG["steps"]  # model calls per batch; each call is [conditional; unconditional]
        first_x[bs] = torch.cat([seen[c].chunk(2)[0] for c in range(0, len(seen), steps)])  # x_T, (N, 3, h, w)
    assert images[1].shape == (len(PROMPTS), 16, 16, 3) and images[1].std() > 10
    for bs in (3, len(PROMPTS)):
        assert torch.equal(first_x[bs], first_x[1])
        diff = np.abs(images[bs].astype(int) - images[1].astype(int))
        assert diff.max() <= 1 and (diff > 0).mean() < 0.01, (bs, diff.max(), (diff > 0).mean())
    # ... and a prompt's image does not depend on the other prompts in its batch
    alone = next(generate(model, *backends(), PROMPTS[2:3], seeds[2:3], SAMPLE_CFG))
    assert np.abs(alone[0].astype(int) - images[1][2].astype(int)).max() <= 1


def test_sample_prompts_resumes_per_prompt(model_dir, tmp_path, monkeypatch):
    full = sample_prompts(model_dir, *backends(), PROMPTS, SAMPLE_CFG, tmp_path / "full", batch_size=2, progress=False)
    assert [p.name for p in full[:3]] == ["000_00.png", "000_01.png", "001_00.png"]

    # a killed run: the first batch (prompt 0) is written, nothing half-written is left behind
    out = tmp_path / "resumed"
    spy = Spy(monkeypatch, fail_after=1)
    with pytest.raises(RuntimeError, match="killed"):
        sample_prompts(model_dir, *backends(), PROMPTS, SAMPLE_CFG, out, batch_size=2, progress=False)
    assert sorted(p.name for p in out.iterdir()) == [RESUME_FILE, "000_00.png", "000_01.png"]
    assert spy.seeds[:2] == [sample_seed(SAMPLE_CFG["seed"], 0, 0), sample_seed(SAMPLE_CFG["seed"], 0, 1)]

    # the rerun samples the other prompts only; then delete single files and rerun again
    spy = Spy(monkeypatch)
    sample_prompts(model_dir, *backends(), PROMPTS, SAMPLE_CFG, out, batch_size=2, progress=False)
    assert spy.prompts == [p for p in PROMPTS[1:] for _ in range(2)]
    kept = {p.name: p.stat().st_mtime_ns for p in out.glob("*.png")}
    (out / "001_01.png").unlink()
    (out / "003_00.png").unlink()
    spy = Spy(monkeypatch)
    paths = sample_prompts(model_dir, *backends(), PROMPTS, SAMPLE_CFG, out, batch_size=2, progress=False)
    assert spy.prompts == [PROMPTS[1]] * 2 + [PROMPTS[3]] * 2
    assert spy.seeds == [sample_seed(SAMPLE_CFG["seed"], i, j) for i in (1, 3) for j in (0, 1)]
    for p in paths:
        assert p.read_bytes() == (tmp_path / "full" / p.name).read_bytes(), p.name
        if not p.name.startswith(("001", "003")):
            assert p.stat().st_mtime_ns == kept[p.name]  # complete prompts are not rewritten
    spy = Spy(monkeypatch)
    sample_prompts(model_dir, *backends(), PROMPTS, SAMPLE_CFG, out, batch_size=2, progress=False)
    assert spy.prompts == []
    assert not [p for p in out.iterdir() if p.name.startswith(".") and p.name != RESUME_FILE]  # no temp files


def test_resume_refuses_other_settings(model_dir, tmp_path):
    sample_prompts(model_dir, *backends(), PROMPTS[:2], SAMPLE_CFG, tmp_path, progress=False)
    for changed in ({**SAMPLE_CFG, "guidance": 3.0}, {**SAMPLE_CFG, "seed": 8}):
        with pytest.raises(ValueError, match="other settings"):
            sample_prompts(model_dir, *backends(), PROMPTS[:2], changed, tmp_path, progress=False)
    with pytest.raises(ValueError, match="other settings"):
        sample_prompts(model_dir, *backends(), PROMPTS[:1], SAMPLE_CFG, tmp_path, progress=False)


def test_geneval_dpg_and_probe_writers_resume(model_dir, tmp_path, monkeypatch):
    rows = [{"prompt": p, "tag": "single_object", "item_id": f"item{i}"} for i, p in enumerate(PROMPTS[:3])]
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    args = (*backends(), SAMPLE_CFG)
    runs = {"geneval": lambda out: sample_geneval(model_dir, tmp_path / "prompts.jsonl", out, *args, 2, batch_size=3),
            "dpg": lambda out: sample_dpg(model_dir, tmp_path / "prompts.jsonl", out, *args, batch_size=3),
            "probe": lambda out: sample_colour_probe(model_dir, rows, out, *args, 2, batch_size=3)}
    missing = {"geneval": "00001/samples/0001.png", "dpg": "item1.png", "probe": "001_00.png"}
    for name, run in runs.items():
        full, out = tmp_path / name / "full", tmp_path / name / "resumed"
        first = run(full)
        run(out)
        (out / missing[name]).unlink()
        spy = Spy(monkeypatch)
        again = run(out)
        assert spy.prompts == [PROMPTS[1]] * (4 if name == "dpg" else 2), name
        files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(full) for p in full.rglob("*") if p.is_file())
        for f in files:
            assert (out / f).read_bytes() == (full / f).read_bytes(), (name, f)
        if name == "probe":
            assert np.array_equal(again, first) and first.shape == (6, 16, 16, 3)
        else:  # samples (GenEval) or grids (DPG) written
            assert (first, again) == {"geneval": (6, 2), "dpg": (3, 1)}[name]
        monkeypatch.undo()


def test_sample_captions_one_seed_per_caption(model_dir, tmp_path):
    write_jsonl(tmp_path / "captions.jsonl", [{"caption": p} for p in PROMPTS])
    fake = sample_captions(model_dir, tmp_path / "captions.jsonl", 4, *backends(), SAMPLE_CFG, batch_size=3)
    assert fake.shape == (4, 3, 16, 16) and fake.dtype == torch.float32 and -1 <= fake.min() < fake.max() <= 1
    fewer = sample_captions(model_dir, tmp_path / "captions.jsonl", 2, *backends(), SAMPLE_CFG, batch_size=1)
    assert (fewer - fake[:2]).abs().max() <= 2 / 255  # same samples: at most one uint8 level of rounding


def test_cli_batch_size_and_provenance():
    parser = build_parser()
    common = ["--model", "m", "--uncond", "u", "--out", "o"]
    for argv in (["sample", *common], ["colour-probe", *common, "--images", "i"],
                 ["geneval", "sample", *common, "--prompts", "p"], ["dpg", "sample", *common, "--prompts", "p"],
                 ["fd", "score", *common, "--captions", "c", "--reference", "r", "--net", "n"],
                 ["fd", "sample", *common, "--captions", "c", "--chunk", "0000-of-0002"]):
        assert parser.parse_args(argv).batch_size == 64
        assert parser.parse_args([*argv, "--batch-size", "8"]).batch_size == 8
    record = sampling_provenance(8)
    assert record["batch_size"] == 8 and "SeedSequence((seed, i, j))" in record["seed_rule"]
    if not torch.cuda.is_available():
        assert (record["device"], record["precision"]) == ("cpu", "fp32")

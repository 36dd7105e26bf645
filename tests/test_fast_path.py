"""The GPU fast path (train.compile, train.fused_optimizer) computes what the plain step computes; FLOP counts."""
import copy
import csv

import pytest
import torch
from safetensors.torch import load_file
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from imagenet_t2i.config import load_config, validate_config
from imagenet_t2i.diffusion.objective import Batch, diffusion_loss
from imagenet_t2i.models import SIZES, build_model
from imagenet_t2i.models.cad_i import RINBlock
from imagenet_t2i.models.dit_i import DiTBlock
from imagenet_t2i.train.fast import compile_model
from imagenet_t2i.train.flops import (H100_BF16_PEAK, cad_forward_flops, dit_forward_flops, forward_flops, mfu,
                                      training_flops)
from imagenet_t2i.train.optim import Ema, Lamb, make_optimizer, param_groups, use_fused
from imagenet_t2i.train.trainer import Trainer

from .conftest import REPO, TINY_MODELS, tiny_run

SHAPE = {"in_channels": 3, "input_size": 16, "text_dim": 24}


def _tiny(arch: str) -> torch.nn.Module:
    kw = {k: v for k, v in TINY_MODELS[arch].items() if k != "arch"}
    torch.manual_seed(0)
    return build_model(arch, **kw, **SHAPE)


def _batch(n: int = 4, tokens: int = 6) -> Batch:
    g = torch.Generator().manual_seed(1)
    mask = torch.arange(tokens)[None] < torch.randint(1, tokens + 1, (n,), generator=g)[:, None]  # (N, T)
    return Batch(torch.randn(n, 3, 16, 16, generator=g), torch.randn(n, tokens, 24, generator=g), mask)


def _train(model: torch.nn.Module, steps: int, fused: bool, backend: str | None) -> list[float]:
    """``steps`` loop-like training steps (loss, backward, clip, optimiser, EMA); the losses."""
    raw = model
    model = compile_model(raw, backend is not None, backend or "inductor")
    opt = make_optimizer(raw, {"name": "lamb" if raw.arch == "cad_i" else "adamw", "lr": 1e-3, "betas": [0.9, 0.999],
                               "eps": 1e-8, "weight_decay": 0.01}, fused=fused)
    ema = Ema(raw, 0.9, foreach=fused)
    g, batch = torch.Generator().manual_seed(2), _batch()
    uncond = torch.randn(2, 24, generator=torch.Generator().manual_seed(3))  # (L0, D)
    losses = []
    for _ in range(steps):
        loss, _ = diffusion_loss(model, batch, [], uncond, g, 0.5, 0.9 if raw.arch == "cad_i" else 0.0)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(raw.parameters(), 2.0)
        opt.step()
        ema.update(raw)
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("arch", ["dit_i", "cad_i"])
def test_compiled_fused_step_matches_the_eager_step(arch):
    """torch.compile through the aot_eager backend: dynamo + AOTAutograd capture forward and backward as for
    inductor, but compile in seconds on the CPU (inductor: about a minute, performance.md).

    Compiled alone, the weights match the eager ones; with the fused optimiser too, the losses still match (the
    weights then differ by the float rounding of the trust ratio, which Adam amplifies on parameters whose gradient
    is pure rounding noise, e.g. attention key biases)."""
    eager, compiled, fast = _tiny(arch), _tiny(arch), _tiny(arch)
    torch._dynamo.reset()
    ref = _train(eager, 3, fused=False, backend=None)
    assert _train(compiled, 3, fused=False, backend="aot_eager") == pytest.approx(ref, rel=1e-5)
    for (name, a), b in zip(eager.state_dict().items(), compiled.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=name)
    assert _train(fast, 3, fused=True, backend="aot_eager") == pytest.approx(ref, rel=1e-5)


@pytest.mark.parametrize("model", ["dit_i", "cad_i"])
def test_fused_optimizer_run_resumes_bitwise_and_logs_as_the_plain_one(tiny_shards, tmp_path, model):
    """train.fused_optimizer: true in the Trainer (fused AdamW / foreach LAMB, foreach EMA, grad norm read at log
    time): an interrupted run ends with the weights of an uninterrupted one, and logs the losses of the plain run."""
    cfg, plain = tiny_run(model, steps=6, fused_optimizer=True), tiny_run(model, steps=6)
    Trainer(cfg, str(tiny_shards), str(tmp_path / "full"), str(tmp_path / "full_state"))()
    Trainer(cfg, str(tiny_shards), str(tmp_path / "part"), str(tmp_path / "part_state"), until=4)()
    Trainer(cfg, str(tiny_shards), str(tmp_path / "part"), str(tmp_path / "part_state"))()
    Trainer(plain, str(tiny_shards), str(tmp_path / "plain"), str(tmp_path / "plain_state"))()
    a, b = (load_file(str(tmp_path / run / "final" / "model.safetensors")) for run in ("full", "part"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = {run: list(csv.DictReader(open(tmp_path / run / "train.csv"))) for run in ("full", "part", "plain")}
    assert rows["part"] == [{**r, "images_per_s": p["images_per_s"], "wall_s": p["wall_s"]}
                            for r, p in zip(rows["full"], rows["part"])]
    assert [float(r["loss"]) for r in rows["full"]] == pytest.approx([float(r["loss"]) for r in rows["plain"]], rel=1e-4)
    assert [float(r["grad_norm"]) for r in rows["full"]] == pytest.approx(
        [float(r["grad_norm"]) for r in rows["plain"]], rel=1e-3)


def test_lamb_foreach_equals_the_per_tensor_loop():
    """Same moments, bias corrections, decay and per-tensor trust ratio ||w|| / ||update|| (ratio 1 on a zero norm,
    none for the exempt group), a parameter without a gradient skipped; states load across both implementations."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.LayerNorm(16), torch.nn.Linear(16, 4),
                                torch.nn.Linear(4, 4))  # the last one gets no gradient
    torch.nn.init.zeros_(model[2].weight)  # zero weight norm: ratio 1
    loop_model, vec_model = copy.deepcopy(model), copy.deepcopy(model)
    loop = Lamb(param_groups(loop_model, 0.01), lr=1e-2)
    vec = Lamb(param_groups(vec_model, 0.01), lr=1e-2, foreach=True)
    x = torch.randn(32, 8)
    for _ in range(5):
        for m, opt in ((loop_model, loop), (vec_model, vec)):
            opt.zero_grad(set_to_none=True)
            (m[2](m[1](m[0](x))) ** 2).mean().backward()
            opt.step()
    for (name, a), b in zip(loop_model.named_parameters(), vec_model.parameters()):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7, msg=name)
    assert torch.equal(vec_model[3].weight, model[3].weight)
    for a, b in zip(loop.state_dict()["state"].values(), vec.state_dict()["state"].values()):
        assert a["step"] == b["step"] == 5
        torch.testing.assert_close(b["m"], a["m"], rtol=1e-5, atol=1e-8)
        torch.testing.assert_close(b["v"], a["v"], rtol=1e-5, atol=1e-10)
    Lamb(param_groups(copy.deepcopy(model), 0.01), foreach=True).load_state_dict(loop.state_dict())


def test_ema_foreach_is_the_same_average():
    model = _tiny("cad_i")
    loop, vec = Ema(model, 0.9), Ema(model, 0.9, foreach=True)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    loop.update(model)
    vec.update(model)
    for k, v in loop.shadow.items():
        assert torch.equal(vec.shadow[k], v), k


def test_fast_path_keys_default_to_the_plain_cpu_step():
    """The keys get no schema default (a filled-in default would change every run hash, and Snakemake would retrain
    every run); absent, the loop reads compile off and fused_optimizer auto, which on the CPU is the optimiser as it
    was built before the fast path (AdamW with torch's default implementation, LAMB's per-tensor loop). The tiny
    config sets fused_optimizer itself (its tables were made with it) and leaves compile out."""
    config = load_config(REPO / "config" / "config.yaml")
    assert "compile" not in config["train"] and config["train"]["fused_optimizer"] is True
    del config["train"]["fused_optimizer"]
    validate_config(config)
    assert "compile" not in config["train"] and "fused_optimizer" not in config["train"]
    config["train"].update(compile=True, fused_optimizer=True)
    validate_config(config)
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not use_fused("auto", cpu) and use_fused("auto", cuda) and use_fused(True, cpu) and not use_fused(False, cuda)
    model = _tiny("dit_i")
    assert compile_model(model, False) is model
    adamw = make_optimizer(model, {"name": "adamw", "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8,
                                   "weight_decay": 0.0}, use_fused("auto", cpu))
    assert adamw.defaults["fused"] is None and adamw.defaults["foreach"] is None
    lamb = make_optimizer(model, {"name": "lamb", "lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
                                  "weight_decay": 0.01}, use_fused("auto", cpu))
    assert lamb.foreach is False


def test_dit_flops_are_performance_md_numbers():
    """docs/performance.md: 203 GFLOP forward, 609 per training image at 256 (128 text tokens), 2.55 TFLOP at 512;
    655 img/s is 40.3% MFU; 100% MFU is 1,624 img/s."""
    paper = SIZES["dit_i"]["paper"]
    fwd = forward_flops("dit_i", paper, 128)
    assert round(fwd / 1e9) == 203 and round(training_flops(fwd) / 1e9) == 609
    assert round(training_flops(forward_flops("dit_i", {**paper, "input_size": 64}, 128)) / 1e10) == 255
    assert round(mfu(655, training_flops(fwd)), 3) == 0.403
    assert round(H100_BF16_PEAK / training_flops(fwd)) == 1624


def _counted(module: torch.nn.Module, *args: torch.Tensor) -> int:
    """FLOPs torch counts for one call; SDPA on its math backend, whose matmuls the counter sees on the CPU."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        module(*args)
    return counter.get_total_flops()


def test_flop_formulas_count_what_torch_counts_per_block():
    """A DiT-I block and a CAD-I RIN block (the FLOP bulk) against torch's own FLOP counter, one image."""
    n, t, d = 16, 5, 32
    block = DiTBlock(d, num_heads=2, mlp_ratio=4.0)
    got = _counted(block, torch.randn(1, n, d), torch.randn(1, 6 * d), torch.randn(1, t, d),
                   torch.ones(1, t, dtype=torch.bool))
    assert got == dit_forward_flops(n, t, d, depth=1)
    m, dd, ld, ctx = 8, 16, 32, 7
    rin = RINBlock(dd, ld, num_processing_layers=2, read_write_heads=2, compute_heads=2, mlp_ratio=4)
    got = _counted(rin, torch.randn(1, n, dd), torch.randn(1, m, ld), torch.randn(1, ctx, ld),
                   torch.ones(1, ctx, dtype=torch.bool))
    kw = dict(image_tokens=n, text_tokens=ctx - 1, data_dim=dd, num_latents=m, latents_dim=ld, num_processing_layers=2,
              num_text_registers=0)  # context = [noise; text]
    assert got == cad_forward_flops(num_blocks=1, **kw) - cad_forward_flops(num_blocks=0, **kw)

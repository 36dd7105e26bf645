"""DiT-I and CAD-I: shapes, paper parameter counts, released CAD-I layout and snapshot loading, masking, save/load
(run folders old and new, diffusers), construction unchanged by the diffusers port, learning."""
from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from imagenet_t2i.models import (CADI, SIZES, DiTI, build_model, cad_i, count_parameters, load_pretrained,
                                 save_pretrained)
from imagenet_t2i.models.diffusers_models import DIFFUSERS_CLASSES, CADIModel, to_diffusers
from imagenet_t2i.models.dit_i import DiTBlock, FinalLayer, TimestepEmbedder, sincos_2d
from imagenet_t2i.models.layers import feed_forward
from imagenet_t2i.sampling.released import load_released, released_kwargs

from .conftest import FIXTURES

CAD_I = FIXTURES / "cad_i"
ARCHS = ["dit_i", "cad_i"]


def tiny(arch: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(arch, **{**SIZES[arch]["tiny"], **overrides})


def perturb(model: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Add noise to every parameter so zero-initialised layers (DiT output, CAD-I self-conditioning
    LayerNorm) stop hiding the behaviour under test."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model


def batch(n: int = 2, tokens: int = 6, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    mask = torch.ones(n, tokens, dtype=torch.bool)
    mask[0, tokens // 2 :] = False  # first sample is padded
    return dict(
        x=torch.randn(n, 3, 32, 32, generator=gen),
        gamma=torch.rand(n, generator=gen),
        text=torch.randn(n, tokens, 384, generator=gen),
        text_mask=mask,
    )


def meta_model(arch: str, size: str) -> torch.nn.Module:
    with torch.device("meta"):
        return build_model(arch, **SIZES[arch][size])


@pytest.mark.parametrize("arch", ARCHS)
def test_output_shapes(arch):
    model = tiny(arch)
    eps, latents = model(**batch(n=3))
    assert eps.shape == (3, 3, 32, 32)
    if arch == "cad_i":
        cfg = SIZES["cad_i"]["tiny"]
        assert latents.shape == (3, cfg["num_latents"], cfg["latents_dim"])
    else:
        assert latents is None
    assert 1_000_000 <= count_parameters(model) <= 5_000_000


@pytest.mark.parametrize("arch", ARCHS)
def test_unpatchify_uses_p1_p2_c_order(arch):
    model = perturb(tiny(arch))
    final = model.final_layer.linear if arch == "dit_i" else model.map_tokens_to_patches[1]
    captured = {}
    final.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    eps, _ = model(**batch())
    out, p, c = captured["out"], model.patch_size, 3  # out: (N, L, p*p*C)
    g = 32 // p
    n, i, j, p1, p2, ch = 1, 2, 5, 1, 3, 2
    assert eps[n, ch, i * p + p1, j * p + p2] == out[n, i * g + j, (p1 * p + p2) * c + ch]


def test_cad_i_paper_parameter_counts():
    assert count_parameters(meta_model("cad_i", "base")) == 188_372_752
    assert count_parameters(meta_model("cad_i", "L")) == 330_235_152
    released = meta_model("cad_i", "L_coherence")
    assert count_parameters(released) == 331_548_944
    block = released.rin_blocks[0]  # per-block counts of paper-spec section 4
    assert count_parameters(block.retrieve_cond) == 12_596_224
    assert count_parameters(block.retriever_ca) == 9_054_976
    assert [count_parameters(sa) for sa in block.processer_sa] == [12_596_224] * 4
    assert count_parameters(block.writer_ca) == 1_182_976


def test_dit_i_paper_size():
    model = meta_model("dit_i", "paper")
    assert abs(count_parameters(model) - 417e6) / 417e6 < 0.05
    assert abs(count_parameters(model.blocks) - 403e6) / 403e6 < 0.01
    assert model.pos_embed.shape == (256, 1024)  # 4x32x32 latent, patch 2 -> 256 tokens


def _fixture(name: str) -> list[tuple[str, list[int]]]:
    rows = [line.split("\t") for line in (CAD_I / name).read_text().splitlines() if line.strip()]
    return [(key, json.loads(shape)) for key, shape in rows]


@pytest.mark.parametrize(
    ("size", "fixture"),
    [("L_coherence", "released_cad_i_L_state_dict.tsv"), ("L", "rin_text_L_state_dict.tsv")],
)
def test_cad_i_state_dict_matches_released_checkpoint(size, fixture):
    expected = _fixture(fixture)
    model = meta_model("cad_i", size)
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == expected


@pytest.mark.parametrize("arch", ARCHS)
def test_padding_is_invisible_and_real_tokens_matter(arch):
    model = perturb(tiny(arch)).eval()
    b = batch()
    eps, _ = model(**b)
    garbage = torch.randn(2, 5, 384) * 10
    padded = dict(
        b,
        text=torch.cat([b["text"], garbage], dim=1),
        text_mask=torch.cat([b["text_mask"], torch.zeros(2, 5, dtype=torch.bool)], dim=1),
    )
    torch.testing.assert_close(model(**padded)[0], eps, atol=1e-5, rtol=1e-5)
    # the same garbage written over masked slots of sample 0 changes nothing either
    overwritten = dict(b, text=b["text"].clone())
    overwritten["text"][0, 3:] = garbage[0, :3]
    torch.testing.assert_close(model(**overwritten)[0], eps, atol=1e-5, rtol=1e-5)
    # while changing a real token does change the prediction
    changed = dict(b, text=b["text"].clone())
    changed["text"][0, 0] += 1.0
    assert (model(**changed)[0][0] - eps[0]).abs().max() > 1e-4


def test_cad_i_self_conditioning():
    b = batch()
    model = tiny("cad_i").eval()
    prev = torch.randn(2, 32, 128)
    # official init zeroes the self-conditioning LayerNorm: previous latents start with no effect
    torch.testing.assert_close(model(**b, prev_latents=prev)[0], model(**b)[0])
    perturb(model)
    eps, latents = model(**b)
    torch.testing.assert_close(model(**b, prev_latents=torch.zeros_like(latents))[0], eps)  # None = zeros
    assert (model(**b, prev_latents=latents)[0] - eps).abs().max() > 1e-4


def test_cad_i_coherence_defaults_to_one():
    model = perturb(tiny("cad_i", coherence=True)).eval()
    b = batch()
    eps, _ = model(**b)
    torch.testing.assert_close(model(**b, coherence=torch.ones(2))[0], eps)
    assert (model(**b, coherence=torch.zeros(2))[0] - eps).abs().max() > 1e-4


def same_model(got: torch.nn.Module, want: torch.nn.Module) -> None:
    """Same network class (or its diffusers subclass), kwargs, tensors (and dtypes), and bit-identical outputs."""
    assert (isinstance(got, type(want)) or isinstance(want, type(got))) and got.build_kwargs == want.build_kwargs
    a, b = got.state_dict(), want.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a)
    prev = torch.randn(2, 32, 128) if want.arch == "cad_i" else None
    for x, y in zip(got.eval()(**batch(), prev_latents=prev), want.eval()(**batch(), prev_latents=prev)):
        assert (x is None and y is None) or torch.equal(x, y)


def released_like(arch: str) -> torch.nn.Module:
    return perturb(tiny(arch, **({"coherence": True} if arch == "cad_i" else {}))).eval()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised by torch.compile's imports
@pytest.mark.parametrize("arch", ARCHS)
def test_run_folder_round_trip(arch, tmp_path):
    model = released_like(arch)
    # load_pretrained fills a meta-built model from the file: the file must hold every tensor
    tensors = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    assert set(model.state_dict()) == tensors
    save_pretrained(torch.compile(model), tmp_path / "ckpt")  # wrapper prefixes must not reach the file
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config.pop("_class_name") == type(model).__name__ and config == model.build_kwargs
    same_model(load_pretrained(tmp_path / "ckpt"), model)
    loaded = DIFFUSERS_CLASSES[arch].from_pretrained(tmp_path / "ckpt")  # run folders load the diffusers way too
    assert type(loaded) is DIFFUSERS_CLASSES[arch]
    same_model(loaded, model)


@pytest.mark.parametrize("arch", ARCHS)
def test_run_folder_written_before_the_port_still_loads(arch, tmp_path):
    model = released_like(arch)
    # the old writer: model.safetensors + config.json = {"arch", **constructor kwargs}
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"arch": arch, **model.build_kwargs}, indent=2, sort_keys=True))
    same_model(load_pretrained(tmp_path), model)
    same_model(DIFFUSERS_CLASSES[arch].from_pretrained(tmp_path), model)
    other = DIFFUSERS_CLASSES["dit_i" if arch == "cad_i" else "cad_i"]
    with pytest.raises(TypeError, match=f"not a {other.__name__}"):
        other.from_pretrained(tmp_path)


@pytest.mark.parametrize("arch", ARCHS)
def test_diffusers_save_and_from_pretrained(arch, tmp_path):
    network = released_like(arch)
    model = to_diffusers(network)
    assert type(model) is DIFFUSERS_CLASSES[arch] and dict(model.config) == {**network.build_kwargs, **{
        k: v for k, v in model.config.items() if k.startswith("_")}}
    assert all(a is b for a, b in zip(model.parameters(), network.parameters(), strict=True))  # shared, not copied
    same_model(model, network)
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "diffusion_pytorch_model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["m"]  # no temporary folder left behind
    torch.manual_seed(123)
    loaded = type(model).from_pretrained(tmp_path / "m")
    assert type(loaded) is type(model)
    assert {k: v for k, v in loaded.config.items() if k != "_name_or_path"} == dict(model.config)
    same_model(loaded, model)
    same_model(load_pretrained(tmp_path / "m"), model)
    (tmp_path / "m" / "extra.txt").write_text("kept")  # saving again replaces files one by one, keeps others
    model.save_pretrained(tmp_path / "m")
    assert (tmp_path / "m" / "extra.txt").read_text() == "kept"
    with pytest.raises(ValueError, match="push_to_hub"):
        model.save_pretrained(tmp_path / "hub", push_to_hub=True)


# What a training, sampling or evaluation job imports: the command line, the launcher and loop, the samplers.
JOB_MODULES = ["imagenet_t2i.cli", "imagenet_t2i.cli.train", "imagenet_t2i.cli.sample", "imagenet_t2i.cli.geneval",
               "imagenet_t2i.cli.dpg", "imagenet_t2i.cli.fid", "imagenet_t2i.cli.diagnostics",
               "imagenet_t2i.train.launcher", "imagenet_t2i.train.loop", "imagenet_t2i.sampling.sample",
               "imagenet_t2i.evaluation.geneval.sample", "imagenet_t2i.evaluation.dpg.sample",
               "imagenet_t2i.evaluation.fid.sample", "imagenet_t2i.evaluation.diagnostics.probe_sampling",
               "imagenet_t2i.evaluation.diagnostics.denoise_profile", "imagenet_t2i.evaluation.fid.fd"]


def test_jobs_that_load_a_model_import_no_diffusers(tmp_path):
    """Each job is a process that imports what it needs; diffusers (and the transformers it imports) cost about 2 s
    per process, and only the diffusers classes and the pipeline need them. Loading a small model does not use the
    meta device, whose first use imports sympy and torch._dynamo (0.9 s)."""
    code = "\n".join([
        "import sys, torch",
        *(f"import {m}" for m in JOB_MODULES),
        "from imagenet_t2i.models import SIZES, build_model, load_pretrained, save_pretrained",
        "heavy = lambda: sorted({m.split('.')[0] for m in sys.modules} & {'diffusers', 'transformers', 'sympy'})",
        "for arch in ('dit_i', 'cad_i'):",
        "    save_pretrained(build_model(arch, **SIZES[arch]['tiny']), f'{sys.argv[1]}/{arch}')",
        "    model = load_pretrained(f'{sys.argv[1]}/{arch}')",
        "    model(torch.randn(1, 3, 32, 32), torch.rand(1), torch.randn(1, 2, 384), torch.ones(1, 2, dtype=torch.bool))",
        "print(heavy())",
        "import imagenet_t2i.models",
        "imagenet_t2i.models.DiTIModel  # the diffusers classes: imported on first use",
        "print(heavy())",
    ])
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, capture_output=True, text=True)
    assert out.stdout.splitlines() == ["[]", "['diffusers', 'sympy', 'transformers']"]


def test_load_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)
    save_pretrained(tiny("dit_i"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "_class_name": "UNet2DModel"}))
    with pytest.raises(ValueError, match="'_class_name'"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "depth": 2}))
    with pytest.raises(ValueError, match="does not match"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "depth": 2, "colour": 1}))
    with pytest.raises(ValueError, match="do not fit DiTI"):
        load_pretrained(tmp_path)


@pytest.mark.parametrize("arch", ARCHS)
def test_wrong_input_size_is_rejected(arch):
    b = batch()
    with pytest.raises(ValueError, match="built for"):
        tiny(arch)(**dict(b, x=torch.randn(2, 3, 16, 16)))


@pytest.mark.parametrize("arch", ARCHS)
def test_gradients_reach_every_parameter(arch):
    model = perturb(tiny(arch, **({"coherence": True} if arch == "cad_i" else {})))
    b = batch()
    prev = torch.randn(2, 32, 128) if arch == "cad_i" else None
    eps, _ = model(**b, prev_latents=prev)
    eps.pow(2).mean().backward()
    dead = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert dead == []


@pytest.mark.parametrize("arch", ARCHS)
def test_optimisation_reduces_fixed_batch_loss(arch):
    model = tiny(arch)  # the real initialisation, zero-init layers included
    b = batch(n=8)
    noise = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def loss() -> torch.Tensor:
        return (model(**b)[0] - noise).pow(2).mean()

    with torch.no_grad():
        before = loss().item()
    for _ in range(10):
        opt.zero_grad()
        loss().backward()
        opt.step()
    with torch.no_grad():
        assert loss().item() < 0.95 * before


# ---- frozen construction: the plain-nn.Module models as they were before the diffusers port -------------------
# (commit 312241b). Same submodules, same registration order, same initialisation: a model built under a seed
# must keep exactly these tensors, or the tiny world's numbers would change.


class FrozenDiTI(nn.Module):
    def __init__(self, in_channels, input_size, patch_size, hidden_size, depth, num_heads, text_dim,  # noqa: ANN001
                 mlp_ratio=4.0, pos_base_size=None):
        super().__init__()
        self.x_embedder = nn.Conv2d(in_channels, hidden_size, patch_size, stride=patch_size)
        self.register_buffer("pos_embed", sincos_2d(hidden_size, input_size // patch_size, pos_base_size))
        self.t_embedder = TimestepEmbedder(hidden_size)
        self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, 6 * hidden_size))
        self.y_embedder = feed_forward(text_dim, hidden_size, hidden_size, approximate="tanh")
        self.blocks = nn.ModuleList(DiTBlock(hidden_size, num_heads, mlp_ratio) for _ in range(depth))
        self.final_layer = FinalLayer(hidden_size, patch_size**2 * in_channels)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        w = self.x_embedder.weight
        bound = math.sqrt(6.0 / (w.shape[0] + w[0].numel()))
        nn.init.uniform_(w, -bound, bound)
        nn.init.zeros_(self.x_embedder.bias)
        for linear in (self.t_embedder.mlp[0], self.t_embedder.mlp[2], self.t_block[1], self.y_embedder[0],
                       self.y_embedder[3]):
            nn.init.normal_(linear.weight, std=0.02)
        for block in self.blocks:
            nn.init.zeros_(block.cross_attn.out.weight)
            nn.init.zeros_(block.cross_attn.out.bias)
        nn.init.zeros_(self.final_layer.linear.weight)
        nn.init.zeros_(self.final_layer.linear.bias)


class FrozenCADI(nn.Module):
    def __init__(self, in_channels, input_size, patch_size, data_dim, num_latents, latents_dim,  # noqa: ANN001
                 num_blocks, num_processing_layers, compute_heads, text_dim, coherence=False, num_text_registers=16,
                 num_text_layers=2, text_heads=16, read_write_heads=16, mlp_ratio=4):
        super().__init__()
        self.patch_extractor = nn.Conv2d(in_channels, data_dim, patch_size, stride=patch_size)
        self.data_pos_embedding = nn.Parameter(torch.empty((input_size // patch_size) ** 2, data_dim))
        self.data_ln = nn.LayerNorm(data_dim, eps=1e-6)
        self.latents = nn.Parameter(torch.empty(num_latents, latents_dim))
        self.time_embedder = cad_i.TimeEmbedder(latents_dim)
        self.transformers_blocks = nn.ModuleList(
            cad_i.SelfAttentionBlock(latents_dim, text_heads, mlp_ratio, layer_scale=0.1)
            for _ in range(num_text_layers))
        if coherence:
            self.coherence_embedder = cad_i.TimeEmbedder(latents_dim)
            self.coherence_positional_embedding = nn.Parameter(torch.empty(latents_dim))
        self.map_text_tokens = nn.Linear(text_dim, latents_dim)
        self.text_registers = nn.Parameter(torch.empty(num_text_registers, latents_dim))
        self.linear_previous = nn.Sequential(nn.LayerNorm(latents_dim, eps=1e-6),
                                             feed_forward(latents_dim, latents_dim * mlp_ratio))
        self.ln_previous = nn.LayerNorm(latents_dim, eps=1e-6)
        self.rin_blocks = nn.ModuleList(
            cad_i.RINBlock(data_dim, latents_dim, num_processing_layers, read_write_heads, compute_heads, mlp_ratio)
            for _ in range(num_blocks))
        self.map_tokens_to_patches = nn.Sequential(nn.LayerNorm(data_dim, eps=1e-6),
                                                   nn.Linear(data_dim, in_channels * patch_size**2))
        if coherence:
            self.register_buffer("registers_coherence_mask", torch.ones(num_text_registers + 1, dtype=torch.bool))
            self.register_buffer("cond_mask", torch.ones(num_text_registers + 2, dtype=torch.bool))
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        embeddings = [self.data_pos_embedding, self.latents, self.text_registers]
        if coherence:
            embeddings.append(self.coherence_positional_embedding)
        for p in embeddings:
            nn.init.trunc_normal_(p, std=0.02, a=-0.04, b=0.04)
        nn.init.zeros_(self.ln_previous.weight)
        nn.init.zeros_(self.ln_previous.bias)


FROZEN = {"dit_i": FrozenDiTI, "cad_i": FrozenCADI}


@pytest.mark.parametrize(("arch", "overrides"), [("dit_i", {}), ("cad_i", {}), ("cad_i", {"coherence": True})])
def test_construction_under_a_seed_is_unchanged(arch, overrides):
    kwargs = {**SIZES[arch]["tiny"], **overrides}
    torch.manual_seed(0)
    frozen = FROZEN[arch](**kwargs).state_dict()
    after_frozen = torch.rand(3)  # the RNG state construction leaves behind
    torch.manual_seed(0)
    state = build_model(arch, **kwargs).state_dict()
    assert torch.equal(torch.rand(3), after_frozen)
    assert list(state) == list(frozen)
    assert all(torch.equal(state[k], frozen[k]) and state[k].dtype == frozen[k].dtype for k in state)


# ---- released CAD-I: a snapshot folder in the release's layout -------------------------------------------------

# CAD-I's config.json as inferred (released.py): the CADRINTextCond kwargs, written by huggingface_hub's mixin.
RELEASED_L_CONFIG = {
    "bias_init": "zeros", "compute_dropout": 0, "compute_heads": 16, "compute_stochastic_depth": 0,
    "concat_cond_token_to_latents": False, "data_dim": 256, "data_mlp_multiplier": 4,
    "data_positional_embedding_type": "learned", "data_size": 32, "label_dim": 2048, "latent_mlp_multiplier": 4,
    "latents_dim": 1024, "noise_embedding_type": "positional", "num_blocks": 4, "num_cond_tokens": 77,
    "num_input_channels": 4, "num_latents": 256, "num_processing_layers": 4, "num_text_registers": 16,
    "path_size": 2, "read_write_heads": 16, "rw_dropout": 0.0, "rw_stochastic_depth": 0, "time_scaling": 1000.0,
    "use_16_bits_layer_norm": False, "use_biases": True, "use_cond_rin_block": True, "use_cond_token": True,
    "weight_init": "xavier_uniform",
}  # fmt: skip
SMALL_RELEASED = {**RELEASED_L_CONFIG, "data_size": 8, "data_dim": 16, "num_latents": 8, "latents_dim": 32,
                  "num_blocks": 1, "num_processing_layers": 1, "compute_heads": 2, "read_write_heads": 2,
                  "num_text_registers": 4, "label_dim": 24}


def write_released_snapshot(folder: Path, config: dict, state: dict[str, torch.Tensor]) -> Path:
    """A snapshot as the hub serves it: README, config.json as PyTorchModelHubMixin writes it, model.safetensors."""
    folder.mkdir(parents=True)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n")
    (folder / "config.json").write_text(json.dumps(config, sort_keys=True, indent=2))
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    return folder


def test_released_config_maps_to_the_released_architecture():
    assert len(json.dumps(RELEASED_L_CONFIG, sort_keys=True, indent=2)) == 792  # the size of CAD-I's config.json
    kwargs = released_kwargs(RELEASED_L_CONFIG)
    assert kwargs == {**SIZES["cad_i"]["L_coherence"], "num_text_registers": 16, "num_text_layers": 2,
                      "text_heads": 16, "read_write_heads": 16, "mlp_ratio": 4}
    with torch.device("meta"):
        model = CADI(**kwargs)
    assert count_parameters(model) == 331_548_944
    expected = _fixture("released_cad_i_L_state_dict.tsv")
    assert [(k, list(v.shape)) for k, v in model.state_dict().items()] == expected


def test_load_released_snapshot(tmp_path):
    torch.manual_seed(0)
    source = perturb(CADI(**released_kwargs(SMALL_RELEASED)))
    source.eval()
    snapshot = write_released_snapshot(tmp_path / "CAD-I", SMALL_RELEASED, source.state_dict())
    model, sampling = load_released(snapshot)
    assert isinstance(model, CADI) and model.coherence and model.build_kwargs == source.build_kwargs
    assert model.build_kwargs["text_heads"] == 16 and model.build_kwargs["in_channels"] == 4
    a, b = model.state_dict(), source.state_dict()
    assert list(a) == list(b) and all(torch.equal(a[k], b[k]) for k in a)
    gen = torch.Generator().manual_seed(0)
    x, text = torch.randn(2, 4, 8, 8, generator=gen), torch.randn(2, 5, 24, generator=gen)
    mask, gamma = torch.ones(2, 5, dtype=torch.bool), torch.tensor([0.3, 0.8])
    assert torch.equal(model(x, gamma, text, mask)[0], source(x, gamma, text, mask)[0])
    assert (sampling.guidance, sampling.clamp, sampling.coherence, sampling.steps) == (16.0, 1.2, (1.0, 0.0), 250)
    to_diffusers(model).save_pretrained(tmp_path / "ours")  # from there on, a diffusers model of ours
    assert CADIModel.from_pretrained(tmp_path / "ours").build_kwargs == model.build_kwargs


@pytest.mark.parametrize(
    ("change", "match"),
    [({"concat_cond_token_to_latents": None}, "concat_cond_token_to_latents"),  # absent: the official default True
     ({"modulate_conditioning": True}, "modulate_conditioning"),
     ({"data_mlp_multiplier": 2}, "mlp_ratio"),
     ({"colour": 1}, "unknown keys"),
     ({"label_dim": None}, "required keys")],
)
def test_released_configs_we_do_not_build_are_refused(change, match):
    config = {k: v for k, v in {**SMALL_RELEASED, **change}.items() if v is not None}
    with pytest.raises(ValueError, match=match):
        released_kwargs(config)


def test_released_weights_must_fit(tmp_path):
    torch.manual_seed(0)
    state = CADI(**released_kwargs(SMALL_RELEASED)).state_dict()
    prefixed = write_released_snapshot(tmp_path / "a", SMALL_RELEASED, {f"_orig_mod.{k}": v for k, v in state.items()})
    with pytest.raises(ValueError, match="does not fit"):
        load_released(prefixed)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_released(tmp_path / "nothing")

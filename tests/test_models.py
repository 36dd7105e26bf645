"""DiT-I and CAD-I: shapes, paper parameter counts, released CAD-I layout, masking, save/load, learning."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from imagenet_t2i.models import SIZES, build_model, count_parameters, load_pretrained, save_pretrained

FIXTURES = Path(__file__).parents[2] / "shared" / "fixtures" / "cad_i"
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
    path = FIXTURES / name
    if not path.is_file():
        pytest.skip(f"{path} absent: the released CAD-I state-dict listing lives in the shared fixtures")
    rows = [line.split("\t") for line in path.read_text().splitlines() if line.strip()]
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


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised by torch.compile's imports
@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_round_trip(arch, tmp_path):
    model = perturb(tiny(arch, **({"coherence": True} if arch == "cad_i" else {}))).eval()
    # load_pretrained fills a meta-built model from the file: the file must hold every tensor
    tensors = {n for n, _ in model.named_parameters()} | {n for n, _ in model.named_buffers()}
    assert set(model.state_dict()) == tensors
    save_pretrained(torch.compile(model), tmp_path / "ckpt")  # wrapper prefixes must not reach the file
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert config == {"arch": arch, **model.config}
    loaded = load_pretrained(tmp_path / "ckpt")
    assert type(loaded) is type(model) and loaded.config == model.config
    b = batch()
    prev = torch.randn(2, 32, 128) if arch == "cad_i" else None
    for got, want in zip(loaded(**b, prev_latents=prev), model(**b, prev_latents=prev)):
        assert (got is None and want is None) or torch.equal(got, want)


def test_load_pretrained_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(tmp_path)
    save_pretrained(tiny("dit_i"), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "arch": "unet"}))
    with pytest.raises(ValueError, match="'arch'"):
        load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**config, "depth": 2}))
    with pytest.raises(ValueError, match="does not match"):
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

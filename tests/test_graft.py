"""The resolution stage's graft (T-RES): the official CAD-I graft and DiT-I's, checked against direct computations,
and a 64-px run trained from a 32-px one."""
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from imagenet_t2i.models import build_model
from imagenet_t2i.models.dit_i import sincos_2d
from imagenet_t2i.train.graft import graft, upsample_positions
from imagenet_t2i.train.trainer import Trainer

from .conftest import TINY_MODELS, tiny_run

CAD = dict(in_channels=3, patch_size=4, data_dim=16, latents_dim=16, num_processing_layers=1, compute_heads=2,
           text_dim=8, num_text_registers=2, text_heads=2, read_write_heads=2)


def bilinear_x2(grid: np.ndarray) -> np.ndarray:
    """(h, w) -> (2h, 2w), bilinear with half-pixel centres (align_corners=False), written out."""
    h, w = grid.shape
    out = np.zeros((2 * h, 2 * w))
    for oy in range(2 * h):
        for ox in range(2 * w):
            sy, sx = max((oy + 0.5) / 2 - 0.5, 0.0), max((ox + 0.5) / 2 - 0.5, 0.0)
            y0, x0 = int(sy), int(sx)
            y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
            fy, fx = sy - y0, sx - x0
            out[oy, ox] = ((1 - fy) * ((1 - fx) * grid[y0, x0] + fx * grid[y0, x1])
                           + fy * ((1 - fx) * grid[y1, x0] + fx * grid[y1, x1]))
    return out


def _random_state(model: torch.nn.Module, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(v.shape, generator=g) if v.dtype.is_floating_point else v.clone()
            for k, v in model.state_dict().items()}


def test_upsampled_positions_match_a_direct_bilinear_computation():
    pos = torch.randn(16, 3, dtype=torch.float64)  # a 4x4 grid, 3 channels, rows in (h w) order
    up = upsample_positions(pos)
    assert up.shape == (64, 3)
    for c in range(3):
        direct = bilinear_x2(pos[:, c].numpy().reshape(4, 4)).reshape(-1)
        np.testing.assert_allclose(up[:, c].numpy(), direct, rtol=0, atol=1e-12)


def test_cad_i_graft_to_the_512_layout_follows_the_official_script():
    """256 layout (4x4 data grid, 8 latents, 2 blocks) -> 512 layout (8x8, 16 latents, 4 blocks = 2 more)."""
    old = build_model("cad_i", input_size=16, num_latents=8, num_blocks=2, **CAD)
    new = build_model("cad_i", input_size=32, num_latents=16, num_blocks=4, **CAD)
    network, ema, fresh = _random_state(old, 1), _random_state(old, 2), new.state_dict()
    net2, ema2 = graft("cad_i", network, ema, fresh)
    new.load_state_dict(net2)  # the new layout exactly: strict
    for state, src in ((net2, network), (ema2, ema)):
        for c in range(CAD["data_dim"]):
            direct = bilinear_x2(src["data_pos_embedding"][:, c].numpy().reshape(4, 4)).reshape(-1)
            np.testing.assert_allclose(state["data_pos_embedding"][:, c].numpy(), direct, atol=1e-5)
        # the official script writes both through views of one tensor: the EMA's rows, then the fresh tail
        assert torch.equal(state["latents"][:8], ema["latents"])
        assert torch.equal(state["latents"][8:], fresh["latents"][8:])
        for new_block, old_block in enumerate([0, 0, 1, 1]):  # [o0, o0, o1, o1]
            for key in [k for k in src if k.startswith(f"rin_blocks.{old_block}.")]:
                assert torch.equal(state[key.replace(f"rin_blocks.{old_block}.", f"rin_blocks.{new_block}.", 1)],
                                   src[key])
        for key in ("patch_extractor.weight", "text_registers", "time_embedder.map_time.0.weight"):
            assert torch.equal(state[key], src[key])
    assert not torch.equal(net2["patch_extractor.weight"], ema2["patch_extractor.weight"])


def test_cad_i_graft_refuses_another_block_count_or_fewer_latents():
    state = build_model("cad_i", input_size=16, num_latents=8, num_blocks=2, **CAD).state_dict()

    def new(latents: int, blocks: int) -> dict:
        return build_model("cad_i", input_size=32, num_latents=latents, num_blocks=blocks, **CAD).state_dict()

    with pytest.raises(ValueError, match="keeps their number or adds two"):
        graft("cad_i", state, state, new(8, 3))
    with pytest.raises(ValueError, match="fewer than the old 8"):
        graft("cad_i", state, state, new(4, 2))


def test_dit_i_graft_keeps_every_weight_and_recomputes_the_positions():
    kw = dict(in_channels=3, patch_size=4, hidden_size=16, depth=2, num_heads=2, text_dim=8)
    old, new = build_model("dit_i", input_size=16, **kw), build_model("dit_i", input_size=32, **kw)
    network, ema = _random_state(old, 1), _random_state(old, 2)
    net2, ema2 = graft("dit_i", network, ema, new.state_dict())
    assert torch.equal(net2["pos_embed"], sincos_2d(16, 8)) and torch.equal(ema2["pos_embed"], sincos_2d(16, 8))
    for key in network:
        if key != "pos_embed":
            assert torch.equal(net2[key], network[key]) and torch.equal(ema2[key], ema[key])


@pytest.mark.parametrize("model", ["cad_i", "dit_i"])
def test_a_64px_run_trains_from_a_grafted_32px_run(tiny_shards, tmp_path, model):
    """The parent trains at 32 px; the child, on the same images re-made at 64 px, starts from its graft (step 0,
    fresh optimiser) and ends with finite weights of the 64-px layout."""
    runs = tmp_path / "runs"
    parent = tiny_run(model, augment="cutmix", steps=4)
    Trainer(parent, str(tiny_shards), str(runs / parent["name"]), str(tmp_path / "state_parent"))()
    child = tiny_run(model, augment="cutmix", steps=3, eval_checkpoints=[])
    child.update(name=f"{model}_64", resolution=64, base_resolution=32, init_from=parent["name"], init_resolution=32)
    if model == "cad_i":
        child["model"]["num_latents"] = 2 * TINY_MODELS["cad_i"]["num_latents"]
    result = Trainer(child, str(tiny_shards), str(runs / child["name"]), str(tmp_path / "state_child"))()
    assert result["finished"] and result["resumed_from"] == []
    weights = load_file(str(runs / child["name"] / "final" / "model.safetensors"))
    key = "data_pos_embedding" if model == "cad_i" else "pos_embed"
    assert weights[key].shape[0] == (64 // 4) ** 2 and all(torch.isfinite(v).all() for v in weights.values()
                                                          if v.dtype.is_floating_point)
    state = torch.load(tmp_path / "state_child" / "last.pt", weights_only=False)
    assert set(state["inputs"]["init"]) == {"model.safetensors", "network.safetensors"}
    assert state["inputs"]["shards"].keys() == {"train", "cutmix"}
    again = Trainer(child, str(tiny_shards), str(runs / child["name"]), str(tmp_path / "state_child"))()
    assert again["resumed_from"] == [3]  # the same parent: the finished state is kept
    Trainer(parent, str(tiny_shards), str(runs / parent["name"]), str(tmp_path / "state_parent_2"))()  # retrained
    again = Trainer(child, str(tiny_shards), str(runs / child["name"]), str(tmp_path / "state_child"))()
    assert again["finished"] and again["resumed_from"] == []  # a new parent: the child starts again from step 0


def test_a_run_started_at_its_parents_side_takes_the_weights_as_they_are(tmp_path):
    """A fine-tune (init_from at the same side): network and EMA loaded unchanged, no graft."""
    from imagenet_t2i.train.loop import NETWORK_FILE, grafted_init
    from safetensors.torch import save_file

    model = build_model("cad_i", input_size=16, num_latents=8, num_blocks=2, **CAD)
    network, ema = _random_state(model, 1), _random_state(model, 2)
    save_file(network, str(tmp_path / NETWORK_FILE))
    save_file(ema, str(tmp_path / "model.safetensors"))
    net2, ema2 = grafted_init("cad_i", tmp_path, model, graft_it=False)
    assert all(torch.equal(net2[k], network[k]) and torch.equal(ema2[k], ema[k]) for k in network)


def test_a_parent_that_does_not_fit_stops_the_run_naming_the_tensor_and_restores_the_signal_handlers(tiny_shards,
                                                                                                     tmp_path):
    import signal

    from safetensors.torch import save_file

    from imagenet_t2i.train.loop import NETWORK_FILE

    wrong = build_model("dit_i", in_channels=3, input_size=32, patch_size=4, hidden_size=16, depth=2, num_heads=2,
                        text_dim=384).state_dict()  # another width than the child's
    parent = tmp_path / "runs" / "parent" / "final"
    parent.mkdir(parents=True)
    for name in (NETWORK_FILE, "model.safetensors"):
        save_file({k: v.contiguous() for k, v in wrong.items()}, str(parent / name))
    child = tiny_run("dit_i", augment="cutmix", steps=2, eval_checkpoints=[])
    child.update(name="child", resolution=64, base_resolution=32, init_from="parent", init_resolution=32)
    before = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM)}
    with pytest.raises(ValueError, match="graft: .* has shape"):
        Trainer(child, str(tiny_shards), str(tmp_path / "runs" / "child"), str(tmp_path / "state"))()
    assert {s: signal.getsignal(s) for s in before} == before

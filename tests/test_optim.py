import math

import torch

from imagenet_t2i.train.optim import Ema, Lamb, lr_at, make_optimizer, param_groups


def test_lr_schedule_warmup_then_official_cosine():
    assert math.isclose(lr_at(0, 1000, 1.0, 100), 0.01)
    assert math.isclose(lr_at(99, 1000, 1.0, 100), 1.0)
    assert math.isclose(lr_at(100, 1000, 1.0, 100), 1.0)
    end = lr_at(1000, 1000, 1.0, 100)
    assert math.isclose(end, 0.5 * (1 + math.cos(0.7 * math.pi)))
    assert 0.2 < end < 0.21


def test_lamb_moves_zero_initialised_weights_and_exempts_norms():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.Linear(4, 1))
    torch.nn.init.zeros_(model[2].weight)
    groups = param_groups(model, 0.01)
    assert all(p.dim() >= 2 for p in groups[0]["params"]) and all(p.dim() == 1 for p in groups[1]["params"])
    opt = Lamb(groups, lr=1e-2)
    x = torch.randn(64, 4)
    for _ in range(20):
        opt.zero_grad()
        ((model(x) - 1.0) ** 2).mean().backward()
        opt.step()
    assert model[2].weight.norm() > 0  # a zero norm gets trust ratio 1, not 0
    assert groups[1]["weight_decay"] == 0 and groups[1]["trust"] is False


def test_optimizers_minimise_a_quadratic():
    for name in ("lamb", "adamw"):
        torch.manual_seed(0)
        model = torch.nn.Linear(8, 1)
        x = torch.randn(256, 8)
        y = x @ torch.arange(8.0).view(8, 1)
        opt = make_optimizer(model, {"name": name, "lr": 0.05, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0})
        first = None
        for _ in range(300):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            first = first or loss.item()
            loss.backward()
            opt.step()
        assert loss.item() < 0.01 * first, name


def test_ema_formula():
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 0.0)
    ema = Ema(model, decay=0.9)
    torch.nn.init.constant_(model.weight, 1.0)
    ema.update(model)
    assert math.isclose(ema.shadow["weight"].item(), 0.1, rel_tol=1e-6)
    official = Ema(model, decay=1e-4)  # the official code's effective behaviour: EMA == raw model
    torch.nn.init.constant_(model.weight, 2.0)
    official.update(model)
    assert math.isclose(official.shadow["weight"].item(), 1.0001 * 2 - 0.0001 * 2 + 0.0001 * 1 - 0.0001 * 1 - 0.0001, rel_tol=1e-3)


def _groups_by_name(model: torch.nn.Module) -> tuple[set[str], set[str]]:
    names = {id(p): n for n, p in model.named_parameters()}
    decay, exempt = param_groups(model, 0.01)
    assert decay["trust"] is True and exempt["trust"] is False and exempt["weight_decay"] == 0
    return {names[id(p)] for p in decay["params"]}, {names[id(p)] for p in exempt["params"]}


def test_param_groups_exempt_only_layernorms_and_biases():
    from imagenet_t2i.models import SIZES, build_model

    cad = build_model("cad_i", **SIZES["cad_i"]["tiny"], coherence=True)
    decay, exempt = _groups_by_name(cad)
    assert decay | exempt == {n for n, _ in cad.named_parameters()} and not decay & exempt
    assert {"coherence_positional_embedding", "transformers_blocks.0.layer_scale_1",
            "transformers_blocks.1.layer_scale_2", "data_pos_embedding", "latents", "text_registers",
            "map_text_tokens.weight", "patch_extractor.weight"} <= decay
    # LayerNorms inside nn.Sequential have no "ln" in their names: found by module type
    assert {"data_ln.weight", "data_ln.bias", "linear_previous.0.weight", "linear_previous.0.bias",
            "map_tokens_to_patches.0.weight", "ln_previous.weight", "transformers_blocks.0.initial_ln.bias",
            "map_text_tokens.bias", "patch_extractor.bias", "rin_blocks.0.retriever_ca.ca.q.bias"} <= exempt
    one_d = {n for n, p in cad.named_parameters() if p.dim() == 1}
    assert exempt < one_d and one_d - exempt == {"coherence_positional_embedding"} | {
        f"transformers_blocks.{i}.layer_scale_{j}" for i in (0, 1) for j in (1, 2)}

    dit = build_model("dit_i", **SIZES["dit_i"]["tiny"])
    decay, exempt = _groups_by_name(dit)
    assert {"blocks.0.scale_shift_table", "final_layer.scale_shift_table", "x_embedder.weight"} <= decay
    assert exempt == {n for n, _ in dit.named_parameters() if n.endswith(".bias")}  # its LayerNorms have no affine


def test_layer_scale_gain_receives_weight_decay_and_trust_ratio():
    from imagenet_t2i.models.cad_i import SelfAttentionBlock

    block = SelfAttentionBlock(4, num_heads=2, mlp_ratio=2, layer_scale=0.5)
    opt = Lamb(param_groups(block, weight_decay=0.1), lr=0.1)
    for p in block.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    # zero gradient: update = wd * w, trust ratio ||w|| / ||wd w|| = 1 / wd, so w <- (1 - lr) w
    torch.testing.assert_close(block.layer_scale_1, torch.full((4,), 0.45))
    torch.testing.assert_close(block.initial_ln.weight, torch.ones(4))  # exempt: unchanged
    adamw = make_optimizer(block, {"name": "adamw", "lr": 0.1, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1})
    adamw.step()
    torch.testing.assert_close(block.layer_scale_2, torch.full((4,), 0.45 * (1 - 0.1 * 0.1)))
    torch.testing.assert_close(block.middle_ln.weight, torch.ones(4))

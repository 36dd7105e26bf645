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

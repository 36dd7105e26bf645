"""Optimisers and learning-rate schedule of the paper's recipe (paper-spec section 6)."""
from __future__ import annotations

import math

import torch


class Lamb(torch.optim.Optimizer):
    """LAMB (You et al. 2020) as used by the official CAD-I code.

    Adam moments with bias correction and decoupled weight decay, then a layer-wise trust ratio
    ||w|| / ||update||. Groups with ``trust=False`` (LayerNorm weights and biases, see
    ``param_groups``) take the plain Adam update. A parameter or update whose norm is 0 gets ratio 1
    (as in the reference implementations). Zero-initialised layers still grow only slowly under LAMB
    (paper-spec section 10), which is why DiT-I, with DiT-style zero-init, trains with AdamW by default.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, trust: bool = True) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, trust=trust))

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["m"] = torch.zeros_like(p)
                    state["v"] = torch.zeros_like(p)
                state["step"] += 1
                m, v = state["m"], state["v"]
                m.mul_(b1).add_(p.grad, alpha=1 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m_hat = m / (1 - b1 ** state["step"])
                v_hat = v / (1 - b2 ** state["step"])
                update = m_hat / (v_hat.sqrt() + group["eps"])
                if group["weight_decay"]:
                    update = update.add(p, alpha=group["weight_decay"])
                ratio = 1.0
                if group["trust"]:
                    w_norm, u_norm = p.norm(), update.norm()
                    if w_norm > 0 and u_norm > 0:
                        ratio = (w_norm / u_norm).item()
                p.add_(update, alpha=-group["lr"] * ratio)
        return loss


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Split as the official code: LayerNorm weights/biases and every ``bias`` get neither weight
    decay nor the trust ratio; all other parameters (matrices, embeddings, LayerScale gains, the
    coherence position vector) get both. LayerNorms are found by module type, biases by name."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            exempt = isinstance(module, torch.nn.LayerNorm) or name == "bias"
            (no_decay if exempt else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, "trust": True},
        {"params": no_decay, "weight_decay": 0.0, "trust": False},
    ]


def make_optimizer(model: torch.nn.Module, cfg: dict) -> torch.optim.Optimizer:
    """Build the optimiser named by ``cfg['name']`` (lamb | adamw)."""
    groups = param_groups(model, cfg["weight_decay"])
    if cfg["name"] == "lamb":
        return Lamb(groups, lr=cfg["lr"], betas=cfg["betas"], eps=cfg["eps"])
    for g in groups:
        g.pop("trust")
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])


def lr_at(step: int, total: int, lr_max: float, warmup: int, cosine_fraction: float = 0.7) -> float:
    """Linear warm-up, then 0.5 lr_max (1 + cos(f pi (s - w) / (S - w))) (official f = 0.7)."""
    if warmup and step < warmup:
        return lr_max * (step + 1) / warmup
    frac = (step - warmup) / max(total - warmup, 1)
    return 0.5 * lr_max * (1 + math.cos(cosine_fraction * math.pi * min(frac, 1.0)))


class Ema:
    """ema <- decay ema + (1 - decay) param, on a copy of the model's parameters and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float) -> None:
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v, 1.0 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Restore the averaged weights in place (on this EMA's device); the decay stays the configured one."""
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)

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
    ``foreach=True`` runs the same update with ``torch._foreach`` ops per group (the GPU fast path).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, trust: bool = True, foreach: bool = False) -> None:
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, trust=trust))
        self.foreach = foreach

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            if self.foreach:
                self._foreach_group(group)
                continue
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

    def _foreach_group(self, group: dict) -> None:
        """The same update for one group with ``torch._foreach`` ops: a few kernels per group, no host sync
        (the trust ratio stays on the device). Same state layout as the per-tensor loop, so states load across both."""
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        b1, b2 = group["betas"]
        states = [self.state[p] for p in params]
        for p, state in zip(params, states):
            if not state:
                state.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
            state["step"] += 1
        grads = [p.grad for p in params]
        m, v = [s["m"] for s in states], [s["v"] for s in states]
        torch._foreach_mul_(m, b1)
        torch._foreach_add_(m, grads, alpha=1 - b1)
        torch._foreach_mul_(v, b2)
        torch._foreach_addcmul_(v, grads, grads, value=1 - b2)
        m_hat = torch._foreach_div(m, [1 - b1 ** s["step"] for s in states])
        denom = torch._foreach_sqrt(torch._foreach_div(v, [1 - b2 ** s["step"] for s in states]))
        torch._foreach_add_(denom, group["eps"])
        update = torch._foreach_div(m_hat, denom)
        if group["weight_decay"]:
            torch._foreach_add_(update, params, alpha=group["weight_decay"])
        if group["trust"]:
            w_norm = torch.stack(torch._foreach_norm(params))  # (P,)
            u_norm = torch.stack(torch._foreach_norm(update))  # (P,)
            ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))  # (P,)
            torch._foreach_mul_(update, list((ratio * -group["lr"]).unbind()))
            torch._foreach_add_(params, update)
        else:
            torch._foreach_add_(params, update, alpha=-group["lr"])


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


def use_fused(setting: bool | str, device: torch.device) -> bool:
    """``train.fused_optimizer``: ``auto`` = on CUDA only; ``true`` / ``false`` force it."""
    return device.type == "cuda" if setting == "auto" else bool(setting)


def make_optimizer(model: torch.nn.Module, cfg: dict, fused: bool = False) -> torch.optim.Optimizer:
    """Build the optimiser named by ``cfg['name']`` (lamb | adamw).

    ``fused``: AdamW's fused kernel and LAMB's ``_foreach`` update; off, both are built exactly as before the fast
    path (AdamW with torch's own default implementation, LAMB's per-tensor loop).
    """
    groups = param_groups(model, cfg["weight_decay"])
    if cfg["name"] == "lamb":
        return Lamb(groups, lr=cfg["lr"], betas=cfg["betas"], eps=cfg["eps"], foreach=fused)
    for g in groups:
        g.pop("trust")
    return torch.optim.AdamW(groups, lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"],
                             **({"fused": True} if fused else {}))


def lr_at(step: int, total: int, lr_max: float, warmup: int, cosine_fraction: float = 0.7) -> float:
    """Linear warm-up, then 0.5 lr_max (1 + cos(f pi (s - w) / (S - w))) (official f = 0.7)."""
    if warmup and step < warmup:
        return lr_max * (step + 1) / warmup
    frac = (step - warmup) / max(total - warmup, 1)
    return 0.5 * lr_max * (1 + math.cos(cosine_fraction * math.pi * min(frac, 1.0)))


def sqrt_lr_at(step: int, total: int, lr_max: float, warmup: int, decay: int) -> float:
    """The official ``WarmupSqrtDecayLR`` (CAD's 512 recipe) at ``step`` optimiser steps done: lr_max step / warmup
    during warm-up, then lr_max, then lr_max (1 - sqrt((step - total + decay) / decay)) over the last ``decay``
    steps."""
    if step < warmup:
        return lr_max * min(step / max(warmup, 1), 1.0)
    if step > total - decay:
        return lr_max * (1 - min(math.sqrt((step - total + decay) / max(decay, 1)), 1.0))
    return lr_max


def scheduled_lr(step: int, total: int, cfg: dict) -> float:
    """The learning rate of ``step`` under an optimiser config's ``schedule`` (cosine | sqrt)."""
    if cfg.get("schedule", "cosine") == "sqrt":
        return sqrt_lr_at(step, total, cfg["lr"], cfg["warmup"], cfg["decay_steps"])
    return lr_at(step, total, cfg["lr"], cfg["warmup"], cfg["cosine_fraction"])


class Ema:
    """ema <- decay ema + (1 - decay) param, on a copy of the model's parameters and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float, foreach: bool = False) -> None:
        self.decay = decay
        self.foreach = foreach  # one _foreach_lerp_ over the floating tensors instead of one kernel each
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        state = model.state_dict()
        if self.foreach:
            floats = [k for k, v in state.items() if v.dtype.is_floating_point]
            torch._foreach_lerp_([self.shadow[k] for k in floats], [state[k] for k in floats], 1.0 - self.decay)
            for k, v in state.items():
                if not v.dtype.is_floating_point:
                    self.shadow[k].copy_(v)
            return
        for k, v in state.items():
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

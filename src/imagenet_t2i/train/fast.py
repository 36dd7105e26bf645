"""The GPU fast path of the training step: torch.compile of the model (``train.compile``).

bf16 autocast comes from accelerate (`distributed.make_accelerator`), fused optimiser steps from
``train.fused_optimizer`` (`optim.make_optimizer`). Every switch defaults to the plain eager step, which on the CPU is
the only sensible one (inductor compiles for about 50 s there and gains nothing).
"""
from __future__ import annotations

import torch


def compile_model(model: torch.nn.Module, enabled: bool, backend: str = "inductor") -> torch.nn.Module:
    """``torch.compile(model)`` when ``enabled`` (the parameters stay shared with ``model``), else ``model`` itself.

    Text lengths vary per batch: the first new length recompiles, later ones reuse a dynamic-shape graph.
    ``backend`` other than inductor serves tests (``aot_eager`` traces forward and backward like inductor, compiles
    in seconds on the CPU).
    """
    return torch.compile(model, backend=backend) if enabled else model

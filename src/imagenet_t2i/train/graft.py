"""The resolution stage's initialisation (T-RES, paper-spec section 6): a finished run's weights grafted onto a
model of a larger side.

CAD-I follows the official graft (``utils/graft_model.py`` of lucasdegeorge/T2I-ImageNet and nicolas-dufour/CAD),
for the network and its EMA alike:

- the data positional embedding (h*w, C) is reshaped to its (C, h, w) grid and upsampled x2, bilinear
  (``F.interpolate``'s default ``align_corners=False``), back to (2h*2w, C);
- with more latents in the new model, its own freshly initialised latents are kept and the old ones written into
  the first rows. The official script writes the network's and the EMA's rows through two views of one tensor, so
  both end up holding the EMA's rows (and the same fresh tail): done here too;
- with two more RIN blocks, the blocks become [o0, o0, o1, ..., o_{n-1}, o_{n-1}] (the same number of blocks: as
  they are; any other count is refused, as the official script does).

DiTI keeps every weight; its fixed sin-cos positional embedding (a buffer) is the new model's, computed for the new
grid. Anything the old weights do not hold keeps the new model's initialisation.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F

_BLOCK = re.compile(r"^rin_blocks\.(\d+)\.(.*)$")
State = dict[str, torch.Tensor]


def upsample_positions(pos: torch.Tensor) -> torch.Tensor:
    """(h*w, C) positional embedding of a square grid -> (2h*2w, C), bilinear x2 on the (C, h, w) grid."""
    side = math.isqrt(pos.shape[0])
    if side * side != pos.shape[0]:
        raise ValueError(f"a positional embedding of {pos.shape[0]} rows is no square grid")
    grid = pos.T.reshape(1, pos.shape[1], side, side)  # (1, C, h, w)
    up = F.interpolate(grid, scale_factor=2, mode="bilinear")  # (1, C, 2h, 2w)
    return up[0].flatten(1).T.contiguous()  # (4hw, C)


def _block_count(state: State) -> int:
    return len({m.group(1) for k in state if (m := _BLOCK.match(k))})


def _add_two_blocks(state: State, old: int) -> State:
    """Blocks [o0, o0, o1, ..., o_{n-1}, o_{n-1}]: new block i + 1 is old block i, and the last old block fills
    both new last places; new block 0 stays old block 0."""
    out = dict(state)
    for key, value in state.items():
        if (m := _BLOCK.match(key)) is None:
            continue
        i, rest = int(m.group(1)), m.group(2)
        out[f"rin_blocks.{i + 1}.{rest}"] = value
        if i == old - 1:
            out[f"rin_blocks.{i + 2}.{rest}"] = value
    return out


def graft_cad_i(network: State, ema: State, fresh: State) -> tuple[State, State]:
    """The official CAD-I graft (module docstring) of a run's ``network`` and ``ema`` onto a new model whose freshly
    initialised state is ``fresh``; -> the new model's (network, EMA) states."""
    old, new = _block_count(network), _block_count(fresh)
    if new == old + 2:
        network, ema = _add_two_blocks(network, old), _add_two_blocks(ema, old)
    elif new != old:
        raise ValueError(f"CAD-I graft: the new model has {new} RIN blocks, the old {old}; the official graft keeps "
                         "their number or adds two")
    m_old, m_new = network["latents"].shape[0], fresh["latents"].shape[0]
    if m_new < m_old:
        raise ValueError(f"CAD-I graft: the new model has {m_new} latents, fewer than the old {m_old}")
    latents = fresh["latents"].clone()
    latents[:m_old] = ema["latents"]  # both: the official script's two views of one tensor (module docstring)
    out = []
    for state in (network, ema):
        positions = upsample_positions(state["data_pos_embedding"])
        state = {**state, "latents": latents.clone(), "data_pos_embedding": positions}
        out.append(_onto(fresh, state))
    return out[0], out[1]


def graft_dit_i(network: State, ema: State, fresh: State) -> tuple[State, State]:
    """DiT-I: every weight kept, the sin-cos positions the new model's (computed for its grid)."""
    keep = {"pos_embed": fresh["pos_embed"]}
    return _onto(fresh, {**network, **keep}), _onto(fresh, {**ema, **keep})


GRAFTS = {"cad_i": graft_cad_i, "dit_i": graft_dit_i}


def graft(arch: str, network: State, ema: State, fresh: State) -> tuple[State, State]:
    """The graft of ``arch`` (`GRAFTS`)."""
    if arch not in GRAFTS:
        raise ValueError(f"no graft for architecture {arch!r} (known: {sorted(GRAFTS)})")
    return GRAFTS[arch](network, ema, fresh)


def _onto(fresh: State, grafted: State) -> State:
    """``fresh`` with every key of ``grafted`` it has (``load_state_dict(strict=False)``); a shape that differs is an
    error naming the key."""
    out = {}
    for key, value in fresh.items():
        if key in grafted:
            if grafted[key].shape != value.shape:
                raise ValueError(f"graft: {key} has shape {tuple(grafted[key].shape)} in the old weights and "
                                 f"{tuple(value.shape)} in the new model")
            out[key] = grafted[key].to(value.dtype).clone()
        else:
            out[key] = value.clone()
    return out

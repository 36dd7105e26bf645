"""The denoising profile's table metrics (``x0_mse_g<gamma>``), read from its file without torch: the workflow plans
tables with them."""
from __future__ import annotations

import math
import os


def metric_gamma(metric: str) -> float | None:
    """The gamma of a table metric ``x0_mse_g<gamma>`` (e.g. ``x0_mse_g0.05``); None for other metrics."""
    if not metric.startswith("x0_mse_g"):
        return None
    try:
        gamma = float(metric.removeprefix("x0_mse_g"))
    except ValueError:
        raise ValueError(f"metric {metric!r}: x0_mse_g<gamma> needs a number, e.g. x0_mse_g0.05") from None
    if not 0 < gamma < 1:
        raise ValueError(f"metric {metric!r}: gamma must lie in (0, 1)")
    return gamma


def profile_value(profile: dict, gamma: float, path: str | os.PathLike) -> float:
    """The model's x0 MSE at ``gamma`` from a profile file; a clear error when that level was not profiled."""
    for g, value in zip(profile["gammas"], profile["x0_mse"]["model"]):
        if math.isclose(g, gamma, rel_tol=1e-9):
            return float(value)
    raise ValueError(f"{path} has no noise level gamma={gamma} (it has {profile['gammas']}); add it to "
                     "eval.denoise.gammas and rebuild the file")

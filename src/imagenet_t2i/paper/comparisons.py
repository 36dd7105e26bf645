"""The paper's claims tested on a table's rows: the difference of two rows' means against two of its Welch standard
errors (a table's ``compare`` entries, checked by `config.check_compare`; each row's runs are its seeds).

A claim says row ``b`` beats row ``a`` on ``metric`` (``paper: higher`` when more is better, ``lower`` when less
is). Verdicts: ``reproduced`` (the paper's direction, beyond 2 SE), ``opposite`` (the other direction, beyond 2 SE),
``cannot tell`` (within 2 SE, or fewer than two runs a side: no spread to compare with).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from imagenet_t2i.config import CLAIM_DIRECTIONS

REPRODUCED, OPPOSITE, CANNOT_TELL = "reproduced", "opposite", "cannot tell"


@dataclass(frozen=True)
class Comparison:
    claim: str
    metric: str
    a: str
    b: str
    paper: str  # "higher" | "lower": b's metric than a's, as the paper reports it
    mean_a: float
    mean_b: float
    n_a: int
    n_b: int
    se: float | None  # Welch: sqrt(s_a^2 / n_a + s_b^2 / n_b); None below two runs a side
    verdict: str

    @property
    def difference(self) -> float:
        return self.mean_b - self.mean_a


def welch_se(a: Sequence[float], b: Sequence[float]) -> float | None:
    """The standard error of mean(b) - mean(a) without assuming equal variances; None below two values a side."""
    if len(a) < 2 or len(b) < 2:
        return None
    return math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))


def verdict(a: Sequence[float], b: Sequence[float], paper: str) -> tuple[str, float | None]:
    """(verdict, Welch SE) of the claim that b is ``paper`` ("higher" | "lower") than a."""
    if paper not in CLAIM_DIRECTIONS:
        raise ValueError(f"paper direction {paper!r}: expected one of {CLAIM_DIRECTIONS}")
    se = welch_se(a, b)
    if se is None:
        return CANNOT_TELL, None
    signed = (np.mean(b) - np.mean(a)) * (1 if paper == "higher" else -1)
    if signed > 2 * se:
        return REPRODUCED, se
    if signed < -2 * se:
        return OPPOSITE, se
    return CANNOT_TELL, se


def compare(spec: Mapping, values: Mapping[tuple[str, str], Sequence[float]]) -> list[Comparison]:
    """Every ``compare`` entry of a table spec, from ``values[(row label, metric)]`` (one value per run)."""
    out = []
    for entry in spec.get("compare", []):
        a, b = values[(entry["a"], entry["metric"])], values[(entry["b"], entry["metric"])]
        result, se = verdict(a, b, entry["paper"])
        out.append(Comparison(entry["claim"], entry["metric"], entry["a"], entry["b"], entry["paper"],
                              float(np.mean(a)), float(np.mean(b)), len(a), len(b), se, result))
    return out


def markdown(comparisons: Sequence[Comparison]) -> list[str]:
    """The table's "claims tested" section (no lines when it has none)."""
    if not comparisons:
        return []
    lines = ["", "The paper's claims tested here (b - a against two Welch standard errors of the difference; "
             f"\"{CANNOT_TELL}\" within them or below two runs a side):", "",
             "| claim | metric | a (mean, n) | b (mean, n) | b - a | 2 SE | paper: b is | verdict |",
             "|---|---|---|---|---:|---:|---|---|"]
    for c in comparisons:
        two_se = "-" if c.se is None else f"{2 * c.se:.4g}"
        lines.append(f"| {c.claim} | {c.metric} | {c.a} ({c.mean_a:.4g}, {c.n_a}) | {c.b} ({c.mean_b:.4g}, {c.n_b}) "
                     f"| {c.difference:+.4g} | {two_se} | {c.paper} | {c.verdict} |")
    return lines

"""Paper tables from per-run score files: ours (mean and spread over seeds) beside the paper's reported values.

Score files (under ``<results_root>/eval/<run>/``): ``fd/final.json`` (``evaluation.fid.tiny_net.fd_report``),
``geneval/summary.json`` (``evaluation.geneval.score.summarize``), ``dpg/scores.json`` (``evaluation.dpg.score.score_dpg``),
``colour_probe.json`` (``colour_probe.probe_accuracy``, tiny world only), ``denoise_profile.json``
(``denoise_profile.denoise_profile``: metric ``x0_mse_g<gamma>``, the x0-prediction MSE at that noise level).
Each table is written as ``<out>.csv``, ``<out>.md`` and ``<out>.tex`` plus a provenance record on the CSV
whose ``cells`` map ``"row|metric"`` to the score files behind that cell (what ``audit`` walks).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml

from imagenet_t2i.config import FD_METRICS, FD_RISE, check_compare
from imagenet_t2i.diffusion.schedule import flow_gamma, linear_gamma
from imagenet_t2i.evaluation.diagnostics.denoise_metrics import metric_gamma, profile_value
from imagenet_t2i.evaluation.geneval.prompts import TAGS
from imagenet_t2i.io import atomic_write, read_json
from imagenet_t2i.paper import comparisons
from imagenet_t2i.paper.reference import NOT_REPORTED, Claim, ReferenceValues, Reported, load_reference
from imagenet_t2i.provenance import make_record, write_record

# The fd file's metrics. Tiny world: the feature net's FD and PRDC. Paper scale: fd = FID (Inception), PRDC on
# Inception features, and FD-DINOv2, FD-CLIP, the Inception Score and CLIPScore of the same samples.
AESTHETIC_PREFIX = "aesthetic_"  # aesthetic_<scorer>: T-AES, the mean score of a run's aesthetic-prompt samples
COLOUR_PROBE = "colour_probe"  # tiny-world diagnostic (evaluation/colour_probe.py), not a paper metric
DENOISE_FILE = "denoise_profile.json"  # x0_mse_g<gamma>: a diagnostic (evaluation/denoise_profile.py), not a paper metric
NOT_RUN = "not run by us"
PAPER_CFG_DROPOUT = 0.1  # paper-spec section 5: the caption is dropped with p = 0.1 for classifier-free guidance
TABLE_SUFFIXES = (".csv", ".md", ".tex")


def score_file(metric: str) -> str:
    """The score file (relative to ``eval/<run>/``) that holds ``metric`` (fd_rise: the final FD, the last of the files
    `fd_rise` reads)."""
    if metric in FD_METRICS or metric == FD_RISE:
        return "fd/final.json"
    if metric == COLOUR_PROBE:
        return "colour_probe.json"
    if metric_gamma(metric) is not None:
        return DENOISE_FILE
    if metric == "geneval_overall" or metric.removeprefix("geneval_") in TAGS:
        return "geneval/summary.json"
    if metric.startswith("dpg_") and len(metric) > 4:
        return "dpg/scores.json"
    if metric.startswith(AESTHETIC_PREFIX) and len(metric) > len(AESTHETIC_PREFIX):
        return f"aesthetic/{metric.removeprefix(AESTHETIC_PREFIX)}.json"
    raise ValueError(
        f"unknown metric {metric!r}; known: {', '.join(FD_METRICS)}, {FD_RISE}, {COLOUR_PROBE}, x0_mse_g<gamma>, "
        f"geneval_overall, {', '.join('geneval_' + t for t in TAGS)}, dpg_overall (the official script's), dpg_overall_corrected, "
        "dpg_<category> (a key of the DPG 'l1' scores, the official script's), aesthetic_<scorer> (T-AES)"
    )


STEP_FILE = re.compile(r"step-\d+\.json")  # an eval checkpoint's score file (`workflow.eval_checkpoint_names`)


def fd_rise(fd_dir: str | os.PathLike) -> tuple[float, list[Path]]:
    """FD at the end of a run (``final.json``) minus the lowest FD from its highest on, over the eval checkpoints
    (``step-*.json``) and the end, and the files read: 0 while FD is still falling from its peak, > 0 once it has
    turned upward (overfitting). A low FD before the peak (an early model's, as the 16-px world's DiT-I at step 300
    shows) is not a minimum that the end has risen from."""
    fd_dir = Path(fd_dir)
    steps = sorted(path for path in fd_dir.glob("step-*.json") if STEP_FILE.fullmatch(path.name))  # not *.prov.json
    files = [*steps, fd_dir / "final.json"]
    values = []
    for path in files:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing; build it with: snakemake --cores all {path}")
        values.append(metric_value("fd", read_json(path), path))
    peak = int(np.argmax(values))
    return values[-1] - min(values[peak:]), files


def metric_value(metric: str, scores: Mapping, path: str | os.PathLike) -> float:
    """Read ``metric`` from a parsed score file; a clear error names the file and the missing key."""
    if metric in FD_METRICS:
        value, key = scores.get(metric), metric
    elif metric == COLOUR_PROBE:
        value, key = scores.get("accuracy"), "accuracy"
    elif (gamma := metric_gamma(metric)) is not None:
        value, key = profile_value(scores, gamma, path), f"x0_mse.model at gamma {gamma}"
    elif metric.startswith(AESTHETIC_PREFIX):
        value, key = scores.get("mean"), "mean"
    elif metric.startswith("geneval_"):
        tag = metric.removeprefix("geneval_")
        if tag == "overall":
            value, key = scores.get("overall"), "overall"
        else:
            value, key = (scores.get("tags") or {}).get(tag, {}).get("score"), f"tags.{tag}.score"
            if value is None and tag in scores.get("missing_tags", []):
                raise ValueError(f"{path} has no images for GenEval tag {tag!r} (missing_tags); "
                                 "sample and score the full prompt set, then rebuild it")
    else:
        category = metric.removeprefix("dpg_")
        if category in ("overall", "overall_corrected"):
            value, key = scores.get(category), category
        else:
            value, key = (scores.get("l1") or {}).get(category), f"l1.{category}"
            if value is None:
                raise ValueError(f"{path} has no DPG category {category!r}; its l1 categories are "
                                 f"{sorted(scores.get('l1') or {})}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{path}: key {key!r} (metric {metric}) is {value!r}, not a number; rebuild the file")
    return float(value)


@dataclass
class Cell:
    """One (row, metric) entry: our values over the row's runs and the paper's reported value."""

    values: list[float]
    files: list[str]
    reported: Reported | None

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.values)) if self.values else None

    @property
    def std(self) -> float | None:
        """Sample standard deviation (ddof=1) over seeds; None for fewer than two runs."""
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else None

    @property
    def difference(self) -> float | None:
        """Ours minus the paper's reported value; None unless both exist."""
        return self.mean - self.reported.value if self.values and self.reported else None


@dataclass
class TableRow:
    label: str
    runs: list[str]
    cells: dict[str, Cell]
    baseline: bool = False  # reported values only, not run by us


@dataclass
class Table:
    table_id: str
    title: str
    metrics: list[str]
    rows: list[TableRow]
    claims: list[Claim] = field(default_factory=list)
    feature_nets: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    unreported: str | None = None  # why the cells without a reported value have none (the reference file's status)
    compared: list[comparisons.Comparison] = field(default_factory=list)  # the spec's claims tested on its rows


def _check_spec(table_id: str, spec: Mapping) -> None:
    where = f"table {table_id}"
    if not isinstance(spec.get("rows"), Sequence) or not spec["rows"]:
        raise ValueError(f"{where}: 'rows' must be a non-empty list of {{label, runs}}")
    if not isinstance(spec.get("metrics"), Sequence) or not spec["metrics"]:
        raise ValueError(f"{where}: 'metrics' must be a non-empty list of metric ids")
    for metric in spec["metrics"]:
        score_file(metric)
    labels = set()
    for n, row in enumerate(spec["rows"]):
        if not isinstance(row, Mapping) or not isinstance(row.get("label"), str) or not row["label"]:
            raise ValueError(f"{where}: rows[{n}] needs a 'label' string")
        runs = row.get("runs")
        if not isinstance(runs, Sequence) or isinstance(runs, str) or not all(isinstance(r, str) for r in runs):
            raise ValueError(f"{where}: rows[{n}] ({row['label']}) 'runs' must be a list of run names "
                             "(one per seed; empty for a reported-only baseline row)")
        if row["label"] in labels:
            raise ValueError(f"{where}: row label {row['label']!r} appears twice")
        labels.add(row["label"])
    check_compare(table_id, spec)


def _row_keys(row: Mapping) -> list[str]:
    """Keys under which the reference file may list a row: ``paper_row`` if given, else label and runs."""
    return [row["paper_row"]] if row.get("paper_row") else [row["label"], *row["runs"]]


def _world_config(results_root: Path, config: Mapping | None) -> Mapping | None:
    """``config``, else ``<results_root>/config.yaml`` when present."""
    if config is None and (results_root / "config.yaml").is_file():
        config = yaml.safe_load((results_root / "config.yaml").read_text())
    return config


def _backend(config: Mapping | None) -> str | None:
    return ((config or {}).get("source") or {}).get("backend")


def _world_note(results_root: Path, config: Mapping | None) -> str:
    backend = _backend(config)
    name = (config or {}).get("name", results_root.name)
    objective = _objective_note(config) + _dropout_note(config)
    if backend == "synthetic":
        return (f"Our numbers come from the tiny synthetic shapes world (config `{name}`), which is NOT ImageNet: "
                "they exercise the paper's recipe at toy scale and are not comparable with the paper's values."
                + objective)
    if backend == "imagenet":
        return f"Our numbers come from ImageNet-1k at paper scale (config `{name}`)." + objective
    return (f"The world these numbers come from is not recorded ({results_root / 'config.yaml'} is absent); "
            "the tiny default world is a synthetic shapes world, not ImageNet.")


def _objective_note(config: Mapping | None) -> str:
    """A sentence when the runs were trained with rectified flow, a deviation from the paper's epsilon objective."""
    train = (config or {}).get("train") or {}
    if train.get("objective", "eps") != "flow":
        return ""
    sampler = "ancestral DDPM" if ((config or {}).get("sample") or {}).get("sampler") == "ddpm" else "Euler"
    tau = float((train.get("cutmix") or {}).get("tau", 0.4))
    t = torch.tensor([tau])
    paper_gamma, flow_gamma_ = float(linear_gamma(t)), float(flow_gamma(t))
    return (" Objective: rectified flow (`train.objective: flow`), NOT the paper's epsilon objective, with "
            f"{sampler} sampling: a deviation from the paper (docs/compose.md says why). The "
            f"CutMix gate keeps its definition in t (composites replace images at t > {tau:g}), so it means another "
            f"noise level than the paper's: signal variance gamma {flow_gamma_:.3f} at t = {tau:g} on the flow "
            f"path, {paper_gamma:.3f} on the paper's training schedule (gamma = 1 - t).")


def _dropout_note(config: Mapping | None) -> str:
    """A sentence when the runs dropped the caption for guidance at another rate than the paper's."""
    p = float(((config or {}).get("train") or {}).get("cfg_dropout", PAPER_CFG_DROPOUT))
    if p == PAPER_CFG_DROPOUT:
        return ""
    return (f" Captions dropped for classifier-free guidance with p = {p:g} (`train.cfg_dropout`), NOT the paper's "
            f"{PAPER_CFG_DROPOUT:g}: a deviation from the paper (docs/compose.md says why).")


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"


def _ours_text(cell: Cell, baseline: bool) -> str:
    if baseline:
        return NOT_RUN
    text = _fmt(cell.mean)
    return f"{text} ± {_fmt(cell.std)}" if cell.std is not None else text


def _reported_text(cell: Cell) -> str:
    return cell.reported.text if cell.reported else NOT_REPORTED


def _describe_net(net: object) -> str:
    if isinstance(net, Mapping):
        return ", ".join(f"{k}={str(v)[:16]}" for k, v in sorted(net.items()))
    return str(net)


def collect(table_id: str, spec: Mapping, results_root: str | os.PathLike,
            reference: ReferenceValues | None = None) -> Table:
    """Read every score file a table needs and assemble its rows (no files written)."""
    _check_spec(table_id, spec)
    reference = reference or load_reference()
    root = Path(results_root)
    metrics = list(spec["metrics"])
    parsed: dict[Path, Mapping] = {}
    feature_nets: dict[str, None] = {}

    def scores(path: Path, metric: str, label: str) -> Mapping:
        if path not in parsed:
            if not path.is_file():
                raise FileNotFoundError(f"table {table_id}, row {label!r}, metric {metric}: score file {path} is "
                                        f"missing; build it with: snakemake --cores all {path}")
            parsed[path] = read_json(path)
        return parsed[path]

    rows, matched, reference_rows = [], set(), set(reference.rows(table_id))
    for row in spec["rows"]:
        keys = _row_keys(row)
        cells = {}
        for metric in metrics:
            values, files = [], []
            for run in row["runs"]:
                path = root / "eval" / run / score_file(metric)
                if metric == FD_RISE:
                    rise, read = fd_rise(path.parent)
                    values.append(rise)
                    files.extend(str(f) for f in read)
                    continue
                data = scores(path, metric, row["label"])
                values.append(metric_value(metric, data, path))
                files.append(str(path))
                if metric in FD_METRICS and "feature_net" in data:
                    feature_nets[_describe_net(data["feature_net"])] = None
            cells[metric] = Cell(values, files, reference.reported(table_id, keys, metric))
        matched.update(reference_rows.intersection(keys))
        rows.append(TableRow(row["label"], list(row["runs"]), cells, baseline=not row["runs"]))
    for key in reference.rows(table_id):
        if key in matched:
            continue
        cells = {m: Cell([], [], reference.reported(table_id, key, m)) for m in metrics}
        if any(c.reported for c in cells.values()):
            rows.append(TableRow(key, [], cells, baseline=True))
    values = {(row.label, m): row.cells[m].values for row in rows if not row.baseline for m in metrics}
    return Table(table_id, str(spec.get("title", table_id)), metrics, rows, reference.claims(table_id),
                 list(feature_nets), notes=list(spec.get("notes", [])), unreported=reference.unreported(table_id),
                 compared=comparisons.compare(spec, values))


def _header(table: Table) -> list[str]:
    return (["row", "runs", "n"] + [f"{m} (ours)" for m in table.metrics] + [f"{m} (ours std)" for m in table.metrics]
            + [f"{m} paper (reported)" for m in table.metrics] + [f"{m} ours - paper" for m in table.metrics])


def to_csv(table: Table, comparable: bool) -> str:
    """Machine-readable table: full-precision means, std over seeds (blank for one run), reported values and, where
    the numbers are ``comparable`` with the paper's (ImageNet), ours minus the paper's."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(_header(table))
    for row in table.rows:
        cells = [row.cells[m] for m in table.metrics]
        ours = [NOT_RUN if row.baseline else repr(c.mean) for c in cells]
        std = ["" if c.std is None else repr(c.std) for c in cells]
        paper = [_reported_text(c) for c in cells]
        diff = ["" if c.difference is None or not comparable else repr(c.difference) for c in cells]
        writer.writerow([row.label, " ".join(row.runs), len(row.runs), *ours, *std, *paper, *diff])
    return buf.getvalue()


def _sources(table: Table) -> list[str]:
    """One line per (source, note): the cells it gives, as ``row / metric = value``."""
    by_source: dict[tuple[str, str], list[str]] = {}
    for row in table.rows:
        for metric in table.metrics:
            if rep := row.cells[metric].reported:
                by_source.setdefault((rep.source, rep.note), []).append(f"{row.label} / {metric} = {rep.text}")
    return [f"{source}{f' ({note})' if note else ''}: {'; '.join(cells)}"
            for (source, note), cells in by_source.items()]


def to_markdown(table: Table, world_note: str, results_root: str | os.PathLike, comparable: bool) -> str:
    """The table for people: an "ours - paper" column only where ``comparable`` (ImageNet) and both values exist."""
    compared = [m for m in table.metrics
                if comparable and any(row.cells[m].difference is not None for row in table.rows)]
    cols = ["row", "runs", "n"] + [f"{m} (ours)" for m in table.metrics] + [
        f"{m} paper (reported)" for m in table.metrics] + [f"{m} ours - paper" for m in compared]
    lines = [
        f"# {table.table_id}: {table.title}", "",
        world_note, "",
        f"**ours**: computed by this pipeline from the score files under `{results_root}/eval/<run>/`; a row over "
        "several runs (seeds) shows mean ± sample standard deviation (ddof=1), n = number of runs. "
        f"**paper (reported)**: the paper's values where known to us (sources below), else \"{NOT_REPORTED}\". "
        f"Rows marked \"{NOT_RUN}\" carry reported values only.", "",
        "| " + " | ".join(cols) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(cols) - 2)) + "|",
    ]
    for row in table.rows:
        cells = [row.cells[m] for m in table.metrics]
        diffs = [row.cells[m].difference for m in compared]
        lines.append("| " + " | ".join([row.label, ", ".join(row.runs) or "-", str(len(row.runs))]
                                       + [_ours_text(c, row.baseline) for c in cells]
                                       + [_reported_text(c) for c in cells]
                                       + ["" if d is None else f"{d:+.4g}" for d in diffs]) + " |")
    if COLOUR_PROBE in table.metrics:
        lines += ["", f"{COLOUR_PROBE}: a tiny-world diagnostic, not a GenEval score: the share of samples of "
                  "'a photo of a {colour} {class}' (every colour x class) whose dominant colour is the prompted "
                  "one, any shape (chance 0.1 with ten colours). The paper has no such metric."]
    if FD_RISE in table.metrics:
        lines += ["", f"{FD_RISE}: FD at the end of the run minus its lowest FD from its highest on, over the eval "
                  "checkpoints (`train.eval_checkpoints`) and the end: 0 while FD is still falling from its peak, "
                  "above 0 once it has turned upward (overfitting: F-OVERFIT's curves as one number per run)."]
    if any(metric_gamma(m) is not None for m in table.metrics):
        lines += ["", "x0_mse_g<gamma>: a diagnostic, not a paper metric: the mean squared error of the model's x0 "
                  "prediction from one noisy input x_t = sqrt(gamma) x0 + sqrt(1 - gamma) eps (lower is better; "
                  "gamma 0.05 is an early sampling step), on the samples and noise of `eval.denoise` "
                  "(`eval/<run>/denoise_profile.json`, which also holds the predict-0 baseline)."]
    if table.feature_nets:
        lines += ["", "FD / precision / recall / density / coverage feature net: "
                  + "; ".join(f"`{n}`" for n in table.feature_nets)]
    if table.notes:
        lines += ["", "Notes:"] + [f"- {n}" for n in table.notes]
    lines += comparisons.markdown(table.compared)
    if table.claims:
        lines += ["", "Reported claims (not cell values):"] + [f"- {c.text} ({c.source})" for c in table.claims]
    if sources := _sources(table):
        lines += ["", "Sources of the reported values:"] + [f"- {s}" for s in sources]
    if table.unreported:
        lines += ["", f"Cells marked \"{NOT_REPORTED}\": {table.unreported}"]
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    out = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        out = out.replace(ch, "\\" + ch)
    return out.replace("~", r"\textasciitilde{}").replace("^", r"\textasciicircum{}").replace("±", r"$\pm$")


def to_latex(table: Table, world_note: str) -> str:
    cols = ["Row", "n"] + [f"{m} (ours)" for m in table.metrics] + [f"{m} paper (reported)" for m in table.metrics]
    lines = [
        f"% {table.table_id}: generated by imagenet-t2i from score files; do not edit by hand.",
        r"\begin{table}[t]", r"\centering", r"\small",
        r"\caption{" + _tex(f"{table.title}. {world_note} Ours: mean ± std over n runs; paper (reported): values "
                            f"the paper reports, \"{NOT_REPORTED}\" where unknown.") + "}",
        r"\label{tab:" + _tex(table.table_id) + "}",
        r"\begin{tabular}{l" + "r" * (len(cols) - 1) + "}", r"\toprule",
        " & ".join(_tex(c) for c in cols) + r" \\", r"\midrule",
    ]
    for row in table.rows:
        cells = [row.cells[m] for m in table.metrics]
        entries = [row.label, str(len(row.runs))] + [_ours_text(c, row.baseline) for c in cells] + [
            _reported_text(c) for c in cells]
        lines.append(" & ".join(_tex(e) for e in entries) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def table_stem(out: str | os.PathLike) -> Path:
    """``results/tiny/tables/T-IA`` from that stem or from any of its ``.csv``/``.md``/``.tex`` files."""
    out = Path(out)
    return out.with_suffix("") if out.suffix in TABLE_SUFFIXES else out


def build_table(table_id: str, spec: Mapping, results_root: str | os.PathLike, out: str | os.PathLike | None = None,
                reference: ReferenceValues | None = None, config: Mapping | None = None) -> Table:
    """Assemble table ``table_id`` from ``spec`` ({title, rows: [{label, runs, paper_row?}], metrics}) and write
    ``<out>.csv``, ``.md``, ``.tex`` (default out: ``<results_root>/tables/<table_id>``) with a provenance record.

    ``config`` (default: ``<results_root>/config.yaml`` when present) only says which world the numbers are from: the
    header's note and, for ImageNet alone, the "ours - paper" differences.
    Reference rows not matched by a spec row (e.g. SD-XL) are appended as reported-only baseline rows."""
    t0 = time.time()
    reference = reference or load_reference()
    table = collect(table_id, spec, results_root, reference)
    stem = table_stem(out if out is not None else Path(results_root) / "tables" / table_id)
    config = _world_config(Path(results_root), config)
    note, comparable = _world_note(Path(results_root), config), _backend(config) == "imagenet"
    texts = {".csv": to_csv(table, comparable), ".md": to_markdown(table, note, results_root, comparable),
             ".tex": to_latex(table, note)}
    for suffix, text in texts.items():
        path = stem.with_name(stem.name + suffix)
        with atomic_write(path) as f:
            f.write(text)
        table.files[suffix] = path
    cells = {f"{row.label}|{m}": row.cells[m].files for row in table.rows if not row.baseline for m in table.metrics}
    inputs = {path: path for files in cells.values() for path in files}
    if Path(reference.path).is_file():
        inputs["reference_values"] = reference.path
    reported = {f"{row.label}|{m}": {"value": c.reported.value, "text": c.reported.text,
                                     "source": c.reported.source}
                for row in table.rows for m, c in row.cells.items() if c.reported}
    record = make_record("paper", {"table": table_id, "spec": json.loads(json.dumps(spec))}, inputs,
                         list(table.files.values()), time.time() - t0,
                         {"table_id": table_id, "cells": cells, "reported": reported,
                          "compared": [{**asdict(c), "difference": c.difference} for c in table.compared]})
    write_record(table.files[".csv"], record)
    return table

"""Paper figures (PNG + PDF, matplotlib Agg, no pyplot state): F-OVERFIT (FD vs training step), F-QUAL
(sample grids) and F-BUBBLE (GenEval and DPG vs parameters), and the F-DENOISE diagnostic (x0-prediction MSE vs
noise level, never a paper figure). Each figure gets a provenance record on its PNG naming every file it was drawn
from."""
from __future__ import annotations

import csv
import os
import re
import textwrap
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from imagenet_t2i.config import FD_METRICS
from imagenet_t2i.io import atomic_write, read_json
from imagenet_t2i.paper.reference import ReferenceValues, load_reference
from imagenet_t2i.paper.tables import metric_value, score_file
from imagenet_t2i.provenance import make_record, write_record

STEP_FILE = re.compile(r"^step-(\d+)\.json$")


def figure_paths(out: str | os.PathLike) -> tuple[Path, Path]:
    """(``<stem>.png``, ``<stem>.pdf``) from a stem or either file."""
    out = Path(out)
    stem = out.with_suffix("") if out.suffix in (".png", ".pdf") else out
    return stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".pdf")


def _save(fig: Figure, out: str | os.PathLike) -> tuple[Path, Path]:
    png, pdf = figure_paths(out)
    with atomic_write(png, "wb") as f:
        fig.savefig(f, format="png", dpi=150, bbox_inches="tight", metadata={"Software": None})
    with atomic_write(pdf, "wb") as f:
        fig.savefig(f, format="pdf", bbox_inches="tight", metadata={"CreationDate": None})
    return png, pdf


def final_step(results_root: str | os.PathLike, run: str) -> tuple[int, Path]:
    """The step of a run's final weights and the file it was read from: ``runs/<run>/provenance.json``
    (``summary.step``), else the last row of ``runs/<run>/train.csv``."""
    run_dir = Path(results_root) / "runs" / run
    record = run_dir / "provenance.json"
    if record.is_file():
        step = (read_json(record).get("summary") or {}).get("step")
        if isinstance(step, int):
            return step, record
    log = run_dir / "train.csv"
    if log.is_file():
        with open(log, newline="") as f:
            steps = [int(row["step"]) for row in csv.DictReader(f)]
        if steps:
            return steps[-1], log
    raise FileNotFoundError(f"final step of run {run!r} unknown: neither {record} (summary.step) nor {log} "
                            f"(step column) is there; build it with: snakemake --cores all {record}")


def fd_curve(results_root: str | os.PathLike, run: str, metric: str = "fd") -> tuple[dict[int, float], list[Path]]:
    """Step -> ``metric`` from ``eval/<run>/fd/step-*.json`` and ``fd/final.json`` (placed at the final step,
    replacing a checkpoint of the same step), and the files read."""
    if metric not in FD_METRICS:
        raise ValueError(f"F-OVERFIT metric {metric!r} is not one of {FD_METRICS}")
    fd_dir = Path(results_root) / "eval" / run / "fd"
    final = fd_dir / "final.json"
    if not final.is_file():
        raise FileNotFoundError(f"run {run!r}: {final} is missing; build it with: snakemake --cores all {final}")
    points, files = {}, []
    for path in sorted(fd_dir.glob("step-*.json")):
        if match := STEP_FILE.match(path.name):
            points[int(match.group(1))] = float(read_json(path)[metric])
            files.append(path)
    step, step_file = final_step(results_root, run)
    points[step] = float(read_json(final)[metric])
    return dict(sorted(points.items())), [*files, final, step_file]


def _check_lines(spec: Mapping, figure_id: str) -> None:
    panels = spec.get("panels")
    if not isinstance(panels, list) or not panels:
        raise ValueError(f"{figure_id} spec needs 'panels': [{{title, lines: [{{label, runs: [run, ...]}}]}}]")
    for p, panel in enumerate(panels):
        lines = panel.get("lines") if isinstance(panel, Mapping) else None
        if not isinstance(lines, list) or not lines:
            raise ValueError(f"{figure_id} panels[{p}] needs a non-empty 'lines' list of {{label, runs}}")
        for n, line in enumerate(lines):
            runs = line.get("runs") if isinstance(line, Mapping) else None
            if not isinstance(runs, list) or not runs or not isinstance(line.get("label"), str):
                raise ValueError(f"{figure_id} panels[{p}].lines[{n}] needs a 'label' and a non-empty 'runs' list")


def _panel_figure(spec: Mapping, figure_id: str) -> tuple[Figure, list, list]:
    """A checked ``{panels: [{title, lines: [{label, runs}]}]}`` spec's figure: one row of axes, one per panel."""
    _check_lines(spec, figure_id)
    panels = spec["panels"]
    fig = Figure(figsize=(4.2 * len(panels), 3.6), layout="constrained")
    return fig, list(fig.subplots(1, len(panels), squeeze=False)[0]), panels


def figure_overfit(figure_id: str, spec: Mapping, results_root: str | os.PathLike, out: str | os.PathLike,
                   reference: ReferenceValues | None = None) -> dict:
    """FD (or another FD-report metric, ``spec['metric']``) vs training step, one panel per model, one line per
    {label, runs} (mean over runs, band = ± std when several seeds); the paper's claim as text.

    spec: {title?, metric?, panels: [{title, lines: [{label, runs}]}]}. Returns {png, pdf, series}."""
    t0 = time.time()
    fig, axes, panels = _panel_figure(spec, figure_id)
    reference = reference or load_reference()
    metric = spec.get("metric", "fd")
    series: dict[str, dict[str, dict]] = {}
    inputs: dict[str, Path] = {}
    for ax, panel in zip(axes, panels):
        title = str(panel.get("title", ""))
        for line in panel["lines"]:
            curves = []
            for run in line["runs"]:
                curve, files = fd_curve(results_root, run, metric)
                curves.append(curve)
                inputs.update((str(f), f) for f in files)
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            if not steps:
                raise ValueError(f"F-OVERFIT line {line['label']!r}: runs {line['runs']} share no evaluated step")
            values = np.array([[c[s] for s in steps] for c in curves])  # (runs, steps)
            mean = values.mean(axis=0)
            std = values.std(axis=0, ddof=1) if len(curves) > 1 else None
            ax.plot(steps, mean, marker="o", label=f"{line['label']} (n={len(curves)})")
            if std is not None:
                ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
            series.setdefault(title, {})[line["label"]] = {
                "steps": steps, "mean": mean.tolist(), "std": None if std is None else std.tolist()}
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.set_ylabel(metric.upper() if metric == "fd" else metric)
        ax.legend(fontsize=8)
    fig.suptitle(str(spec.get("title", figure_id)))
    claims = reference.claims(figure_id)
    if claims:
        fig.text(0.5, -0.02, "\n".join(c.text for c in claims), ha="center", va="top", fontsize=8, style="italic")
    png, pdf = _save(fig, out)
    write_record(png, make_record("paper", {"figure": figure_id, "spec": dict(spec)}, inputs, [png, pdf],
                                  time.time() - t0, {"figure_id": figure_id, "series": series,
                                                     "claims": [c.text for c in claims]}))
    return {"png": png, "pdf": pdf, "series": series}


def figure_qual(images: Mapping[tuple[str, str], str | os.PathLike], out: str | os.PathLike,
                column_labels: Mapping[str, str] | None = None, title: str | None = None,
                figure_id: str = "F-QUAL") -> dict:
    """Grid of sample images, rows = prompts, columns = runs (both in first-appearance order of ``images``,
    keyed (run, prompt)); column titles from ``column_labels`` (default: run names). Returns {png, pdf}."""
    t0 = time.time()
    if not images:
        raise ValueError(f"{figure_id}: no images given; pass {{(run, prompt): image path}}")
    runs = list(dict.fromkeys(run for run, _ in images))
    prompts = list(dict.fromkeys(prompt for _, prompt in images))
    missing = [(r, p) for p in prompts for r in runs if (r, p) not in images]
    if missing:
        raise ValueError(f"{figure_id}: every run needs an image for every prompt; missing (run, prompt) {missing}")
    labels = dict(column_labels or {})
    wrapped = {p: textwrap.fill(p, 30) for p in prompts}  # long descriptive prompts: rows tall enough to hold them
    row_h = max(1.6, *(0.13 * (w.count("\n") + 1) + 0.3 for w in wrapped.values()))
    fig = Figure(figsize=(1.6 * len(runs) + 2.6, row_h * len(prompts) + 0.6), layout="constrained")
    axes = fig.subplots(len(prompts), len(runs), squeeze=False)
    inputs = {}
    for i, prompt in enumerate(prompts):
        for j, run in enumerate(runs):
            path = Path(images[(run, prompt)])
            if not path.is_file():
                raise FileNotFoundError(f"{figure_id}: image {path} for run {run!r}, prompt {prompt!r} not found")
            with Image.open(path) as im:
                axes[i, j].imshow(np.asarray(im.convert("RGB")), interpolation="nearest")  # (H, W, 3)
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            if i == 0:
                axes[i, j].set_title(labels.get(run, run), fontsize=9)
            if j == 0:
                axes[i, j].set_ylabel(wrapped[prompt], rotation=0, ha="right", va="center", fontsize=7)
            inputs[f"{run}|{prompt}"] = path
    if title:
        fig.suptitle(title)
    png, pdf = _save(fig, out)
    write_record(png, make_record("paper", {"figure": figure_id, "runs": runs, "prompts": prompts,
                                            "column_labels": labels}, inputs, [png, pdf], time.time() - t0,
                                  {"figure_id": figure_id}))
    return {"png": png, "pdf": pdf}


def figure_denoise(figure_id: str, spec: Mapping, results_root: str | os.PathLike, out: str | os.PathLike) -> dict:
    """F-DENOISE, a diagnostic: x0-prediction MSE vs noise level gamma (``eval/<run>/denoise_profile.json``), one
    panel per model, one line per {label, runs} (mean over runs), the trivial predictions dashed (those of the
    panel's first run: every run of a panel is profiled on the same samples and noise when it trains on the same
    images). A line above "predict 0" at low gamma is a model whose first sampling steps are worse than nothing.

    spec: {title?, panels: [{title, lines: [{label, runs}]}]}. Returns {png, pdf, series}."""
    t0 = time.time()
    fig, axes, panels = _panel_figure(spec, figure_id)
    series: dict[str, dict[str, dict]] = {}
    inputs: dict[str, Path] = {}
    for ax, panel in zip(axes, panels):
        title = str(panel.get("title", ""))
        baselines = None
        for line in panel["lines"]:
            profiles = []
            for run in line["runs"]:
                path = Path(results_root) / "eval" / run / "denoise_profile.json"
                if not path.is_file():
                    raise FileNotFoundError(f"{figure_id}: run {run!r}: {path} is missing; build it with: "
                                            f"snakemake --cores all {path}")
                profiles.append(read_json(path))
                inputs[str(path)] = path
            gammas = profiles[0]["gammas"]
            if any(p["gammas"] != gammas for p in profiles):
                raise ValueError(f"{figure_id} line {line['label']!r}: runs {line['runs']} were profiled at different "
                                 "noise levels; rebuild them with one eval.denoise")
            mean = np.mean([p["x0_mse"]["model"] for p in profiles], axis=0)  # (gammas,)
            ax.plot(gammas, mean, marker="o", label=f"{line['label']} (n={len(profiles)})")
            series.setdefault(title, {})[line["label"]] = {"gammas": gammas, "mean": mean.tolist()}
            baselines = baselines or (gammas, profiles[0]["x0_mse"])
        gammas, mse = baselines
        ax.plot(gammas, mse["predict_zero"], "k--", lw=1, label="predict 0")
        ax.plot(gammas, mse["predict_scaled_xt"], "k:", lw=1, label="predict x_t / sqrt(gamma)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(top=max(mse["predict_zero"]) * 20)
        ax.set_title(title)
        ax.set_xlabel("signal variance gamma (low = early sampling steps)")
        ax.set_ylabel("x0-prediction MSE")
        ax.legend(fontsize=7)
    fig.suptitle(str(spec.get("title", figure_id)))
    fig.text(0.5, -0.02, "A diagnostic of this implementation, not a figure of the paper.", ha="center", va="top",
             fontsize=8, style="italic")
    png, pdf = _save(fig, out)
    write_record(png, make_record("paper", {"figure": figure_id, "spec": dict(spec)}, inputs, [png, pdf],
                                  time.time() - t0, {"figure_id": figure_id, "series": series}))
    return {"png": png, "pdf": pdf, "series": series}


BUBBLE_METRICS = (("geneval_overall", "T-GENEVAL", "GenEval overall"), ("dpg_overall", "T-DPG", "DPG-Bench overall"))


def _run_parameters(results_root: Path, run: str) -> tuple[int, Path]:
    """Trainable parameters of a run's model, from ``runs/<run>/provenance.json`` (``summary.parameters``)."""
    record = results_root / "runs" / run / "provenance.json"
    if not record.is_file():
        raise FileNotFoundError(f"run {run!r}: {record} is missing; build it with: snakemake --cores all {record}")
    count = (read_json(record).get("summary") or {}).get("parameters")
    if not isinstance(count, int):
        raise ValueError(f"{record}: no summary.parameters (the run did not finish)")
    return count, record


def figure_bubble(figure_id: str, spec: Mapping, results_root: str | os.PathLike, out: str | os.PathLike,
                  reference: ReferenceValues | None = None) -> dict:
    """F-BUBBLE as the paper draws it: GenEval overall (left) and DPG-Bench overall (right) against parameters,
    bubble area in proportion to the parameters, our runs (mean over each entry's runs) beside the reference models
    (``references``: rows of the reference file with a parameter count in ``values.F-BUBBLE`` and the score in
    T-GENEVAL / T-DPG; a model without one is left out and named in the record).

    spec: {title?, runs: [{label, runs}], references: [model], note?}. Returns {png, pdf, points, left_out}."""
    t0 = time.time()
    root, ref = Path(results_root), reference or load_reference()
    fig = Figure(figsize=(10, 4.2))
    axes = fig.subplots(1, 2)
    inputs: dict[str, Path] = {}
    points: dict[str, list[dict]] = {}
    left_out: list[str] = []
    for ax, (metric, table_id, name) in zip(axes, BUBBLE_METRICS):
        rows = []
        for entry in spec["runs"]:
            values, counts = [], []
            for run in entry["runs"]:
                path = root / "eval" / run / score_file(metric)
                if not path.is_file():
                    raise FileNotFoundError(f"{figure_id}: run {run!r}: {path} is missing; build it with: "
                                            f"snakemake --cores all {path}")
                values.append(metric_value(metric, read_json(path), path))
                count, record = _run_parameters(root, run)
                counts.append(count)
                inputs[str(path)], inputs[str(record)] = path, record
            rows.append({"label": entry["label"], "ours": True, "parameters": float(np.mean(counts)),
                         "value": float(np.mean(values)), "n": len(values)})
        for model in spec.get("references", []):
            params, value = ref.reported(figure_id, model, "parameters"), ref.reported(table_id, model, metric)
            if params is None or value is None:
                left_out.append(f"{model} ({name}: {'no parameter count' if params is None else 'no score'})")
                continue
            rows.append({"label": model, "ours": False, "parameters": params.value, "value": value.value,
                         "source": f"{params.source}; {value.source}"})
        biggest = max(r["parameters"] for r in rows)
        for r in rows:
            ax.scatter(r["parameters"] / 1e6, r["value"], s=2000 * r["parameters"] / biggest, alpha=0.5,
                       color="tab:red" if r["ours"] else "tab:blue", edgecolors="k")
            ax.annotate(r["label"], (r["parameters"] / 1e6, r["value"]), fontsize=7, ha="center", va="bottom",
                        xytext=(0, 6), textcoords="offset points")
        ax.set_xscale("log")
        ax.margins(0.3)  # room for the largest bubble
        ax.set_xlabel("parameters (M), bubble area in proportion")
        ax.set_ylabel(name)
        ax.set_title(name)
        points[metric] = rows
    fig.suptitle(str(spec.get("title", figure_id)))
    note = spec.get("note") or ("ours in red, published models in blue (their parameter counts and scores: "
                                "config/reference_values.yaml, with sources)")
    fig.text(0.5, -0.02, textwrap.fill(note, 140), ha="center", va="top", fontsize=8, style="italic")
    png, pdf = _save(fig, out)
    write_record(png, make_record("paper", {"figure": figure_id, "spec": dict(spec)}, inputs, [png, pdf],
                                  time.time() - t0, {"figure_id": figure_id, "points": points,
                                                     "left_out": left_out}))
    return {"png": png, "pdf": pdf, "points": points, "left_out": left_out}

"""Commands that check and inspect: a config (``validate``), its models (``models``), a table's provenance chain
(``audit``), the results made by other code than today's (``status``), the cost before launch (``cost``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from imagenet_t2i.cli.common import config_of


def cmd_validate(args: argparse.Namespace) -> None:
    config = config_of(args.config)
    print(f"{', '.join(args.config)}: valid ({len(config['runs'])} runs, models {sorted(config['models'])})")


def cmd_models(args: argparse.Namespace) -> None:
    """Print every configured model's name and parameter count (built on the meta device: no memory used)."""
    import torch

    from imagenet_t2i.models import build_model, count_parameters

    config = config_of(args.config)
    shape = _model_shape(config)
    for name, spec in config["models"].items():
        kwargs = {**shape, **{k: v for k, v in spec.items() if k != "arch"}}
        with torch.device("meta"):
            model = build_model(spec["arch"], **kwargs)
        n = count_parameters(model)
        print(f"{name}\t{spec['arch']}\t{n:,}\t{n / 1e6:.1f}M")


def _model_shape(config: dict) -> dict:
    """Model input kwargs implied by the config's encoders (without loading them)."""
    ae = config["encode"]["autoencoder"]["backend"]
    channels, down = (3, 1) if ae == "pixel" else (4, 8)
    text_dim = {"minilm": 384, "t5": 2048}[config["encode"]["text"]["backend"]]
    return {"in_channels": channels, "input_size": config["source"]["resolution"] // down, "text_dim": text_dim}


def cmd_audit(args: argparse.Namespace) -> int:
    from imagenet_t2i.audit import audit

    report = audit(args.target, members=args.members)
    print(report.text())
    return 0 if report.ok else 1


def cmd_status(args: argparse.Namespace) -> None:
    """Results made by other code than their command runs today (what ``rerun.heavy_code_changes: false`` keeps)."""
    import json

    from imagenet_t2i.provenance import other_code, records_under
    from imagenet_t2i.workflow import heavy_code_changes, results_dir

    config = config_of(args.config)
    root = Path(results_dir(config))
    stale: dict[str, list[str]] = {}
    records = records_under(root)
    for path in records:
        try:
            command = other_code(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
        if command:
            output = path.parent if path.name == "provenance.json" else path.with_name(path.name[:-len(".prov.json")])
            stale.setdefault(command, []).append(str(output))
    heavy = "re-run" if heavy_code_changes(config) else "kept (rerun.heavy_code_changes: false)"
    print(f"{root}: {len(records)} provenance records; {sum(map(len, stale.values()))} result(s) made by other code "
          f"than their command runs today (GPU/SLURM stages: {heavy}; delete a result, or --forcerun its rule, to "
          "redo it)")
    for command, outputs in sorted(stale.items()):
        print(f"{command}: {len(outputs)}")
        for output in outputs:
            print(f"  {output}")


def cmd_cost(args: argparse.Namespace) -> None:
    """Images, GPU-hours and disk of the config's stages and runs, before launch."""
    import json

    from imagenet_t2i.cost import cost, format_cost

    report = cost(config_of(args.config))
    print(json.dumps(report, indent=2) if args.json else format_cost(report))

"""Commands of the paper stage (workflow/rules/paper.smk): one table or one figure from the score files."""
from __future__ import annotations

import argparse
from pathlib import Path

from imagenet_t2i.cli.common import config_of
from imagenet_t2i.config import ConfigError, grid_figure


def cmd_table(args: argparse.Namespace) -> None:
    from imagenet_t2i.paper.tables import build_table

    config = config_of(args.config)
    if args.table not in config["tables"]:
        raise ConfigError(f"config key 'tables.{args.table}': no such table (defined: {sorted(config['tables'])})")
    table = build_table(args.table, config["tables"][args.table], Path(args.out).parents[1], out=args.out, config=config)
    print(f"{args.out}: {len(table.rows)} rows")


def cmd_figure(args: argparse.Namespace) -> None:
    from imagenet_t2i.paper.figures import figure_bubble, figure_denoise, figure_overfit, figure_qual

    config = config_of(args.config)
    root = Path(args.out).parents[1]
    spec = config["figures"].get(args.figure)
    if spec is None:
        raise ConfigError(f"config key 'figures.{args.figure}': not declared")
    if args.figure == "F-OVERFIT":
        figure_overfit(args.figure, spec, root, args.out)
        return
    if args.figure == "F-DENOISE":
        figure_denoise(args.figure, spec, root, args.out)
        return
    if args.figure == "F-BUBBLE":
        result = figure_bubble(args.figure, spec, root, args.out)
        print(f"{args.out}: left out {result['left_out'] or 'nothing'}")
        return
    prompts = config["sample"]["grid_prompts"]
    runs, indices = grid_figure(config, args.figure)
    images = {(run, prompts[i]): root / "samples" / run / "images" / f"{i:03d}_00.png"  # first sample of prompt i
              for i in indices for run in runs}
    default = "TA vs TA+IA, same prompts and seeds" if args.figure == "F-QUAL" else "Every run, same prompts and seeds"
    figure_qual(images, args.out, title=spec.get("title", default), figure_id=args.figure)

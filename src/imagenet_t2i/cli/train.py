"""The training command (workflow/rules/train.smk): one run through submitit, blocking until it ends."""
from __future__ import annotations

import argparse

from imagenet_t2i.cli.common import config_of
from imagenet_t2i.config import resolve_run


def cmd_train(args: argparse.Namespace) -> None:
    from imagenet_t2i.train.launcher import launch

    config = config_of(args.config)
    run_cfg = resolve_run(config, args.run)
    cluster = dict(config["cluster"])
    if args.cluster:
        cluster["backend"] = args.cluster
    record = launch(run_cfg, cluster, args.shards, args.out, args.state, until=args.until)
    if record.get("finished") is False:
        print(f"[{args.run}] stopped at step {record['step']} as asked (--until); rerun to continue")
    else:
        print(f"[{args.run}] done: {record['summary']}")

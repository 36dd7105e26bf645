"""Where a Snakemake run's time went: job seconds per rule from its log, and each rule's time outside its own work.

A job's time is from the ``[date]`` line before its ``rule X:`` block to the one before ``Finished jobid: N``
(one-second resolution). With ``--results``, a second table gives the mean ``wall_s`` of the provenance records
per stage (the time a command spent on its own work, after imports and config loading; most stages are named
like their rule): a rule's job mean minus its stage's mean is process start, imports and Snakemake's bookkeeping.

    python tools/job_times.py .snakemake/log/<run>.snakemake.log --results results/tiny
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import re
from pathlib import Path

STAMP = re.compile(r"^\[(\w+ \w+ +\d+ [\d:]+ \d+)\]$")
RULE = re.compile(r"^(?:local)?rule (\w+):$")
JOBID = re.compile(r"^\s+jobid: (\d+)$")
FINISHED = re.compile(r"^Finished jobid: (\d+)")


def job_seconds(log: Path) -> dict[str, list[float]]:
    """Rule -> the durations of its finished jobs."""
    started: dict[str, tuple[str, datetime.datetime]] = {}
    durations: dict[str, list[float]] = collections.defaultdict(list)
    now, rule = None, None
    for line in log.read_text().splitlines():
        if m := STAMP.match(line):
            now = datetime.datetime.strptime(" ".join(m.group(1).split()), "%a %b %d %H:%M:%S %Y")
        elif m := RULE.match(line):
            rule = (m.group(1), now)
        elif (m := JOBID.match(line)) and rule:
            started[m.group(1)], rule = rule, None
        elif (m := FINISHED.match(line)) and m.group(1) in started:
            name, t0 = started[m.group(1)]
            durations[name].append((now - t0).total_seconds())
    return durations


def provenance_wall(results: Path) -> dict[str, list[float]]:
    """Provenance stage -> ``wall_s`` of every record under ``results``."""
    walls: dict[str, list[float]] = collections.defaultdict(list)
    for path in [*results.rglob("provenance.json"), *results.rglob("*.prov.json")]:
        record = json.loads(path.read_text())
        if isinstance(record.get("wall_s"), (int, float)) and record.get("stage"):
            walls[record["stage"]].append(float(record["wall_s"]))
    return walls


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("log", type=Path, help="a .snakemake/log/*.snakemake.log")
    p.add_argument("--results", type=Path, help="the run's results folder (provenance wall_s per stage)")
    args = p.parse_args()
    durations = job_seconds(args.log)
    print(f"{'rule':<20} {'jobs':>5} {'job_s':>7} {'mean_s':>7}")
    for rule, times in sorted(durations.items(), key=lambda kv: -sum(kv[1])):
        print(f"{rule:<20} {len(times):>5} {sum(times):>7.0f} {sum(times) / len(times):>7.1f}")
    print(f"{'total':<20} {sum(len(t) for t in durations.values()):>5} {sum(sum(t) for t in durations.values()):>7.0f}")
    if args.results:
        print(f"\n{'provenance stage':<20} {'records':>7} {'mean wall_s':>11}")
        for stage, walls in sorted(provenance_wall(args.results).items()):
            print(f"{stage:<20} {len(walls):>7} {sum(walls) / len(walls):>11.2f}")

if __name__ == "__main__":
    main()

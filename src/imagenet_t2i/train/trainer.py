"""The training job's callable: what `launcher.launch` submits through submitit and what a preempted job requeues.

It holds the run's arguments only; torch and the training loop (`loop.Training`) are imported when the job runs,
in the job's process, so the launcher (one process per run, waiting on its job) imports no torch (1.2 s per run).
"""
from __future__ import annotations

import dataclasses

import submitit


@dataclasses.dataclass(frozen=True)
class Trainer(submitit.helpers.Checkpointable):
    """Train one run (`loop.Training`); resumes from ``state_dir/last.pt`` when it exists.

    ``until`` stops early (after saving a resumable state) at that step: the run then continues on the next call
    and ends with the same weights as an uninterrupted one. On preemption or timeout (USR2) submitit's default
    ``checkpoint`` requeues this object as it is: the loop has already written the state at the step boundary where
    every rank stopped (`distributed.StopRequest`), and a signal that lands before the loop starts resumes from the
    last saved state.
    """

    run_cfg: dict
    shard_root: str
    out_dir: str
    state_dir: str
    until: int | None = None

    def __call__(self) -> dict:
        from imagenet_t2i.train.loop import Training

        return Training(self)()

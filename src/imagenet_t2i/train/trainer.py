"""The training job's callable: what `launcher.launch` submits through submitit and what a preempted job requeues.

It holds the run's arguments only; torch and the training loop (`loop.Training`) are imported when the job runs,
in the job's process, so the launcher (one process per run, waiting on its job) imports no torch (1.2 s per run).
"""
from __future__ import annotations

import submitit


class Trainer(submitit.helpers.Checkpointable):
    """Train one run (`loop.Training`); resumes from ``state_dir/last.pt`` when it exists.

    ``until`` stops early (after saving a resumable state) at that step: the run then continues
    on the next call and ends with the same weights as an uninterrupted one.
    """

    def __init__(self, run_cfg: dict, shard_root: str, out_dir: str, state_dir: str, until: int | None = None) -> None:
        self.run_cfg = run_cfg
        self.shard_root = str(shard_root)
        self.out_dir = str(out_dir)
        self.state_dir = str(state_dir)
        self.until = until

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """submitit's preemption / timeout hook (rank 0): requeue the same run.

        The loop has already written the state at the step boundary where every rank stopped
        (`StopRequest`); a signal that lands before the loop starts resumes from the last saved state.
        """
        return submitit.helpers.DelayedSubmission(Trainer(self.run_cfg, self.shard_root, self.out_dir, self.state_dir,
                                                          self.until))

    def __call__(self) -> dict:
        from .loop import Training

        return Training(self.run_cfg, self.shard_root, self.out_dir, self.state_dir, self.until)()

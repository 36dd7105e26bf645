"""Ranks, devices and preemption for the training job (one process per GPU, DDP through accelerate).

Order matters on a GPU node: SLURM shows every GPU of the node to every task, so the task's rank
variables are exported from submitit's job environment first, and only then is the ``Accelerator``
built, which binds ``cuda:<LOCAL_RANK>`` (NCCL between GPUs, gloo between CPU processes).
"""
from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType
from typing import Any

import submitit
import torch
import torch.distributed as dist
from accelerate import Accelerator


def _submitit_tasks() -> int:
    try:
        return submitit.JobEnvironment().num_tasks
    except RuntimeError:  # not inside a submitit job
        return 1


def make_accelerator(accumulation: int) -> Accelerator:
    """The job's ``Accelerator``: rank variables exported first (multi-task submitit jobs), then device binding.

    bf16 autocast on CUDA, fp32 on CPU; gradient accumulation over ``accumulation`` micro-batches.
    """
    if _submitit_tasks() > 1:  # MASTER_ADDR/PORT, RANK, LOCAL_RANK, WORLD_SIZE from SLURM (or submitit local)
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
    cuda = torch.cuda.is_available()  # after LOCAL_RANK is set: accelerate binds cuda:<LOCAL_RANK>
    return Accelerator(cpu=not cuda, mixed_precision="bf16" if cuda else "no",
                       gradient_accumulation_steps=accumulation)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)  # in rising order of precedence: USR2 (requeue) wins


class StopRequest:
    """Turns SIGTERM and USR2 into a request honoured at a step boundary.

    USR2 is submitit's signal before the time limit (``--signal=USR2@<delay>``) or on ``scancel --signal=USR2``:
    the job is requeued by submitit. SIGTERM is SLURM's preemption and cancel signal (``scontrol requeue``, preemption
    with ``PreemptMode=REQUEUE``, ``scancel``; the local executor's cancel): the state is saved and the job ends, and
    SLURM requeues a preempted job itself (a cancelled one is not requeued: the next run resumes from the state).
    The handlers only record the signal: the loop asks `agreed` after every step, all ranks answer together (a gloo
    all-reduce, so no GPU synchronisation) and every rank stops at the same step with one consistent state.
    `hand_over` then gives USR2 to the handler installed before (submitit's: on rank 0 it calls
    ``Trainer.checkpoint`` and requeues the job).
    """

    def __init__(self, world_size: int) -> None:
        self.signum: int | None = None
        self.world_size = world_size
        self._group = None
        if world_size > 1:
            self._group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
        self._previous: dict[int, Callable | int | None] = {s: signal.signal(s, self._record) for s in STOP_SIGNALS}

    def _record(self, signum: int, _frame: FrameType | None) -> None:
        if self.signum is None or STOP_SIGNALS.index(signum) > STOP_SIGNALS.index(self.signum):
            self.signum = signum

    def agreed(self, save_due: bool = False) -> tuple[int | None, bool]:
        """What every rank does now, in one all-reduce: the signal to stop for when any rank has received one (USR2
        before SIGTERM; else None), and whether a save is due on any rank (rank 0's clock decides time-based saves)."""
        code = 0 if self.signum is None else 1 + STOP_SIGNALS.index(self.signum)
        flag = torch.tensor([code, int(save_due)], dtype=torch.int32)
        if self._group is not None:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=self._group)
        code, due = (int(v) for v in flag.tolist())
        return (STOP_SIGNALS[code - 1] if code else None), bool(due)

    def gather(self, obj: Any) -> list[Any]:
        """``obj`` of every rank, in rank order (e.g. the RNG states)."""
        if self._group is None:
            return [obj]
        out: list = [None] * self.world_size
        dist.all_gather_object(out, obj, group=self._group)
        return out

    def barrier(self) -> None:
        if self._group is not None:
            dist.barrier(group=self._group)

    def restore(self) -> None:
        """Put the previous SIGTERM and USR2 handlers back."""
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)

    def hand_over(self) -> None:
        """Give USR2 to the previous handler (submitit's requeue on rank 0; may exit)."""
        self.restore()
        previous = self._previous[signal.SIGUSR2]
        if callable(previous):
            previous(signal.SIGUSR2, None)

"""What every command shares: its config (validated, and for a GPU stage a GPU), the provenance record of its output."""
from __future__ import annotations

import time

from imagenet_t2i.config import ConfigError, load_config


def config_of(paths: list[str], gpu: bool = False) -> dict:
    """The validated config; ``gpu``: the command is a GPU stage, which `require_gpu` checks before any work."""
    config = load_config(*paths)
    if gpu:
        require_gpu(config)
    return config


def require_gpu(config: dict) -> None:
    """Stop at once when the config gives the GPU stages GPUs (``cluster.stages.gpu.gpus``, as paper.yaml does) but
    this process sees none: such a stage must not fall back to the CPU without a word (LLaVA-8B in fp32 on a login
    node). ``cluster.allow_cpu: true`` runs it on the CPU on purpose."""
    gpus = config["cluster"].get("stages", {}).get("gpu", {}).get("gpus", 0)
    if not gpus or config["cluster"].get("allow_cpu"):
        return
    import torch

    if not torch.cuda.is_available():
        raise ConfigError(f"config key 'cluster.stages.gpu.gpus' gives this stage {gpus} GPU(s), but none is visible "
                          "here: run the workflow with --profile workflow/profiles/slurm so the job lands on a GPU node, "
                          "or set 'cluster.allow_cpu: true' to run it on the CPU on purpose")


def provenance(stage: str, cfg: dict, inputs: dict, output: str, t0: float) -> None:
    from imagenet_t2i.provenance import make_record, write_record

    write_record(output, make_record(stage, cfg, inputs, [output], time.time() - t0))

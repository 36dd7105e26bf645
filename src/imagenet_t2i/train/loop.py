"""The training job: a resumable, preemptible loop over WebDataset shards (paper-spec sections 5-6).

One process per device. Under a multi-task submitit job (SLURM, several GPUs, several nodes) each task
is a DDP rank (accelerate: device binding, DDP, bf16 autocast, gradient accumulation): ranks read
disjoint parts of every shard set, rank 0 alone writes logs, states and weights.

``train.batch_size`` is the GLOBAL batch: each optimiser step averages ``batch_size`` samples,
``batch_size / (ranks x train.accumulation)`` per rank and micro-batch.

Preemption and time limits (USR2) stop every rank at the same step boundary; one state (model,
optimiser, EMA, every rank's RNG, the stream position) is written atomically and the job is
requeued, so a resumed run ends with the weights of an uninterrupted one. Hyper-parameters always
come from the config; only state comes from the checkpoint.

GPU fast path: ``train.compile`` (torch.compile of the model) and ``train.fused_optimizer`` (fused AdamW / foreach
LAMB and EMA; ``auto`` = on CUDA only). The gradient norm stays on the device until a log row reads it; the loop's
one host sync per step is the non-finite loss check.
"""
from __future__ import annotations

import copy
import csv
import math
import os
import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from safetensors.torch import load_file

from imagenet_t2i.config import per_rank_batch, run_shard_sets
from imagenet_t2i.diffusion.objective import AugmentSource, Batch, diffusion_loss
from imagenet_t2i.io import atomic_write, read_json, write_json
from imagenet_t2i.malloc import keep_freed_memory
from imagenet_t2i.models import build_model, count_parameters, save_pretrained, save_weights
from imagenet_t2i.models.base import OBJECTIVE_FILE, RUN_WEIGHTS_NAME
from imagenet_t2i.shards.reader import ShardStream, load_uncond
from imagenet_t2i.train.distributed import StopRequest, make_accelerator
from imagenet_t2i.train.fast import compile_model
from imagenet_t2i.train.graft import graft
from imagenet_t2i.train.optim import Ema, make_optimizer, scheduled_lr, use_fused

if TYPE_CHECKING:  # the job's callable imports this module when it runs: no import back
    from imagenet_t2i.train.trainer import Trainer

# Train settings that define what a run learns: a state trained under other values is not resumed. (Optimiser and EMA
# settings come from the config on resume; steps may grow.)
LEARNING_KEYS = ("objective", "cfg_dropout", "self_cond_rate", "cutmix", "crop")
LOG_FIELDS = ["step", "loss", "lr", "grad_norm", "images_per_s", "wall_s",
              "world_size", "per_rank_batch", "accumulation", "global_batch"]


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive non-finite losses."""


def data_shape(manifest: dict, resolution: int) -> dict:
    """Model input kwargs implied by a shard set: latent channels and size, text width."""
    ae, te = manifest["autoencoder"], manifest["text_encoder"]
    return {"in_channels": ae["latent_channels"], "input_size": resolution // ae["downsample"], "text_dim": te["dim"]}


def to_batch(raw: dict, generator: torch.Generator, scale: float, device: torch.device) -> Batch:
    """Sample z = mean + std * noise from the stored posterior, scale it, move it to the device.

    On CUDA the host tensors are pinned first: a copy from pageable memory waits for the GPU's queue to drain
    (a host sync per tensor), one from pinned memory does not. The values are the same either way.
    """
    noise = torch.randn(raw["mean"].shape, generator=generator)
    x0 = (raw["mean"].float() + raw["std"].float() * noise) * scale  # (N, C, h, w)
    text, mask = raw["text"], raw["mask"]  # (N, T, D) as stored (bf16 or fp32), (N, T)
    if device.type == "cuda":
        x0, text, mask = x0.pin_memory(), text.pin_memory(), mask.pin_memory()
    return Batch(x0.to(device, non_blocking=True), text.to(device, non_blocking=True).float(),
                 mask.to(device, non_blocking=True))


def _config_hyperparameters(optimizer: torch.optim.Optimizer) -> list[dict]:
    return [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]


class Training:
    """The run of a `trainer.Trainer` (the job's callable), in the job's process."""

    def __init__(self, job: Trainer) -> None:
        self.run_cfg = job.run_cfg
        self.shard_root = Path(job.shard_root)
        self.out_dir = Path(job.out_dir)
        self.state_dir = Path(job.state_dir)
        self.until = job.until

    def _state_path(self) -> Path:
        return self.state_dir / "last.pt"

    # -- the job ---------------------------------------------------------------
    def __call__(self) -> dict:
        cfg, tcfg = self.run_cfg, self.run_cfg["train"]
        keep_freed_memory()  # this process is submitit's, not the command line's
        torch.set_num_threads(tcfg["threads"])
        accumulation = tcfg.get("accumulation", 1)
        acc = make_accelerator(accumulation)
        rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
        micro = per_rank_batch(tcfg["batch_size"], world, accumulation)
        layout = {"world_size": world, "per_rank_batch": micro, "accumulation": accumulation,
                  "global_batch": tcfg["batch_size"]}
        sets = run_shard_sets(cfg)
        manifest = read_json(self.shard_root / sets["train"] / "manifest.json")
        scale = manifest["autoencoder"]["scale_factor"]
        torch.manual_seed(cfg["seed"])
        model_cfg = dict(cfg["model"])
        arch = model_cfg.pop("arch")
        raw_model = build_model(arch, **model_cfg, **data_shape(manifest, cfg["resolution"])).to(acc.device)
        n_params = count_parameters(raw_model)
        fused = use_fused(tcfg.get("fused_optimizer", "auto"), acc.device)
        optimizer = make_optimizer(raw_model, tcfg["optimizer"], fused)
        hyper = _config_hyperparameters(optimizer)
        ema = Ema(raw_model, tcfg["ema"]["decay"], foreach=fused)
        generator = torch.Generator().manual_seed(cfg["seed"] + 1 + 1000 * rank)
        streams = {role: ShardStream(self.shard_root / name, micro, seed=cfg["seed"] + 10 * i,
                                     rank=rank, world_size=world)
                   for i, (role, name) in enumerate(sets.items())}
        uncond = load_uncond(self.shard_root / sets["train"])[0][0].to(acc.device)  # (L0, D)
        step, nonfinite, log, resumed_from, spent_s = 0, 0, [], [], 0.0
        inputs = {"model": cfg["model"], "seed": cfg["seed"],
                  "shards": {role: read_json(self.shard_root / name / "manifest.json")["fingerprint"]
                             for role, name in sets.items()},
                  "train": {key: tcfg.get(key) for key in LEARNING_KEYS}}
        init_dir = self.out_dir.parent / cfg["init_from"] / "final" if cfg.get("init_from") else None
        if init_dir is not None:
            inputs["init"] = init_fingerprint(init_dir)
        state = torch.load(self._state_path(), weights_only=False, map_location="cpu") \
            if self._state_path().exists() else None
        if state is not None and state.get("inputs") != inputs:  # other shards, model or learning settings
            if main:
                print(f"[{cfg['name']}] {self._state_path()} was trained on other inputs ({state.get('inputs')}): "
                      "starting again from step 0", flush=True)
                shutil.rmtree(self.state_dir / "checkpoints", ignore_errors=True)
            state = None
        if state is None and init_dir is not None:
            same_side = cfg["resolution"] == cfg["init_resolution"]
            network, averaged = grafted_init(arch, init_dir, raw_model, graft_it=not same_side)
            raw_model.load_state_dict(network)
            ema.load_state_dict({"shadow": averaged})
            if main:
                how = "as they are (a fine-tune)" if same_side else f"grafted to {cfg['resolution']} px"
                print(f"[{cfg['name']}] initialised from {init_dir}, {how}", flush=True)
        if state is not None:
            if len(state["generators"]) != world:
                raise RuntimeError(f"{self._state_path()} was saved with {len(state['generators'])} ranks, this job has "
                                   f"{world}: resume with the same number of GPUs or delete the state folder")
            raw_model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for group, h in zip(optimizer.param_groups, hyper):
                group.update(h)  # betas, eps, weight decay: from the config, not the checkpoint
            ema.load_state_dict(state["ema"])
            generator.set_state(state["generators"][rank].cpu())
            for role, s in streams.items():
                s.load_state_dict(state["streams"][role])
            step, nonfinite, log = state["step"], state["nonfinite"], state["log"]
            spent_s = state.get("spent_s", 0.0)
            resumed_from = state.get("resumed_from", []) + [step]
            if main:
                print(f"[{cfg['name']}] resumed from step {step}", flush=True)
        # Only the model is prepared (DDP wrapper, autocast): the loop steps the optimiser once per accumulation
        # cycle itself, and accelerate's optimiser wrapper checks package availability on every step
        # (about 2 ms of a 110 ms tiny CPU step, measured). bf16 needs no grad scaler; fp16 is not offered.
        model = compile_model(acc.prepare(raw_model), tcfg.get("compile", False))
        total = tcfg["steps"]
        stop = min(total, self.until) if self.until else total
        self_cond = tcfg["self_cond_rate"] if arch == "cad_i" else 0.0
        if main:
            print(f"[{cfg['name']}] {arch}: {n_params:,} parameters, {total} steps, global batch {tcfg['batch_size']} = "
                  f"{world} rank(s) x {accumulation} accumulation x {micro} on {acc.device} "
                  f"({acc.distributed_type.value}{', ' + dist.get_backend() if dist.is_initialized() else ''}, "
                  f"{acc.mixed_precision}), data {sets}", flush=True)

        def spent() -> float:
            """Seconds of this run's loops so far, every attempt (a resumed one's earlier time from its state)."""
            return spent_s + time.perf_counter() - wall0

        def summary(**extra: object) -> dict:
            """What this rank did: the step, the batch layout, the part of every shard set it read, and the device-hours
            the run's loops took over all attempts (ranks x seconds; GPU-hours on GPUs)."""
            data = {r: {"range": list(s.sample_range), "batches": s.state_dict()["batches"]} for r, s in streams.items()}
            return {"finished": step >= total, "step": step, "rank": rank, "data": data, "resumed_from": resumed_from,
                    "loop_s": round(spent(), 1), "device": acc.device.type,
                    "device_hours": round(world * spent() / 3600, 4), **layout, **extra}

        def save_state() -> None:
            """Every rank's RNG gathered; rank 0 writes the whole state atomically."""
            generators = stop_request.gather(generator.get_state())
            if main:
                state = {"step": step, "model": raw_model.state_dict(), "optimizer": optimizer.state_dict(),
                         "ema": ema.state_dict(),
                         "generators": generators, "streams": {r: s.state_dict() for r, s in streams.items()},
                         "nonfinite": nonfinite, "log": log, "layout": layout, "resumed_from": resumed_from,
                         "inputs": inputs, "spent_s": spent()}
                self.state_dir.mkdir(parents=True, exist_ok=True)
                with atomic_write(self._state_path(), "wb") as f:
                    torch.save(state, f)
                self._write_log(log)
            stop_request.barrier()

        # Installed last, just before the try that restores them: a failure while setting up (a state or a parent's
        # weights that do not load) leaves the process's handlers as they were.
        stop_request = StopRequest(world)
        its = {r: iter(s) for r, s in streams.items()}
        report_every, report_s = max(1, total // 20), tcfg.get("report_every_s", 300)  # a progress line: 20 a run, or by time
        t_last = t_report = t_saved = wall0 = time.perf_counter()
        save_every_s = 60 * tcfg.get("checkpoint_every_min", 0)  # 0: by steps only
        step_at_report, rows_at_report = step, len(log)
        model.train()
        try:
            while step < stop:
                signum, save_due = stop_request.agreed(main and save_every_s > 0
                                                       and time.perf_counter() - t_saved >= save_every_s)
                if save_due and not signum:  # train.checkpoint_every_min: a lost node costs bounded time
                    save_state()
                    t_saved = time.perf_counter()
                if signum == signal.SIGUSR2:  # out of time, or asked to requeue: every rank stops here
                    save_state()
                    if main:
                        print(f"[{cfg['name']}] signal received: state saved at step {step}, requeueing", flush=True)
                    stop_request.hand_over()  # submitit requeues on rank 0 (and exits)
                    if not main:  # leave no result behind: the requeued job writes this rank's final one
                        raise SystemExit(0)
                    return summary(preempted=True)
                if signum == signal.SIGTERM:  # preempted or cancelled: save, end without a result
                    save_state()
                    if main:
                        print(f"[{cfg['name']}] SIGTERM: state saved at step {step}; the job ends (SLURM requeues a "
                              "preempted job, which resumes from this step; after a cancel, a rerun does)", flush=True)
                    raise SystemExit(0)  # no result file: a requeued job runs on, the launcher keeps waiting
                lr = scheduled_lr(step, total, tcfg["optimizer"])
                for g in optimizer.param_groups:
                    g["lr"] = lr
                step_loss = torch.zeros((), device=acc.device)
                for _ in range(accumulation):
                    raw = {r: next(it) for r, it in its.items()}
                    base = to_batch(raw["train"], generator, scale, acc.device)
                    sources = [AugmentSource(to_batch(raw[r], generator, scale, acc.device), tcfg[r]["tau"],
                                             tcfg[r]["p"]) for r in ("cutmix", "crop") if r in raw]
                    with acc.accumulate(model), acc.autocast():
                        loss, _ = diffusion_loss(model, base, sources, uncond, generator, tcfg["cfg_dropout"],
                                                 self_cond, tcfg["objective"])
                        acc.backward(loss)  # every rank always runs backward: DDP's all-reduce needs all of them
                    step_loss += loss.detach().float() / accumulation
                mean_loss = acc.reduce(step_loss, reduction="mean")  # the same on every rank: one branch
                if torch.isfinite(mean_loss):  # the one host sync per step: a non-finite step must not move the weights
                    nonfinite = 0
                    for p in raw_model.parameters():
                        if p.grad is not None:
                            p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # non-finite gradients are zeroed
                    # kept on the device: read at the next log row only (no host sync per step)
                    grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), tcfg["grad_clip"])
                    optimizer.step()
                    ema.update(raw_model)
                else:
                    nonfinite += 1
                    grad_norm = math.nan
                    if main:
                        print(f"[{cfg['name']}] step {step}: non-finite loss ({nonfinite} in a row)", flush=True)
                optimizer.zero_grad(set_to_none=True)
                step += 1
                if nonfinite >= tcfg["max_nonfinite"]:
                    raise NonFiniteLossError(f"run {cfg['name']}: {nonfinite} consecutive non-finite losses "
                                             f"at step {step - 1}; lower the learning rate or check the data")
                if step % tcfg["log_every"] == 0 or step == stop:
                    now = time.perf_counter()
                    n_steps = tcfg["log_every"] if step % tcfg["log_every"] == 0 else step % tcfg["log_every"]
                    log.append({"step": step, "loss": round(mean_loss.item(), 6), "lr": lr,
                                "grad_norm": round(float(grad_norm), 4),
                                "images_per_s": round(n_steps * tcfg["batch_size"] / max(now - t_last, 1e-9), 2),
                                "wall_s": round(now - wall0, 2), **layout})
                    t_last = now
                now = time.perf_counter()
                if main and (step % report_every == 0 or step == stop or now - t_report >= report_s):
                    rate = (step - step_at_report) / max(now - t_report, 1e-9)
                    recent = [r["loss"] for r in log[rows_at_report:]] or [r["loss"] for r in log[-1:]]
                    print(f"[{cfg['name']}] step {step}/{total} loss {sum(recent) / max(len(recent), 1):.4f} "
                          f"(mean of the {len(recent)} logged step(s) since the last line) lr {lr:.2e} "
                          f"{rate * tcfg['batch_size']:.0f} img/s eta {(stop - step) / max(rate, 1e-9):.0f}s", flush=True)
                    self._write_log(log)  # train.csv follows the progress lines, not only the checkpoints
                    t_report, step_at_report, rows_at_report = now, step, len(log)
                if main and step in tcfg["eval_checkpoints"]:  # kept in the state too: a rerun restores it
                    self._save_weights(raw_model, ema, self.state_dir / "checkpoints" / f"step-{step:07d}")
                if step % tcfg["checkpoint_every"] == 0 or step == stop:
                    save_state()
                    t_saved = time.perf_counter()
        finally:
            stop_request.restore()
            for s in streams.values():
                s.close()
        if main:
            self._publish_checkpoints(step)
        if step < total:
            return summary()
        if main:
            self._save_weights(raw_model, ema, self.out_dir / "final")
            save_weights(raw_model, self.out_dir / "final" / NETWORK_FILE)  # the raw network too: a graft reads both
            self._write_log(log)
        stop_request.barrier()
        return summary(parameters=n_params, final_loss=log[-1]["loss"] if log else math.nan)

    def _publish_checkpoints(self, step: int) -> None:
        """Every evaluation checkpoint reached so far, hard-linked from the state into the run's outputs (a rerun
        after Snakemake removed the outputs gets them back without retraining)."""
        for name in sorted(p.name for p in (self.state_dir / "checkpoints").glob("step-*")):
            dst = self.out_dir / "checkpoints" / name
            if int(name.removeprefix("step-")) <= step and not dst.exists():
                tmp = dst.with_name(f".{name}.tmp")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(self.state_dir / "checkpoints" / name, tmp, copy_function=_link_or_copy)
                os.replace(tmp, dst)

    def _save_weights(self, model: torch.nn.Module, ema: Ema, folder: Path) -> None:
        """EMA weights of ``model`` (unwrapped) as a loadable model folder, plus the objective the sampler must match."""
        m = copy.deepcopy(model).cpu()
        m.load_state_dict({k: v.cpu() for k, v in ema.shadow.items()})
        save_pretrained(m.eval(), folder)
        write_json(folder / OBJECTIVE_FILE, {"objective": self.run_cfg["train"]["objective"]})

    def _write_log(self, rows: list[dict]) -> None:
        with atomic_write(self.out_dir / "train.csv") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)


NETWORK_FILE = "network.safetensors"  # beside final/'s EMA weights: the raw network, which a graft also reads


def init_fingerprint(folder: Path) -> dict:
    """What a run started from another starts from: the size and write time of the parent's final weights (a
    retrained parent writes new files and restarts it), from a stat per file on every rank, not a read of gigabytes."""
    missing = [n for n in (RUN_WEIGHTS_NAME, NETWORK_FILE) if not (folder / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks {missing}: runs.<run>.init_from needs the parent run's final weights "
                                "(a run trained before grafting existed has no network.safetensors: retrain it)")
    return {n: [(folder / n).stat().st_size, (folder / n).stat().st_mtime_ns] for n in (RUN_WEIGHTS_NAME, NETWORK_FILE)}


def grafted_init(arch: str, folder: Path, model: torch.nn.Module, graft_it: bool = True) -> tuple[dict, dict]:
    """(network, EMA) states of ``model`` from the run folder ``folder``: grafted (`imagenet_t2i.train.graft`), or as
    they are (``graft_it=False``: a fine-tune at the parent's side; the model's load checks every shape)."""
    network, ema = load_file(str(folder / NETWORK_FILE)), load_file(str(folder / RUN_WEIGHTS_NAME))
    if graft_it:
        fresh = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        network, ema = graft(arch, network, ema, fresh)
    device = next(model.parameters()).device
    return {k: v.to(device) for k, v in network.items()}, {k: v.to(device) for k, v in ema.items()}


def _link_or_copy(src: str, dst: str) -> None:
    """A hard link (no copy of the weights), or a copy across file systems."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)

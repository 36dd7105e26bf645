"""The training job: a resumable, preemptible loop over WebDataset shards (paper-spec sections 5-6).

One process per device. Under a multi-task submitit job (SLURM, several GPUs) each task is a DDP rank:
ranks read disjoint parts of every shard set, rank 0 alone writes logs, states and weights.
"""
from __future__ import annotations

import contextlib
import copy
import csv
import math
import time
from dataclasses import dataclass
from pathlib import Path

import submitit
import torch
import torch.distributed as dist

from ..config import run_shard_sets
from ..diffusion.objective import AugmentSource, Batch, diffusion_loss
from ..io import atomic_write, read_json, write_json
from ..loader import ShardStream, load_uncond
from ..models import build_model, count_parameters, save_pretrained, unwrap_model
from ..sample import OBJECTIVE_FILE
from .optim import Ema, lr_at, make_optimizer

LOG_FIELDS = ["step", "loss", "lr", "grad_norm", "images_per_s", "wall_s"]


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive non-finite losses."""


@dataclass
class Dist:
    """Where this process stands in the job."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> Dist:
    """Single process, or one DDP rank per task of a multi-task submitit job (NCCL on GPUs, gloo on CPUs)."""
    cuda = torch.cuda.is_available()
    try:
        env = submitit.JobEnvironment()
        tasks = env.num_tasks
    except RuntimeError:  # not inside a submitit job
        tasks = 1
    if tasks == 1:
        return Dist(device=torch.device("cuda" if cuda else "cpu"))
    denv = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=cuda)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(denv.rank, denv.world_size, torch.device("cuda" if cuda else "cpu"))


def data_shape(manifest: dict, resolution: int) -> dict:
    """Model input kwargs implied by a shard set: latent channels and size, text width."""
    ae, te = manifest["autoencoder"], manifest["text_encoder"]
    return {"in_channels": ae["latent_channels"], "input_size": resolution // ae["downsample"], "text_dim": te["dim"]}


def to_batch(raw: dict, generator: torch.Generator, scale: float, device: torch.device) -> Batch:
    """Sample z = mean + std * noise from the stored posterior, scale it, move it to the device."""
    noise = torch.randn(raw["mean"].shape, generator=generator)
    x0 = ((raw["mean"].float() + raw["std"].float() * noise) * scale).to(device, non_blocking=True)
    return Batch(x0, raw["text"].to(device, torch.float32, non_blocking=True), raw["mask"].to(device, non_blocking=True))


class Trainer(submitit.helpers.Checkpointable):
    """Train one run; resumes from ``state_dir/last.pt`` when it exists.

    ``until`` stops early (after saving a resumable state) at that step: the run then continues
    on the next call and ends with the same weights as an uninterrupted one.
    """

    def __init__(self, run_cfg: dict, shard_root: str, out_dir: str, state_dir: str, until: int | None = None) -> None:
        self.run_cfg = run_cfg
        self.shard_root = Path(shard_root)
        self.out_dir = Path(out_dir)
        self.state_dir = Path(state_dir)
        self.until = until
        self._live: dict | None = None

    # -- state ---------------------------------------------------------------
    def _state_path(self) -> Path:
        return self.state_dir / "last.pt"

    def _save_state(self) -> None:
        """Rank 0 writes model, optimiser, EMA, every rank's RNG and the data position, atomically."""
        live = self._live
        if live is None or live["updating"] or not live["dist"].main:
            return  # mid-update: the last periodic state stays the resume point
        state = {
            "step": live["step"],
            "model": unwrap_model(live["model"]).state_dict(),
            "optimizer": live["optimizer"].state_dict(),
            "ema": live["ema"].state_dict(),
            "generators": live["gen_snapshot"],
            "streams": live["stream_snapshot"],
            "nonfinite": live["nonfinite"],
            "log": live["log"],
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self._state_path(), "wb") as f:
            torch.save(state, f)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """submitit preemption/timeout hook: save a consistent state (single process), then requeue.

        Under DDP the last periodic state is the resume point: a signal handler cannot gather the
        other ranks' RNG states.
        """
        if self._live is not None and self._live["dist"].world_size == 1:
            self._live["gen_snapshot"] = [self._live["gen_at_step_start"]]
            self._live["stream_snapshot"] = self._live["streams_at_step_start"]
            self._save_state()
        return submitit.helpers.DelayedSubmission(Trainer(self.run_cfg, str(self.shard_root), str(self.out_dir),
                                                          str(self.state_dir), self.until))

    def _gather_generators(self, generator: torch.Generator, d: Dist) -> list[torch.Tensor]:
        state = generator.get_state()
        if d.world_size == 1:
            return [state]
        states: list = [None] * d.world_size
        dist.all_gather_object(states, state)
        return states

    # -- the job ---------------------------------------------------------------
    def __call__(self) -> dict:
        cfg, tcfg = self.run_cfg, self.run_cfg["train"]
        torch.set_num_threads(tcfg["threads"])
        d = setup_distributed()
        sets = run_shard_sets(cfg)
        manifest = read_json(self.shard_root / sets["train"] / "manifest.json")
        scale = manifest["autoencoder"]["scale_factor"]
        torch.manual_seed(cfg["seed"])
        model_cfg = dict(cfg["model"])
        arch = model_cfg.pop("arch")
        model = build_model(arch, **model_cfg, **data_shape(manifest, cfg["resolution"])).to(d.device)
        n_params = count_parameters(model)
        optimizer = make_optimizer(model, tcfg["optimizer"])
        ema = Ema(model, tcfg["ema"]["decay"])
        generator = torch.Generator().manual_seed(cfg["seed"] + 1 + 1000 * d.rank)
        streams = {role: ShardStream(self.shard_root / name, tcfg["batch_size"], seed=cfg["seed"] + 10 * i,
                                     rank=d.rank, world_size=d.world_size)
                   for i, (role, name) in enumerate(sets.items())}
        uncond = load_uncond(self.shard_root / sets["train"])[0][0].to(d.device)  # (L0, D)
        live = {"step": 0, "model": model, "optimizer": optimizer, "ema": ema, "nonfinite": 0, "log": [],
                "updating": False, "dist": d, "gen_at_step_start": generator.get_state(),
                "gen_snapshot": self._gather_generators(generator, d),
                "stream_snapshot": {r: s.state_dict() for r, s in streams.items()}}
        if self._state_path().exists():
            state = torch.load(self._state_path(), weights_only=False, map_location=d.device)
            if len(state["generators"]) != d.world_size:
                raise RuntimeError(f"{self._state_path()} was saved with {len(state['generators'])} ranks, this job has "
                                   f"{d.world_size}: resume with the same number of GPUs or delete the state folder")
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            ema.load_state_dict(state["ema"])
            generator.set_state(state["generators"][d.rank].cpu())
            for role, s in streams.items():
                s.load_state_dict(state["streams"][role])
            live.update(step=state["step"], nonfinite=state["nonfinite"], log=state["log"],
                        gen_snapshot=state["generators"], stream_snapshot=state["streams"])
            if d.main:
                print(f"[{cfg['name']}] resumed from step {state['step']}", flush=True)
        if d.world_size > 1:
            model = torch.nn.parallel.DistributedDataParallel(model)
            live["model"] = model
        self._live = live
        total = tcfg["steps"]
        stop = min(total, self.until) if self.until else total
        self_cond = tcfg["self_cond_rate"] if arch == "cad_i" else 0.0
        autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if d.device.type == "cuda"
                    else contextlib.nullcontext())
        if d.main:
            print(f"[{cfg['name']}] {arch}: {n_params:,} parameters, {total} steps, batch {tcfg['batch_size']} x "
                  f"{d.world_size} rank(s) on {d.device}, data {sets}", flush=True)
        its = {r: iter(s) for r, s in streams.items()}
        report_every = max(1, total // 20)
        t_last = t_report = wall0 = time.perf_counter()
        step_at_report = live["step"]
        model.train()
        while live["step"] < stop:
            step = live["step"]
            live["gen_at_step_start"] = generator.get_state()
            live["streams_at_step_start"] = {r: s.state_dict() for r, s in streams.items()}
            raw = {r: next(it) for r, it in its.items()}
            base = to_batch(raw["train"], generator, scale, d.device)
            sources = [AugmentSource(to_batch(raw[r], generator, scale, d.device), tcfg[r]["tau"], tcfg[r]["p"])
                       for r in ("cutmix", "crop") if r in raw]
            lr = lr_at(step, total, tcfg["optimizer"]["lr"], tcfg["optimizer"]["warmup"],
                       tcfg["optimizer"]["cosine_fraction"])
            for g in optimizer.param_groups:
                g["lr"] = lr
            with autocast:
                loss, _ = diffusion_loss(model, base, sources, uncond, generator, tcfg["cfg_dropout"], self_cond,
                                         tcfg["objective"])
            optimizer.zero_grad(set_to_none=True)
            finite = torch.isfinite(loss.detach())
            if d.world_size > 1:  # every rank takes the same branch
                finite = finite.float()
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
                finite = finite.bool()
            if not finite:
                live["nonfinite"] += 1
                if d.main:
                    print(f"[{cfg['name']}] step {step}: non-finite loss ({live['nonfinite']} in a row)", flush=True)
                if live["nonfinite"] >= tcfg["max_nonfinite"]:
                    raise NonFiniteLossError(f"run {cfg['name']}: {live['nonfinite']} consecutive non-finite losses "
                                             f"at step {step}; lower the learning rate or check the data")
                live["step"] += 1
                continue
            live["nonfinite"] = 0
            loss.backward()
            for p in model.parameters():
                if p.grad is not None:
                    p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)  # non-finite gradients are zeroed
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"]).item()
            live["updating"] = True
            optimizer.step()
            ema.update(unwrap_model(model))
            live["step"] += 1
            live["updating"] = False
            done = live["step"]
            if done % tcfg["log_every"] == 0 or done == stop:
                mean_loss = loss.detach().float()
                if d.world_size > 1:
                    dist.all_reduce(mean_loss)
                    mean_loss /= d.world_size
                now = time.perf_counter()
                n_steps = tcfg["log_every"] if done % tcfg["log_every"] == 0 else done % tcfg["log_every"]
                live["log"].append({"step": done, "loss": round(mean_loss.item(), 6), "lr": lr,
                                    "grad_norm": round(grad_norm, 4),
                                    "images_per_s": round(n_steps * tcfg["batch_size"] * d.world_size
                                                          / max(now - t_last, 1e-9), 2),
                                    "wall_s": round(now - wall0, 2)})
                t_last = now
            if d.main and (done % report_every == 0 or done == stop):
                now = time.perf_counter()
                rate = (done - step_at_report) / max(now - t_report, 1e-9)
                recent = [r["loss"] for r in live["log"][-report_every:]]
                print(f"[{cfg['name']}] step {done}/{total} loss {sum(recent) / max(len(recent), 1):.4f} "
                      f"lr {lr:.2e} {rate * tcfg['batch_size'] * d.world_size:.0f} img/s "
                      f"eta {(stop - done) / max(rate, 1e-9):.0f}s", flush=True)
                t_report, step_at_report = now, done
            if d.main and done in tcfg["eval_checkpoints"]:
                self._save_weights(model, ema, self.out_dir / "checkpoints" / f"step-{done:07d}")
            if done % tcfg["checkpoint_every"] == 0 or done == stop:
                live["gen_snapshot"] = self._gather_generators(generator, d)
                live["stream_snapshot"] = {r: s.state_dict() for r, s in streams.items()}
                self._save_state()
                if d.main:
                    self._write_log(live["log"])
        for s in streams.values():
            s.close()
        if live["step"] < total:
            return {"finished": False, "step": live["step"]}
        if d.main:
            self._save_weights(model, ema, self.out_dir / "final")
            self._write_log(live["log"])
        if d.world_size > 1:
            dist.barrier()
        return {"finished": True, "step": live["step"], "parameters": n_params,
                "final_loss": live["log"][-1]["loss"] if live["log"] else math.nan}

    def _save_weights(self, model: torch.nn.Module, ema: Ema, folder: Path) -> None:
        """EMA weights as a loadable model folder, plus the objective the sampler must match."""
        m = copy.deepcopy(unwrap_model(model)).cpu()
        m.load_state_dict({k: v.cpu() for k, v in ema.shadow.items()})
        save_pretrained(m.eval(), folder)
        write_json(folder / OBJECTIVE_FILE, {"objective": self.run_cfg["train"]["objective"]})

    def _write_log(self, rows: list[dict]) -> None:
        with atomic_write(self.out_dir / "train.csv") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

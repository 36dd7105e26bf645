"""The training job: a resumable, preemptible loop over WebDataset shards (paper-spec sections 5-6)."""
from __future__ import annotations

import copy
import csv
import math
import os
import time
from pathlib import Path

import submitit
import torch
from tqdm import tqdm

from ..config import run_shard_sets
from ..diffusion.objective import AugmentSource, Batch, diffusion_loss
from ..io import atomic_write, read_json, write_json
from ..loader import ShardStream, load_uncond
from ..models import build_model, count_parameters, save_pretrained
from .optim import Ema, lr_at, make_optimizer

LOG_FIELDS = ["step", "loss", "lr", "grad_norm", "images_per_s", "wall_s"]


class NonFiniteLossError(RuntimeError):
    """Raised after too many consecutive non-finite losses."""


def data_shape(manifest: dict, resolution: int) -> dict:
    """Model input kwargs implied by a shard set: latent channels and size, text width."""
    ae, te = manifest["autoencoder"], manifest["text_encoder"]
    return {
        "in_channels": ae["latent_channels"],
        "input_size": resolution // ae["downsample"],
        "text_dim": te["dim"],
    }


def to_batch(raw: dict, generator: torch.Generator, scale: float) -> Batch:
    """Sample z = mean + std * noise from the stored posterior and scale it."""
    noise = torch.randn(raw["mean"].shape, generator=generator)
    return Batch((raw["mean"] + raw["std"] * noise) * scale, raw["text"], raw["mask"])


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
        live = self._live
        if live is None or live["updating"]:
            return  # mid-update: the last periodic state stays the resume point
        state = {
            "step": live["step"],
            "model": live["model"].state_dict(),
            "optimizer": live["optimizer"].state_dict(),
            "ema": live["ema"].state_dict(),
            "generator": live["gen_snapshot"],
            "streams": live["stream_snapshot"],
            "nonfinite": live["nonfinite"],
            "log": live["log"],
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with atomic_write(self._state_path(), "wb") as f:
            torch.save(state, f)

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        """submitit preemption/timeout hook: save a consistent state, then requeue."""
        self._save_state()
        return submitit.helpers.DelayedSubmission(Trainer(self.run_cfg, str(self.shard_root), str(self.out_dir),
                                                          str(self.state_dir), self.until))

    # -- the job ---------------------------------------------------------------
    def __call__(self) -> dict:
        cfg, tcfg = self.run_cfg, self.run_cfg["train"]
        torch.set_num_threads(tcfg["threads"])
        sets = run_shard_sets(cfg)
        manifest = read_json(self.shard_root / sets["train"] / "manifest.json")
        scale = manifest["autoencoder"]["scale_factor"]
        torch.manual_seed(cfg["seed"])
        model_cfg = dict(cfg["model"])
        arch = model_cfg.pop("arch")
        model = build_model(arch, **model_cfg, **data_shape(manifest, cfg["resolution"]))
        optimizer = make_optimizer(model, tcfg["optimizer"])
        ema = Ema(model, tcfg["ema"]["decay"])
        generator = torch.Generator().manual_seed(cfg["seed"] + 1)
        streams = {role: ShardStream(self.shard_root / name, tcfg["batch_size"], seed=cfg["seed"] + 10 * i)
                   for i, (role, name) in enumerate(sets.items())}
        uncond, _ = load_uncond(self.shard_root / sets["train"])
        uncond = uncond[0]  # (L0, D)
        live = {"step": 0, "model": model, "optimizer": optimizer, "ema": ema, "nonfinite": 0, "log": [],
                "updating": False, "gen_snapshot": generator.get_state(),
                "stream_snapshot": {r: s.state_dict() for r, s in streams.items()}}
        if self._state_path().exists():
            state = torch.load(self._state_path(), weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            ema.load_state_dict(state["ema"])
            generator.set_state(state["generator"])
            for role, s in streams.items():
                s.load_state_dict(state["streams"][role])
            live.update(step=state["step"], nonfinite=state["nonfinite"], log=state["log"],
                        gen_snapshot=state["generator"], stream_snapshot=state["streams"])
            print(f"[{cfg['name']}] resumed from step {state['step']}", flush=True)
        self._live = live
        total = tcfg["steps"]
        stop = min(total, self.until) if self.until else total
        self_cond = tcfg["self_cond_rate"] if getattr(model, "arch", "") == "cad_i" else 0.0
        print(f"[{cfg['name']}] {arch}: {count_parameters(model):,} parameters, {total} steps, "
              f"batch {tcfg['batch_size']}, data {sets}", flush=True)
        its = {r: iter(s) for r, s in streams.items()}
        t_last, wall0 = time.perf_counter(), time.perf_counter()
        model.train()
        bar = tqdm(total=stop, initial=live["step"], desc=cfg["name"], mininterval=2.0)
        while live["step"] < stop:
            step = live["step"]
            live["gen_snapshot"] = generator.get_state()
            live["stream_snapshot"] = {r: s.state_dict() for r, s in streams.items()}
            raw = {r: next(it) for r, it in its.items()}
            base = to_batch(raw["train"], generator, scale)
            sources = [AugmentSource(to_batch(raw[r], generator, scale), tcfg[r]["tau"], tcfg[r]["p"])
                       for r in ("cutmix", "crop") if r in raw]
            lr = lr_at(step, total, tcfg["optimizer"]["lr"], tcfg["optimizer"]["warmup"],
                       tcfg["optimizer"]["cosine_fraction"])
            for g in optimizer.param_groups:
                g["lr"] = lr
            loss, _ = diffusion_loss(model, base, sources, uncond, generator, tcfg["cfg_dropout"], self_cond)
            optimizer.zero_grad(set_to_none=True)
            if not torch.isfinite(loss):
                live["nonfinite"] += 1
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
                    p.grad.nan_to_num_(nan=0.0, posinf=0.0, neginf=0.0)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"]).item()
            live["updating"] = True
            optimizer.step()
            ema.update(model)
            live["step"] += 1
            live["updating"] = False
            bar.update(1)
            done = live["step"]
            if done % tcfg["log_every"] == 0 or done == stop:
                now = time.perf_counter()
                n_steps = tcfg["log_every"] if done % tcfg["log_every"] == 0 else done % tcfg["log_every"]
                row = {"step": done, "loss": round(loss.item(), 6), "lr": lr, "grad_norm": round(grad_norm, 4),
                       "images_per_s": round(n_steps * tcfg["batch_size"] / max(now - t_last, 1e-9), 2),
                       "wall_s": round(now - wall0, 2)}
                live["log"].append(row)
                bar.set_postfix(loss=f"{row['loss']:.4f}", ips=row["images_per_s"])
                t_last = now
            if done in tcfg["eval_checkpoints"]:
                save_pretrained(self._ema_model(model, ema), self.out_dir / "checkpoints" / f"step-{done:07d}")
            if done % tcfg["checkpoint_every"] == 0 or done == stop:
                live["gen_snapshot"] = generator.get_state()
                live["stream_snapshot"] = {r: s.state_dict() for r, s in streams.items()}
                self._save_state()
                self._write_log(live["log"])
        bar.close()
        if live["step"] < total:
            return {"finished": False, "step": live["step"]}
        save_pretrained(self._ema_model(model, ema), self.out_dir / "final")
        self._write_log(live["log"])
        return {"finished": True, "step": live["step"], "final_loss": live["log"][-1]["loss"] if live["log"] else math.nan,
                "parameters": count_parameters(model)}

    @staticmethod
    def _ema_model(model: torch.nn.Module, ema: Ema) -> torch.nn.Module:
        m = copy.deepcopy(model)
        m.load_state_dict(ema.shadow)
        return m.eval()

    def _write_log(self, rows: list[dict]) -> None:
        with atomic_write(self.out_dir / "train.csv") as f:
            w = csv.DictWriter(f, fieldnames=LOG_FIELDS)
            w.writeheader()
            w.writerows(rows)

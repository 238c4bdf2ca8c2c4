"""One training loop for every stage: run directory, checkpoints, exact resume, DDP, logging.

Run directory layout (everything needed to understand and resume the run):
    config.json           resolved TrainConfig + model config + variant + seed + perceptual net used
    provenance.json       library versions, git hash, platform (metrics.utils.provenance)
    checkpoints/last.pt   latest state (model, D, optimisers, RNG states, sampler position, step)
    checkpoints/<stage>.pt  the state at the end of each stage
    model.pt              final generator weights + model config (what inference loads)
    logs/<stage>.csv      one row per logged step (plain CSV), tb/ TensorBoard events
    samples/<stage>_<step>.png  frame grids (columns: inputs, target, outputs)
    summary.json          per-stage wall time, it/s, last losses, rank checksums
All files are written atomically. A resumed run reproduces the uninterrupted one bit for bit on CPU
(same seed, same world size, num_workers=0): the batches are a pure function of (seed, epoch, index)
and all RNG states are restored. On CUDA, cuDNN/atomics make results equal only up to float
nondeterminism.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import torch
from torch import nn

from edtalk.model.ops import NoiseInjection
from edtalk.train import stages as S
from edtalk.train.config import ALL_GROUPS, StageConfig, TrainConfig
from edtalk.train.data import FramePool, PairDataset, ResumableDistributedSampler, epoch_length
from edtalk.train.losses import BatchShare, PerceptualLoss, d_logistic
from edtalk.train.model_init import build_models
from edtalk.train.runtime import CsvLog, init_distributed, rng_state, save_grid, seed_everything, set_rng_state
from metrics.errors import CheckpointMismatchError, InputError, UserError
from metrics.utils import (
    atomic_torch_save,
    atomic_write_json,
    provenance,
    safe_torch_load,
    sha256_file,
)

CKPT_FORMAT = "edtalk-bench/train-checkpoint@1"


class TrainingDiverged(UserError):
    """A loss became NaN/inf; the run stopped and kept its last good checkpoint."""


def stage_plan(cfg: TrainConfig) -> list[StageConfig]:
    """The stages to run: the configured ones, or one `joint` stage for the joint-training ablation."""
    if not cfg.joint_training:
        return list(cfg.stages)
    return [StageConfig("joint", sum(s.iterations for s in cfg.stages), max(s.batch_size for s in cfg.stages),
                        lr=cfg.stages[0].lr if cfg.stages else 0.002, trainable=ALL_GROUPS,
                        adam_beta1=cfg.stages[0].adam_beta1 if cfg.stages else 0.0,
                        lr_schedule=cfg.stages[0].lr_schedule if cfg.stages else "constant")]


def lr_factor(scfg: StageConfig, step: int) -> float:
    """Multiplier of the stage's base lr at `step` (0-based); a pure function of the step, so resume is exact."""
    if scfg.lr_schedule == "constant":
        return 1.0
    if scfg.lr_schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * step / max(1, scfg.iterations)))
    raise InputError(f"stage {scfg.name}: lr_schedule must be 'constant' or 'cosine', not {scfg.lr_schedule!r}")


def param_checksum(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- the generator step as a module
class _GeneratorStep(nn.Module):
    """Wraps the generator so DistributedDataParallel sees one forward per step (its gradient hooks
    need that); the discriminator is passed in, not owned, so DDP does not sync it here."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.stage: S.Stage | None = None

    def forward(self, batch, disc):
        return self.stage.generator_terms(self.model, disc, batch)


# ---------------------------------------------------------------- the trainer
class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir, pool: FramePool, device=None, progress: bool = True,
                 stop_after: int | None = None, build=None):
        self.cfg, self.run_dir, self.pool = cfg, Path(run_dir), pool
        self.dist, self.device = init_distributed(device)
        self.progress = progress and self.dist.main
        self.stop_after = stop_after  # testing hook: stop (as if killed) after this many global steps
        seed_everything(cfg.seed)
        # `build(cfg, size) -> (generator, discriminator, model_config)`; tests inject tiny models here.
        self.model, self.disc, self.model_cfg = (build or build_models)(cfg, pool.size)
        self.model.to(self.device)
        self.disc.to(self.device)
        for module in self.model.modules():
            if isinstance(module, NoiseInjection):
                # The sampler (DistributedSampler) gives rank r the rows r::world_size of each global batch.
                module.rank, module.world_size = self.dist.rank, self.dist.world_size
        self.perceptual = None
        if cfg.losses.perceptual and cfg.losses.perceptual_net != "none":
            self.perceptual = PerceptualLoss(cfg.losses.perceptual_net, cfg.losses.perceptual_scales,
                                             cfg.losses.perceptual_layer_weight, seed=cfg.seed,
                                             layers=cfg.losses.perceptual_layers).to(self.device)
        self.plan = stage_plan(cfg)
        self.state = {"stage_index": 0, "step": 0, "global_step": 0, "epoch": 0, "position": 0,
                      "completed": [], "stage_time": {}, "last_losses": {}}
        self._resume = None

    # --- run directory
    @property
    def ckpt_dir(self) -> Path:
        return self.run_dir / "checkpoints"

    def resolved_config(self) -> dict:
        return {"train": self.cfg.to_dict(), "model": dataclasses.asdict(self.model_cfg),
                "variant": self.cfg.variant, "seed": self.cfg.seed,
                "stages": [dataclasses.asdict(s) for s in self.plan],
                "perceptual_net": self.perceptual.name if self.perceptual is not None else "none",
                "world_size": self.dist.world_size, "frame_size": self.pool.size,
                "data": {"identities": self.pool.identities, "clips": len(self.pool.clips)}}

    def adopt_stages(self, checkpoint: Path, stages: tuple[str, ...]) -> dict:
        """Start this run from another run's end-of-stage checkpoint instead of training `stages` again.

        For variants whose switches only act in later stages (e.g. no-eem: EEM is used from stage 2
        on), stages 0-1 compute exactly what the parent's did, so the parent's weights are taken as they
        are: every tensor of the groups those stages train must be in the checkpoint with the same
        shape; the ones trained later (EEM, expression head/bank) keep this run's own initialisation.
        Returns the record kept in config.json. The comparison with the parent is then paired: both
        runs share stages 0-1 exactly and differ only in what the variant switches."""
        from edtalk.train.config import STAGE_TRAINABLE

        ck = safe_torch_load(checkpoint, "an edtalk-bench training checkpoint")
        if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
            raise CheckpointMismatchError(f"{checkpoint} is not an edtalk-bench training checkpoint")
        done = list(ck["state"].get("completed", []))
        if list(stages) != done[:len(stages)] or list(stages) != [s.name for s in self.plan[:len(stages)]]:
            raise CheckpointMismatchError(f"{checkpoint} completed stages {done}; this run needs {list(stages)} "
                                          f"as its first stages ({[s.name for s in self.plan]})")
        groups = S.parameter_groups(self.model)
        shared = {g for st in stages for g in STAGE_TRAINABLE[st]}
        later = {id(p) for g, ps in groups.items() if g not in shared for p in ps}
        own = dict(self.model.state_dict(keep_vars=True))
        mine = self.model.state_dict()
        theirs = ck["model"]
        taken, kept = [], []
        for key, value in mine.items():
            if key in theirs and tuple(theirs[key].shape) == tuple(value.shape):
                mine[key] = theirs[key]
                taken.append(key)
            elif id(own[key]) in later:
                kept.append(key)
            else:
                raise CheckpointMismatchError(f"{checkpoint} lacks {key!r} (or has another shape), which stages "
                                              f"{list(stages)} train; it cannot stand in for them in this run")
        self.model.load_state_dict(mine)
        self.disc.load_state_dict(ck["disc"])
        parent = ck["state"]
        self.state.update({"completed": list(stages), "stage_index": len(stages),
                           "global_step": int(parent.get("global_step", 0)),
                           "stage_time": {st: {**parent.get("stage_time", {}).get(st, {}),
                                               "shared_from": str(checkpoint)} for st in stages}})
        return {"from": str(checkpoint), "sha256": sha256_file(checkpoint), "stages": list(stages),
                "tensors_taken": len(taken), "tensors_own_init": kept}

    def prepare_run_dir(self, resume: bool, adopt: tuple[Path, tuple[str, ...]] | None = None) -> None:
        cfg_path = self.run_dir / "config.json"
        last = self.ckpt_dir / "last.pt"
        if last.exists() and not resume:
            raise UserError(f"{self.run_dir} already holds a training run; pass --resume to continue it "
                            "or choose a new --out")
        resolved = self.resolved_config()
        if last.exists():
            old = json.loads(cfg_path.read_text()) if cfg_path.exists() else None
            if old is not None:
                for key in ("train", "model", "stages", "world_size", "perceptual_net"):
                    now = json.loads(json.dumps(resolved[key], default=str))
                    if json.dumps(old.get(key), sort_keys=True) != json.dumps(now, sort_keys=True):
                        raise CheckpointMismatchError(
                            f"{self.run_dir}: resuming with a different {key!r} than the run was started with; "
                            "use the same preset/variant/seed/world size or a new --out")
            self.load_checkpoint(last)
        else:
            if adopt is not None:
                resolved["shared_stages"] = self.adopt_stages(*adopt)
            if self.dist.main:
                atomic_write_json(cfg_path, resolved)
                atomic_write_json(self.run_dir / "provenance.json", provenance(run="train", variant=self.cfg.variant))
                if adopt is not None:
                    self.save(None, None)  # a kill from here on resumes after the adopted stages
        if self.dist.enabled:
            torch.distributed.barrier()

    # --- checkpoints
    def checkpoint(self, opt_g=None, opt_d=None) -> dict:
        return {"format": CKPT_FORMAT, "config": self.cfg.to_dict(), "model_config": dataclasses.asdict(self.model_cfg),
                "state": dict(self.state), "model": self.model.state_dict(), "disc": self.disc.state_dict(),
                "opt_g": opt_g.state_dict() if opt_g else None, "opt_d": opt_d.state_dict() if opt_d else None,
                "rng": rng_state(), "world_size": self.dist.world_size}

    def save(self, opt_g, opt_d, name: str = "last.pt") -> None:
        if self.dist.main:
            atomic_torch_save(self.checkpoint(opt_g, opt_d), self.ckpt_dir / name)

    def load_checkpoint(self, path: Path) -> None:
        # weights_only: a checkpoint is data, never code; a truncated file or one that needs code to
        # unpickle is a one-line CheckpointMismatchError naming it.
        ck = safe_torch_load(path, "an edtalk-bench training checkpoint")
        if not isinstance(ck, dict) or ck.get("format") != CKPT_FORMAT:
            raise CheckpointMismatchError(f"{path} is not an edtalk-bench training checkpoint")
        try:
            self.model.load_state_dict(ck["model"])
            self.disc.load_state_dict(ck["disc"])
        except RuntimeError as exc:
            raise CheckpointMismatchError(f"{path} does not match this model configuration: "
                                          f"{str(exc).splitlines()[0]}") from exc
        self.state = dict(ck["state"])
        # Optimiser states are None at a stage boundary (the next stage starts fresh optimisers).
        self._resume = (ck["opt_g"], ck["opt_d"], ck["rng"])

    # --- one stage
    def _optimisers(self, params_g, lr, beta1: float = 0.0):
        # The released code's Adam: base lr scaled by the StyleGAN reg ratios (paper.md §2.1).
        opt_g = torch.optim.Adam(params_g, lr=lr * 4 / 5, betas=(beta1, 0.99 ** (4 / 5)))
        opt_d = torch.optim.Adam(self.disc.parameters(), lr=lr * 16 / 17, betas=(0.0, 0.99 ** (16 / 17)))
        return opt_g, opt_d

    def _loader(self, stage: S.Stage, scfg: StageConfig):
        ds = PairDataset(self.pool, stage.kind, epoch_length(scfg.batch_size, self.dist.world_size), self.cfg.seed)
        sampler = ResumableDistributedSampler(ds, self.dist.world_size, self.dist.rank, self.cfg.seed)
        return ds, sampler

    def _batches(self, ds, sampler, batch_size):
        from torch.utils.data import DataLoader

        while True:
            ds.set_epoch(self.state["epoch"])
            sampler.set_position(self.state["epoch"], self.state["position"] * batch_size)
            # Its own generator: creating a DataLoader iterator must not draw from the global torch RNG,
            # or a resumed run (which creates one more iterator) would diverge from an uninterrupted one.
            loader = DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=self.cfg.num_workers,
                                drop_last=True, generator=torch.Generator().manual_seed(self.cfg.seed))
            for batch in loader:
                self.state["position"] += 1
                yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            self.state["epoch"] += 1
            self.state["position"] = 0

    def run_stage(self, idx: int, scfg: StageConfig) -> None:
        from tqdm import tqdm

        stage = S.build_stage(scfg, self.cfg, self.perceptual, BatchShare(self.dist.world_size))
        params_g = S.set_trainable(self.model, stage.trainable)
        if not params_g:
            # e.g. stage 2 with the expression bank, head and EEM all switched off: nothing to learn.
            self.state["completed"].append(scfg.name)
            self.state["stage_time"][scfg.name] = {"seconds": 0.0, "iterations": 0,
                                                   "skipped": "no trainable parameters"}
            return
        opt_g, opt_d = self._optimisers(params_g, scfg.lr, scfg.adam_beta1)
        base_lrs = opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]
        if self._resume is not None:
            if self._resume[0] is not None:
                opt_g.load_state_dict(self._resume[0])
                opt_d.load_state_dict(self._resume[1])
            set_rng_state(self._resume[2])
            self._resume = None
        gnet, dnet = self._networks(stage)
        ds, sampler = self._loader(stage, scfg)
        batches = self._batches(ds, sampler, scfg.batch_size)
        log, tb = self._open_logs(scfg)
        timing = self.state["stage_time"].setdefault(scfg.name, {"seconds": 0.0, "iterations": 0})
        bar = tqdm(total=scfg.iterations, initial=self.state["step"], desc=f"stage {idx} {scfg.name}",
                   disable=not self.progress, dynamic_ncols=True)
        self.model.train()
        self.disc.train()
        use_d = stage.use_gan and self.cfg.losses.gan > 0
        try:
            while self.state["step"] < scfg.iterations:
                if self.stop_after is not None and self.state["global_step"] >= self.stop_after:
                    raise KeyboardInterrupt  # simulated kill (tests)
                t0 = time.perf_counter()
                values, grid = self._step(next(batches), gnet, dnet, (opt_g, opt_d), base_lrs, scfg, use_d)
                values = self._global_values(values)
                self.state["step"] += 1
                self.state["global_step"] += 1
                self.state["last_losses"] = values
                timing["seconds"] += time.perf_counter() - t0
                timing["iterations"] += 1
                bar.update(1)
                self._record_step(scfg, values, grid, bar, log, tb, opt_g, opt_d)
            self.state["completed"].append(scfg.name)
            self.state["stage_index"] = idx + 1
            self.state["step"] = self.state["epoch"] = self.state["position"] = 0
            self.save(None, None, f"{scfg.name}.pt")
            self.save(None, None)
        finally:
            bar.close()
            if tb is not None:
                tb.close()

    def _networks(self, stage: S.Stage):
        """(generator step, discriminator), wrapped in DDP under torchrun."""
        gstep = _GeneratorStep(self.model)
        gstep.stage = stage
        if not self.dist.enabled:
            return gstep, self.disc
        from torch.nn.parallel import DistributedDataParallel as DDP

        dev_ids = [self.device.index] if self.device.type == "cuda" else None
        return DDP(gstep, device_ids=dev_ids, find_unused_parameters=True), DDP(self.disc, device_ids=dev_ids)

    def _open_logs(self, scfg: StageConfig):
        """(CSV log, TensorBoard writer) of the stage on the main rank; (None, None) elsewhere."""
        if not self.dist.main:
            return None, None
        logs = self.run_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = CsvLog(logs / f"{scfg.name}.csv", keep_until=self.state["step"])
        from torch.utils.tensorboard import SummaryWriter

        return log, SummaryWriter(str(self.run_dir / "tb"), purge_step=self.state["global_step"])

    def _step(self, batch, gnet, dnet, opts, base_lrs, scfg: StageConfig, use_d: bool):
        """One generator step, then one discriminator step when the stage uses D; (loss values, sample grid)."""
        opt_g, opt_d = opts
        self.disc.requires_grad_(False)
        terms, real, fake, grid = gnet(batch, self.disc if use_d else None)
        total = sum(terms.values())
        self._check_finite(scfg, terms, total)
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        scale = lr_factor(scfg, self.state["step"])
        for opt, base in zip(opts, base_lrs, strict=True):
            for group in opt.param_groups:
                group["lr"] = base * scale
        opt_g.step()
        values = {k: float(v.detach()) for k, v in terms.items()}
        values["total"] = float(total.detach())
        if use_d:  # non-saturating logistic, on real vs the stage's fakes
            self.disc.requires_grad_(True)
            n = real.shape[0]
            logits = dnet(torch.cat([real, fake.detach()]))
            d_loss = d_logistic(logits[:n], logits[n:])
            self._check_finite(scfg, {"d_loss": d_loss}, d_loss)
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            values["d_loss"] = float(d_loss.detach())
        return values, grid

    def _global_values(self, values: dict[str, float]) -> dict[str, float]:
        """The loss values of the global batch: under DDP the mean over the ranks of their values (each term is
        a rank's share of the global term, see losses.BatchShare), i.e. what one process with the global batch
        logs."""
        if not self.dist.enabled:
            return values
        stacked = torch.tensor(list(values.values()), dtype=torch.float64, device=self.device)
        torch.distributed.all_reduce(stacked)
        return dict(zip(values, (stacked / self.dist.world_size).tolist(), strict=True))

    def _record_step(self, scfg: StageConfig, values, grid, bar, log, tb, opt_g, opt_d) -> None:
        """Progress bar, logs, sample grids and the periodic checkpoint after a step."""
        step = self.state["step"]
        if self.progress:
            shown = ("total", "rec_l1", "rec_mouth", "d_loss", "cross_l1")
            bar.set_postfix({k: f"{v:.3g}" for k, v in values.items() if k in shown})
        if self.dist.main and (step % self.cfg.log_every == 0 or step == scfg.iterations):
            log.write(step, values)
            for k, v in values.items():
                tb.add_scalar(f"{scfg.name}/{k}", v, self.state["global_step"])
        if self.dist.main and (step % self.cfg.sample_every == 0 or step == scfg.iterations):
            save_grid(self.run_dir / "samples" / f"{scfg.name}_{step:06d}.png", grid)
        if step % self.cfg.checkpoint_every == 0 and step < scfg.iterations:
            self.save(opt_g, opt_d)

    def _check_finite(self, scfg, terms, total):
        bad = not bool(torch.isfinite(total.detach()))
        if self.dist.enabled:  # every rank must stop together
            flag = torch.tensor([float(bad)], device=self.device)
            torch.distributed.all_reduce(flag)
            bad = bool(flag.item() > 0)
        if bad:
            shown = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
            last = self.ckpt_dir / "last.pt"
            keep = f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"
            raise TrainingDiverged(f"stage {scfg.name} step {self.state['step'] + 1}: non-finite loss ({shown}); "
                                   f"stopped; {keep}. Lower the learning rate or check the data, then --resume")

    def plan_names(self) -> list[str]:
        return [s.name for s in self.plan]

    # --- all stages
    def fit(self, only: set[str] | None = None) -> Path:
        """Train the planned stages in order (only those in `only`, if given), skipping finished ones."""
        for idx, scfg in enumerate(self.plan):
            if scfg.name in self.state["completed"]:
                continue
            if only is not None and scfg.name not in only:
                later = [s.name for s in self.plan[idx + 1:] if s.name in only]
                if later:
                    raise UserError(f"stage {later[0]!r} needs stage {scfg.name!r} ({idx}) trained first in "
                                    f"{self.run_dir}; add it to --stage or use --stage all")
                continue
            self.run_stage(idx, scfg)
        summary = {"stages": self.state["stage_time"], "last_losses": self.state["last_losses"],
                   "global_step": self.state["global_step"], "checksum": param_checksum(self.model)}
        for t in summary["stages"].values():
            if t.get("iterations"):
                t["iterations_per_second"] = t["iterations"] / max(t["seconds"], 1e-9)
        if self.dist.enabled:
            sums = [None] * self.dist.world_size
            torch.distributed.all_gather_object(sums, summary["checksum"])
            summary["rank_checksums"] = sums
        if self.dist.main:
            atomic_torch_save({"format": "edtalk-bench/model@1", "model_config": dataclasses.asdict(self.model_cfg),
                               "model": self.model.state_dict(), "variant": self.cfg.variant},
                              self.run_dir / "model.pt")
            atomic_write_json(self.run_dir / "summary.json", summary)
        if self.dist.enabled:
            torch.distributed.barrier()
        return self.run_dir

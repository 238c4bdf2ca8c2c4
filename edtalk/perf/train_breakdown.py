"""Where a training step's time goes: per stage, milliseconds per step of each component.

    python -m edtalk.perf.train_breakdown --preset smoke --iters 6 --threads 2
    python -m edtalk.perf.train_breakdown --preset smoke --lever channels_last   # a lever beside the baseline

Runs the real `Trainer` (the same `_step`, losses and optimisers as `edtalk train`) on an in-memory
synthetic world at the preset's frame size, and times each component with timers attached from the
outside (forward hooks, wrapped methods), so the measured code is the training code itself:

- data: drawing and collating the batch (`PairDataset`, mouth swaps) and moving it to the device;
- encoder, navigation (heads, bases with their QR, composing the motion), decoder styled convs and
  to-RGB, flow (to-flow and the warp), EEM; discriminator (stages with a GAN);
- loss terms: L1, mouth-region L1, perceptual (VGG trunk and its image pyramid);
- backward (every `.backward()`), optimiser step (Adam), other (zero_grad, lr, logging, checks).
Times are exclusive (a component's own time, its children's removed), so the column adds up to the
measured step. The first `--warmup` steps of each stage are left out (allocator, oneDNN kernel choice).

`--lever` measures a change the issue lists beside the unchanged step, on the same seed and batches:
`channels_last` (model, perceptual trunk and batches in NHWC), `compile` (`torch.compile` of the
generator step; its compile time falls in the warm-up steps). Each lever reports its speed-up and the
largest difference of its loss values from the baseline's, so a lever that changes the numbers is taken into
training only where its gain is worth that drift, stated: the blur's depthwise convolution, measured here as a
lever (1.40x / 1.32x per stage-0 / stage-1 step, losses 5e-4 apart after 12 steps), is now the training path.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import tempfile
import time
from collections import defaultdict

COMPONENTS = ("data", "encoder", "navigation", "decoder convs + to-RGB", "flow (to-flow + warp)", "EEM",
              "discriminator", "loss: L1", "loss: mouth L1", "loss: perceptual", "backward", "optimizer step",
              "other")


class ExclusiveTimer:
    """Nested timers: `enter(label)` / `exit()`; each label accumulates its own time, children excluded."""

    def __init__(self):
        self.stack: list[list] = []  # [label, start, children seconds]
        self.steps: list[dict[str, float]] = []

    def new_step(self) -> None:
        self.steps.append(defaultdict(float))

    def enter(self, label: str) -> None:
        self.stack.append([label, time.perf_counter(), 0.0])

    def exit(self) -> None:
        label, start, children = self.stack.pop()
        elapsed = time.perf_counter() - start
        if self.steps:
            self.steps[-1][label] += elapsed - children
        if self.stack:
            self.stack[-1][2] += elapsed

    @contextlib.contextmanager
    def range(self, label: str):
        self.enter(label)
        try:
            yield
        finally:
            self.exit()

    def wrap(self, label: str, fn):
        def timed(*args, **kwargs):
            with self.range(label):
                return fn(*args, **kwargs)
        return timed

    def hook_module(self, module, label: str) -> list:
        return [module.register_forward_pre_hook(lambda *_: self.enter(label)),
                module.register_forward_hook(lambda *_: self.exit())]


@contextlib.contextmanager
def instrumented(trainer, timer: ExclusiveTimer):
    """Timers on the trainer's model, losses, backward, optimiser and batches; removed on exit."""
    import torch
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    from edtalk.train import losses, stages

    model, handles, patched = trainer.model, [], []

    def patch(owner, name, value):
        patched.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    handles += timer.hook_module(model.enc, "encoder")
    dec = model.dec
    for m in dec.to_flows:
        handles += timer.hook_module(m, "flow (to-flow + warp)")
    for m in dec.fineadainresblock or []:
        handles += timer.hook_module(m, "EEM")
    handles += timer.hook_module(dec, "decoder convs + to-RGB")
    handles += timer.hook_module(trainer.disc, "discriminator")
    if trainer.perceptual is not None:
        handles += timer.hook_module(trainer.perceptual, "loss: perceptual")
    for name in ("coefficients", "motion", "directions"):
        if hasattr(model, name):
            patch(model, name, timer.wrap("navigation", getattr(model, name)))
    patch(stages.L, "l1", timer.wrap("loss: L1", losses.l1))
    patch(stages.L, "masked_l1", timer.wrap("loss: mouth L1", losses.masked_l1))
    patch(torch.Tensor, "backward", timer.wrap("backward", torch.Tensor.backward))
    handles.append(register_optimizer_step_pre_hook(lambda *_: timer.enter("optimizer step")))
    handles.append(register_optimizer_step_post_hook(lambda *_: timer.exit()))

    batches = trainer._batches

    def timed_batches(*args):
        source = batches(*args)
        while True:
            timer.new_step()
            with timer.range("data"):
                batch = next(source)
            yield batch

    patch(trainer, "_batches", timed_batches)
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for owner, name, old in reversed(patched):
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)


_MISSING = object()


def _apply_lever(trainer, lever: str | None) -> dict:
    """Change the trainer as the lever says; returns what was done (compile time, ...)."""
    import torch

    if lever in (None, "none"):
        return {}
    if lever == "channels_last":
        # Module.to(memory_format=) refuses the 5-D weights of the modulated convs: convert the 4-D ones.
        for module in (trainer.model, trainer.perceptual):
            for t in [*module.parameters(), *module.buffers()] if module is not None else []:
                if t.dim() == 4:
                    t.data = t.data.contiguous(memory_format=torch.channels_last)
        batches = trainer._batches

        def nhwc(*args):
            for b in batches(*args):
                yield {k: v.contiguous(memory_format=torch.channels_last) if v.dim() == 4 else v for k, v in b.items()}

        trainer._batches = nhwc
        return {}
    if lever == "compile":
        networks = trainer._networks

        def compiled(stage):
            gnet, dnet = networks(stage)
            return torch.compile(gnet, dynamic=False), dnet

        trainer._networks = compiled
        return {"note": "compile time is inside the warm-up steps"}
    raise SystemExit(f"unknown --lever {lever!r}; choose channels_last or compile")


def measure_stage(cfg, scfg, pool, iters: int, warmup: int, device, lever: str | None, instrument: bool) -> dict:
    """Run `warmup + iters` steps of one stage; per-step component times (instrumented) and losses."""
    from edtalk.train.engine import Trainer

    one = dataclasses.replace(cfg, stages=[dataclasses.replace(scfg, iterations=warmup + iters)],
                              joint_training=False, log_every=10 ** 9, checkpoint_every=10 ** 9, sample_every=10 ** 9)
    timer = ExclusiveTimer()
    losses: list[dict] = []
    step_seconds: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        tr = Trainer(one, f"{tmp}/run", pool, device=device, progress=False)
        tr.prepare_run_dir(False)
        info = _apply_lever(tr, lever)
        step = tr._step

        def recorded_step(*args, **kwargs):
            values, grid = step(*args, **kwargs)
            losses.append(values)
            return values, grid

        tr._step = recorded_step
        record = tr._record_step

        def clocked_record(*args, **kwargs):
            record(*args, **kwargs)
            step_seconds.append(time.perf_counter())

        tr._record_step = clocked_record
        start = time.perf_counter()
        with instrumented(tr, timer) if instrument else contextlib.nullcontext():
            tr.fit()
    ends = [start, *step_seconds]
    per_step = [b - a for a, b in zip(ends, ends[1:], strict=False)][warmup:]
    return {"stage": scfg.name, "batch_size": scfg.batch_size, "step_seconds": per_step,
            "components": timer.steps[warmup:], "losses": losses, **info}


def _table(row: dict) -> list[str]:
    steps, comps = row["step_seconds"], row["components"]
    mean_step = sum(steps) / len(steps)
    own = {c: sum(s.get(c, 0.0) for s in comps) / len(comps) for c in COMPONENTS if c != "other"}
    own["other"] = max(0.0, mean_step - sum(own.values()))
    lines = [f"stage {row['stage']} (batch {row['batch_size']}): {1000 * mean_step:.0f} ms/step over "
             f"{len(steps)} steps", f"  {'component':<26}{'ms/step':>10}{'share':>8}"]
    for c in COMPONENTS:
        lines.append(f"  {c:<26}{1000 * own[c]:>10.1f}{100 * own[c] / mean_step:>7.1f}%")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="smoke")
    ap.add_argument("--variant", default="full")
    ap.add_argument("--iters", type=int, default=6, help="timed steps per stage")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per stage first")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--stages", default=None, help="comma-separated stage names (default: every stage)")
    ap.add_argument("--lever", default=None, choices=("channels_last", "compile"),
                    help="instead of the table: this lever's step time beside the unchanged step's (interleaved)")
    ap.add_argument("--repeats", type=int, default=1, help="baseline/lever pairs (interleaved) per stage")
    a = ap.parse_args(argv)
    import torch

    from ablations.variants import resolve_config
    from edtalk.train.data import FramePool
    from edtalk.train.engine import stage_plan

    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = resolve_config(a.preset, a.variant)
    pool = FramePool.generate(4, 2, 8, cfg.model.size, seed=0, test_identities=0)
    wanted = set(a.stages.split(",")) if a.stages else None
    for scfg in stage_plan(cfg):
        if wanted is not None and scfg.name not in wanted:
            continue
        if a.lever:  # speed of the plain and the changed step, without timers
            _compare_lever(cfg, scfg, pool, a)
            continue
        print("\n".join(_table(measure_stage(cfg, scfg, pool, a.iters, a.warmup, a.device, None, instrument=True))),
              flush=True)
    return 0


def _compare_lever(cfg, scfg, pool, a) -> None:
    """Interleaved uninstrumented runs (plain, lever, plain, lever, ...): mean step time of each and loss drift."""
    plain, lever, drift = [], [], 0.0
    for _ in range(a.repeats):
        p = measure_stage(cfg, scfg, pool, a.iters, a.warmup, a.device, None, instrument=False)
        q = measure_stage(cfg, scfg, pool, a.iters, a.warmup, a.device, a.lever, instrument=False)
        plain += p["step_seconds"]
        lever += q["step_seconds"]
        drift = max([drift] + [abs(x[k] - y[k]) for x, y in zip(p["losses"], q["losses"], strict=True) for k in x])
    mp, ml = sum(plain) / len(plain), sum(lever) / len(lever)
    print(json.dumps({"stage": scfg.name, "lever": a.lever, "plain_ms_per_step": round(1000 * mp, 1),
                      "lever_ms_per_step": round(1000 * ml, 1), "speedup": round(mp / ml, 3),
                      "max_abs_loss_difference": drift, "identical_losses": drift == 0.0}), flush=True)


if __name__ == "__main__":
    sys.exit(main())

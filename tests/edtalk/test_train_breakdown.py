"""edtalk.perf.train_breakdown: per-component step times that add up, with the training code left as it was."""
from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only spin on a shared CPU
    yield
    torch.set_num_threads(before)


def test_components_add_up_and_instrumentation_is_removed():
    from ablations.variants import resolve_config
    from edtalk.perf import train_breakdown as tb
    from edtalk.train.data import FramePool
    from edtalk.train.engine import stage_plan

    cfg = resolve_config("smoke", "full")
    pool = FramePool.generate(2, 2, 4, 16, seed=0, test_identities=0)
    backward = torch.Tensor.backward
    for scfg in stage_plan(cfg)[:2]:  # autoencoder (perceptual, mouth L1) and mouth_pose (swaps, cross terms)
        row = tb.measure_stage(cfg, scfg, pool, iters=1, warmup=1, device="cpu", lever=None, instrument=True)
        assert len(row["step_seconds"]) == len(row["components"]) == 1
        for step, parts in zip(row["step_seconds"], row["components"], strict=True):
            for name in ("data", "encoder", "navigation", "decoder convs + to-RGB", "flow (to-flow + warp)",
                         "loss: L1", "loss: mouth L1", "loss: perceptual", "backward", "optimizer step"):
                assert parts[name] > 0, name
            assert set(parts) <= set(tb.COMPONENTS)
            assert sum(parts.values()) <= step * 1.02  # exclusive times: no double counting
        table = "\n".join(tb._table(row))
        assert scfg.name in table and "backward" in table
    assert torch.Tensor.backward is backward
    # The same seed and batches with and without timers: identical losses.
    scfg = stage_plan(cfg)[0]
    plain = tb.measure_stage(cfg, scfg, pool, iters=2, warmup=0, device="cpu", lever=None, instrument=False)
    timed = tb.measure_stage(cfg, scfg, pool, iters=2, warmup=0, device="cpu", lever=None, instrument=True)
    assert plain["losses"] == timed["losses"]

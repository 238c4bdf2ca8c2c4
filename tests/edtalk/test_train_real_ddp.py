"""Two-process gloo training on real video (issue 18): torchrun-style ranks on the real-face mini MEAD give the
loss curve and weights of one process with the same global batch (stage 0 and stage 1, the EDTalk model)."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TRAIN = ("M003#neutral#level_1#001", "M003#angry#level_3#001", "M030#neutral#level_1#001", "M030#happy#level_2#002")
TEST = ("W009#sad#level_2#003",)
SIZE = 32
GLOBAL_BATCH = 8  # 4 per rank: the discriminator's minibatch-stddev groups (4) then hold the same samples
STEPS = 2

# One process of the run: the pools come from the cache the test prepared (a rank never decodes), every rank
# writes the loss values of each of its steps; only stages 0 and 1 train. Two terms are off because they are not
# means over samples, so under DDP (gradients averaged over ranks) they weigh differently from one process:
# L_fea is summed over the batch as the release sums it per GPU (two ranks: half the weight of one process
# with the global batch), and the smoke preset's mouth-box L1 (ours) divides by the box pixels of the whole
# local batch (0.2% off on the first step here).
# NOISE: the decoder's StyleGAN noise inputs are drawn from each process's RNG, per forward: one process draws
# 8 maps, two ranks 4 each (the same 4: the ranks share the seed), so the noise weights' gradients differ and
# Adam's first steps turn that into lr-sized weight differences; the noise is switched off in both runs.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [{root!r}]
    import torch
    torch.set_num_threads(1)
    from ablations.variants import resolve_config
    from edtalk.train.config import apply_overrides
    from edtalk.train.engine import Trainer
    from edtalk.model import ops
    from edtalk.train.real_data import load_real_pools

    ops.NoiseInjection.forward = lambda self, x: x  # see NOISE below

    def no_decoding():
        raise AssertionError("the cache should hold every clip")

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = resolve_config("smoke", "full", seed=3)
    cfg = apply_overrides(cfg, {{"stages": [dict(name=s.name, iterations={steps}, batch_size={batch} // world,
                                                 trainable=s.trainable) for s in cfg.stages],
                                 "checkpoint_every": 100, "log_every": 1, "sample_every": 100,
                                 "losses": {{"perceptual": 0.0, "mouth": 0.0, "feature": 0.0}}}})
    pool = load_real_pools({data!r}, "mead", {size}, {lists!r}, cache_dir={cache!r},
                           detector_factory=no_decoding)[0]
    steps = []

    class Recording(Trainer):
        def _record_step(self, scfg, values, *rest):
            steps.append({{"stage": scfg.name, **values}})
            return super()._record_step(scfg, values, *rest)

    out = sys.argv[1]
    tr = Recording(cfg, out, pool, progress=False)
    tr.prepare_run_dir(resume=False)
    tr.fit({{"autoencoder", "mouth_pose"}})
    with open(os.path.join(out, f"steps_rank{{os.environ.get('RANK', '0')}}.json"), "w") as f:
        json.dump(steps, f)
    if world > 1:
        torch.distributed.destroy_process_group()
    os._exit(0)  # gloo's threads may abort the interpreter's teardown
""")


@pytest.fixture(scope="module")
def mead(tmp_path_factory):
    from benchmarks.datasets.mini_mead import build_mini_mead, write_lists
    from edtalk.train.real_data import load_real_pools

    root = tmp_path_factory.mktemp("mini-mead-ddp")
    built = build_mini_mead(root / "MEAD", TRAIN + TEST, n_frames=8, size=128, lists_dir=root / "lists")
    write_lists(root / "lists", TEST, TRAIN)
    load_real_pools(built["root"], "mead", SIZE, built["lists"], cache_dir=root / "cache")  # prepared once
    return {**built, "cache": root / "cache"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_give_the_loss_curve_of_one_process_with_the_same_global_batch(mead, tmp_path):
    script = SCRIPT.format(root=str(ROOT), steps=STEPS, batch=GLOBAL_BATCH, data=str(mead["root"]), size=SIZE,
                           lists=str(mead["lists"]), cache=str(mead["cache"]))
    base = {**os.environ, "OMP_NUM_THREADS": "1", "EDTALK_DEVICE": "cpu"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        base.pop(key, None)
    port = _free_port()
    launches = [(tmp_path / "one", base)] + [
        (tmp_path / "two", {**base, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}) for r in range(2)]
    procs = [subprocess.Popen([sys.executable, "-c", script, str(out)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for out, env in launches]
    outs = [p.communicate(timeout=400)[0].decode()[-3000:] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs

    one = json.loads((tmp_path / "one" / "steps_rank0.json").read_text())
    ranks = [json.loads((tmp_path / "two" / f"steps_rank{r}.json").read_text()) for r in range(2)]
    assert [s["stage"] for s in one] == ["autoencoder"] * STEPS + ["mouth_pose"] * STEPS
    assert {"rec_l1", "gan_g", "d_loss"} <= set(one[0]) and {"cross_l1", "gan_g"} <= set(one[-1])
    for single, a, b in zip(one, *ranks, strict=True):
        assert single.keys() == a.keys() == b.keys()
        for term in single:
            if term == "stage":
                continue
            # Every term is a mean over its samples, and the ranks hold the two halves of the global batch.
            assert (a[term] + b[term]) / 2 == pytest.approx(single[term], rel=1e-5, abs=1e-7), (single["stage"], term)
        assert a["total"] != b["total"]  # the ranks saw different samples
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["rank_checksums"][0] == summary["rank_checksums"][1]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    weights = [torch.load(tmp_path / run / "checkpoints" / "last.pt", weights_only=False)["model"]
               for run in ("one", "two")]
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=1e-4, atol=1e-5, msg=key)

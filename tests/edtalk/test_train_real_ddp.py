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
from real_mead import build_mead

from metrics.utils import safe_torch_load

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]

SIZE = 32
GLOBAL_BATCH = 8  # 4 per rank: the discriminator's minibatch-stddev groups (4) then hold the same samples
STEPS = 2

# One process of the run: the pools come from the cache the test prepared (a rank never decodes), every rank
# writes the loss values of each of its steps, its own and the global ones it logs; only stages 0 and 1 train.
# Every loss term is on, the StyleGAN noise inputs too, including those that are not means over samples: L_fea
# (summed over the batch, as the release sums it per GPU), the mouth-box L1 (divided by the box pixels of the
# batch) and the noise (one map per sample, drawn from the RNG every rank seeds alike); losses.BatchShare and
# ops.NoiseInjection make the ranks together compute what one process with the global batch does.
SCRIPT = textwrap.dedent("""
    import json, os, sys
    sys.path[:0] = [{root!r}]
    import torch
    torch.set_num_threads(1)
    from ablations.variants import resolve_config
    from edtalk.train.config import apply_overrides
    from edtalk.train.engine import Trainer
    from edtalk.train.real_data import load_real_pools

    def no_decoding():
        raise AssertionError("the cache should hold every clip")

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfg = resolve_config("smoke", "full", seed=3)
    cfg = apply_overrides(cfg, {{"stages": [dict(name=s.name, iterations={steps}, batch_size={batch} // world,
                                                 trainable=s.trainable) for s in cfg.stages],
                                 "checkpoint_every": 100, "log_every": 1, "sample_every": 100}})
    assert cfg.losses.mouth and cfg.losses.feature and cfg.losses.perceptual and cfg.feature_loss
    pool = load_real_pools({data!r}, "mead", {size}, {lists!r}, cache_dir={cache!r},
                           detector_factory=no_decoding)[0]
    steps, own = [], []

    class Recording(Trainer):
        def _global_values(self, values):
            own.append(values)
            return super()._global_values(values)

        def _record_step(self, scfg, values, *rest):
            steps.append({{"stage": scfg.name, **values}})
            return super()._record_step(scfg, values, *rest)

    out = sys.argv[1]
    tr = Recording(cfg, out, pool, progress=False)
    tr.prepare_run_dir(resume=False)
    tr.fit({{"autoencoder", "mouth_pose"}})
    with open(os.path.join(out, f"steps_rank{{os.environ.get('RANK', '0')}}.json"), "w") as f:
        json.dump({{"logged": steps, "own": own}}, f)
    if world > 1:
        torch.distributed.destroy_process_group()
    os._exit(0)  # gloo's threads may abort the interpreter's teardown
""")


@pytest.fixture(scope="module")
def mead(tmp_path_factory):
    from edtalk.train.real_data import load_real_pools

    root = tmp_path_factory.mktemp("mini-mead-ddp")
    built = build_mead(root, n_frames=8, size=128)
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
    assert one["own"] == [{k: v for k, v in s.items() if k != "stage"} for s in one["logged"]]  # nothing to reduce
    one = one["logged"]
    assert [s["stage"] for s in one] == ["autoencoder"] * STEPS + ["mouth_pose"] * STEPS
    assert {"rec_l1", "rec_mouth", "rec_perceptual", "gan_g", "d_loss"} <= set(one[0])
    assert {"cross_l1", "cross_mouth", "fea_mouth", "fea_pose", "gan_g"} <= set(one[-1])
    for single, a, b, own_a, own_b in zip(one, ranks[0]["logged"], ranks[1]["logged"], ranks[0]["own"],
                                          ranks[1]["own"], strict=True):
        assert single.keys() == a.keys() == b.keys()
        assert a == b  # every rank logs the global batch's values
        for term in own_a:
            # Each rank's value is its share of the global term; their mean is one process's value.
            assert a[term] == pytest.approx(single[term], rel=1e-5, abs=1e-7), (single["stage"], term)
            assert (own_a[term] + own_b[term]) / 2 == pytest.approx(a[term], rel=1e-12)
        assert own_a["total"] != own_b["total"]  # the ranks saw different samples
    summary = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert summary["rank_checksums"][0] == summary["rank_checksums"][1]
    assert json.loads((tmp_path / "two" / "config.json").read_text())["world_size"] == 2
    weights = [safe_torch_load(tmp_path / run / "checkpoints" / "last.pt")["model"]
               for run in ("one", "two")]
    # Adam divides each gradient by its running scale, so where a gradient is near zero the float-rounding
    # difference of summing over one batch or over two ranks moves a weight by up to a few 1e-4 (with the blur's
    # depthwise convolution in training one of 1.2M elements moved 2.4e-4, the others stayed under 2e-4); a term
    # weighted or a noise map drawn differently moves many by up to the lr (1.6e-3).
    moved = 0
    for key, value in weights[0].items():
        torch.testing.assert_close(weights[1][key], value, rtol=0, atol=5e-4, msg=lambda m, key=key: f"{key}: {m}")
        moved += int(((weights[1][key] - value).abs() > 1e-5).sum())
    assert moved <= 30, moved

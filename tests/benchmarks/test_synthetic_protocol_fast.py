"""The fast scoring path gives the numbers the plain one does: encodings reused by content (EncodingMemo)
leave every generated frame, every score and the held-out check bit-identical."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from edtalk.train.evaluate import EncodingMemo, drive_frames


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors gain nothing from threads, and OpenMP threads on an oversubscribed CPU spin: one is fastest.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _visible_noise(model):
    # Trained noise weights are non-zero; at init they are 0 and would hide a change in the RNG stream.
    for m in model.modules():
        if type(m).__name__ == "NoiseInjection":
            m.weight.data.fill_(0.5)
    return model.eval()


def _no_memo(model):
    """The plain path: a memo that keeps nothing, so every driver and source is encoded each time."""
    return EncodingMemo(model, "cpu", max_coefficients=0, max_sources=0)


@pytest.fixture(scope="module")
def world_and_run(tmp_path_factory):
    from benchmarks.datasets.synthetic import SyntheticWorld
    from benchmarks.synthetic.writer import Preset, synthesize_world
    from edtalk.model import EDTalk
    from edtalk.presets import model_preset

    root = tmp_path_factory.mktemp("fastscore")
    preset = Preset(identities=5, test_identities=3, emotions=("angry", "happy", "neutral", "sad"), levels=(3,),
                    clips_per_level=1, n_frames=6, size=64)
    world = SyntheticWorld(synthesize_world(root / "world", preset, seed=2))
    cfg = model_preset("smoke")
    torch.manual_seed(0)
    model = _visible_noise(EDTalk(cfg))
    run = root / "run"
    run.mkdir()
    torch.save({"format": "edtalk-bench/model@1", "model_config": dataclasses.asdict(cfg),
                "model": model.state_dict(), "variant": "full"}, run / "model.pt")
    (run / "config.json").write_text(json.dumps({"seed": 0}))
    return world, run


def test_drive_frames_equal_with_and_without_reuse():
    from ablations.variants import resolve_config
    from edtalk.train.engine import build_models

    torch.manual_seed(0)
    model = _visible_noise(build_models(resolve_config("smoke", "full", 0), 16)[0])
    rng = np.random.default_rng(0)
    f, g = (rng.integers(0, 255, (21, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    shared = EncodingMemo(model, "cpu", max_sources=1)
    for args in [(f[0], f, f, f), (g[0], f, g, f), (g[0], f, g, g[:1].repeat(21, 0)), (f[0], g, g, f)]:
        plain = drive_frames(model, *args, "cpu", batch=8, memo=_no_memo(model))
        assert np.array_equal(plain, drive_frames(model, *args, "cpu", batch=8))
        assert np.array_equal(plain, drive_frames(model, *args, "cpu", batch=8, memo=shared))
    assert shared.hits >= 9 and len(shared._stores["source"][0]) == 1


def test_method_and_disentanglement_scores_equal_the_plain_path(world_and_run):
    from benchmarks.protocols.registry import get_protocol
    from benchmarks.protocols.synthetic import synthetic_cases
    from edtalk.method import TrainedModelMethod
    from metrics.disentanglement import evaluate_disentanglement

    world, run = world_and_run
    fast, plain = TrainedModelMethod(run, world), TrainedModelMethod(run, world)
    plain.memo = _no_memo(plain.model)
    for case in synthetic_cases(world, get_protocol("synthetic-smoke"))[:1]:
        assert np.array_equal(fast(case), plain(case))

    class PixelReaders:  # cheap deterministic readers: any change of a generated pixel changes a reading
        def mouth(self, x):
            return x[:, 36:52, 20:44].reshape(len(x), 3, -1).mean(-1).astype(np.float64)

        def pose(self, x):
            return x.reshape(len(x), 3, -1).mean(-1).astype(np.float64)

        def emotion(self, x):
            return x.reshape(len(x), 8, -1).mean((0, 2)).astype(np.float64)

        def identity(self, x):
            return x[:, ::8, ::8, 0].reshape(len(x), -1).astype(np.float64)

    runs = [evaluate_disentanglement(m.generate, world, PixelReaders(), n_tuples=2, seed=0, split="test",
                                     max_frames=4) for m in (fast, plain)]
    assert json.dumps(runs[0], sort_keys=True) == json.dumps(runs[1], sort_keys=True)
    assert fast.memo.hits > 0 and fast.memo.misses < plain.memo.misses


def test_held_out_check_equal_with_and_without_reuse(monkeypatch):
    from ablations.variants import resolve_config
    from edtalk.train import evaluate
    from edtalk.train.data import FramePool
    from edtalk.train.engine import build_models

    torch.manual_seed(0)
    model = _visible_noise(build_models(resolve_config("smoke", "full", 0), 16)[0])
    train, test = (FramePool.generate(2, 2, 6, 16, seed=0, test_identities=2) for _ in range(2))
    train = FramePool([c for c in train.clips if c.split == "train"])
    test = FramePool([c for c in test.clips if c.split == "test"])
    fast = evaluate.evaluate_run(model, train, test, device="cpu")
    real = evaluate.EncodingMemo
    monkeypatch.setattr(evaluate, "EncodingMemo", lambda m, d: real(m, d, max_coefficients=0, max_sources=0))
    plain = evaluate.evaluate_run(model, train, test, device="cpu")
    assert json.dumps(fast, sort_keys=True) == json.dumps(plain, sort_keys=True)


def test_mouth_map_is_fitted_once_per_world_and_refitted_when_it_changes(world_and_run):
    import os

    from benchmarks.protocols.feature_cache import FeatureCache
    from benchmarks.protocols.synthetic import LandmarkReaders

    world, _ = world_and_run
    fitted = LandmarkReaders(world, None, cache=False).w
    first = LandmarkReaders(world, None).w
    cache = FeatureCache(world.root / "features")
    assert cache.get(LandmarkReaders.cache_key(world)) is not None
    assert np.array_equal(first, fitted) and np.array_equal(LandmarkReaders(world, None).w, fitted)
    # A rewritten ground-truth file is another key: the map is fitted again, not read stale.
    gt = world.clips("train")[0].groundtruth
    st = gt.stat()
    os.utime(gt, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    key = LandmarkReaders.cache_key(world)
    assert cache.get(key) is None
    LandmarkReaders(world, None)
    assert np.array_equal(cache.get(key)["w"], fitted)


def test_held_out_check_takes_clips_round_robin_over_the_identities_with_each_source_first():
    from edtalk.train import evaluate
    from edtalk.train.data import FramePool
    from metrics.errors import InputError

    pool = FramePool.generate(0, 4, 3, 16, seed=0, test_identities=3)  # 3 held-out faces x 4 clips
    assert evaluate.held_out_subset(pool, None) is pool and evaluate.held_out_subset(pool, 12) is pool
    sub = evaluate.held_out_subset(pool, 7)
    per_face = {i: [c.name for c in sub.clips if c.identity == i] for i in pool.identities}
    assert sorted(len(v) for v in per_face.values()) == [2, 2, 3]
    # every face keeps its neutral clip: the source of its reconstruction check
    assert all(sub.clips[sub.neutral[i][0]].emotion == "neutral" for i in pool.identities)
    assert [c.name for c in sub.clips] == [c.name for c in pool.clips if c.name in {n for v in per_face.values()
                                                                                      for n in v}]
    with pytest.raises(InputError, match="fewer than the 3 held-out identities"):
        evaluate.held_out_subset(pool, 2)

"""The ground-truth side of a real-data evaluation is computed once and reused by the next method's evaluation.

On a one-clip MEAD-layout mini dataset with the real dlib models (PSNR/SSIM/M-LMD/F-LMD: no stand-in
weights to write): a second method scored with the cache crops and landmarks no GT frame and gives the
numbers it gives without the cache; a changed crop option (the mp4v round trip) or weight file is another
key; per-frame
outputs are computed only for the GT frames no earlier evaluation needed.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

pytest.importorskip("dlib")

from benchmarks.protocols.engine import Case  # noqa: E402
from benchmarks.protocols.real_data import GroundTruth  # noqa: E402
from benchmarks.protocols.real_gt import GroundTruthSide  # noqa: E402
from benchmarks.protocols.registry import get_protocol  # noqa: E402

CASE = "M003#angry#level_3#001"
METRICS = "psnr,ssim,m_lmd,f_lmd"


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from benchmarks.datasets.mini_mead import build_mini_mead
    from benchmarks.media import read_video, write_video

    base = tmp_path_factory.mktemp("gt_cache_mead")
    data = build_mini_mead(base / "root", [CASE], n_frames=8)
    gt_dir, copy_dir = base / "gen_gt", base / "gen_copy"
    gt_dir.mkdir()
    copy_dir.mkdir()
    shutil.copy(data["videos"][CASE], gt_dir / f"{CASE}.mp4")
    frames = read_video(data["videos"][CASE]).frames
    write_video(copy_dir / f"{CASE}.mp4", np.repeat(frames[:1], len(frames), 0), fps=25)  # a frozen first frame
    return {**data, "gt": gt_dir, "copy": copy_dir}


def _evaluate(mini, method: str, out, *cache):
    from edtalk.cli import main

    rc = main(["evaluate", "--protocol", "mead-edtalk", "--videos", str(mini[method]), "--data", str(mini["root"]),
               "--lists", str(mini["lists"]), "--out", str(out), "--metrics", METRICS, *cache])
    assert rc == 0
    return json.loads(out.read_text())


def _count_crops(monkeypatch) -> list:
    """Every aligned crop made, as the number of frames it was given (GT and generated alike)."""
    from benchmarks.protocols import real, real_gt

    calls = []
    original = real_gt.aligned_crops

    def counted(frames, *a, **k):
        calls.append(len(frames))
        return original(frames, *a, **k)

    monkeypatch.setattr(real_gt, "aligned_crops", counted)
    monkeypatch.setattr(real, "aligned_crops", counted)
    return calls


def test_second_method_reuses_the_ground_truth_side(mini, tmp_path, monkeypatch):
    calls = _count_crops(monkeypatch)
    # the default cache: gt-cache beside the output's folder, shared by methods evaluated side by side
    first = _evaluate(mini, "copy", tmp_path / "evals" / "copy" / "results.json")
    cache = tmp_path / "evals" / "gt-cache"
    assert len(calls) == 2 and first["ground_truth_cache"]["dir"] == str(cache.resolve())
    assert first["ground_truth_cache"]["misses"] == 2  # the GT crop and its landmarks
    calls.clear()
    cached = _evaluate(mini, "gt", tmp_path / "gt" / "results.json", "--gt-cache", str(cache))
    assert len(calls) == 1  # the generated video only: the GT was neither decoded nor cropped
    assert cached["ground_truth_cache"] == {"dir": str(cache.resolve()), "hits": 2, "misses": 0}
    calls.clear()
    plain = _evaluate(mini, "gt", tmp_path / "plain" / "results.json", "--no-gt-cache")
    assert len(calls) == 2 and plain["ground_truth_cache"] == {"dir": None}
    assert cached["per_sample"] == plain["per_sample"]
    assert cached["reference_aggregates"] == plain["reference_aggregates"]
    assert cached["metric_provenance"] == plain["metric_provenance"]


class _Evaluators:
    """What GroundTruthSide reads of RealEvaluators: `path(key)` and each file's sha256."""

    def __init__(self, sha: str):
        self.files = {"dlib-68": {"sha256": sha}, "hopenet": {"sha256": sha}}

    def path(self, key):
        return key


def test_per_frame_outputs_are_computed_once_per_frame_and_keyed_by_weights(mini, tmp_path):
    gt = {CASE: GroundTruth(mini["videos"][CASE], None)}
    computed = []

    def compute(idx):
        computed.append(list(idx))
        return np.stack([np.full(3, float(i)) for i in idx])

    def side(sha, roundtrip=False):
        return GroundTruthSide(get_protocol("mead-edtalk"), gt, _Evaluators(sha), data_root=mini["root"],
                               cache_dir=tmp_path / "cache", eat_roundtrip=roundtrip)

    clip = side("a" * 64).clip(Case(CASE))
    np.testing.assert_array_equal(clip.per_frame("hopenet", ("hopenet",), [0, 2, 2], compute)[:, 0], [0, 2, 2])
    # a method of another length pairs other GT frames: only frame 1 is new
    again = side("a" * 64).clip(Case(CASE)).per_frame("hopenet", ("hopenet",), [2, 1, 0], compute)
    np.testing.assert_array_equal(again[:, 0], [2, 1, 0])
    assert computed == [[0, 2], [1]]
    side("b" * 64).clip(Case(CASE)).per_frame("hopenet", ("hopenet",), [0], compute)  # other weights
    side("a" * 64, roundtrip=True).clip(Case(CASE)).per_frame("hopenet", ("hopenet",), [0], compute)
    assert computed[2:] == [[0], [0]]

"""The ground truth as a method: each test case's own real frames, scored like any method's output.

Its scores are each metric's ceiling under the protocol: what the evaluator nets read back from the real
clips (emotion accuracy, landmark and pose error, sync confidence of the true speech). A method whose
score sits at that ceiling cannot show a drop there (reports.claims flags such a metric as saturated).
PSNR of identical frames is infinite, so it is not scored (its cell stays empty); SSIM is 1 by definition.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from benchmarks.protocols import api
from benchmarks.protocols.engine import Case
from benchmarks.protocols.registry import get_protocol

__all__ = ["GROUND_TRUTH_NAME", "GroundTruthMethod", "score_ground_truth"]

GROUND_TRUTH_NAME = "ground truth (ceiling)"
UNBOUNDED = ("psnr",)  # infinite for a clip compared with itself


class GroundTruthMethod:
    """`case -> the case's real frames`, on a synthetic world (no `generate`: nothing to cross-drive)."""

    describe = {"kind": "ground-truth", "name": GROUND_TRUTH_NAME,
                "what": "the test clip's own frames: each metric's ceiling under its evaluators"}

    def __init__(self, world):
        self.world = world
        self._by_name = {c.name: c for c in world.clips(None)}

    def __call__(self, case: Case) -> np.ndarray:
        return np.asarray(self.world.frames(self._by_name[case.name]))


def score_ground_truth(protocol: str, out, *, data, device=None, progress: bool = True) -> dict:
    """Score the ground truth under `protocol` into `out` (results.json); resumes like any evaluation and
    returns the finished results without scoring again."""
    metrics = [m for m in get_protocol(protocol).metric_names if m not in UNBOUNDED]
    return api.evaluate_protocol(protocol, Path(out), method=GroundTruthMethod, data=data, metrics=metrics,
                                 device=device, progress=progress, disentanglement=False)

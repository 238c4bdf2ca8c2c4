"""Our trained model as a *method* a benchmark protocol can score, exactly as a baseline's videos are.

The protocols (benchmarks.protocols) never import edtalk: they take any `method(case) -> frames`.
This module hands them one built from a run directory of `edtalk train`, and `score_run` is what
`edtalk evaluate --run` and the sweep call.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from benchmarks.protocols import api as protocols
from benchmarks.protocols.engine import Case
from edtalk.train.evaluate import EncodingMemo, drive_frames
from edtalk.trained import load_trained_model
from metrics.errors import InputError


class TrainedModelMethod:
    """Self-reenactment with a trained run: source = the clip's first frame, every driver = the clip."""

    def __init__(self, run_dir, world, device=None):
        self.model, ck = load_trained_model(run_dir, device)
        if self.model.cfg.size != int(world.meta["size"]):
            raise InputError(f"model {run_dir} renders {self.model.cfg.size} px but the world is "
                             f"{world.meta['size']} px; evaluate it on a world of its size")
        self.world = world
        self.device = next(self.model.parameters()).device
        cfg_file = Path(run_dir) / "config.json"
        seed = json.loads(cfg_file.read_text()).get("seed") if cfg_file.is_file() else None
        self.describe = {"kind": "edtalk-run", "run_dir": str(Path(run_dir).resolve()), "seed": seed,
                         "variant": ck.get("variant"), "name": ck.get("variant") or Path(run_dir).name}
        self._by_name = {c.name: c for c in world.clips(None)}
        # Frames seen again (a driver reused across the disentanglement swaps, a source) are not re-encoded.
        self.memo = EncodingMemo(self.model, self.device)

    def __call__(self, case: Case) -> np.ndarray:
        frames = self.world.frames(self._by_name[case.name])
        return self.generate(frames[0], frames, frames, frames)

    def generate(self, source, mouth, pose, expression) -> np.ndarray:
        n = min(len(mouth), len(pose), len(expression))
        return drive_frames(self.model, source, mouth[:n], pose[:n], expression[:n], self.device, memo=self.memo)


def score_run(protocol: str, out, run_dir, *, device=None, **options) -> dict:
    """`benchmarks.protocols.api.evaluate_protocol` with the run's model as the method; `options` go
    through to it (data, metrics, progress, disentanglement, lists)."""
    return protocols.evaluate_protocol(
        protocol, out, method=lambda world: TrainedModelMethod(run_dir, world, device=device), device=device,
        **options)

"""Our trained model as a *method* a benchmark protocol can score, exactly as a baseline's videos are.

The protocols (benchmarks.protocols) never import edtalk: they take any `method(case) -> frames`.
This module hands them one built from a run directory of `edtalk train`, and `score_run` is what
`edtalk evaluate --run` and the sweep call, in either setting:

* `video` (EDTalk-V, `TrainedModelMethod`): source = the clip's first frame, mouth, pose and expression from the
  clip's own frames (self-reenactment); results.json, with the disentanglement study beside it.
* `audio` (EDTalk-A, `AudioDrivenMethod`, the paper's ablation setting): the same, except the mouth weights come
  from the run's audio-to-lip model (RUN/audio/audio2motion.pt) on the clip's speech, exactly as `edtalk generate
  --setting audio` computes them; results-audio.json, per-clip metrics only (the cross-driving swaps are
  video-driven and stay with results.json).
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

SETTING_RESULTS = {"video": "results.json", "audio": "results-audio.json"}  # a run directory's file per setting


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


class AudioDrivenMethod(TrainedModelMethod):
    """EDTalk-A self-reenactment: as TrainedModelMethod, with the mouth weights predicted from the clip's speech by
    the run's audio-to-lip model (no `generate`: the disentanglement swaps are video-driven)."""

    def __init__(self, run_dir, world, device=None):
        from edtalk.generate import run_mouth_from_audio
        from metrics.utils import sha256_file

        super().__init__(run_dir, world, device)
        self.mouth_from_audio, a2m_file = run_mouth_from_audio(run_dir, self.device)
        self.describe.update(setting="audio", mouth="the run's audio-to-lip model on the clip's speech (smoothed)",
                             checkpoints={"audio/audio2motion.pt": sha256_file(a2m_file)})

    def __call__(self, case: Case) -> np.ndarray:
        from edtalk.generate import speech_mel_windows

        clip = self._by_name[case.name]
        frames = self.world.frames(clip)
        mouth = self.mouth_from_audio(speech_mel_windows(self.world.audio(clip), len(frames), self.device))
        return drive_frames(self.model, frames[0], None, frames, frames, self.device, memo=self.memo,
                            mouth_coeffs=mouth)

    generate = None  # cross-driving takes every factor from frames: evaluate_protocol skips it for this method


def score_run(protocol: str, out, run_dir, *, device=None, setting: str = "video", **options) -> dict:
    """`benchmarks.protocols.api.evaluate_protocol` with the run's model as the method in `setting` (video:
    EDTalk-V, audio: EDTalk-A); `options` go through to it (data, metrics, progress, disentanglement, lists)."""
    methods = {"video": TrainedModelMethod, "audio": AudioDrivenMethod}
    if setting not in methods:
        raise InputError(f"--setting must be one of {', '.join(methods)}, not {setting!r}")
    return protocols.evaluate_protocol(
        protocol, out, method=lambda world: methods[setting](run_dir, world, device=device), device=device,
        **options)

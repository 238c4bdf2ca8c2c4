"""Stage `audio` (paper stage 3) configuration: the parts it trains (its presets: edtalk.presets)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from metrics.errors import InputError

AUDIO_PARTS = ("mouth", "pose", "expression")
FPS = 25


@dataclass
class AudioStageConfig:
    parts: tuple[str, ...] = AUDIO_PARTS
    targets: str = "gt"  # "model" (trained heads) | "gt" (synthetic ground truth)
    # mouth (release: batch 4 clips × 5 frames, Adam lr 0.0016·reg-ratio, betas (0, 0.99^r))
    mouth_iters: int = 300
    mouth_batch: int = 16
    mouth_window: int = 5
    mouth_lr: float = 1e-3
    smooth_weight: float = 0.1
    recon_weight: float = 1.0  # applies only when a trained EDTalk is given
    sync_weight: float = 5.0  # applies only when a sync expert is given
    # The release freezes a pretrained Wav2Lip audio encoder and trains only Linear(512,20). Without
    # Wav2Lip weights (offline) the encoder must learn too.
    train_audio_encoder: bool = True
    # pose flow
    pose_iters: int = 400
    pose_batch: int = 16
    pose_window: int = 40
    pose_lr: float = 2e-3
    pose_hidden: int = 96
    pose_steps: int = 6
    pose_history: int = 4
    # expression predictor
    exp_iters: int = 400
    exp_batch: int = 32
    exp_lr: float = 1e-3
    exp_cls_weight: float = 1.0
    exp_features: str = "offline-stats"
    exp_features_dir: str | None = None
    exp_features_dim: int | None = None
    checkpoint_every: int = 100
    eval_temperature: float = 0.7

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def capped(self, max_steps: int | None) -> AudioStageConfig:
        """A copy whose parts train at most `max_steps` steps each (dry runs: `--max-steps`); None: unchanged."""
        if max_steps is None:
            return self
        if max_steps < 1:
            raise InputError(f"--max-steps must be at least 1, not {max_steps}")
        return dataclasses.replace(self, mouth_iters=min(self.mouth_iters, max_steps),
                                   pose_iters=min(self.pose_iters, max_steps), exp_iters=min(self.exp_iters, max_steps))

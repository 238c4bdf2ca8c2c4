"""Stage `audio`: one record per clip (mel windows, speech features, targets, ground truth for evaluation),
read from a synthetic world; targets from the trained heads or from the ground truth."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from edtalk.train.audio_config import FPS, AudioStageConfig
from metrics.errors import InputError, MissingWeightsError
from metrics.utils import resolve_device


@dataclass
class ClipRecord:
    """Everything the audio stage needs from one clip (tensors on CPU)."""

    name: str
    identity: str
    split: str
    emotion: int
    mel: torch.Tensor  # (T, 80, 16) mel windows
    mouth: torch.Tensor  # (T, n_mouth) target lip coefficients
    pose: torch.Tensor  # (T, n_pose) target pose coefficients
    expression: torch.Tensor  # (n_exp,) utterance-level target
    speech: torch.Tensor  # (D,) utterance speech features
    gt_jaw: torch.Tensor  # (T,) ground-truth mouth opening (evaluation only)
    gt_pose_deg: torch.Tensor  # (T, 3) ground-truth yaw/pitch/roll in degrees (evaluation only)
    frames_ref: Any = None  # callable → uint8 (T,H,W,3), replaced by the array once loaded


def model_targets(model, frames: np.ndarray, device, batch: int = 32) -> dict[str, torch.Tensor]:
    """Coefficients the trained heads extract from real frames (mouth, pose, expression)."""
    from benchmarks.media import frames_to_tensor

    out: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for i in range(0, len(frames), batch):
            x = frames_to_tensor(frames[i : i + batch]).to(device)
            latent, _ = model.encode(x)
            for k, v in model.coefficients(latent).items():
                if v is not None:
                    out.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def records_from_world(
    world,
    cfg: AudioStageConfig,
    model=None,
    extractor=None,
    device=None,
    splits: Sequence[str] = ("train", "test"),
    limit: int | None = None,
) -> list[ClipRecord]:
    """Read clips of a `SyntheticWorld`-like reader into `ClipRecord`s (mel, targets, speech features)."""
    from edtalk.audio_features import mel_windows, melspectrogram
    from edtalk.model.expression_predictor import build_extractor

    if cfg.targets not in ("gt", "model"):
        raise InputError(f"audio stage targets must be 'gt' or 'model', not {cfg.targets!r}")
    if cfg.targets == "model" and model is None:
        raise MissingWeightsError(
            "audio stage with targets='model' needs a trained EDTalk (stages 0-2); "
            "train it first or use targets='gt' on the synthetic world"
        )
    extractor = extractor or build_extractor(cfg.exp_features, cfg.exp_features_dir, cfg.exp_features_dim)
    device = resolve_device(device)
    clips = [c for s in splits for c in world.clips(s)]
    if limit:
        clips = clips[:limit]
    if not clips:
        raise InputError(f"the data set has no clips in splits {list(splits)}")
    records = []
    for clip in tqdm(clips, desc="audio stage: reading clips", unit="clip", leave=False):
        wav = world.audio(clip)
        gt = world.ground_truth(clip)
        n = int(clip.n_frames)
        mel = torch.from_numpy(np.asarray(mel_windows(melspectrogram(wav), n, fps=FPS), dtype=np.float32))
        if cfg.targets == "model":
            t = model_targets(model, world.frames(clip), device)
            mouth, pose, exp_frames = t["mouth"], t["pose"], t.get("expression")
            if exp_frames is None:
                raise InputError(
                    "the trained model has no expression head; train stage 2 first or "
                    "drop 'expression' from --parts"
                )
        else:
            mouth = torch.as_tensor(np.asarray(gt["mouth"]), dtype=torch.float32)
            pose = torch.as_tensor(np.asarray(gt["pose"]), dtype=torch.float32)
            exp_frames = torch.as_tensor(np.asarray(gt["expression"]), dtype=torch.float32)
        records.append(
            ClipRecord(
                name=clip.name,
                identity=str(clip.identity),
                split=clip.split,
                emotion=int(gt["emotion_index"]),
                mel=mel[:n],
                mouth=mouth[:n],
                pose=pose[:n],
                expression=exp_frames[:n].mean(0),
                speech=torch.from_numpy(np.asarray(extractor(wav, 16000, clip.name), dtype=np.float32)),
                gt_jaw=torch.as_tensor(np.asarray(gt["mouth"])[:n, 0], dtype=torch.float32),
                gt_pose_deg=torch.as_tensor(np.asarray(gt["pose"])[:n], dtype=torch.float32),
                frames_ref=(lambda c=clip: world.frames(c)),
            )
        )
    return records


def records_of_split(records: Sequence[ClipRecord], split: str) -> list[ClipRecord]:
    return [r for r in records if r.split == split]

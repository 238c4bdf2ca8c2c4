"""Head-pose error between generated and ground-truth frames: per-axis mean absolute error in degrees.

Neither EDTalk nor EAT publishes a pose metric; the suite reports what the reenactment literature
uses with Hopenet (natanielruiz/deep-head-pose, robust alpha=1): per frame (yaw, pitch, roll) in
degrees, the mean absolute difference per axis, their mean (the headline number), and the mean
per-frame L2 norm of the difference (the other common variant). Frames where either side has no
estimate (NaN) are skipped and counted. Angles are compared as they are (Hopenet's range is -99..+96,
so no wrap-around).
"""

from __future__ import annotations

import numpy as np

from metrics.errors import InputError

__all__ = ["AXES", "hopenet_degrees", "pose_error"]

AXES = ("yaw", "pitch", "roll")


def hopenet_degrees(logits, num_bins: int = 66):
    """Hopenet's decoding: sum_k softmax(logits)_k * k * 3 - 99 degrees (3-degree bins from -99)."""
    import torch

    logits = torch.as_tensor(logits)
    if logits.shape[-1] != num_bins:
        raise InputError(
            f"Hopenet logits must have {num_bins} bins on the last axis, got {tuple(logits.shape)}"
        )
    idx = torch.arange(num_bins, dtype=logits.dtype, device=logits.device)
    return (torch.softmax(logits, dim=-1) * idx).sum(-1) * 3 - 99


def _angles(x, what: str) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise InputError(f"{what} must be (T, 3) yaw/pitch/roll in degrees, got shape {arr.shape}")
    return arr


def pose_error(pred, target) -> dict:
    """Per-axis MAE (degrees) between (T, 3) yaw/pitch/roll arrays, their mean, and the mean L2 norm.

    Returns {"yaw", "pitch", "roll", "mean", "l2", "frames", "skipped"}.
    """
    p, q = _angles(pred, "predicted pose"), _angles(target, "target pose")
    if p.shape != q.shape:
        raise InputError(
            f"predicted pose {p.shape} and target pose {q.shape} differ in length; pair the frames first"
        )
    diff = p - q
    valid = np.isfinite(diff).all(1)
    if not valid.any():
        raise InputError(f"no frame has a pose on both sides ({len(diff)} frames)")
    d = diff[valid]
    mae = np.abs(d).mean(0)
    out = {a: float(v) for a, v in zip(AXES, mae, strict=True)}
    out.update(
        mean=float(mae.mean()),
        l2=float(np.linalg.norm(d, axis=1).mean()),
        frames=int(valid.sum()),
        skipped=int((~valid).sum()),
    )
    return out

"""uint8 RGB frames <-> float tensors in [-1, 1]: the one conversion every package uses."""
from __future__ import annotations

import numpy as np

from metrics.errors import InputError


def frames_to_tensor(frames: np.ndarray):
    """uint8 (T, H, W, 3) RGB -> float32 torch (T, 3, H, W) in [-1, 1]."""
    import torch

    from metrics.functional.image import check_finite

    check_finite(frames, "frames")  # uint8 cannot hold NaN: a float array with NaN says more than its dtype
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"expected uint8 frames (T, H, W, 3), got {frames.dtype} {frames.shape}")
    if not frames.flags.writeable:
        frames = frames.copy()  # torch warns on read-only buffers (e.g. memory-mapped or decoded views)
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_frames(x) -> np.ndarray:
    """float (T, 3, H, W) in [-1, 1] -> uint8 (T, H, W, 3) by the fixed map round((x + 1) * 127.5), clipped.

    The release's demo stretches each video's min/max instead, which shifts colours per video and
    biases PSNR/FID; a fixed map keeps outputs comparable.
    """
    y = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(dtype=__import__("torch").uint8)
    return y.permute(0, 2, 3, 1).cpu().numpy()

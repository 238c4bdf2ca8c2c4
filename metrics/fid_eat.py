"""EAT's FID features (yuexihang/evaluation_eat `code/test_fid.py` + `code/utils_fid.py`).

Not pytorch-fid's FID: per video only `EAT_FRAMES_PER_VIDEO` = 5 frames of the 128x128 aligned crops, at
`linspace(0, L, min(L, 5), endpoint=False)` of the L paired frames; each frame is flipped `[:, :, ::-1]`
(EAT's "BGR to RGB" on frames that imageio already gave as RGB, so the network sees BGR), divided by 255,
`cv2.resize`d to 299x299 (bilinear, float32), and run through **torchvision's** ImageNet `inception_v3`
(weights key "inception-v3-torchvision"; `transform_input=True`, as `inception_v3(pretrained=True)`
builds it) after `x * 2 - 1`; the feature is Mixed_7c's output average-pooled to 2048-d. The distance is
the usual Fréchet distance over all sampled frames (np.cov, scipy sqrtm: metrics.functional.image).
"""
from __future__ import annotations

import numpy as np

from metrics.errors import CheckpointMismatchError, InputError

__all__ = ["EAT_FRAMES_PER_VIDEO", "eat_fid_frames", "eat_fid_features", "load_torchvision_inception"]

EAT_FRAMES_PER_VIDEO = 5


def eat_fid_frames(n_paired: int, per_video: int = EAT_FRAMES_PER_VIDEO) -> np.ndarray:
    """Which of a video's `n_paired` frames EAT's FID samples."""
    return np.linspace(0, n_paired, min(n_paired, per_video), endpoint=False).astype(np.int32)


def load_torchvision_inception(path=None, device=None, verify: bool = True):
    """torchvision `inception_v3` as `inception_v3(pretrained=True)` builds it (aux logits, transform_input),
    with `locate("inception-v3-torchvision", path)` loaded strictly, in eval mode."""
    from torchvision.models import inception_v3

    from metrics.utils import load_matching_state, resolve_device, safe_torch_load
    from metrics.weights import locate

    p = locate("inception-v3-torchvision", path, verify=verify)
    state = safe_torch_load(p, "torchvision's inception_v3 state dict")
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{p} holds a {type(state).__name__}, not an inception_v3 state dict")
    model = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    load_matching_state(model, state, p, "torchvision's inception_v3 (ImageNet) state dict")
    return model.to(resolve_device(device)).eval()


def eat_fid_features(frames, model, batch_size: int = 5) -> np.ndarray:
    """(N, 2048) float64 features of uint8 RGB (N, H, W, 3) frames, preprocessed exactly as EAT does."""
    import cv2
    import torch

    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise InputError(f"EAT's FID takes uint8 RGB (N, H, W, 3) frames, got {frames.dtype} {frames.shape}")
    images = np.stack([cv2.resize(np.ascontiguousarray(f[:, :, ::-1]).astype(np.float32) / 255, (299, 299))
                       for f in frames]) if len(frames) else np.zeros((0, 299, 299, 3), np.float32)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    captured = {}
    hook = model.Mixed_7c.register_forward_hook(lambda _m, _i, out: captured.__setitem__("out", out))
    dev = next(model.parameters()).device
    out = []
    try:
        with torch.no_grad():
            for i in range(0, len(x), batch_size):
                model(x[i:i + batch_size].to(dev) * 2 - 1)
                pooled = torch.nn.functional.adaptive_avg_pool2d(captured["out"], (1, 1))
                out.append(pooled.flatten(1).double().cpu())
    finally:
        hook.remove()
    return torch.cat(out).numpy() if out else np.zeros((0, 2048))

"""PSNR and SSIM on uint8 RGB frames, with scikit-image's definitions (the field's reference: EAT's
test_psnr_ssim.py calls skimage). Implemented in numpy/scipy; tests compare against skimage itself."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from metrics.errors import InputError


def _check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise InputError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    if pred.dtype != np.uint8 or target.dtype != np.uint8:
        raise InputError(f"PSNR/SSIM take uint8 frames (0..255), got {pred.dtype} and {target.dtype}; "
                         "convert with round((x + 1) * 127.5) from [-1, 1]")
    if pred.ndim not in (3, 4) or pred.shape[-1] != 3:
        raise InputError(f"expected (H, W, 3) or (T, H, W, 3) RGB frames, got {pred.shape}")
    return (pred[None], target[None]) if pred.ndim == 3 else (pred, target)


def psnr_per_frame(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """skimage.metrics.peak_signal_noise_ratio per frame, data_range 255 (inf for identical frames)."""
    p, t = _check_pair(pred, target)
    mse = ((p.astype(np.float64) - t.astype(np.float64)) ** 2).reshape(len(p), -1).mean(1)
    with np.errstate(divide="ignore"):
        return 10 * np.log10(255.0 ** 2 / mse)


def ssim_per_frame(pred: np.ndarray, target: np.ndarray, win_size: int = 7) -> np.ndarray:
    """skimage.metrics.structural_similarity(channel_axis=-1, data_range=255) per frame:
    7x7 uniform window, K1 0.01, K2 0.03, sample covariance, mean over the valid region and channels."""
    p, t = _check_pair(pred, target)
    if min(p.shape[1:3]) < win_size:
        raise InputError(f"frames of {p.shape[1]}x{p.shape[2]} are smaller than the {win_size}x{win_size} SSIM window")
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    n = win_size ** 2
    cov_norm = n / (n - 1)
    pad = (win_size - 1) // 2
    out = np.empty(len(p))
    for i in range(len(p)):
        vals = []
        for ch in range(3):
            x, y = p[i, ..., ch].astype(np.float64), t[i, ..., ch].astype(np.float64)
            ux, uy = uniform_filter(x, win_size), uniform_filter(y, win_size)
            vx = cov_norm * (uniform_filter(x * x, win_size) - ux * ux)
            vy = cov_norm * (uniform_filter(y * y, win_size) - uy * uy)
            vxy = cov_norm * (uniform_filter(x * y, win_size) - ux * uy)
            s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux ** 2 + uy ** 2 + c1) * (vx + vy + c2))
            vals.append(s[pad:-pad, pad:-pad].mean())
        out[i] = np.mean(vals)
    return out


def psnr(pred, target) -> float:
    """Mean PSNR over all frames (pooled, EAT's convention)."""
    return float(np.mean(psnr_per_frame(pred, target)))


def ssim(pred, target) -> float:
    return float(np.mean(ssim_per_frame(pred, target)))

"""PSNR and SSIM on uint8 RGB frames, with scikit-image's definitions (the field's reference: EAT's
test_psnr_ssim.py calls skimage). Implemented in numpy/scipy; tests compare against skimage itself."""
from __future__ import annotations

import numpy as np
from scipy.ndimage import uniform_filter

from metrics.errors import InputError

FRAMES_ADVICE = "fix the method's output (a diverged model?) before scoring, then pass uint8 frames"


def check_finite(x, what: str = "frames", advice: str = FRAMES_ADVICE) -> None:
    """Refuse a float array or tensor holding NaN or inf, saying how many (uint8 frames cannot hold them)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu()
        if not (x.is_floating_point() or x.is_complex()):
            return
        x = x.double().numpy() if x.is_floating_point() else x.numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fc":
        return
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(np.isinf(arr).sum())
    if n_nan or n_inf:
        raise InputError(f"{what} contain {n_nan} NaN and {n_inf} inf values (of {arr.size}); {advice}")


def _check_pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    check_finite(pred, "predicted frames")
    check_finite(target, "target frames")
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise InputError(f"prediction {pred.shape} and target {target.shape} differ in shape")
    if pred.dtype != np.uint8 or target.dtype != np.uint8:
        raise InputError(f"PSNR/SSIM take uint8 frames (0..255), got {pred.dtype} and {target.dtype}; "
                         "convert with round((x + 1) * 127.5) from [-1, 1]")
    if pred.ndim not in (3, 4) or pred.shape[-1] != 3:
        raise InputError(f"expected (H, W, 3) or (T, H, W, 3) RGB frames, got {pred.shape}")
    if 0 in pred.shape:
        raise InputError(f"no pixels to compare: frames of shape {pred.shape}; check the video was decoded")
    return (pred[None], target[None]) if pred.ndim == 3 else (pred, target)


def psnr_per_frame(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """skimage.metrics.peak_signal_noise_ratio per frame, data_range 255 (inf for identical frames)."""
    p, t = _check_pair(pred, target)
    # In chunks of frames: two float64 copies of a whole long clip would be 16x its uint8 size.
    mse = np.concatenate([((p[i:i + 64].astype(np.float64) - t[i:i + 64].astype(np.float64)) ** 2)
                          .reshape(len(p[i:i + 64]), -1).mean(1) for i in range(0, len(p), 64)] or [np.zeros(0)])
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


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """Tr sqrt(S1 S2) as the sum of the square roots of the eigenvalues of S1 S2.

    Equal to pytorch-fid's `trace(sqrtm(S1 S2).real)` up to rounding (S1 S2 is similar to a PSD matrix,
    so its eigenvalues are real and >= 0 up to rounding; the tiny negative or complex ones of singular
    covariances contribute only their negligible real part). This is torch-fidelity >= 0.4's and
    torchmetrics' formulation: it avoids `scipy.linalg.sqrtm`, which is wrong on SciPy 1.11.2-1.12
    (scipy#17918), whose `disp` argument is gone in SciPy 1.18, and which is about 4x slower at 2048-d.
    """
    from scipy import linalg

    eig = linalg.eigvals(sigma1 @ sigma2)
    return float(np.sqrt(eig.astype(np.complex128)).real.sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
    """pytorch-fid's calculate_frechet_distance: ||mu1-mu2||^2 + Tr(S1) + Tr(S2) - 2 Tr sqrt(S1 S2).

    The last trace comes from `trace_sqrt_product` (eigenvalues, not sqrtm). As pytorch-fid, if it is
    not finite the covariances are retried with eps*I added to both.
    """
    mu1, mu2 = np.atleast_1d(mu1).astype(np.float64), np.atleast_1d(mu2).astype(np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape:
        raise InputError(f"feature statistics differ in shape: "
                         f"{mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    if not all(np.isfinite(v).all() for v in (mu1, mu2, sigma1, sigma2)):
        raise InputError("FID: the feature statistics contain NaN or inf; check the images and the "
                         "feature extractor")
    diff = mu1 - mu2
    tr_covmean = trace_sqrt_product(sigma1, sigma2)
    if not np.isfinite(tr_covmean):
        offset = np.eye(sigma1.shape[0]) * eps
        tr_covmean = trace_sqrt_product(sigma1 + offset, sigma2 + offset)
    return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_covmean)


def fid_from_features(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between two feature sets (N, D), statistics in float64 (np.cov, ddof 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise InputError(f"features must be (N, D) with the same D, got {a.shape} and {b.shape}")
    if len(a) < 2 or len(b) < 2:
        raise InputError("FID needs at least 2 samples per set")
    return frechet_distance(a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False))

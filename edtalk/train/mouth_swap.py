"""Mouth-swapped frames for stage 1 (paper.md §2.2, the release's `get_IA_MB`).

`swap_mouth(src, ldmk_src, dst, ldmk_dst)` returns `dst` with the mouth of `src` pasted in:
1. a similarity transform (least squares, Umeyama) maps src's three points — left-eye centre
   (mean of landmarks 36–41), right-eye centre (42–47), inner-mouth centre (60–67) — onto dst's;
2. a translation is added so the transformed mouth centre lands exactly on dst's mouth centre;
3. src is warped with that transform (black border);
4. dst's mouth box (landmarks 48–67, ±5 px, corners truncated with int() as the release does) is
   cut from the warped src and pasted into dst (clipped to the frame).
The release warps onto a fixed 224×224 canvas although frames are 256×256, so a mouth box reaching
past 224 px is pasted black (paper.md §2.6 item 6). Here the canvas defaults to the frame size;
`canvas=224` reproduces the quirk for parity checks.
"""
from __future__ import annotations

import cv2
import numpy as np

from metrics.errors import InputError

MOUTH = slice(48, 68)


def three_points(landmarks: np.ndarray) -> np.ndarray:
    lm = np.asarray(landmarks, dtype=np.float64)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[60:68].mean(0)])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """2×3 least-squares similarity (rotation, uniform scale, translation) mapping src → dst (Umeyama 1991),
    the same estimate as skimage's SimilarityTransform."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1
    rot = u @ np.diag(sign) @ vt
    var_s = (s0 ** 2).sum() / len(src)
    scale = (sig * sign).sum() / var_s if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def swap_mouth(src: np.ndarray, ldmk_src: np.ndarray, dst: np.ndarray, ldmk_dst: np.ndarray,
               canvas: int | None = None, margin: int = 5) -> np.ndarray:
    """`dst` (H,W,3 uint8) with `src`'s mouth aligned and pasted into dst's mouth box."""
    if src.ndim != 3 or dst.ndim != 3 or src.shape[-1] != 3 or dst.shape[-1] != 3:
        raise InputError(f"swap_mouth expects H×W×3 frames, got {src.shape} and {dst.shape}")
    for name, lm in (("ldmk_src", ldmk_src), ("ldmk_dst", ldmk_dst)):
        if np.shape(lm) != (68, 2) or not np.all(np.isfinite(lm)):
            raise InputError(f"swap_mouth: {name} must be finite 68×2 landmarks, got shape {np.shape(lm)}")
    ps, pd = three_points(ldmk_src), three_points(ldmk_dst)
    m = similarity_transform(ps, pd)
    moved = ps @ m[:, :2].T + m[:, 2]
    m[:, 2] += pd[2] - moved[2]  # make the mouth centres coincide exactly
    h, w = dst.shape[:2]
    cw, ch = (w, h) if canvas is None else (canvas, canvas)
    warped = cv2.warpAffine(np.ascontiguousarray(src), m, (cw, ch), borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if (ch, cw) != (h, w):  # the release's fixed canvas: pixels beyond it are black
        pad = np.zeros_like(dst)
        pad[:min(h, ch), :min(w, cw)] = warped[:min(h, ch), :min(w, cw)]
        warped = pad
    mouth = np.asarray(ldmk_dst, np.float64)[MOUTH]
    x0, y0 = int(mouth[:, 0].min() - margin), int(mouth[:, 1].min() - margin)
    x1, y1 = int(mouth[:, 0].max() + margin), int(mouth[:, 1].max() + margin)
    out = dst.copy()
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 > cx0 and cy1 > cy0:
        out[cy0:cy1, cx0:cx1] = warped[cy0:cy1, cx0:cx1]
    return out


def mouth_box(ldmk: np.ndarray, margin: int = 5) -> tuple[int, int, int, int]:
    mouth = np.asarray(ldmk, np.float64)[MOUTH]
    return (int(mouth[:, 0].min() - margin), int(mouth[:, 1].min() - margin),
            int(mouth[:, 0].max() + margin), int(mouth[:, 1].max() + margin))

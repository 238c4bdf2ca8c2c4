"""A parametric 3D face with 68 landmarks in dlib's index layout, and its renderer.

Landmarks: jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67.
Mouth parameters (jaw_open, lip_width, closure), expression weights (EXPRESSION_AXES) and a blink
deform the template; yaw/pitch/roll rotate it; an orthographic camera projects it. The renderer draws
filled, shaded regions at 4x resolution and downsamples, so edges are antialiased and every factor
(pose, mouth, expression) is visible in the pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

EXPRESSION_AXES = ("brow_raise", "brow_furrow", "eye_open", "smile", "frown", "cheek_raise")
SUPERSAMPLE = 4


def _arc(cx, cy, rx, ry, a0, a1, n):
    t = np.linspace(np.radians(a0), np.radians(a1), n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)


def template(face_width: float = 1.0, face_height: float = 1.0, lip_thickness: float = 1.0) -> np.ndarray:
    """(68, 3) neutral landmarks in face units (x right, y down, z towards the camera)."""
    pts = np.zeros((68, 3))
    jaw = _arc(0, -0.05, 0.78 * face_width, 0.95 * face_height, 180, 0, 17)[::-1] * [1, 1]
    jaw[:, 1] = -0.05 + np.abs(np.sin(np.linspace(0, np.pi, 17))) * 0.95 * face_height
    jaw[:, 0] = np.linspace(-0.78, 0.78, 17) * face_width * np.sqrt(1 - 0.55 * np.sin(np.linspace(0, np.pi, 17)) ** 4)
    pts[0:17, :2] = jaw
    pts[0:17, 2] = -0.35 + 0.35 * np.sin(np.linspace(0, np.pi, 17))
    pts[17:22, :2] = _arc(-0.36, -0.30, 0.22, 0.07, 200, 340, 5)
    pts[22:27, :2] = _arc(0.36, -0.30, 0.22, 0.07, 200, 340, 5)
    pts[17:27, 2] = 0.12
    pts[27:31, :2] = np.stack([np.zeros(4), np.linspace(-0.18, 0.12, 4)], 1)
    pts[27:31, 2] = np.linspace(0.2, 0.42, 4)
    pts[31:36, :2] = np.stack([np.linspace(-0.14, 0.14, 5), 0.2 + 0.03 * np.cos(np.linspace(-1.2, 1.2, 5))], 1)
    pts[31:36, 2] = 0.28
    for base, cx in ((36, -0.33), (42, 0.33)):
        ang = np.array([180, 135, 45, 0, -45, -135]) if base == 36 else np.array([180, 135, 45, 0, -45, -135])
        pts[base:base + 6, 0] = cx + 0.13 * np.cos(np.radians(ang))
        pts[base:base + 6, 1] = -0.15 - 0.055 * np.sin(np.radians(ang))
        pts[base:base + 6, 2] = 0.15
    ow = 0.30
    outer_ang = np.radians(np.array([180, 150, 115, 90, 65, 30, 0, -30, -65, -90, -115, -150]))
    pts[48:60, 0] = ow * np.cos(outer_ang)
    pts[48:60, 1] = 0.48 - 0.07 * lip_thickness * np.sin(outer_ang)
    inner_ang = np.radians(np.array([180, 120, 90, 60, 0, -60, -90, -120]))
    pts[60:68, 0] = 0.75 * ow * np.cos(inner_ang)
    pts[60:68, 1] = 0.48 - 0.012 * np.sin(inner_ang)
    pts[48:68, 2] = 0.22
    return pts


def deform(base: np.ndarray, mouth: np.ndarray, expression: np.ndarray, blink: float) -> np.ndarray:
    """Apply mouth (jaw_open, lip_width, closure), expression weights and blink (1 = closed) to (68,3)."""
    p = base.copy()
    jaw_open, lip_width, closure = mouth
    brow_raise, brow_furrow, eye_open, smile, frown, cheek = expression
    opening = 0.22 * jaw_open * (1 - closure)
    # jaw and lower lip move down with the opening; the chin most
    weight = np.sin(np.linspace(0, np.pi, 17)) ** 2
    p[0:17, 1] += 0.6 * opening * weight
    p[[56, 57, 58], 1] += opening
    p[[55, 59], 1] += 0.8 * opening
    p[[65, 66, 67], 1] += opening
    p[[61, 62, 63], 1] -= 0.15 * opening
    p[[50, 51, 52], 1] -= 0.1 * opening
    # lip width (spread / round) and corners
    cx = 0.0
    p[48:68, 0] = cx + (p[48:68, 0] - cx) * (1 + 0.25 * lip_width - 0.1 * jaw_open)
    corners = [48, 54, 60, 64]
    p[corners, 1] += -0.09 * smile + 0.08 * frown
    p[[48, 54], 0] += np.array([-1, 1]) * 0.05 * smile
    # cheeks raise the lower eyelids and the nose wings a little
    p[[40, 41, 46, 47], 1] -= 0.03 * cheek
    p[[31, 35], 1] -= 0.02 * cheek
    # brows
    p[17:27, 1] -= 0.09 * brow_raise
    inner = [20, 21, 22, 23]
    p[inner, 1] += 0.06 * brow_furrow
    p[inner, 0] += np.array([0.04, 0.05, -0.05, -0.04]) * brow_furrow
    # eyes: openness scales the lids around the eye centre; a blink closes them
    openness = np.clip(1 + 0.5 * eye_open, 0.2, 1.8) * (1 - 0.92 * blink)
    for s in (slice(36, 42), slice(42, 48)):
        cy = p[s, 1].mean()
        p[s, 1] = cy + (p[s, 1] - cy) * openness
    return p


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    y, x, z = np.radians([yaw, pitch, roll])
    ry = np.array([[np.cos(y), 0, np.sin(y)], [0, 1, 0], [-np.sin(y), 0, np.cos(y)]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    return rz @ rx @ ry


def project(points: np.ndarray, pose: np.ndarray, size: int, scale: float = 0.36) -> np.ndarray:
    """(68,3) face units -> (68,2) pixels; pose = (yaw, pitch, roll) in degrees."""
    r = rotation(*pose)
    q = points @ r.T
    return np.stack([size / 2 + q[:, 0] * scale * size, size * 0.47 + q[:, 1] * scale * size], 1)


@dataclass(frozen=True)
class Appearance:
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    brow: tuple[int, int, int]
    iris: tuple[int, int, int]
    lip: tuple[int, int, int]
    background: tuple[int, int, int]
    face_width: float
    face_height: float
    lip_thickness: float
    hair_volume: float


def _poly(img, pts, color, s):
    cv2.fillPoly(img, [np.round(pts * s).astype(np.int32)], color, lineType=cv2.LINE_AA)


def render(lm2d: np.ndarray, app: Appearance, pose: np.ndarray, size: int) -> np.ndarray:
    """Draw the face whose projected landmarks are `lm2d` (68,2 pixels); returns uint8 (size,size,3) RGB."""
    s = SUPERSAMPLE
    big = size * s
    img = np.empty((big, big, 3), np.uint8)
    # background: vertical gradient of the identity's colour
    grad = np.linspace(0.85, 1.1, big)[:, None, None]
    img[:] = np.clip(np.array(app.background)[None, None] * grad, 0, 255).astype(np.uint8)
    jaw = lm2d[0:17]
    brow_top = lm2d[17:27, 1].min()
    centre = lm2d[27:31].mean(0)
    half_w = (jaw[-1, 0] - jaw[0, 0]) / 2
    forehead = np.stack([np.linspace(jaw[-1, 0], jaw[0, 0], 15),
                         centre[1] - (centre[1] - brow_top) * 1.9 + 0 * np.linspace(0, 1, 15)], 1)
    forehead[:, 1] += (1 - np.sin(np.linspace(0, np.pi, 15))) * half_w * 0.9
    hair = np.concatenate([forehead * [1, 1] + [0, -0.12 * half_w * app.hair_volume],
                           forehead[::-1] * [1, 1] + [0, -0.9 * half_w * app.hair_volume]])
    hair[:, 0] = centre[0] + (hair[:, 0] - centre[0]) * 1.12
    _poly(img, hair, app.hair, s)
    face = np.concatenate([jaw, forehead])
    _poly(img, face, app.skin, s)
    # shading: the side turned away is darker (yaw), as a soft half-plane overlay
    yaw = pose[0]
    shade = np.zeros((big, big), np.float32)
    xs = (np.arange(big) / s - centre[0]) / max(half_w, 1e-3)
    shade[:] = np.clip(xs * np.sign(yaw) * min(abs(yaw) / 25, 1) * 0.25, 0, 0.25)[None, :]
    mask = np.zeros((big, big), np.uint8)
    cv2.fillPoly(mask, [np.round(face * s).astype(np.int32)], 1)
    img = (img * (1 - shade[..., None] * mask[..., None])).astype(np.uint8)
    # cheeks
    for c in (lm2d[[1, 31]].mean(0), lm2d[[15, 35]].mean(0)):
        cv2.circle(img, tuple(np.round(c * s).astype(int)), int(half_w * 0.18 * s),
                   tuple(int(v * 0.93) for v in app.skin), -1, cv2.LINE_AA)
    # eyes: white, iris clipped to the lids, lids as lines
    for sl in (slice(36, 42), slice(42, 48)):
        eye = lm2d[sl]
        emask = np.zeros((big, big), np.uint8)
        cv2.fillPoly(emask, [np.round(eye * s).astype(np.int32)], 1, lineType=cv2.LINE_AA)
        layer = img.copy()
        _poly(layer, eye, (245, 245, 240), s)
        c = eye.mean(0) + [yaw / 90 * (eye[3, 0] - eye[0, 0]) * 0.4, 0]
        r = (eye[3, 0] - eye[0, 0]) * 0.24
        cv2.circle(layer, tuple(np.round(c * s).astype(int)), max(1, int(r * s)), app.iris, -1, cv2.LINE_AA)
        cv2.circle(layer, tuple(np.round(c * s).astype(int)), max(1, int(r * 0.45 * s)), (15, 15, 15), -1, cv2.LINE_AA)
        img = np.where(emask[..., None] > 0, layer, img)
        cv2.polylines(img, [np.round(eye * s).astype(np.int32)], True, (40, 30, 30), max(1, s // 2), cv2.LINE_AA)
    # brows
    for sl in (slice(17, 22), slice(22, 27)):
        cv2.polylines(img, [np.round(lm2d[sl] * s).astype(np.int32)], False, app.brow, max(2, int(0.035 * size * s)),
                      cv2.LINE_AA)
    # nose
    cv2.polylines(img, [np.round(lm2d[27:31] * s).astype(np.int32)], False, tuple(int(v * 0.75) for v in app.skin),
                  max(1, s), cv2.LINE_AA)
    cv2.polylines(img, [np.round(lm2d[31:36] * s).astype(np.int32)], False, (90, 60, 55), max(1, s), cv2.LINE_AA)
    # lips and the dark mouth opening
    _poly(img, lm2d[48:60], app.lip, s)
    _poly(img, lm2d[60:68], (45, 15, 20), s)
    cv2.polylines(img, [np.round(lm2d[60:68] * s).astype(np.int32)], True, tuple(int(v * 0.7) for v in app.lip),
                  max(1, s // 2), cv2.LINE_AA)
    return cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)

"""Identities, emotions and clips of the synthetic world: everything from (seed, identity, clip)."""
from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from benchmarks.synthetic.face import EXPRESSION_AXES, Appearance, deform, project, render, template
from benchmarks.synthetic.speech import FPS, SAMPLE_RATE, Prosody, phoneme_timeline, synthesize
from metrics.functional.emotion import EMOTIONS

# @2: videos written by the reproducible H.264 writer (x264 without its AVX-512 mbtree bug, benchmarks.media.writer);
# an @1 world made on an AVX-512 host at 64 px differs from run to run, so it is refused and rebuilt.
GENERATOR_VERSION = "synthetic-world@2"
# Per emotion at full intensity (level 3), over EXPRESSION_AXES:
# brow_raise, brow_furrow, eye_open, smile, frown, cheek_raise
EMOTION_EXPRESSION = {
    "angry": (0.0, 1.0, -0.3, 0.0, 0.6, 0.0),
    "contempt": (0.2, 0.2, -0.2, 0.5, 0.0, 0.0),
    "disgusted": (0.0, 0.7, -0.6, 0.0, 0.8, 0.6),
    "fear": (0.9, 0.5, 0.8, 0.0, 0.5, 0.0),
    "happy": (0.2, 0.0, -0.2, 1.0, 0.0, 0.9),
    "neutral": (0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "sad": (0.5, 0.6, -0.4, 0.0, 0.9, 0.0),
    "surprised": (1.0, 0.0, 1.0, 0.0, 0.0, 0.0),
}
EMOTION_PROSODY = {
    "angry": Prosody(1.15, 1.4, 1.3, 1.15), "contempt": Prosody(0.95, 0.8, 0.9, 0.95),
    "disgusted": Prosody(0.95, 0.9, 0.95, 0.9), "fear": Prosody(1.25, 1.3, 0.9, 1.2),
    "happy": Prosody(1.2, 1.5, 1.15, 1.1), "neutral": Prosody(), "sad": Prosody(0.85, 0.5, 0.75, 0.8),
    "surprised": Prosody(1.3, 1.6, 1.15, 1.05),
}
LEVEL_SCALE = {1: 0.4, 2: 0.7, 3: 1.0}
POSE_LIMITS = np.array([20.0, 12.0, 8.0])  # yaw, pitch, roll in degrees


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng([zlib.crc32(str(k).encode()) for k in keys])


@dataclass(frozen=True)
class Identity:
    name: str
    appearance: Appearance
    base_pitch: float
    template: np.ndarray = field(repr=False, compare=False)


def make_identity(seed: int, index: int) -> Identity:
    r = _rng("identity", seed, index)
    tone = r.uniform(0.35, 1.0)
    skin = tuple(int(v) for v in np.array([235, 190, 160]) * tone + np.array([20, 15, 10]) * (1 - tone))
    hair = tuple(int(v) for v in r.uniform(10, 140, 3) * r.uniform(0.4, 1.0))
    app = Appearance(skin=skin, hair=hair, brow=tuple(int(v * 0.8) for v in hair),
                     iris=tuple(int(v) for v in r.uniform(30, 160, 3)),
                     lip=tuple(int(v) for v in np.array([180, 70, 80]) * r.uniform(0.7, 1.1)),
                     background=tuple(int(v) for v in r.uniform(60, 220, 3)),
                     face_width=float(r.uniform(0.85, 1.12)), face_height=float(r.uniform(0.9, 1.1)),
                     lip_thickness=float(r.uniform(0.7, 1.4)), hair_volume=float(r.uniform(0.6, 1.4)))
    pitch = float(r.choice([r.uniform(95, 140), r.uniform(170, 240)]))
    name = f"{'M' if pitch < 160 else 'W'}{index + 1:03d}"
    return Identity(name, app, pitch, template(app.face_width, app.face_height, app.lip_thickness))


def pose_trajectory(r: np.random.Generator, n: int) -> np.ndarray:
    """Smooth bounded yaw/pitch/roll (degrees): a few random low-frequency sinusoids per axis."""
    t = np.arange(n) / FPS
    out = np.zeros((n, 3))
    for ax in range(3):
        for _ in range(3):
            f, ph, a = r.uniform(0.1, 0.6), r.uniform(0, 2 * np.pi), r.uniform(0.2, 0.5)
            out[:, ax] += a * np.sin(2 * np.pi * f * t + ph)
    return (np.tanh(out) * POSE_LIMITS).astype(np.float32)


def blinks(r: np.random.Generator, n: int) -> np.ndarray:
    b = np.zeros(n, np.float32)
    t = int(r.integers(5, 40))
    while t < n:
        for k, v in enumerate((0.5, 1.0, 0.5)):
            if t + k < n:
                b[t + k] = v
        t += int(r.integers(50, 110))
    return b


@dataclass
class Clip:
    frames: np.ndarray          # uint8 (T, H, W, 3)
    audio: np.ndarray           # float32 16 kHz
    ground_truth: dict


def render_factors(ident: Identity, mouth: np.ndarray, pose: np.ndarray, expression: np.ndarray,
                   blink: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Frames of `ident` with the given per-frame factors (mouth (T,3), pose (T,3) degrees, expression
    (T,6), blink (T,)): uint8 (T, size, size, 3) and the landmarks (T, 68, 2) they were drawn from."""
    n = len(mouth)
    frames = np.empty((n, size, size, 3), np.uint8)
    landmarks = np.empty((n, 68, 2), np.float32)
    for i in range(n):
        landmarks[i] = project(deform(ident.template, mouth[i], expression[i], float(blink[i])), pose[i], size)
        frames[i] = render(landmarks[i], ident.appearance, pose[i], size)
    return frames, landmarks


def generate_clip(identity: int | Identity, emotion: str, level: int, n_frames: int, size: int, seed: int,
                  world_seed: int = 0) -> Clip:
    """One clip, fully determined by its arguments."""
    ident = identity if isinstance(identity, Identity) else make_identity(world_seed, int(identity))
    r = _rng("clip", seed, ident.name, emotion, level)
    scale = LEVEL_SCALE[level] if emotion != "neutral" else 0.0
    prosody = EMOTION_PROSODY[emotion]
    timeline = phoneme_timeline(r, n_frames / FPS + 0.5, prosody.tempo)
    audio, mouth, phoneme = synthesize(timeline, ident.base_pitch, prosody, r, n_frames)
    pose = pose_trajectory(r, n_frames)
    expr_base = np.array(EMOTION_EXPRESSION[emotion]) * scale
    wobble = 0.08 * np.sin(2 * np.pi * r.uniform(0.1, 0.3) * np.arange(n_frames) / FPS)[:, None]
    expression = (expr_base[None] * (1 + wobble)).astype(np.float32)
    blink = blinks(r, n_frames)
    frames, landmarks = render_factors(ident, mouth, pose, expression, blink, size)
    gt = {"pose": pose, "mouth": mouth, "expression": expression, "landmarks": landmarks,
          "phoneme": phoneme.astype(np.int16), "blink": blink, "emotion": emotion,
          "emotion_index": EMOTIONS.index(emotion), "level": level, "identity": ident.name}
    return Clip(frames, audio, gt)


__all__ = ["EXPRESSION_AXES", "EMOTIONS", "SAMPLE_RATE", "FPS", "Identity", "Clip", "make_identity", "generate_clip",
           "render_factors", "GENERATOR_VERSION"]

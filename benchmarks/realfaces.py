"""Real-face clips from the photos that pip packages ship: a real face that moves and talks, for CI.

No test data may be downloaded, yet the face crops and dlib metrics must run on real faces. Four photos
come with installed packages: scikit-image's astronaut (Eileen Collins), matplotlib's Grace Hopper,
insightface's `t1.jpg` (six faces) and `Tom_Hanks_54745.png` (a 112-px aligned face). `talking_clip`
turns one face into a short 25 fps clip:

* the photo is mapped by a similarity onto a canvas around the face (landmarks from dlib's 68-point
  predictor on the photo, found once);
* the jaw opens: a piecewise-affine displacement field over a Delaunay mesh of the 68 points moves the
  lower lip and chin down by a time-varying opening, and the opened inner mouth is shaded dark;
* the head moves: a smooth similarity (rotation, scale, translation as sums of slow sinusoids);
* the opening follows a synthetic speech track (`benchmarks.synthetic.speech`), so audio energy and mouth
  opening are causally linked, as a lip-sync metric needs.

Everything is deterministic given (photo, face, seed, n_frames, size). `faceless_clip` (a patch of the
astronaut photo's background) and `two_face_frame` (two faces of t1.jpg) cover the detector's edge cases.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from metrics.errors import InputError, UserError

__all__ = ["PHOTOS", "RealFaceClip", "load_photo", "photo_faces", "talking_clip", "faceless_clip",
           "two_face_frame", "write_clip"]

FPS = 25
SAMPLE_RATE = 16000
PHOTOS = ("astronaut", "grace_hopper", "t1", "tom_hanks")

# dlib 68-point indices that the jaw carries down, with the fraction of the full opening each moves.
# Lower outer lip 55-59 and lower inner lip 65-67 move fully; mouth corners a third; the jaw line tapers
# from the chin (8) towards the ears so the face outline bends rather than shears.
_JAW_WEIGHTS = {**{i: 1.0 for i in (55, 56, 57, 58, 59, 65, 66, 67)},
                **{i: 0.35 for i in (48, 54, 60, 64)},
                4: 0.15, 5: 0.4, 6: 0.7, 7: 0.9, 8: 1.0, 9: 0.9, 10: 0.7, 11: 0.4, 12: 0.15}
_INNER_MOUTH = list(range(60, 68))
_MOUTH_SHADE = np.array([48.0, 16.0, 20.0])  # the dark of an open mouth (RGB)


@dataclass
class RealFaceClip:
    """frames uint8 (T, S, S, 3) RGB at 25 fps; landmarks float (T, 68, 2): where the photo's dlib points
    were moved to in each frame (planted, not detected); opening (T,) in [0, 1]; audio float32 16 kHz."""
    frames: np.ndarray
    landmarks: np.ndarray
    opening: np.ndarray
    audio: np.ndarray | None
    photo: str
    face: int
    seed: int
    info: dict = field(default_factory=dict)

    @property
    def fps(self) -> int:
        return FPS


def _site_packages_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found via its spec (importing insightface pulls onnx)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the real-face photo needs the {package} package, which is not installed; "
                        f"pip install {package}")
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    if not path.is_file():
        raise UserError(f"{path} is missing from the installed {package} package; reinstall {package}")
    return path


@functools.lru_cache(maxsize=8)
def _load_photo_cached(name: str) -> np.ndarray:
    from PIL import Image

    if name == "astronaut":
        import skimage.data

        img = skimage.data.astronaut()
    elif name == "grace_hopper":
        import matplotlib.cbook

        img = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    elif name == "t1":
        img = np.asarray(Image.open(_site_packages_file("insightface", "data", "images", "t1.jpg")))
    elif name == "tom_hanks":
        img = np.asarray(Image.open(_site_packages_file("insightface", "data", "images", "Tom_Hanks_54745.png")))
    else:
        raise InputError(f"unknown photo {name!r}; known: {', '.join(PHOTOS)}")
    img = np.ascontiguousarray(np.asarray(img, np.uint8)[..., :3])
    img.flags.writeable = False
    return img


def load_photo(name: str) -> np.ndarray:
    """uint8 (H, W, 3) RGB photo `name` (one of PHOTOS)."""
    return _load_photo_cached(name).copy()


@functools.lru_cache(maxsize=8)
def photo_faces(name: str) -> tuple[np.ndarray, np.ndarray]:
    """Faces of photo `name`, left to right: boxes int (F, 4) x0, y0, x1, y1 and landmarks float (F, 68, 2).

    dlib's HOG detector (upsample 1, on a correct RGB->grey conversion) and 68-point predictor.
    """
    import cv2
    import dlib

    from metrics.weights import locate

    photo = _load_photo_cached(name)
    gray = cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY)
    rects = sorted(dlib.get_frontal_face_detector()(gray, 1), key=lambda r: r.left())
    if not rects:
        raise InputError(f"dlib finds no face in photo {name!r}")
    predictor = dlib.shape_predictor(str(locate("dlib-68")))
    boxes = np.array([(r.left(), r.top(), r.right(), r.bottom()) for r in rects], np.int64)
    marks = np.array([[(p.x, p.y) for p in predictor(gray, r).parts()] for r in rects], np.float64)
    return boxes, marks


def _canvas_transform(landmarks: np.ndarray, canvas: int, size: int) -> np.ndarray:
    """2x3 similarity from photo to canvas: face centre to the canvas centre, eye-to-chin height to 0.45 S."""
    eyes = landmarks[36:48].mean(0)
    chin = landmarks[8]
    centre = (eyes + chin) / 2
    height = np.linalg.norm(chin - eyes)
    # the photo's own roll is kept (a real face is rarely level); only scale and position are fixed
    s = 0.45 * size / height
    return np.array([[s, 0, canvas / 2 - s * centre[0]], [0, s, canvas / 2 - s * centre[1]]])


def _jaw_field(points: np.ndarray, canvas: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel downward displacement (canvas, canvas) for a unit opening, and per-landmark weights (68,).

    Piecewise-affine: the 68 points plus fixed anchors (canvas border, points above the mouth) are
    triangulated; the displacement is linear inside each triangle, zero at fixed points.
    """
    from scipy.spatial import Delaunay

    weights = np.zeros(68)
    for i, w in _JAW_WEIGHTS.items():
        weights[i] = w
    edge = np.linspace(0, canvas - 1, 9)
    low, high = np.zeros_like(edge), np.full_like(edge, canvas - 1)
    border = np.concatenate([np.stack(pair, 1) for pair in ((edge, low), (edge, high), (low, edge), (high, edge))])
    # a ring below the chin keeps the neck from being dragged with the jaw over the whole canvas
    chin, face_w = points[8], np.linalg.norm(points[16] - points[0])
    below = np.array([[chin[0] + dx * face_w, chin[1] + 0.35 * face_w] for dx in (-0.6, -0.3, 0.0, 0.3, 0.6)])
    nodes = np.concatenate([points, border, below])
    values = np.concatenate([weights, np.zeros(len(border) + len(below))])
    tri = Delaunay(nodes)
    yy, xx = np.mgrid[0:canvas, 0:canvas]
    grid = np.stack([xx.ravel(), yy.ravel()], 1).astype(np.float64)
    simplex = tri.find_simplex(grid)
    inside = simplex >= 0
    transform = tri.transform[simplex[inside]]
    bary2 = np.einsum("nij,nj->ni", transform[:, :2], grid[inside] - transform[:, 2])
    bary = np.concatenate([bary2, 1 - bary2.sum(1, keepdims=True)], 1)
    field_flat = np.zeros(len(grid))
    field_flat[inside] = (values[tri.simplices[simplex[inside]]] * bary).sum(1)
    return field_flat.reshape(canvas, canvas).astype(np.float32), weights


def _head_motion(rng: np.random.Generator, n_frames: int) -> np.ndarray:
    """(T, 4): rotation (deg), log scale, dx, dy (fractions of S): smooth sums of slow sinusoids."""
    t = np.arange(n_frames) / FPS
    amplitude = np.array([4.0, 0.04, 0.025, 0.02])
    out = np.zeros((n_frames, 4))
    for k in range(4):
        freq = rng.uniform(0.15, 0.6, 2)
        phase = rng.uniform(0, 2 * np.pi, 2)
        out[:, k] = amplitude[k] * (0.7 * np.sin(2 * np.pi * freq[0] * t + phase[0])
                                    + 0.3 * np.sin(2 * np.pi * freq[1] * t + phase[1]))
    return out


def _motion_matrix(params: np.ndarray, canvas: int, size: int) -> np.ndarray:
    """2x3 canvas -> output: rotate/scale about the canvas centre, then translate, then cut S x S."""
    import cv2

    angle, log_scale, dx, dy = params
    m = cv2.getRotationMatrix2D((canvas / 2, canvas / 2), float(angle), float(np.exp(log_scale)))
    m[:, 2] += np.array([dx * size, dy * size]) - (canvas - size) / 2
    return m


def _speech(rng: np.random.Generator, n_frames: int, tempo: float = 1.0):
    from benchmarks.synthetic.speech import Prosody, phoneme_timeline, synthesize

    timeline = phoneme_timeline(rng, n_frames / FPS + 0.5, tempo)
    audio, mouth, _ = synthesize(timeline, float(rng.uniform(110, 220)), Prosody(), rng, n_frames)
    return audio, np.clip(mouth[:, 0], 0.0, 1.0)


def talking_clip(photo: str = "grace_hopper", n_frames: int = 25, size: int = 256, seed: int = 0, face: int = 0,
                 opening=None, max_open: float = 0.09, motion: bool = True, audio: bool = True) -> RealFaceClip:
    """A clip of face `face` (left to right) of `photo` that moves its head and opens its jaw.

    opening: optional (T,) in [0, 1] to drive the jaw (default: the synthetic speech's jaw target, with
    the audio). max_open: the full opening as a fraction of S (0.09 at 256 px moves the lower lip ~23 px).
    """
    import cv2

    if n_frames < 1 or size < 32:
        raise InputError(f"a real-face clip needs n_frames >= 1 and size >= 32, got {n_frames} and {size}")
    boxes, marks = photo_faces(photo)
    if not 0 <= face < len(marks):
        raise InputError(f"photo {photo!r} has {len(marks)} face(s) (0..{len(marks) - 1}); face={face} is not one")
    rng = np.random.default_rng([seed, PHOTOS.index(photo), face])
    wav = None
    if opening is None:
        wav, opening = _speech(rng, n_frames)
    opening = np.asarray(opening, np.float64).reshape(-1)
    if len(opening) != n_frames:
        raise InputError(f"opening has {len(opening)} values for {n_frames} frames")
    canvas = int(round(size * 1.3)) // 2 * 2
    to_canvas = _canvas_transform(marks[face], canvas, size)
    base = cv2.warpAffine(_load_photo_cached(photo), to_canvas, (canvas, canvas), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT101)
    points = marks[face] @ to_canvas[:, :2].T + to_canvas[:, 2]
    jaw, weights = _jaw_field(points, canvas)
    colourless = np.ptp(base.astype(np.int16), axis=2).max() < 8  # a grey photo gets a grey mouth
    shade = np.full(3, _MOUTH_SHADE.mean()) if colourless else _MOUTH_SHADE
    motion_params = _head_motion(rng, n_frames) if motion else np.zeros((n_frames, 4))
    yy, xx = np.mgrid[0:canvas, 0:canvas].astype(np.float32)
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    landmarks = np.empty((n_frames, 68, 2))
    for t in range(n_frames):
        shift = float(opening[t] * max_open * size)
        # backward map: the pixel at y comes from y - shift * field (first-order inverse of the forward move)
        opened = cv2.remap(base, xx, yy - shift * jaw, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        moved = points + np.stack([np.zeros(68), shift * weights], 1)
        if opening[t] > 0.05:
            mask = np.zeros((canvas, canvas), np.uint8)
            cv2.fillPoly(mask, [np.round(moved[_INNER_MOUTH]).astype(np.int32)], 255)
            alpha = cv2.GaussianBlur(mask, (5, 5), 0).astype(np.float32)[..., None] / 255 * min(1.0, 1.5 * opening[t])
            opened = (opened * (1 - alpha) + shade * alpha + 0.5).astype(np.uint8)
        m = _motion_matrix(motion_params[t], canvas, size)
        frames[t] = cv2.warpAffine(opened, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT101)
        landmarks[t] = moved @ m[:, :2].T + m[:, 2]
    return RealFaceClip(frames=frames, landmarks=landmarks, opening=opening.astype(np.float32), audio=wav,
                        photo=photo, face=face, seed=seed,
                        info={"box_in_photo": boxes[face].tolist(), "max_open": max_open, "size": size})


def faceless_clip(n_frames: int = 25, size: int = 256, seed: int = 0) -> np.ndarray:
    """uint8 (T, S, S, 3): a drifting patch of the astronaut photo without her face (the flag and shuttle)."""
    import cv2

    photo = _load_photo_cached("astronaut")
    rng = np.random.default_rng([seed, 99])
    params = _head_motion(rng, n_frames)
    patch_side = 150  # right of her helmet: x 340..490, y 10..160 holds no face at any dlib upsample
    x0, y0 = 340, 10
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    for t in range(n_frames):
        s = size / patch_side
        m = np.array([[s, 0, -s * x0], [0, s, -s * y0]])
        centre = (size / 2, size / 2)
        rot = cv2.getRotationMatrix2D(centre, float(params[t, 0]), float(np.exp(params[t, 1])))
        full = np.vstack([rot, [0, 0, 1]]) @ np.vstack([m, [0, 0, 1]])
        full[:2, 2] += params[t, 2:] * size
        frames[t] = cv2.warpAffine(photo, full[:2], (size, size), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REFLECT101)
    return frames


def two_face_frame(size: int = 256) -> np.ndarray:
    """uint8 (S, S, 3): a square of insightface's t1.jpg holding two faces (a larger one right, a smaller left)."""
    import cv2

    photo = _load_photo_cached("t1")
    x0, y0, side = 250, 140, 360  # faces at x 275-364 and 454-583 of the photo (dlib, upsample 1)
    return cv2.resize(photo[y0:y0 + side, x0:x0 + side], (size, size), interpolation=cv2.INTER_AREA)


def write_clip(path, clip: RealFaceClip, crf: int = 12) -> Path:
    """The clip as an H.264 mp4 at 25 fps, with its speech as AAC when it has one."""
    from benchmarks.media import write_video

    return write_video(path, clip.frames, fps=FPS, audio=clip.audio, sample_rate=SAMPLE_RATE, crf=crf)

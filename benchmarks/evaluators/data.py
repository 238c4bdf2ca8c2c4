"""What the evaluators see: frames at the evaluator size, mouth crops, MFCC windows, and the world's GT.

Mouth crops (the SyncNet's video input) are square boxes centred between the lip corners
(landmarks 48 and 54, smoothed over time with a [1, 2, 1] filter) with side 0.75 × the clip's
median jaw width (|landmark 16 − landmark 0|), resampled to `crop_size` and stored BGR as
syncnet_python reads frames. Training uses the ground-truth landmarks; evaluation uses the landmark
evaluator's prediction (`Evaluators.mouth_crops`), so the whole sync score needs nothing but pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from tqdm import tqdm

from benchmarks import media
from metrics.errors import InputError

MOUTH_SIDE = 0.75  # crop side as a fraction of the jaw width
SAMPLES_PER_FRAME = 640  # 16 kHz / 25 fps


def as_frames(frames) -> np.ndarray:
    """Validate and return uint8 (T, H, W, 3) frames (numpy or a torch tensor)."""
    if hasattr(frames, "detach"):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise InputError(f"evaluators take frames as uint8 (T, H, W, 3) RGB with T >= 1, got {frames.dtype} "
                         f"{frames.shape}; convert with benchmarks.media.tensor_to_frames")
    return frames


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """uint8 (T, H, W, 3) -> (T, size, size, 3), area-averaged when shrinking, bilinear when growing."""
    if frames.shape[1:3] == (size, size):
        return frames
    interp = cv2.INTER_AREA if min(frames.shape[1:3]) >= size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])


def mouth_boxes(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-frame crop centres (T, 2) and one side length (pixels) from (T, 68, 2) landmarks."""
    lm = np.asarray(landmarks, np.float64)
    centre = (lm[:, 48] + lm[:, 54]) / 2
    if len(centre) > 2:
        padded = np.concatenate([centre[:1], centre, centre[-1:]])
        centre = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    side = MOUTH_SIDE * float(np.median(np.linalg.norm(lm[:, 16] - lm[:, 0], axis=1)))
    return centre, max(side, 4.0)


def mouth_crops(frames: np.ndarray, landmarks: np.ndarray, crop_size: int, margin: int = 0) -> np.ndarray:
    """uint8 BGR (T, crop_size + 2·margin, …, 3) mouth crops; the centre crop_size² is the margin-0 crop."""
    frames = as_frames(frames)
    if len(landmarks) != len(frames):
        raise InputError(f"{len(frames)} frames but {len(landmarks)} landmark sets")
    centre, side = mouth_boxes(landmarks)
    out_size = crop_size + 2 * margin
    scale = crop_size / side  # output pixels per input pixel
    out = np.empty((len(frames), out_size, out_size, 3), np.uint8)
    for i, (f, (cx, cy)) in enumerate(zip(frames, centre, strict=True)):
        # landmarks put pixel i's centre at i + 0.5; cv2 puts it at i: shift by half a pixel both sides
        m = np.array([[scale, 0, out_size / 2 - 0.5 + scale * (0.5 - cx)],
                      [0, scale, out_size / 2 - 0.5 + scale * (0.5 - cy)]])
        out[i] = cv2.warpAffine(f, m, (out_size, out_size), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)[:, :, ::-1]
    return out


def mfcc(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """(13, N) MFCCs exactly as `metrics.sync.sync_distances` computes them (int16 scale)."""
    from metrics.sync import mfcc_features

    audio = np.asarray(audio)
    if np.issubdtype(audio.dtype, np.floating) and np.abs(audio).max() <= 1.0:
        audio = audio * 32768.0
    return mfcc_features(audio, sample_rate).astype(np.float32)


def n_sync_windows(n_frames: int, n_samples: int) -> int:
    """How many 5-frame windows `sync_distances` scores: min(T, samples // 640) − 5."""
    return min(n_frames, n_samples // SAMPLES_PER_FRAME) - 5


@dataclass
class Split:
    """One split of a world in memory (everything per frame is concatenated over clips)."""

    names: list[str]
    frames: np.ndarray        # uint8 (N, S, S, 3) RGB at the evaluator size
    landmarks: np.ndarray     # float32 (N, 68, 2) in evaluator-size pixels
    pose: np.ndarray          # float32 (N, 3) degrees
    emotion: np.ndarray       # int64 (N,)
    identity: np.ndarray      # int64 (N,) index into `identities`
    clip: np.ndarray          # int64 (N,) index into `names`
    identities: list[str]
    crops: list[np.ndarray]   # per clip uint8 BGR (T, C + 2·margin, C + 2·margin, 3), GT-landmark mouth crops
    mfccs: list[np.ndarray]   # per clip float32 (13, M)
    windows: list[int]        # per clip number of SyncNet windows


def load_split(world, split: str, input_size: int, crop_size: int, crop_margin: int,
               progress: bool = True) -> Split:
    """Read every clip of `split` (frames are read straight from the files; nothing is cached)."""
    clips = world.clips(split)
    if not clips:
        raise InputError(f"{world.root} has no {split} clips; regenerate it with `edtalk data synth`")
    identities = sorted({c.identity for c in clips})
    frames, lms, poses, emos, ids, clip_idx, crops, mfccs, windows = [], [], [], [], [], [], [], [], []
    for k, c in enumerate(tqdm(clips, desc=f"load {split}", unit="clip", disable=not progress)):
        native = media.read_video(c.video).frames
        gt = world.ground_truth(c)
        n = min(len(native), len(gt["pose"]))
        native = native[:n]
        h, w = native.shape[1:3]
        lm = gt["landmarks"][:n].astype(np.float32)
        frames.append(resize_frames(native, input_size))
        lms.append(lm * np.array([input_size / w, input_size / h], np.float32))
        poses.append(gt["pose"][:n].astype(np.float32))
        emos.append(np.full(n, int(gt["emotion_index"])))
        ids.append(np.full(n, identities.index(c.identity)))
        clip_idx.append(np.full(n, k))
        crops.append(mouth_crops(native, lm, crop_size, crop_margin))
        audio = world.audio(c)
        mfccs.append(mfcc(audio, world.meta["sample_rate"]))
        windows.append(n_sync_windows(n, len(audio)))
    return Split([c.name for c in clips], np.concatenate(frames), np.concatenate(lms), np.concatenate(poses),
                 np.concatenate(emos).astype(np.int64), np.concatenate(ids).astype(np.int64),
                 np.concatenate(clip_idx).astype(np.int64), identities, crops, mfccs, windows)

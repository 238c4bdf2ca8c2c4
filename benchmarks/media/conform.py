"""Fitting a clip to a protocol: frame rate (resample or refuse), frame size, and audio length against the
video's (trim or pad within a tolerance, refuse beyond)."""
from __future__ import annotations

import numpy as np

from benchmarks.media.video import VideoClip, read_video
from metrics.errors import InputError

# Largest audio/video length disagreement `fit_audio_to_video` trims or pads instead of refusing.
# Encoders alone add tens of ms (AAC priming of 1024 samples, container edit lists), and a method's
# output of floor(audio_s * 25) frames is up to one frame short, so those are fixed and recorded.
# syncnet_python's offset search spans +-15 frames (0.6 s at 25 fps): a disagreement longer than that
# cannot be a sync offset but a wrong audio/video pairing or a cut clip, so 0.5 s (12.5 frames) stays
# below it and refuses.
AV_TOLERANCE_S = 0.5

def resample_indices(n_frames: int, src_fps: float, dst_fps: float = 25.0) -> np.ndarray:
    """Source frame index for each output frame at `dst_fps` (nearest earlier timestamp, as ffmpeg -r)."""
    if src_fps <= 0:
        raise InputError(f"invalid source frame rate {src_fps}")
    duration = n_frames / src_fps
    n_out = int(np.floor(duration * dst_fps + 1e-6))
    return np.minimum(np.floor(np.arange(n_out) * src_fps / dst_fps + 1e-6).astype(int), n_frames - 1)


def resample_times(times, dst_fps: float = 25.0) -> np.ndarray:
    """As `resample_indices` for frames at arbitrary times (s, increasing; variable frame rate): the
    frame shown at k / dst_fps for every k within the clip (its last frame lasts as long as the previous)."""
    t = np.asarray(times, np.float64)
    t = t - t[0]
    last = float(t[-1] - t[-2]) if len(t) > 1 else 1.0 / dst_fps
    n_out = int(np.floor((t[-1] + last) * dst_fps + 1e-6))
    idx = np.searchsorted(t, np.arange(n_out) / dst_fps + 1e-6, side="right") - 1
    return np.clip(idx, 0, len(t) - 1)


def conform_fps(video, target: float = 25.0, policy: str = "resample", tolerance: float = 1e-3
                ) -> tuple[VideoClip, dict]:
    """A clip (or a path, read here) at exactly `target` fps and constant rate.

    `policy="resample"` picks, for each output frame, the nearest earlier source frame (ffmpeg -r; by
    timestamp when the rate varies); `"refuse"` raises `InputError` with the measured rate. Returns the
    clip (the input itself when nothing had to change) and a record of what was done, which is also
    stored as the clip's `conversions["fps"]`.
    """
    if policy not in ("resample", "refuse"):
        raise InputError(f"fps policy must be 'resample' or 'refuse', not {policy!r}")
    clip = video if isinstance(video, VideoClip) else read_video(video)
    name = clip.source or "video"
    n = len(clip.frames)
    rec = {"source_fps": round(float(clip.fps), 4), "target_fps": float(target), "vfr": clip.vfr,
           "policy": policy, "frames_in": n}
    if not clip.vfr and abs(clip.fps - target) <= tolerance * target:
        rec.update(action="none", frames_out=n)
        return clip, rec
    if policy == "refuse":
        what = (f"variable frame rate ({clip.timing['fps_min']:g}-{clip.timing['fps_max']:g} fps, mean "
                f"{clip.timing['fps_mean']:g})" if clip.vfr else f"{clip.fps:.3f} fps")
        raise InputError(f"{name}: {what} but {target:g} fps is needed; resample it (conform_fps(..., "
                         f"policy='resample') or ffmpeg -i IN -r {target:g} OUT.mp4)")
    if clip.vfr and clip.times is not None:
        idx, how = resample_times(clip.times, target), "nearest earlier frame by timestamp (variable rate)"
    else:
        idx, how = resample_indices(n, clip.fps, target), "nearest earlier frame (ffmpeg -r)"
    if len(idx) == 0:
        raise InputError(f"{name}: {n} frames at {clip.fps:.3f} fps are shorter than one frame at "
                         f"{target:g} fps")
    kept = len(np.unique(idx))
    rec.update(action="resampled", method=how, frames_out=int(len(idx)), repeated=int(len(idx) - kept),
               dropped=int(n - kept))
    rate = float(target)
    out = VideoClip(clip.frames[idx], rate, np.arange(len(idx)) / rate,
                    {"vfr": False, "fps_min": rate, "fps_max": rate, "fps_mean": rate},
                    {**clip.conversions, "fps": rec}, clip.source)
    return out, rec


def check_size(frames, size: int | tuple[int, int], source=None) -> None:
    """Refuse frames (array or VideoClip) that are not `size` (an int for square, or (height, width))."""
    if isinstance(frames, VideoClip):
        source = source or frames.source
        frames = frames.frames
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    shape = np.shape(frames)
    if len(shape) < 3 or tuple(shape[-3:-1]) != (h, w):
        got = f"{shape[-2]}x{shape[-3]}" if len(shape) >= 3 else f"shape {shape}"
        raise InputError(f"{source or 'video'}: frames are {got} (WxH) but {w}x{h} is needed; crop to the "
                         f"face and resize first (benchmarks.datasets.real.preprocess_clip(..., size={w}) "
                         f"or read_video(path, size={w}))")


def check_av_sync(n_frames: int, fps: float, n_samples: int, sample_rate: int,
                  tolerance_s: float = AV_TOLERANCE_S, source=None, allow_longer_audio: bool = False) -> dict:
    """Compare audio and video lengths; the reference rule (Wav2Lip, EDTalk, syncnet_python) cuts or pads
    the audio to the video's duration. Returns what `fit_audio_to_video` will do (action none/trim/pad,
    mismatch in s and frames, target_samples, within_one_frame); refuses beyond `tolerance_s`.
    `allow_longer_audio`: the audio may run on (a segment cut from a longer recording) and is trimmed."""
    if fps <= 0 or sample_rate <= 0:
        raise InputError(f"{source or 'clip'}: invalid frame rate {fps} or sample rate {sample_rate}")
    video_s, audio_s = n_frames / fps, n_samples / sample_rate
    target = int(round(video_s * sample_rate))
    diff = audio_s - video_s
    rec = {"video_s": round(video_s, 4), "audio_s": round(audio_s, 4), "mismatch_s": round(diff, 4),
           "mismatch_frames": round(diff * fps, 2), "target_samples": target,
           "action": "none" if n_samples == target else ("trim" if n_samples > target else "pad"),
           "within_one_frame": abs(diff) <= 1.0 / fps, "tolerance_s": tolerance_s}
    if abs(diff) > tolerance_s and not (allow_longer_audio and diff > 0):
        longer, shorter = ("audio", "video") if diff > 0 else ("video", "audio")
        raise InputError(f"{source or 'clip'}: the {longer} is {abs(diff):.3f} s ({abs(diff) * fps:.1f} "
                         f"frames at {fps:g} fps) longer than the {shorter} ({audio_s:.3f} s audio, "
                         f"{video_s:.3f} s video), beyond the {tolerance_s:g} s tolerance; check that they "
                         "belong together or cut both to the same length")
    return rec


def fit_audio_to_video(wav: np.ndarray, n_frames: int, fps: float, sample_rate: int = 16000,
                       tolerance_s: float = AV_TOLERANCE_S, source=None, allow_longer_audio: bool = False
                       ) -> tuple[np.ndarray, dict]:
    """Audio cut or zero-padded (silence) to the video's duration, and `check_av_sync`'s record of it."""
    wav = np.asarray(wav, np.float32).reshape(-1)
    rec = check_av_sync(n_frames, fps, len(wav), sample_rate, tolerance_s, source, allow_longer_audio)
    target = rec["target_samples"]
    out = wav[:target] if len(wav) >= target else np.pad(wav, (0, target - len(wav)))
    return out, rec

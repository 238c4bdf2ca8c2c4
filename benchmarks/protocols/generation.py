"""How a method's test videos are made for the real protocols (mead-edtalk, hdtf-edtalk): the rules every
method follows, so scores compare methods and not set-ups.

* Source frame (`source_frame`): the FIRST frame of the ground-truth clip, as the clip is stored under the data
  root (EDTalk's preprocessing: face crop, 256 px, 25 fps). The paper does not say which frame it used
  (paper notes §3: "which frame is the source ... is unknown"); the first frame is the common choice of the
  self-reenactment protocols (EAT, PD-FGC) and the one `edtalk generate` uses for every method it runs.
* Length: one output frame per ground-truth frame (at 25 fps); the speech is the GT clip's, cut or padded with
  silence to exactly that many 40-ms frames (`fit_speech`), and muxed into every generated video.
* `copy_source_baseline`: the source frame held still for the whole clip, the floor every method should beat.

`edtalk generate` (edtalk/generate.py) holds EDTalk's own driver rules (audio and video settings); evaluation
reads only the videos, so a baseline's videos made by its own code are scored the same way.
"""
from __future__ import annotations

import numpy as np

from metrics.errors import InputError

__all__ = ["SOURCE_FRAME_RULE", "SAMPLES_PER_FRAME", "source_frame", "fit_speech", "copy_source_baseline",
           "read_ground_truth"]

SOURCE_FRAME_RULE = "the first frame of the ground-truth clip (as stored under --data: 25 fps, face-cropped)"
SAMPLE_RATE = 16000
FPS = 25.0
SAMPLES_PER_FRAME = int(SAMPLE_RATE / FPS)  # 640


def source_frame(gt_frames: np.ndarray) -> np.ndarray:
    """The source image of a test case: (1, H, W, 3), the GT clip's first frame (SOURCE_FRAME_RULE)."""
    frames = np.asarray(gt_frames)
    if frames.ndim != 4 or not len(frames):
        raise InputError(f"a ground-truth clip must be (T, H, W, 3) frames with T >= 1, got shape {frames.shape}")
    return frames[:1]


def fit_speech(audio: np.ndarray, n_frames: int) -> np.ndarray:
    """The speech of a clip of `n_frames` video frames: cut or zero-padded to n_frames * 640 samples (16 kHz),
    as the release's demo does with `crop_pad_audio` to its whole-frame length."""
    want = int(n_frames) * SAMPLES_PER_FRAME
    audio = np.asarray(audio, np.float32).reshape(-1)
    if len(audio) >= want:
        return audio[:want]
    return np.concatenate([audio, np.zeros(want - len(audio), np.float32)])


def copy_source_baseline(gt_frames: np.ndarray) -> np.ndarray:
    """The "copy the source frame" baseline: the source frame repeated for every GT frame, (T, H, W, 3)."""
    return np.repeat(source_frame(gt_frames), len(gt_frames), axis=0)


def read_ground_truth(video, audio=None, start: float = 0.0, duration: float | None = None,
                      fps: float = FPS) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """(uint8 frames at `fps`, 16 kHz mono speech or None, record) of a GT clip: a MEAD clip (speech in the
    video or a separate file) or an HDTF segment (`start`, `duration` seconds of a longer video)."""
    from benchmarks.media import conform_fps, probe_video, read_audio, read_video

    clip, fps_record = conform_fps(read_video(video), fps, "resample")
    frames = clip.frames
    if duration is not None:
        first = int(round(start * fps))
        frames = frames[first:first + int(round(duration * fps))]
        if not len(frames):
            raise InputError(f"{video}: segment at {start:.1f} s is past the end of the video")
    speech_from = audio if audio is not None else (video if probe_video(video, timing=False)["has_audio"] else None)
    speech = None
    if speech_from is not None:
        speech = read_audio(speech_from, SAMPLE_RATE)[int(round(start * SAMPLE_RATE)):]
    record = {"video": str(video), "audio": None if speech_from is None else str(speech_from),
              "frames": int(len(frames)), "fps_conversion": fps_record}
    return frames, speech, record

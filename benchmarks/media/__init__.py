"""Video and audio I/O on PyAV (its wheels carry FFmpeg): probe, stream, read, and write H.264 + AAC.

Readers raise `InputError` with the file name and what to do when a file is missing, unreadable,
empty or lacks a stream that is needed. Writers go through a temporary file renamed into place, so
an interrupted write never leaves a truncated video behind.

What a reader changes is recorded, never silent: `VideoClip.conversions` notes grayscale or alpha
frames turned into RGB and resizing, `read_audio(..., info={})` the resampling and downmixing,
`conform_fps` returns what it did to the frame rate, and `fit_audio_to_video` what it trimmed or
padded. `check_size` and `check_av_sync` refuse inputs too far off to fix silently.
"""
from benchmarks.media.audio import read_audio, write_wav
from benchmarks.media.conform import (
    AV_TOLERANCE_S,
    check_av_sync,
    check_size,
    conform_fps,
    fit_audio_to_video,
    resample_indices,
    resample_times,
)
from benchmarks.media.tensors import frames_to_tensor, tensor_to_frames
from benchmarks.media.video import VideoClip, frame_timing, iter_video, probe_video, read_image, read_video
from benchmarks.media.writer import DEFAULT_CRF, VideoWriter, write_video

__all__ = ["AV_TOLERANCE_S", "DEFAULT_CRF", "VideoClip", "VideoWriter", "check_av_sync", "check_size", "conform_fps",
           "fit_audio_to_video", "frame_timing", "frames_to_tensor", "iter_video", "probe_video", "read_audio",
           "read_image", "read_video", "resample_indices", "resample_times", "tensor_to_frames", "write_video",
           "write_wav"]

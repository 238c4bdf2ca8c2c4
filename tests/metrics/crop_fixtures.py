"""Reading the reference fixtures of the face-crop tests: a clip stored as mp4 bytes and its detections."""
from __future__ import annotations


def clip_and_detections(reference, name, tmp_path_factory):
    """(frames, per-frame detections) of clip `name` in a reference npz (`<name>_mp4`, `<name>_detections`:
    rows of frame index then box)."""
    from benchmarks.media import read_video

    path = tmp_path_factory.mktemp("clips") / f"{name}.mp4"
    path.write_bytes(reference[f"{name}_mp4"].tobytes())
    frames = read_video(path).frames
    flat = reference[f"{name}_detections"]
    return frames, [flat[flat[:, 0] == i, 1:] for i in range(len(frames))]

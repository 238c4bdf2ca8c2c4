"""Crop a folder of raw talking-head videos the way a reference pipeline does (`edtalk data crop`).

Input: any tree of videos (`*.mp4`, `*.avi`, `*.mov`, `*.mkv`), e.g. MEAD as released
(`ROOT/<id>/video/<camera>/<emotion>/level_<k>/<nnn>.mp4` with the speech in
`ROOT/<id>/audio/<emotion>/level_<k>/<nnn>.m4a`; only the `front` camera by default, as EDTalk uses) or a
plain folder of clips. Output: the same relative paths under OUT, each a cropped H.264 mp4 at 25 fps
with the clip's speech cut to the kept frames and muxed in; for MEAD, the cut speech also goes to the
mirrored `audio/.../<nnn>.m4a` so `benchmarks.datasets.real.MEAD(OUT)` reads the cropped tree.

Frames are brought to 25 fps first (nearest earlier frame, as `ffmpeg -r 25`). The speech comes from
the video's own audio stream, else MEAD's sibling `.m4a`, else a `.wav`/`.m4a` of the same stem.

Resumable: each finished clip (cropped or found faceless) leaves a small JSON record under
`OUT/.crop-records/`, written last and atomically, so a re-run skips it; outputs are written to a
temporary file and renamed. Memory stays flat in clip length for `edtalk-preprocess` (one streaming
pass detects, a second crops straight into the writer); other styles get the video as a re-readable
source and hold only their crops. The run ends with
`OUT/crop_summary.json`: counts, the clips without a face, the unreadable ones, and each clip's record.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from metrics.errors import InputError

__all__ = ["find_videos", "crop_tree", "crop_clip", "frames_at_fps", "speech_for", "SUMMARY_NAME"]

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
SUMMARY_NAME = "crop_summary.json"
RECORDS_DIR = ".crop-records"
FPS = 25
MEAD_VIDEO = re.compile(r"^(?P<id>[^/]+)/video/(?P<camera>[^/]+)/(?P<emotion>[^/]+)/(?P<level>level_\d+)/"
                        r"(?P<index>[^/]+)\.\w+$")
CHUNK = 32


def find_videos(root: Path, camera: str | None = "front") -> tuple[list[Path], int]:
    """Videos under `root` in sorted order, and how many MEAD videos of other cameras were left out."""
    videos, other_cameras = [], 0
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in VIDEO_SUFFIXES or RECORDS_DIR in p.parts:
            continue
        m = MEAD_VIDEO.match(p.relative_to(root).as_posix())
        if m and camera and m["camera"] != camera:
            other_cameras += 1
            continue
        videos.append(p)
    return videos, other_cameras


def speech_for(root: Path, video: Path) -> Path | None:
    """Where a clip's speech is: the video itself, MEAD's sibling .m4a, or a same-stem .wav/.m4a; None if nowhere."""
    from benchmarks.media import probe_video

    if probe_video(video, timing=False)["has_audio"]:
        return video
    m = MEAD_VIDEO.match(video.relative_to(root).as_posix())
    candidates = [root / m["id"] / "audio" / m["emotion"] / m["level"] / f"{m['index']}.m4a"] if m else []
    candidates += [video.with_suffix(".wav"), video.with_suffix(".m4a")]
    return next((c for c in candidates if c.is_file()), None)


def frames_at_fps(path: Path, fps: float = FPS, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """The video's frames at `fps` (nearest earlier source frame, as ffmpeg -r), in chunks: one decode pass."""
    from benchmarks.media import iter_video, probe_video, resample_indices

    info = probe_video(path)
    src_fps, n = info["fps"], info["n_frames"]
    same = abs(src_fps - fps) <= 1e-3 * fps
    picks = np.arange(n) if same else resample_indices(n, src_fps, fps)
    repeats = np.bincount(picks, minlength=n)
    source_index, out = 0, []
    for block in iter_video(path, chunk=chunk):
        for frame in block:
            if source_index < len(repeats):
                out.extend([frame] * int(repeats[source_index]))
            source_index += 1
            while len(out) >= chunk:
                yield np.stack(out[:chunk])
                out = out[chunk:]
    if out:
        yield np.stack(out)


def _write_m4a(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """Mono AAC in an .m4a, through a temporary file renamed into place."""
    import os
    import tempfile

    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".m4a", dir=path.parent)
    os.close(fd)
    try:
        with av.open(tmp, mode="w", format="ipod") as container:
            stream = container.add_stream("aac", rate=sample_rate)
            stream.layout = "mono"
            pcm = np.clip(np.asarray(audio, np.float32), -1, 1)
            for start in range(0, len(pcm), 1024):
                frame = av.AudioFrame.from_ndarray(pcm[None, start:start + 1024], format="flt", layout="mono")
                frame.sample_rate, frame.pts = sample_rate, start
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def crop_clip(root: Path, video: Path, out_dir: Path, style: str = "edtalk-preprocess", detector="auto",
              options: dict | None = None, sample_rate: int = 16000, detectors: dict | None = None) -> dict:
    """Crop one clip and write its outputs; returns its record (status "cropped" or "no_face").

    `detector`: a name of metrics.crops.detectors or a callable; `detectors` caches the edtalk-preprocess
    detector per frame size (its S3FD works at most at 640 px) across clips."""
    from benchmarks.media import VideoWriter, probe_video, read_audio
    from metrics.crops import crop

    rel = video.relative_to(root)
    out_video = (out_dir / rel).with_suffix(".mp4")
    options = dict(options or {})
    if style == "edtalk-preprocess":
        from metrics.crops.edtalk_preprocess import crop_scale_ffmpeg, detector_for, plan_crop

        detections, frame_hw, n = [], None, 0
        for block in frames_at_fps(video):  # pass 1: detect, one chunk in memory
            frame_hw = tuple(block.shape[1:3])
            cache = detectors if detectors is not None else {}
            if frame_hw not in cache:
                cache[frame_hw] = detector_for(frame_hw, detector, options.get("weights"), options.get("device"))
            det, deviations = cache[frame_hw]
            detections += [np.asarray(det(f), np.float64).reshape(-1, 5) for f in block]
            n += len(block)
        plan = plan_crop(detections, frame_hw, options.get("trajectory"))
        record = {"style": style, "detector": getattr(det, "name", type(det).__name__),
                  "deviations": list(deviations), "frames": n, **plan["info"]}
        start, end, box = plan["start"], plan["end"], plan["box"]
    else:
        if style == "syncnet-track":
            options["detector"] = detector
        options.pop("trajectory", None)
        # a re-readable source: two-pass styles read the video twice instead of holding it
        result = crop(lambda: (f for block in frames_at_fps(video) for f in block), style, **options)
        record = {"frames": int(result.dropped + len(result.kept)), **result.provenance()}
        if isinstance(detector, _Named):  # the resolution's own reason (e.g. sfd_face.pth not found) is kept
            record["deviations"] = detector.deviations + [d for d in record["deviations"]
                                                          if not d.startswith("face detector")]
        kept = result.kept
        start, end, box = (int(kept[0]), int(kept[-1]) + 1, None) if len(kept) else (0, 0, None)
        if len(kept) and not np.array_equal(kept, np.arange(start, end)):
            record["note"] = "kept frames are not contiguous: the audio spans first to last kept frame"
    record["source"] = rel.as_posix()
    record["source_fps"] = round(float(probe_video(video, timing=False)["fps"]), 4)
    if end <= start:
        record.update(status="no_face", kept=0)
        return record
    speech = speech_for(root, video)
    audio = None
    if speech is not None:
        audio = read_audio(speech, sample_rate)
        audio = audio[int(round(start / FPS * sample_rate)):int(round(end / FPS * sample_rate))]
        record["audio"] = speech.relative_to(root).as_posix()
    else:
        record["audio"] = None
    with VideoWriter(out_video, fps=FPS, audio=audio, sample_rate=sample_rate) as writer:
        if style == "edtalk-preprocess":
            index = 0
            for block in frames_at_fps(video):  # pass 2: crop the kept frames, one chunk in memory
                lo, hi = max(start - index, 0), min(end - index, len(block))
                if lo < hi:
                    writer.write(crop_scale_ffmpeg(block[lo:hi], box, options.get("size", 256)))
                index += len(block)
        else:
            writer.write(result.frames)
    m = MEAD_VIDEO.match(rel.as_posix())
    if m and audio is not None and speech != video:
        _write_m4a(out_dir / m["id"] / "audio" / m["emotion"] / m["level"] / f"{m['index']}.m4a", audio, sample_rate)
    record.update(status="cropped", kept=end - start, output=out_video.relative_to(out_dir).as_posix(),
                  start_frame=start, end_frame=end)
    return record


class _Named:
    """A resolved detector that keeps the deviation its resolution found (e.g. why S3FD was not used)."""

    def __init__(self, detector, deviations):
        self._detector, self.deviations = detector, deviations
        self.name = getattr(detector, "name", type(detector).__name__)

    def __call__(self, frame):
        return self._detector(frame)


def crop_tree(raw_dir, out_dir, style: str = "edtalk-preprocess", detector: str = "auto", camera: str | None = "front",
              weights=None, device=None, options: dict | None = None, progress: bool = True) -> dict:
    """Crop every video under `raw_dir` into `out_dir` (resumable); returns the summary also written as JSON."""
    from tqdm import tqdm

    from metrics.crops import styles
    from metrics.utils import atomic_write_json

    root, out = Path(raw_dir), Path(out_dir)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; give the folder of raw videos (e.g. MEAD's ROOT)")
    if style not in styles():
        raise InputError(f"unknown crop style {style!r}; known: {', '.join(styles())}")
    if out.resolve() == root.resolve() or root.resolve() in out.resolve().parents:
        raise InputError(f"--out {out} lies inside {root}; choose a folder outside the raw videos")
    videos, other_cameras = find_videos(root, camera)
    if not videos:
        raise InputError(f"{root}: no videos ({', '.join(VIDEO_SUFFIXES)}) found"
                         + (f" for camera {camera!r}" if other_cameras else ""))
    records_dir = out / RECORDS_DIR
    options = {**(options or {}), "weights": weights, "device": device}
    if style == "syncnet-track":  # one detector for every clip (S3FD loads its weights once)
        from metrics.crops.detectors import resolve_detector

        found, deviations = resolve_detector(detector, weights=weights, device=device)
        detector = _Named(found, deviations)
    elif style != "edtalk-preprocess":
        options = options_without_detector(options)
    detectors: dict = {}
    records, unreadable = [], []
    bar = tqdm(videos, desc=f"crop {style}", unit="clip", disable=not progress)
    for video in bar:
        rel = video.relative_to(root)
        record_path = (records_dir / rel).with_suffix(".json")
        if record_path.is_file():  # finished by an earlier run
            records.append(json.loads(record_path.read_text()))
            continue
        try:
            record = crop_clip(root, video, out, style, detector, options, detectors=detectors)
        except InputError as exc:
            unreadable.append({"source": rel.as_posix(), "error": str(exc)})
            continue
        atomic_write_json(record_path, record)
        records.append(record)
        bar.set_postfix(no_face=sum(r["status"] == "no_face" for r in records), unreadable=len(unreadable))
    no_face = [r["source"] for r in records if r["status"] == "no_face"]
    summary = {"raw_dir": str(root), "out_dir": str(out), "style": style, "fps": FPS, "clips": len(videos),
               "cropped": sum(r["status"] == "cropped" for r in records), "no_face": no_face,
               "unreadable": unreadable, "other_cameras_skipped": other_cameras, "records": records}
    atomic_write_json(out / SUMMARY_NAME, summary)
    return summary


def options_without_detector(options: dict) -> dict:
    """Styles other than syncnet-track and edtalk-preprocess choose their own detectors."""
    return {k: v for k, v in options.items() if k not in ("weights", "device") or v is not None}

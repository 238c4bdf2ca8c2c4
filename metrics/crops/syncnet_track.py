"""`syncnet-track`: syncnet_python's run_pipeline face-track crop (what LSE-C/LSE-D see on real video).

The reference (joonson/syncnet_python `run_pipeline.py`, 25 fps frames):

1. faces on every frame: S3FD, `conf_th=0.9`, frame scaled by `facedet_scale=0.25` (metrics.crops.s3fd);
2. shots: PySceneDetect 0.5.1's ContentDetector (mean absolute HSV difference of consecutive frames,
   subsampled by its default downscale factor for the width, >= 30 cuts, at least 15 frames apart);
   shots shorter than `min_track` frames are skipped;
3. tracking per shot (`track_shot`): greedy, frame by frame, a face joins the track when at most
   `num_failed_det=25` frames passed since its last face and their IoU > 0.5; a track is kept when it
   has more than `min_track=100` faces and a mean box side above `min_face_size=100` px; the boxes of
   the missing frames are linearly interpolated;
4. crop (`crop_video`): per frame s = max(w, h) / 2 and the box centre, each median-filtered with
   kernel 13 (scipy's, zero-padded at the ends); the frame is padded by int(s (1 + 2 cs)) with grey 110
   and rows [y - s, y + s (1 + 2 cs)), columns [x - s (1 + cs), x + s (1 + cs)) (cs = crop_scale 0.4) are
   resized bilinearly to 224 x 224.

Reproduced as is, including `track_shot`'s way of removing faces from the list it is iterating over (the
face after a taken one in the same frame is not looked at in that pass). What the reference does
silently is counted here: `info` lists every track kept, and how many candidate tracks, shots and
frames the length and size rules dropped (a clip under 4 s yields no track at the default `min_track`).

Which frames a `CropResult` holds: one face track. A clip may yield several; `track=None` takes the
longest (the first of equal ones, in the reference's order: by shot, then by the frame the track
starts), `track=k` the k-th. `info["tracks"]` describes all of them. `boxes` are the crop windows
(x0, y0, x1, y1) in input pixels, which may reach outside the frame (that part is grey 110). Frames
outside the chosen track are dropped and counted.

The detector is pluggable (`detector=`: "auto", "s3fd", "s3fd-fa", "mtcnn", "dlib-hog" or a callable, see
metrics.crops.detectors): "auto" is S3FD when `sfd_face.pth` is found, else dlib HOG, recorded in
`deviations` with the reason (HOG boxes are tighter than S3FD's, so its crops frame the face closer).
`detections=` takes per-frame (K, 5) arrays instead of detecting, and `shots=` a list of (start, end)
frame ranges instead of the ContentDetector. Frames (an array, an iterable, or a zero-argument callable
returning one, read twice without holding the clip) must already be at 25 fps, as the reference
converts first (`benchmarks.media.conform_fps`). Left to the caller, as outside the crop: the
reference decodes through JPEG (`-qscale:v 2`) and writes its crops through XVID; the crops here are
the pixels it hands its video writer.
"""
from __future__ import annotations

import numpy as np

from metrics.crops import CropResult, register
from metrics.crops.twopass import rereadable
from metrics.errors import InputError

__all__ = ["syncnet_track", "content_shots", "content_values", "track_shot", "crop_windows", "crop_track", "detect_all"]

IOU_THRESHOLD = 0.5  # track_shot's iouThres
PAD_VALUE = 110
MEDIAN_KERNEL = 13
# PySceneDetect 0.5.1 video_manager.DEFAULT_DOWNSCALE_FACTORS: frame width -> subsampling step
_DOWNSCALE = {3200: 12, 2100: 8, 1700: 6, 1200: 5, 900: 4, 600: 3, 400: 2}


def downscale_factor(width: int) -> int:
    for w in sorted(_DOWNSCALE, reverse=True):
        if width >= w:
            return _DOWNSCALE[w]
    return 1


def _hsv(frame: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2HSV).astype(np.int32)


def _content_delta(hsv: np.ndarray, previous: np.ndarray) -> float:
    delta = np.abs(hsv - previous).reshape(-1, 3).sum(0) / float(hsv.shape[0] * hsv.shape[1])
    return float(sum(delta) / 3.0)


def content_values(frames) -> np.ndarray:
    """ContentDetector's content_val per frame: mean |HSV difference| to the previous frame over the three
    channels, on frames subsampled by VideoManager's default downscale factor (NaN for the first frame)."""
    values, previous = [], None
    for frame in frames:
        step = downscale_factor(frame.shape[1])
        hsv = _hsv(frame[::step, ::step])
        values.append(np.nan if previous is None else _content_delta(hsv, previous))
        previous = hsv
    return np.asarray(values, np.float64)


def _shots_from_values(values: np.ndarray, threshold: float = 30.0, min_scene_len: int = 15) -> list[tuple[int, int]]:
    cuts, last_cut = [], None
    for i, value in enumerate(values):
        if value >= threshold and (last_cut is None or i - last_cut >= min_scene_len):
            cuts.append(i)
            last_cut = i
    bounds = [0, *cuts, len(values)]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def content_shots(frames, threshold: float = 30.0, min_scene_len: int = 15) -> list[tuple[int, int]]:
    """PySceneDetect 0.5.1 ContentDetector() with VideoManager.set_downscale_factor(): [(start, end), ...]."""
    return _shots_from_values(content_values(frames), threshold, min_scene_len)


def detect_all(frames, detector) -> list[np.ndarray]:
    """Per frame, the detector's (K, 5) [x0, y0, x1, y1, score] faces."""
    return [np.asarray(detector(frame), dtype=np.float64).reshape(-1, 5) for frame in frames]


def _iou(a, b) -> float:
    # run_pipeline's bb_intersection_over_union: no +1 on widths
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def track_shot(shot_faces: list[list[tuple[int, tuple]]], num_failed_det: int = 25, min_track: int = 100,
               min_face_size: float = 100, stats: dict | None = None) -> list[dict]:
    """run_pipeline.track_shot: `shot_faces` per frame of the shot, a list of (frame index, bbox) (consumed).

    Returns [{"frame": int (N,), "bbox": float (N, 4)}] with missing frames interpolated. `stats` counts
    the candidate tracks dropped as too short or too small, and their faces.
    """
    from scipy.interpolate import interp1d

    stats = stats if stats is not None else {}
    tracks = []
    while True:
        track = []
        for faces in shot_faces:
            i = 0
            while i < len(faces):
                frame, bbox = faces[i]
                if not track:
                    track.append(faces.pop(i))
                elif frame - track[-1][0] <= num_failed_det:
                    if _iou(bbox, track[-1][1]) > IOU_THRESHOLD:
                        track.append(faces.pop(i))
                else:
                    break
                # the reference removes from the list it iterates: the next face slides into this slot
                # and the iterator steps past it, so one index step either way
                i += 1
        if not track:
            return tracks
        if len(track) <= min_track:
            stats["short_tracks"] = stats.get("short_tracks", 0) + 1
            stats["short_track_faces"] = stats.get("short_track_faces", 0) + len(track)
            continue
        framenum = np.array([f for f, _ in track])
        bboxes = np.array([np.array(b) for _, b in track])
        frame_i = np.arange(framenum[0], framenum[-1] + 1)
        bboxes_i = np.stack([interp1d(framenum, bboxes[:, j])(frame_i) for j in range(4)], axis=1)
        if max(np.mean(bboxes_i[:, 2] - bboxes_i[:, 0]), np.mean(bboxes_i[:, 3] - bboxes_i[:, 1])) > min_face_size:
            tracks.append({"frame": frame_i, "bbox": bboxes_i})
        else:
            stats["small_tracks"] = stats.get("small_tracks", 0) + 1
            stats["small_track_frames"] = stats.get("small_track_frames", 0) + len(frame_i)


def crop_windows(bboxes: np.ndarray, crop_scale: float = 0.4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """crop_video's smoothed half-size s and centre (x, y) per frame of a track (median filter, kernel 13)."""
    from scipy import signal

    s = [max((d[3] - d[1]), (d[2] - d[0])) / 2 for d in bboxes]
    y = [(d[1] + d[3]) / 2 for d in bboxes]
    x = [(d[0] + d[2]) / 2 for d in bboxes]
    return (signal.medfilt(s, kernel_size=MEDIAN_KERNEL), signal.medfilt(x, kernel_size=MEDIAN_KERNEL),
            signal.medfilt(y, kernel_size=MEDIAN_KERNEL))


def crop_frame(frame: np.ndarray, bs: float, x: float, y: float, crop_scale: float = 0.4, size: int = 224):
    """crop_video's pixels for one frame: (crop uint8 (size, size, 3), window (x0, y0, x1, y1) in the frame)."""
    import cv2

    cs = crop_scale
    bsi = int(bs * (1 + 2 * cs))
    padded = np.pad(frame, ((bsi, bsi), (bsi, bsi), (0, 0)), "constant", constant_values=(PAD_VALUE, PAD_VALUE))
    my, mx = y + bsi, x + bsi
    rows = (int(my - bs), int(my + bs * (1 + 2 * cs)))
    cols = (int(mx - bs * (1 + cs)), int(mx + bs * (1 + cs)))
    face = padded[rows[0]:rows[1], cols[0]:cols[1]]
    if face.shape[0] < 1 or face.shape[1] < 1:
        raise InputError(f"syncnet-track: the crop window {cols[0] - bsi, rows[0] - bsi, cols[1] - bsi, rows[1] - bsi}"
                         f" holds no pixel of the {frame.shape[1]}x{frame.shape[0]} frame")
    return cv2.resize(face, (size, size)), (cols[0] - bsi, rows[0] - bsi, cols[1] - bsi, rows[1] - bsi)


def crop_track(frames, track: dict, crop_scale: float = 0.4, size: int = 224, expected: int | None = None):
    """crop_video's pixels for one track over `frames` (any iterable of checked frames, read once in order):
    (crops uint8 (N, size, size, 3), kept frame indices (N,), windows float (N, 4))."""
    from metrics.crops.common import CropCollector

    s, x, y = crop_windows(track["bbox"], crop_scale)
    first, last = int(track["frame"][0]), int(track["frame"][-1])
    out = CropCollector(size, (4,), expected=len(track["frame"]) if expected is None else expected)
    for index, frame in enumerate(frames):
        if index > last:
            break
        if index >= first:
            k = index - first
            crop, window = crop_frame(frame, s[k], x[k], y[k], crop_scale, size)
            out.add(index, crop, window)
    return out.arrays()


def _first_pass(frames, detector, detections, want_shots: bool):
    """One read of the clip: per-frame detections (unless given), ContentDetector values, the frame count."""
    found, values, previous, count = [], [], None, 0
    for index, frame in enumerate(frames):
        if detector is not None:
            found.append(np.asarray(detector(frame), dtype=np.float64).reshape(-1, 5))
        if want_shots:
            step = downscale_factor(frame.shape[1])
            hsv = _hsv(frame[::step, ::step])
            values.append(np.nan if previous is None or previous.shape != hsv.shape else _content_delta(hsv, previous))
            previous = hsv
        count = index + 1
    if count == 0:
        raise InputError("syncnet-track got an empty clip (0 frames)")
    if detections is not None and len(detections) != count:
        raise InputError(f"syncnet-track: {len(detections)} detection lists for {count} frames")
    return (found if detector is not None else list(detections)), np.asarray(values, np.float64), count


def _choose(tracks: list, track: int | None) -> int:
    if track is None:  # the longest; the first of equal ones
        return max(range(len(tracks)), key=lambda k: (len(tracks[k]["frame"]), -k))
    if not 0 <= int(track) < len(tracks):
        raise InputError(f"syncnet-track: track {track} asked for, the clip has {len(tracks)} face track(s)")
    return int(track)


@register("syncnet-track")
def syncnet_track(frames, detector="auto", detections=None, shots=None, track: int | None = None,
                  facedet_scale: float = 0.25, conf_threshold: float = 0.9, crop_scale: float = 0.4,
                  min_track: int = 100, num_failed_det: int = 25, min_face_size: float = 100, size: int = 224,
                  weights=None, device=None) -> CropResult:
    source = rereadable(frames, "syncnet-track")
    deviations: list[str] = []
    det, detector_name = None, "given"
    if detections is None:
        from metrics.crops.detectors import resolve_detector

        det, deviations = resolve_detector(detector, weights=weights, device=device,
                                           s3fd_options={"conf_threshold": conf_threshold,
                                                         "scales": (facedet_scale,)})
        detector_name = getattr(det, "name", type(det).__name__)
    detections, values, n = _first_pass(source(), det, detections, shots is None)
    shot_source = "given" if shots is not None else "content-detector"
    shots = _shots_from_values(values) if shots is None else [(int(a), int(b)) for a, b in shots]
    stats = dict.fromkeys(("short_shots", "short_tracks", "short_track_faces", "small_tracks", "small_track_frames"), 0)
    tracks = []
    for start, end in shots:
        if end - start < min_track:
            stats["short_shots"] += 1
            continue
        shot_faces = [[(i, tuple(float(v) for v in d[:4])) for d in detections[i]] for i in range(start, end)]
        tracks += track_shot(shot_faces, num_failed_det, min_track, min_face_size, stats)
    info = {"shots": len(shots), "shot_source": shot_source, **stats,
            "frames_with_faces": int(sum(len(d) > 0 for d in detections)),
            "tracks": [{"start": int(t["frame"][0]), "end": int(t["frame"][-1]) + 1,
                        "mean_side": round(float(np.mean(np.maximum(t["bbox"][:, 2] - t["bbox"][:, 0],
                                                                    t["bbox"][:, 3] - t["bbox"][:, 1]))), 2)}
                       for t in tracks], "chosen_track": None}
    if not tracks:
        return CropResult(frames=np.zeros((0, size, size, 3), np.uint8), kept=np.zeros(0, np.int64),
                          boxes=np.zeros((0, 4)), style="syncnet-track", detector=detector_name,
                          deviations=deviations, dropped=n, info=info)
    info["chosen_track"] = chosen = _choose(tracks, track)
    crops, kept, windows = crop_track(source(), tracks[chosen], crop_scale, size)
    return CropResult(frames=crops, kept=kept, boxes=windows, style="syncnet-track", detector=detector_name,
                      deviations=deviations, dropped=n - len(kept), info=info)

"""`edtalk-preprocess`: EDTalk's crop of MEAD/HDTF videos (tanshuai0219/EDTalk `data_preprocess/crop_video.py`).

The release (the same rule in `data_preprocess_for_train/crop_video_MEAD.py` and `_HDTF.py`):

1. faces on every frame (face_alignment's S3FD on the frame shrunk to at most 640 px, boxes scaled back);
2. trajectories: a trajectory lives while some face of the frame overlaps its *first* box with IoU
   > `iou_with_initial=0.25` (IoU with the +1 pixel convention); each face joins the live trajectory it
   overlaps most (above 0.25) and widens its tube (the union of its boxes), else starts a new one; a
   trajectory ends on the first frame none of its faces is found, and is cut only when it spans more
   than `min_frames=0` frames (end - start > 0);
3. per trajectory, one box for the whole clip: the tube enlarged by `increase=0.1` on each side, the
   shorter side more so the box is about square (width_increase = max(0.1, (1.2 h - w) / 2w), likewise
   for the height), truncated to int, clipped to the frame (so not square at the border);
4. `ffmpeg -i in -ss start/fps -t (end-start)/fps -filter:v "crop=w:h:left:top, scale=256:256" out`:
   frames start .. end - 1 (the trajectory's last frame is outside -t), bicubic swscale to 256 x 256.

Every trajectory yields a command writing the same output file, and the release runs them only while
that file is absent, so the first trajectory to end is the clip's crop; `trajectory=k` takes another.
`info["trajectories"]` lists all. The crop and scale here are ffmpeg's own filters (PyAV), on RGB frames.
Frames may be an array, an iterable, or a zero-argument callable returning one (read twice, not held).

The detector: face_alignment 1.3.x's S3FD (`metrics.crops.s3fd.FaceAlignmentSFD`, weights
`s3fd-619a316812.pth`, key "s3fd-fa") when the file is found, which is the release's; else, recorded as a
deviation, syncnet_python's S3FD on `sfd_face.pth` (threshold 0.5, 640-px working size) or dlib HOG.
The frame rate, also recorded by `edtalk data crop`: the release's `-r 25` stands after the output name,
where ffmpeg ignores it, so its crops keep the source rate; `edtalk data crop` converts to 25 fps
first, as the release's README asks of inputs.
"""
from __future__ import annotations

from fractions import Fraction

import numpy as np

from metrics.crops import CropResult, register
from metrics.crops.twopass import rereadable
from metrics.errors import InputError

__all__ = ["edtalk_preprocess", "trajectories", "clip_box", "crop_scale_ffmpeg", "plan_crop", "detector_for"]

MAX_DETECT_SIDE = 640  # extract_bbox shrinks larger frames to this before detecting


def _iou_plus_one(a, b) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = w * h
    return inter / float((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)


def trajectories(detections, iou_with_initial: float = 0.25, min_frames: int = 0) -> tuple[list, int]:
    """crop_video.process_video's trajectories, in the order its commands come out.

    `detections`: per frame, (K, >=4) boxes. Returns ([(tube_box, start, end), ...], number of trajectories
    too short to cut (end - start <= min_frames)).
    """
    live: list[list] = []  # [first box, tube box, start, end]
    done, too_short = [], 0

    def finish(ended):
        nonlocal too_short
        for _first, tube, start, end in ended:
            if end - start > min_frames:
                done.append((tuple(float(v) for v in tube), int(start), int(end)))
            else:
                too_short += 1

    for i, boxes in enumerate(detections):
        boxes = [tuple(float(v) for v in b[:4]) for b in boxes]
        keep, ended = [], []
        for t in live:
            best = max([_iou_plus_one(t[0], b) for b in boxes], default=0)
            (keep if best > iou_with_initial else ended).append(t)
        finish(ended)
        live = keep
        for b in boxes:
            best, owner = 0, None
            for t in live:
                overlap = _iou_plus_one(t[0], b)
                if best < overlap and overlap > iou_with_initial:
                    best, owner = overlap, t
            if owner is None:
                live.append([b, b, i, i])
            else:
                owner[3] = i
                owner[1] = (min(owner[1][0], b[0]), min(owner[1][1], b[1]), max(owner[1][2], b[2]),
                            max(owner[1][3], b[3]))
    finish(live)
    return done, too_short


def clip_box(tube, frame_hw: tuple[int, int], increase: float = 0.1) -> tuple[int, int, int, int]:
    """compute_bbox: (left, top, width, height) of the enlarged, about-square box, clipped to the frame."""
    left, top, right, bot = tube
    width, height = right - left, bot - top
    width_increase = max(increase, ((1 + 2 * increase) * height - width) / (2 * width))
    height_increase = max(increase, ((1 + 2 * increase) * width - height) / (2 * height))
    left = int(left - width_increase * width)
    top = int(top - height_increase * height)
    right = int(right + width_increase * width)
    bot = int(bot + height_increase * height)
    top, bot, left, right = max(0, top), min(bot, frame_hw[0]), max(0, left), min(right, frame_hw[1])
    return left, top, right - left, bot - top


def crop_scale_ffmpeg(frames, box: tuple[int, int, int, int], size: int = 256) -> np.ndarray:
    """ffmpeg's `crop=w:h:left:top, scale=size:size` filters (PyAV) over uint8 RGB frames."""
    import av

    left, top, w, h = box
    out = np.empty((len(frames), size, size, 3), np.uint8)
    if len(frames) == 0:
        return out
    graph = av.filter.Graph()
    src = graph.add_buffer(width=frames.shape[2], height=frames.shape[1], format="rgb24", time_base=Fraction(1, 25))
    chain = [src, graph.add("crop", f"{w}:{h}:{left}:{top}"), graph.add("scale", f"{size}:{size}"),
             graph.add("buffersink")]
    for a, b in zip(chain[:-1], chain[1:], strict=True):
        a.link_to(b)
    graph.configure()
    for k, frame in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
        vf.pts = k
        graph.push(vf)
        out[k] = graph.pull().to_ndarray()
    return out


def plan_crop(detections, frame_hw: tuple[int, int], trajectory: int | None = None, increase: float = 0.1,
              iou_with_initial: float = 0.25, min_frames: int = 0) -> dict:
    """From per-frame detections, the crop the release makes: {"box": (left, top, w, h) or None (no face),
    "start", "end" (frames start .. end - 1 are cut), "info"}. Separate from the pixels so a long clip can
    be detected in one streaming pass and cropped in another (`edtalk data crop`)."""
    found, too_short = trajectories(detections, iou_with_initial, min_frames)
    info = {"frames_with_faces": int(sum(len(d) > 0 for d in detections)), "short_trajectories": too_short,
            "trajectories": [{"start": s, "end": e, "box": list(clip_box(t, frame_hw, increase))} for t, s, e in found],
            "chosen_trajectory": None}
    if not found:
        return {"box": None, "start": 0, "end": 0, "info": info}
    chosen = 0 if trajectory is None else int(trajectory)
    if not 0 <= chosen < len(found):
        raise InputError(f"edtalk-preprocess: trajectory {trajectory} asked for, the clip has {len(found)}")
    info["chosen_trajectory"] = chosen
    tube, start, end = found[chosen]
    box = clip_box(tube, frame_hw, increase)
    if box[2] < 1 or box[3] < 1:
        raise InputError(f"edtalk-preprocess: the face box {np.round(tube, 1).tolist()} lies outside the "
                         f"{frame_hw[1]}x{frame_hw[0]} frame")
    return {"box": box, "start": start, "end": end, "info": info}


def detector_for(frame_hw: tuple[int, int], detector="auto", weights=None, device=None):
    """(detector, deviations) for this style: face_alignment's S3FD (the release's) when
    s3fd-619a316812.pth is found, else syncnet_python's S3FD on sfd_face.pth at the 640-px working size and
    threshold 0.5, else dlib HOG."""
    from metrics.crops.detectors import resolve_detector

    scale = min(1.0, MAX_DETECT_SIDE / max(frame_hw))
    return resolve_detector(detector, weights=weights, device=device,
                            s3fd_options={"conf_threshold": 0.5, "scales": (scale,)},
                            reference="face_alignment's S3FD (EDTalk's crop_video.py)", reference_name="s3fd-fa",
                            auto_order=("s3fd-fa", "s3fd", "dlib-hog"))


def _detect_pass(frames, detector, weights, device, detections):
    """Pass 1: per-frame detections (unless given), the frame size and count, the detector's name and deviations."""
    found, hw, count, det, name, deviations = [], None, 0, None, "given", []
    for index, frame in enumerate(frames):
        hw = frame.shape[:2]
        if detections is None:
            if det is None:
                det, deviations = detector_for(hw, detector, weights, device)
                name = getattr(det, "name", type(det).__name__)
            found.append(np.asarray(det(frame), np.float64).reshape(-1, 5))
        count = index + 1
    if count == 0:
        raise InputError("edtalk-preprocess got an empty clip (0 frames)")
    if detections is not None and len(detections) != count:
        raise InputError(f"edtalk-preprocess: {len(detections)} detection lists for {count} frames")
    return (found if detections is None else list(detections)), hw, count, name, deviations


def _crop_pass(frames, start: int, end: int, box, size: int, chunk: int = 32) -> np.ndarray:
    """Pass 2: frames start .. end - 1 through ffmpeg's crop and scale, a chunk at a time."""
    out = np.empty((end - start, size, size, 3), np.uint8)
    block, first = [], start
    for index, frame in enumerate(frames):
        if index >= end:
            break
        if index >= start:
            block.append(frame)
        if len(block) == chunk:
            out[first - start:first - start + len(block)] = crop_scale_ffmpeg(np.stack(block), box, size)
            first, block = first + len(block), []
    if block:
        out[first - start:first - start + len(block)] = crop_scale_ffmpeg(np.stack(block), box, size)
    return out


@register("edtalk-preprocess")
def edtalk_preprocess(frames, detector="auto", detections=None, trajectory: int | None = None,
                      increase: float = 0.1, iou_with_initial: float = 0.25, min_frames: int = 0, size: int = 256,
                      weights=None, device=None) -> CropResult:
    source = rereadable(frames, "edtalk-preprocess")
    detections, hw, n, detector_name, deviations = _detect_pass(source(), detector, weights, device, detections)
    plan = plan_crop(detections, hw, trajectory, increase, iou_with_initial, min_frames)
    if plan["box"] is None:
        return CropResult(frames=np.zeros((0, size, size, 3), np.uint8), kept=np.zeros(0, np.int64),
                          boxes=np.zeros((0, 4)), style="edtalk-preprocess", detector=detector_name,
                          deviations=deviations, dropped=n, info=plan["info"])
    (left, top, w, h), start, end = plan["box"], plan["start"], plan["end"]
    kept = np.arange(start, end, dtype=np.int64)
    crops = _crop_pass(source(), start, end, (left, top, w, h), size)
    boxes = np.tile(np.array([left, top, left + w, top + h], np.float64), (len(kept), 1))
    return CropResult(frames=crops, kept=kept, boxes=boxes, style="edtalk-preprocess", detector=detector_name,
                      deviations=deviations, dropped=n - len(kept), info=plan["info"])

"""The ground-truth side of a real-data evaluation, computed once and reused by the next method's evaluation.

Scoring method after method on the same MEAD/HDTF test set repeats the same work on the ground truth:
decoding each GT clip, EAT's aligned crop (dlib on every frame) and the evaluator outputs on the GT crops
(dlib landmarks for M-LMD/F-LMD, the two Inceptions for fid/fid_eat, Hopenet, ArcFace's source
embedding for CSIM). `GroundTruthSide` keeps them in a `benchmarks.protocols.feature_cache.FeatureCache`
under a key of everything they depend on: the data root, the case, the GT file's sha256, the frame range
(HDTF segments), the protocol's frame rate, the crop style and its options (the mp4v round trip), and the
sha256 of every weight file involved. A changed weight file or crop option is another key, so it is
recomputed; entries are written atomically. With every entry of a clip cached, its video is not decoded.

Per-frame outputs are stored per GT crop index and filled as needed: EAT's pairing samples the GT crops
according to the generated clip's length, so a method of another length computes only the frames it lacks.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from benchmarks.protocols.engine import Case
from benchmarks.protocols.feature_cache import FeatureCache
from benchmarks.protocols.real_data import GroundTruth
from benchmarks.protocols.registry import Protocol

__all__ = ["AlignedCrops", "GroundTruthClip", "GroundTruthSide", "aligned_crops", "mp4v_roundtrip"]

CACHE_VERSION = 1  # bump when what an entry holds changes


@dataclass
class AlignedCrops:
    """EAT's aligned crops of one clip as scored (after the optional mp4v round trip), the input frames they
    come from, the landmarks they were aligned with, and the crop's provenance record."""

    frames: np.ndarray
    kept: np.ndarray
    boxes: np.ndarray
    provenance: dict


def mp4v_roundtrip(crops: np.ndarray) -> np.ndarray:
    """The crops as EAT scores them: written with OpenCV's `mp4v` at 25 fps, read back (lossy)."""
    import cv2

    from benchmarks.media import read_video

    if not len(crops):
        return crops
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "crops.mp4")
        size = (crops.shape[2], crops.shape[1])
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 25, size)
        for frame in crops:
            writer.write(np.ascontiguousarray(frame[:, :, ::-1]))  # EAT writes BGR2RGB of RGB = BGR: correct colours
        writer.release()
        return read_video(path).frames


def aligned_crops(frames: np.ndarray, dlib68, eat_roundtrip: bool) -> AlignedCrops:
    from metrics.crops import crop

    result = crop(frames, "eat-aligned", weights=dlib68)
    crops = mp4v_roundtrip(result.frames) if eat_roundtrip else result.frames
    return AlignedCrops(crops, np.asarray(result.kept, np.int64), np.asarray(result.boxes), result.provenance())


def _json_array(obj) -> np.ndarray:
    """A JSON-able record (a crop's provenance) as bytes in an array: the cache stores numeric arrays only."""
    import json

    from metrics.utils import to_jsonable

    return np.frombuffer(json.dumps(to_jsonable(obj), sort_keys=True).encode(), np.uint8)


def _from_json_array(arr: np.ndarray):
    import json

    return json.loads(arr.tobytes().decode())


class GroundTruthClip:
    """One case's ground truth: frames and speech (decoded only when something needs them), its aligned crops
    and per-frame evaluator outputs (from the cache when there)."""

    def __init__(self, side: GroundTruthSide | None, case: Case, gt: GroundTruth | None = None,
                 frames: np.ndarray | None = None, audio: np.ndarray | None = None):
        self.side, self.case, self.gt = side, case, gt
        if frames is not None:
            self.__dict__["frames"] = frames
        self._audio = audio

    @cached_property
    def frames(self) -> np.ndarray:
        from benchmarks.media import conform_fps, read_video

        clip, _ = conform_fps(read_video(self.gt.video), self.side.proto.fps, "resample")
        frames = clip.frames
        if self.gt.duration is not None:
            first = int(round(self.gt.start * self.side.proto.fps))
            frames = frames[first:first + int(round(self.gt.duration * self.side.proto.fps))]
        return frames

    def audio(self) -> np.ndarray | None:
        """The GT speech at 16 kHz (from the segment's start for HDTF), read on first use."""
        from benchmarks.media import read_audio

        if self._audio is None and self.gt is not None:
            audio = read_audio(self.gt.audio or self.gt.video, 16000)
            self._audio = audio[int(self.gt.start * 16000):] if self.gt.start else audio
        return self._audio

    def _key(self, part: str, weights: tuple[str, ...]) -> dict | None:
        side = self.side
        if side is None or side.cache is None or self.gt is None:
            return None
        for k in weights:
            side.evaluators.path(k)  # located (and hashed) once per evaluation
        return {**side.clip_key(self.case.name, self.gt), "part": part, "eat_roundtrip": side.eat_roundtrip,
                "weights": {k: side.evaluators.files[k]["sha256"] for k in weights}}

    @cached_property
    def aligned(self) -> AlignedCrops:
        side = self.side

        def compute() -> dict:
            crops = aligned_crops(self.frames, side.evaluators.path("dlib-68"), side.eat_roundtrip)
            return {"frames": crops.frames, "kept": crops.kept, "boxes": crops.boxes,
                    "provenance": _json_array(crops.provenance)}

        key = self._key("eat-aligned", ("dlib-68",))
        stored = compute() if key is None else side.cache.get_or_compute(key, compute)
        return AlignedCrops(stored["frames"], stored["kept"], stored["boxes"], _from_json_array(stored["provenance"]))

    def per_frame(self, part: str, weights: tuple[str, ...], indices, compute) -> np.ndarray:
        """`compute(idx)` (one output row per GT crop index in `idx`) at `indices`, through the cache: only the
        indices no earlier evaluation computed are computed now, and the entry grows by them."""
        indices = np.asarray(indices, np.int64)
        key = self._key(part, weights)
        if key is None or not indices.size:
            return np.asarray(compute(indices))
        stored = self.side.cache.get(key) or {}
        have = stored.get("index", np.zeros(0, np.int64))
        missing = np.setdiff1d(np.unique(indices), have)
        if missing.size:
            self.side.cache.misses += 1
            new = np.asarray(compute(missing))
            index = np.concatenate([have, missing])
            values = np.concatenate([stored["values"], new]) if len(have) else new
            order = np.argsort(index, kind="stable")
            stored = self.side.cache.put(key, {"index": index[order], "values": values[order]})
        else:
            self.side.cache.hits += 1
        return stored["values"][np.searchsorted(stored["index"], indices)]


class GroundTruthSide:
    """Builds each case's `GroundTruthClip`; `cache` (a FeatureCache, or None) holds what they compute."""

    def __init__(self, proto: Protocol, ground_truth: dict[str, GroundTruth], evaluators, *, data_root=None,
                 cache_dir=None, eat_roundtrip: bool = False):
        self.proto, self.gt, self.evaluators = proto, ground_truth, evaluators
        self.data_root = str(Path(data_root).resolve()) if data_root is not None else None
        self.cache = FeatureCache(cache_dir) if cache_dir is not None else None
        self.eat_roundtrip = eat_roundtrip
        self._file_sha: dict[Path, str] = {}

    def clip(self, case: Case) -> GroundTruthClip:
        return GroundTruthClip(self, case, self.gt[case.name])

    def clip_key(self, name: str, gt: GroundTruth) -> dict:
        from metrics.utils import sha256_file

        if gt.video not in self._file_sha:
            self._file_sha[gt.video] = sha256_file(gt.video)
        return {"what": "real-protocol ground truth", "version": CACHE_VERSION, "data": self.data_root,
                "case": name, "video": str(gt.video), "video_sha256": self._file_sha[gt.video],
                "start": gt.start, "duration": gt.duration, "fps": self.proto.fps}

    def stats(self) -> dict:
        if self.cache is None:
            return {"dir": None}
        return {"dir": str(self.cache.root.resolve()), "hits": self.cache.hits, "misses": self.cache.misses}

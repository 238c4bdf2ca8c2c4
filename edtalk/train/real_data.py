"""Training data from real video: MEAD or HDTF clips of the official train list, as `FramePool`s.

    MEAD:  ROOT/<id>/video/front/<emotion>/level_<k>/<nnn>.mp4 (+ ROOT/<id>/audio/.../<nnn>.m4a), the raw
           layout with square face clips or the tree `edtalk data crop` writes; or flat ROOT/<case>.mp4
    HDTF:  ROOT/<video>.mp4 (cut at the segment's 5 s) or ROOT/<case>.mp4 (a cut segment)

Each clip is prepared once into a cache (default ROOT/.edtalk-train-cache/<size>px/<case>/): its 25 fps
frames resized to the model's size (`frames.npy`, uint8), dlib's 68 landmarks per frame at that size
(`landmarks.npy`: the mouth-region loss and stage 1's mouth swap need them; real data has no ground truth),
the release's mel windows aligned to the frames (`mel.npy`, (T, 80, 16), for the audio stage), the clip's
16 kHz speech (`speech.npy`, float32, for the audio stage's utterance features) and `record.json`, written
last, which also records why a clip was left out. Training then memory-maps the frames, so memory stays
bounded whatever the data set's size and DataLoader workers share the pages; the pairs are drawn by
`edtalk.train.data.PairDataset`, a pure function of (seed, epoch, index). The frames are stored raw,
size x size x 3 bytes each (196 kB at 256 px, 12 kB at 64 px; the speech adds 2.6 kB per frame): the disk
the cache needs is that times the data set's frame count.

Test speakers never train: a speaker in both lists is a one-line error naming it. Clips of the list that
the root lacks, and clips without a face, without audio or that do not decode, are left out and counted,
with their names, in the report the run writes (RUN/data.json) and prints.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.datasets.real import names_of
from edtalk.train.data import FramePool, PoolClip
from metrics.errors import InputError

__all__ = ["DATASETS", "load_real_pools", "check_speakers", "prepare_clip", "speaker_of", "SKIP_REASONS",
           "check_same_data"]

DATASETS = ("mead", "hdtf")
FPS = 25
CACHE_FORMAT = "edtalk-bench/train-clip-cache@2"  # @2: speech.npy beside mel.npy
SKIP_REASONS = ("missing", "corrupt", "no_face", "no_audio")


def speaker_of(dataset: str, name: str) -> str:
    """MEAD: the actor id; HDTF: the source video (all segments of one video show one person)."""
    from benchmarks.datasets.real import parse_hdtf_name, parse_mead_name

    return parse_mead_name(name)["identity"] if dataset == "mead" else parse_hdtf_name(name)["video_id"]


def check_speakers(dataset: str, lists: dict[str, list[str]], source: str) -> None:
    """A speaker of the test list must never be trained on: one line naming every shared speaker."""
    from benchmarks.datasets.common import preview

    train = {speaker_of(dataset, n) for n in names_of(dataset, lists["train"])}
    test = {speaker_of(dataset, n) for n in names_of(dataset, lists["test"])}
    shared = sorted(train & test)
    if shared:
        raise InputError(f"{source}: {dataset.upper()} test speakers also in the train list ({preview(shared)}); "
                         "a test speaker must never be trained on: remove their clips from train.json")


def _source_key(gt) -> dict:
    files = [gt.video] + ([gt.audio] if gt.audio is not None else [])
    return {"files": [str(f) for f in files], "mtime_ns": [f.stat().st_mtime_ns for f in files],
            "bytes": [f.stat().st_size for f in files], "start": gt.start, "duration": gt.duration}


def _decode_frames(gt, name: str) -> np.ndarray:
    """The clip's frames at 25 fps (nearest earlier source frame), cut to the segment when one is given."""
    from benchmarks.datasets.rawcrop import frames_at_fps

    first = int(round(gt.start * FPS))
    last = None if gt.duration is None else first + int(round(gt.duration * FPS))
    kept, index = [], 0
    for block in frames_at_fps(gt.video, FPS):  # streaming: a full-length HDTF video is never held whole
        lo, hi = max(first - index, 0), len(block) if last is None else min(last - index, len(block))
        if lo < hi:
            kept.append(block[lo:hi])
        index += len(block)
        if last is not None and index >= last:
            break
    if not kept:
        raise InputError(f"{name}: {gt.video} has no frames from {gt.start:.1f} s on")
    return np.concatenate(kept)


def _speech(gt, name: str) -> np.ndarray | None:
    """16 kHz mono speech of the clip (its .m4a, else the video's own track), cut like the frames; None if none."""
    from benchmarks.media import probe_video, read_audio

    source = gt.audio if gt.audio is not None else (gt.video if probe_video(gt.video, timing=False)["has_audio"]
                                                     else None)
    if source is None:
        return None
    wav = read_audio(source, 16000)
    a0 = int(round(gt.start * 16000))
    a1 = None if gt.duration is None else a0 + int(round(gt.duration * 16000))
    return wav[a0:a1]


def _fill_missing(landmarks: np.ndarray) -> tuple[np.ndarray, int]:
    """Frames where dlib found no face take the nearest detected frame's landmarks; returns (filled, count)."""
    ok = np.isfinite(landmarks).all(axis=(1, 2))
    if ok.all():
        return landmarks, 0
    have = np.flatnonzero(ok)
    nearest = have[np.abs(np.arange(len(landmarks))[:, None] - have[None, :]).argmin(1)]
    return landmarks[nearest], int((~ok).sum())


def prepare_clip(name: str, gt, size: int, detector, clip_dir: Path) -> dict:
    """Decode, detect and cache one clip under `clip_dir`; returns its record (status "ok" or a skip reason).

    A record whose source files are unchanged is returned as it is (the clip is not decoded again)."""
    import cv2

    from edtalk.audio_features import mel_windows, melspectrogram

    rec_path = clip_dir / "record.json"
    key = _source_key(gt)
    if rec_path.is_file():
        old = json.loads(rec_path.read_text())
        if old.get("format") == CACHE_FORMAT and old.get("source") == key and old.get("size") == size:
            return old
    record = {"format": CACHE_FORMAT, "name": name, "source": key, "size": size}
    t0 = time.perf_counter()
    try:
        frames = _decode_frames(gt, name)
        wav = _speech(gt, name)
    except InputError as exc:
        return _finish(rec_path, record, "corrupt", str(exc))
    h, w = frames.shape[1:3]
    if h != w:  # raw MEAD (1920x1080) or HDTF: the whole run needs the cropped tree, not one clip skipped
        raise InputError(f"{name}: {gt.video} is {w}x{h}, not a square face crop; crop the tree first with "
                         "`edtalk data crop ROOT --out CROPPED` and train on CROPPED")
    if wav is None:
        return _finish(rec_path, record, "no_audio", f"{gt.video}: no speech in the video nor a MEAD .m4a beside it")
    landmarks = np.asarray(detector(frames), np.float64)
    if not np.isfinite(landmarks).all(axis=(1, 2)).any():
        return _finish(rec_path, record, "no_face", f"dlib found no face in any of the {len(frames)} frames")
    landmarks, filled = _fill_missing(landmarks)
    scale = size / frames.shape[1]
    small = frames if frames.shape[1] == size else np.stack(
        [cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA) for f in frames])
    mel = np.asarray(mel_windows(melspectrogram(wav), len(frames), fps=FPS), np.float32)
    clip_dir.mkdir(parents=True, exist_ok=True)
    for file, array in (("frames.npy", small), ("landmarks.npy", (landmarks * scale).astype(np.float32)),
                        ("mel.npy", mel), ("speech.npy", np.asarray(wav, np.float32))):
        tmp = clip_dir / f".{file}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            np.save(f, array)
        tmp.replace(clip_dir / file)
    record.update(frames=int(len(frames)), source_size=int(frames.shape[1]), frames_without_face=filled,
                  decode_seconds=round(time.perf_counter() - t0, 4))
    return _finish(rec_path, record, "ok", None)


def _finish(rec_path: Path, record: dict, status: str, why: str | None) -> dict:
    from metrics.utils import atomic_write_json

    record.update(status=status, why=why)
    rec_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(rec_path, record)
    return record


def _pool_clip(dataset: str, name: str, split: str, clip_dir: Path) -> PoolClip:
    from benchmarks.datasets.real import parse_mead_name

    # HDTF has no emotion labels: its clips count as neutral speech (stage 2 then sees no emotional target).
    emotion = parse_mead_name(name)["emotion"] if dataset == "mead" else "neutral"
    frames = np.load(clip_dir / "frames.npy", mmap_mode="r")  # pages read on demand: bounded memory
    return PoolClip(name, speaker_of(dataset, name), emotion, split, frames, np.load(clip_dir / "landmarks.npy"),
                    {"mel_path": str(clip_dir / "mel.npy"), "speech_path": str(clip_dir / "speech.npy")})


class FastDlib68:
    """dlib's 68 landmarks (RGB), upsampling only the frames where the plain pass finds no face.

    Upsampling by 1 finds the smaller faces of low-resolution clips but costs 4-5x (27 vs 130 frames/s on
    a 256-px mini MEAD clip, one loaded core); on face crops the plain pass finds nearly every face."""

    def __init__(self):
        from metrics.landmarks import Dlib68Detector

        self.plain = Dlib68Detector(upsample=0, eat_gray=False)
        self.upsampled = Dlib68Detector(upsample=1, eat_gray=False)

    def __call__(self, frames) -> np.ndarray:
        landmarks = self.plain(frames)
        missed = ~np.isfinite(landmarks).all(axis=(1, 2))
        if missed.any():
            landmarks[missed] = self.upsampled(np.asarray(frames)[missed])
        return landmarks


class _LazyDetector:
    """dlib loads in seconds: only when a clip is not in the cache yet."""

    def __init__(self, factory):
        self.factory, self.detector = factory, None

    def __call__(self, frames):
        if self.detector is None:
            self.detector = self.factory()
        return self.detector(frames)


_WORKER_DETECTOR: _LazyDetector | None = None


def _prepare_one(job) -> None:
    name, gt, size, clip_dir = job
    prepare_clip(name, gt, size, _WORKER_DETECTOR, clip_dir)


def _init_worker(factory) -> None:
    global _WORKER_DETECTOR
    _WORKER_DETECTOR = _LazyDetector(factory)


def _prepare_in_parallel(jobs: list, workers: int, factory) -> None:
    """Clips prepared by `workers` processes, each with its own detector; the records are what one process
    writes (the work per clip is the same), so the pools built from them do not depend on `workers`."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # fork: the factory may be a local function (tests); each worker loads dlib once, on its first clip
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_init_worker,
                             initargs=(factory,)) as pool:
        list(pool.map(_prepare_one, jobs, chunksize=1))


def _split_pool(dataset: str, root: Path, names: list[str], split: str, size: int, cache: Path,
                limit: int | None, detector: _LazyDetector, report: dict, workers: int = 1) -> FramePool | None:
    """Prepare the split's clips the root holds (at most `limit`); counts what was left out in `report`."""
    from benchmarks.protocols.real_data import find_ground_truth

    found, missing = find_ground_truth(dataset, root, names)
    chosen = [n for n in names if n in found]
    chosen = chosen[:limit] if limit else chosen
    fresh = {n for n in chosen if not (cache / n / "record.json").is_file()}
    if workers > 1 and len(fresh) > 1:
        _prepare_in_parallel([(n, found[n], size, cache / n) for n in chosen if n in fresh], workers,
                             detector.factory)
    clips, skipped = [], {}
    counts = {"frames": 0, "frames_without_face": 0, "decoded": 0, "decode_seconds": 0.0}
    for name in chosen:
        record = prepare_clip(name, found[name], size, detector, cache / name)
        if record["status"] != "ok":
            skipped.setdefault(record["status"], []).append(f"{name}: {record['why']}")
            continue
        counts["frames"] += record["frames"]
        counts["frames_without_face"] += record["frames_without_face"]
        if name in fresh:
            counts["decoded"] += record["frames"]
            counts["decode_seconds"] += record["decode_seconds"]
        clips.append(_pool_clip(dataset, name, split, cache / name))
    emotions = sorted({c.emotion for c in clips})
    report[split] = {"listed": len(names), "missing": len(missing), "missing_names": missing[:20],
                     "limit_clips": limit, "used": len(clips), **counts,
                     "speakers": len({c.identity for c in clips}), "clips": [c.name for c in clips],
                     "emotions": {e: sum(c.emotion == e for c in clips) for e in emotions},
                     "skipped": {k: len(v) for k, v in skipped.items()}, "skipped_clips": skipped}
    return FramePool(clips) if clips else None


def load_real_pools(root, dataset: str, size: int, lists_dir=None, limit_clips: int | None = None,
                    cache_dir=None, detector_factory=None,
                    workers: int = 1) -> tuple[FramePool, FramePool | None, dict]:
    """(train pool, test pool or None, report) of `dataset` under `root` at `size` px.

    `lists_dir`: a folder with train.json/test.json overriding the bundled official lists. `limit_clips`:
    at most that many clips per split (dry runs). `detector_factory() -> detector(frames) -> (T,68,2)`:
    default dlib's 68-point predictor (`FastDlib68`). `workers`: processes preparing uncached clips."""
    from benchmarks.datasets.real import load_official_lists

    if dataset not in DATASETS:
        raise InputError(f"--dataset must be one of {', '.join(DATASETS)}, not {dataset!r}")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data {root}: not a directory; pass the {dataset.upper()} root")
    if limit_clips is not None and limit_clips < 1:
        raise InputError(f"--limit-clips must be at least 1, not {limit_clips}")
    lists = load_official_lists(lists_dir)
    source = f"--lists {lists_dir}" if lists_dir else "the bundled official lists"
    check_speakers(dataset, lists, source)
    cache = Path(cache_dir) if cache_dir else root / ".edtalk-train-cache"
    cache = cache / f"{size}px"
    detector = _LazyDetector(detector_factory or FastDlib68)
    report = {"dataset": dataset, "root": str(root), "lists": source, "cache": str(cache), "size": size}
    t0 = time.perf_counter()
    train = _split_pool(dataset, root, names_of(dataset, lists["train"]), "train", size, cache,
                        limit_clips, detector, report, workers)
    if train is None:
        why = "; ".join(f"{k}: {v}" for k, v in report["train"]["skipped"].items()) or "none of them is there"
        raise InputError(f"--data {root}: no usable {dataset.upper()} training clip of the "
                         f"{report['train']['listed']} in {source} ({why}); check the layout "
                         "(ROOT/<id>/video/front/<emotion>/level_<k>/<nnn>.mp4 for MEAD, ROOT/<video>.mp4 for HDTF)")
    test = _split_pool(dataset, root, names_of(dataset, lists["test"]), "test", size, cache,
                       limit_clips, detector, report, workers)
    report["prepare_seconds"] = round(time.perf_counter() - t0, 3)
    return train, test, report


def report_lines(report: dict) -> list[str]:
    """The report in a few lines for the run's log: what was used and every count of what was left out."""
    lines = []
    for split in ("train", "test"):
        r = report.get(split)
        if r is None:
            continue
        left = ", ".join(f"{n} {k}" for k, n in r["skipped"].items())
        lines.append(f"{report['dataset']} {split}: {r['used']} clips ({r['frames']} frames) used of {r['listed']} "
                     f"listed; {r['missing']} not under --data; skipped: {left or 'none'}"
                     + (f"; limited to {r['limit_clips']}" if r["limit_clips"] else "")
                     + (f"; {r['frames_without_face']} frames without a face took the nearest face's landmarks"
                        if r["frames_without_face"] else ""))
        for reason, clips in r["skipped_clips"].items():
            lines += [f"  skipped ({reason}) {c}" for c in clips]
    return lines


def check_same_data(run_dir, report: dict) -> None:
    """A run resumed on other data (another --dataset, --limit-clips, or lists that select other clips) would not
    continue the run it resumes: one line saying what differs. `report` is this start's; the run's is RUN/data.json.

    Nothing to compare before the run's first checkpoint, or for a run whose data.json predates the clip lists."""
    run_dir = Path(run_dir)
    old_path = run_dir / "data.json"
    if not (run_dir / "checkpoints" / "last.pt").is_file() or not old_path.is_file():
        return
    old = json.loads(old_path.read_text())
    if "clips" not in old.get("train", {}):
        return

    def described(r: dict) -> str:
        limit = r["train"]["limit_clips"]
        return (f"--dataset {r['dataset']} ({r['lists']}{f', --limit-clips {limit}' if limit else ''}: "
                f"{r['train']['used']} train clips)")

    for what, differs in (("--dataset", old["dataset"] != report["dataset"]),
                          ("--limit-clips", old["train"]["limit_clips"] != report["train"]["limit_clips"]),
                          ("training clips", old["train"]["clips"] != report["train"]["clips"]),
                          ("held-out clips", old.get("test", {}).get("clips") != report.get("test", {}).get("clips"))):
        if differs:
            raise InputError(f"{run_dir} was started on {described(old)}; this start has other {what} "
                             f"({described(report)}): resume with the run's --dataset/--lists/--limit-clips "
                             "or train on this data into a new --out")

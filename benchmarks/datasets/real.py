"""MEAD and HDTF as EDTalk uses them: the official clip lists, the released folder layouts, and the
preprocessing the paper applies (25 fps, 16 kHz mono, square face crops at 256 px).

The official lists (`train.json`, `test.json` in EDTalk's data_preprocess/lists) mix two kinds of
name: MEAD clips `<id>#<emotion>#level_<k>#<nnn>` (front camera) and HDTF 5-second segments
`<video>#<k>` (k = 1, 2, … counts segments from the start of the video).

    MEAD layout:  ROOT/<id>/video/front/<emotion>/level_<k>/<nnn>.mp4
                  ROOT/<id>/audio/<emotion>/level_<k>/<nnn>.m4a
    HDTF layout:  ROOT/<video>.mp4          (the downloaded full-length videos)
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks import media
from benchmarks.datasets.common import duplicates, parse_names, preview
from metrics.errors import InputError
from metrics.functional.emotion import EMOTIONS

MEAD_NAME = re.compile(r"^(?P<id>[MW]\d{3})#(?P<emotion>[a-z]+)#level_(?P<level>[1-3])#(?P<index>\d{3})$")
HDTF_NAME = re.compile(r"^(?P<video>[A-Za-z0-9_\-]+)#(?P<segment>\d+)$")
HDTF_SEGMENT_SECONDS = 5.0
TARGET_FPS = 25.0
TARGET_RATE = 16000


@dataclass(frozen=True)
class MeadClip:
    name: str
    identity: str
    emotion: str
    level: int
    index: str
    video: Path
    audio: Path


@dataclass(frozen=True)
class HdtfSegment:
    name: str
    video_id: str
    segment: int
    video: Path
    start: float
    duration: float = HDTF_SEGMENT_SECONDS


# The official lists ship with the package (gzipped byte-for-byte copies of the release's files).
BUNDLED_LISTS = Path(__file__).resolve().parent / "lists"
SPLITS = ("train", "test")


def official_list(split: str, lists_dir=None) -> list[str]:
    """The clip names of EDTalk's official `split` list ("train" or "test"), in file order, validated.

    `lists_dir` (the CLI's `--lists DIR`): a folder holding `<split>.json` in the release's format, which
    overrides the bundled copy (for example to restrict a run to the cases a user has).
    """
    import gzip

    if split not in SPLITS:
        raise InputError(f"unknown split {split!r}; use 'train' or 'test'")
    if lists_dir is None:
        f = BUNDLED_LISTS / f"{split}.json.gz"
        raw = gzip.decompress(f.read_bytes())
    else:
        f = Path(lists_dir) / f"{split}.json"
        if not f.is_file():
            raise InputError(f"official split list {f} not found; --lists DIR must hold {split}.json in the format of "
                             f"EDTalk's data_preprocess/lists/{split}.json (leave --lists out for the bundled one)")
        raw = f.read_bytes()
    try:
        names = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{f} is not a JSON list of clip names ({exc}); restore EDTalk's {split}.json") from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InputError(f"{f} is not a JSON list of clip names")
    dupes = duplicates(names)
    if dupes:
        raise InputError(f"{f} lists {len(dupes)} clip names twice: {preview(dupes)}; keep one of each")
    parse_names(names, parse_official_name, str(f), "MEAD <id>#<emotion>#level_<k>#<nnn> or HDTF <video>#<k>")
    return names


def load_official_lists(lists_dir=None) -> dict[str, list[str]]:
    """Both official lists ({"train": [...], "test": [...]}), checked to share no clip."""
    out = {split: official_list(split, lists_dir) for split in SPLITS}
    overlap = sorted(set(out["train"]) & set(out["test"]))
    if overlap:
        raise InputError(f"train and test lists share {len(overlap)} clips: {preview(overlap)}; "
                         "a clip belongs to one split")
    return out


def names_of(dataset: str, names: list[str]) -> list[str]:
    """The names of `dataset` ("mead" or "hdtf") in a list that mixes both, in list order."""
    if dataset not in ("mead", "hdtf"):
        raise InputError(f"unknown dataset {dataset!r}; use 'mead' or 'hdtf'")
    return [n for n in names if bool(MEAD_NAME.match(n)) == (dataset == "mead")]


def official_test_names(dataset: str, lists_dir=None) -> list[str]:
    """Test clip names of `dataset` ("mead" or "hdtf") from the official test list, in file order."""
    return names_of(dataset, official_list("test", lists_dir))


def parse_official_name(name: str) -> dict:
    """A name of the official lists: MEAD clip (`parse_mead_name`) or HDTF segment (`parse_hdtf_name`)."""
    return parse_mead_name(name) if MEAD_NAME.match(name) else parse_hdtf_name(name)


def parse_mead_name(name: str) -> dict:
    m = MEAD_NAME.match(name)
    if not m or m["emotion"] not in EMOTIONS:
        raise InputError(f"{name!r} is not a MEAD clip name (<id>#<emotion>#level_<k>#<nnn>, emotion one of "
                         f"{', '.join(EMOTIONS)})")
    return {"identity": m["id"], "emotion": m["emotion"], "level": int(m["level"]), "index": m["index"]}


def parse_hdtf_name(name: str) -> dict:
    m = HDTF_NAME.match(name)
    if not m or int(m["segment"]) < 1:
        raise InputError(f"{name!r} is not an HDTF segment name (<video>#<k>, k >= 1)")
    return {"video_id": m["video"], "segment": int(m["segment"])}


class MEAD:
    """MEAD front-camera clips of the official split."""

    def __init__(self, root, lists_dir=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"MEAD root {self.root} is not a directory")
        self.lists = load_official_lists(lists_dir)

    def clips(self, split: str) -> list[MeadClip]:
        if split not in self.lists:
            raise InputError(f"unknown split {split!r}; use 'train' or 'test'")
        out = []
        for name in self.lists[split]:
            if not MEAD_NAME.match(name):
                continue  # an HDTF segment
            p = parse_mead_name(name)
            rel = Path(p["emotion"]) / f"level_{p['level']}"
            out.append(MeadClip(name, p["identity"], p["emotion"], p["level"], p["index"],
                                self.root / p["identity"] / "video" / "front" / rel / f"{p['index']}.mp4",
                                self.root / p["identity"] / "audio" / rel / f"{p['index']}.m4a"))
        return out

    def available(self, split: str) -> tuple[list[MeadClip], list[str]]:
        """(clips whose video and audio exist, names of the missing ones); an empty root is an error."""
        _require_entries(self.root, "MEAD", "ROOT/<id>/video/front/<emotion>/level_<k>/<nnn>.mp4")
        have, missing = [], []
        for c in self.clips(split):
            if c.video.is_file() and c.audio.is_file():
                have.append(c)
            else:
                missing.append(c.name)
        return have, missing


class HDTF:
    """HDTF 5-second segments of the official split, cut from the full-length videos."""

    def __init__(self, root, lists_dir=None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"HDTF root {self.root} is not a directory")
        self.lists = load_official_lists(lists_dir)

    def segments(self, split: str) -> list[HdtfSegment]:
        if split not in self.lists:
            raise InputError(f"unknown split {split!r}; use 'train' or 'test'")
        out = []
        for name in self.lists[split]:
            if MEAD_NAME.match(name):
                continue
            p = parse_hdtf_name(name)
            out.append(HdtfSegment(name, p["video_id"], p["segment"], self.root / f"{p['video_id']}.mp4",
                                   (p["segment"] - 1) * HDTF_SEGMENT_SECONDS))
        return out

    def videos(self, split: str) -> list[str]:
        return sorted({s.video_id for s in self.segments(split)})

    def available(self, split: str) -> tuple[list[HdtfSegment], list[str]]:
        """(segments whose full-length video exists, names of the missing ones); an empty root is an error."""
        _require_entries(self.root, "HDTF", "ROOT/<video>.mp4")
        have, missing = [], []
        for seg in self.segments(split):
            if seg.video.is_file():
                have.append(seg)
            else:
                missing.append(seg.name)
        return have, missing


def _require_entries(root: Path, what: str, layout: str) -> None:
    if not any(root.iterdir()):
        raise InputError(f"{what} root {root} is an empty directory; download {what} there in its released "
                         f"layout ({layout})")


def resample_indices(n_frames: int, src_fps: float, dst_fps: float = TARGET_FPS) -> np.ndarray:
    """Source frame index for each output frame at `dst_fps` (nearest earlier timestamp, as ffmpeg -r)."""
    return media.resample_indices(n_frames, src_fps, dst_fps)


def center_square(frames: np.ndarray) -> np.ndarray:
    h, w = frames.shape[1:3]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return frames[:, top:top + s, left:left + s]


def preprocess_clip(video, out_video, out_audio=None, audio=None, size: int = 256, fps: float = TARGET_FPS,
                    start: float = 0.0, duration: float | None = None,
                    crop: tuple[int, int, int, int] | None = None,
                    av_tolerance_s: float = media.AV_TOLERANCE_S) -> dict:
    """Resample to `fps` (by timestamp if the rate varies), crop (a fixed box x0, y0, x1, y1, or the
    centred square), resize to size x size, write H.264; audio (from `audio` or the video) to 16 kHz mono
    wav, cut or padded to the video's duration (refused beyond `av_tolerance_s`). Returns what was done:
    frame-rate, colour, audio and length conversions included."""
    from PIL import Image

    clip = media.read_video(video)
    frames, src_fps = clip.frames, clip.fps
    n = len(frames)
    if clip.vfr and clip.times is not None:  # cut by timestamp: frame indices do not map to seconds
        first = int(np.searchsorted(clip.times, start - 1e-6))
        last = n if duration is None else int(np.searchsorted(clip.times, start + duration - 1e-6))
    else:
        first = int(round(start * src_fps))
        last = n if duration is None else min(n, int(round((start + duration) * src_fps)))
    if first >= n:
        raise InputError(f"{video}: start {start:.2f}s is past the end ({n / src_fps:.2f}s)")
    times = None if clip.times is None else clip.times[first:last]
    part = media.VideoClip(frames[first:last], src_fps, times, clip.timing, clip.conversions, clip.source)
    part, fps_record = media.conform_fps(part, fps, policy="resample")
    frames = part.frames
    if crop is not None:
        x0, y0, x1, y1 = crop
        frames = frames[:, y0:y1, x0:x1]
    else:
        frames = center_square(frames)
    if frames.shape[1] != size or frames.shape[2] != size:
        frames = np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])
    media.write_video(out_video, frames, fps=fps)
    record = {"source": str(video), "source_fps": src_fps, "fps": fps, "frames": int(len(frames)),
              "resampled": fps_record["action"] == "resampled", "fps_conversion": fps_record, "size": size,
              "crop": list(crop) if crop else "center-square"}
    if "color" in clip.conversions:
        record["color_conversion"] = clip.conversions["color"]
    if out_audio is not None:
        audio_info: dict = {}
        wav = media.read_audio(audio or video, TARGET_RATE, info=audio_info)
        a0 = int(round(start * TARGET_RATE))
        # A segment (duration given) is cut from a longer recording, so only a short audio is a mismatch.
        wav, sync = media.fit_audio_to_video(wav[a0:], len(frames), fps, TARGET_RATE, av_tolerance_s,
                                             source=audio or video, allow_longer_audio=duration is not None)
        media.write_wav(out_audio, wav, TARGET_RATE)
        record["audio_conversion"] = audio_info
        record["audio_sync"] = sync
        record["audio_samples"] = int(len(wav))
        record["audio_video_mismatch_s"] = round(len(wav) / TARGET_RATE - len(frames) / fps, 4)
    return record


"""Where the ground truth of a real-data protocol's test cases is, and which generated videos are missing.

MEAD: the raw layout `ROOT/<id>/video/front/<emotion>/level_<k>/<nnn>.mp4` (speech in the video or in
`ROOT/<id>/audio/<emotion>/level_<k>/<nnn>.m4a`), which `edtalk data crop` keeps for its cropped tree, or a
flat `ROOT/<case>.mp4`. HDTF: `ROOT/<case>.mp4` (a cut segment) or `ROOT/<video>.mp4`, cut at the
segment's 5 s. Everything missing is reported at once, in one line, before any clip is scored.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.protocols.engine import Case
from benchmarks.protocols.registry import Protocol
from metrics.errors import InputError

__all__ = ["GroundTruth", "find_ground_truth", "real_cases", "video_for", "check_videos"]


@dataclass(frozen=True)
class GroundTruth:
    """Where one case's GT clip is: a video (with its own speech or a separate audio file), maybe a segment."""

    video: Path
    audio: Path | None
    start: float = 0.0
    duration: float | None = None


def find_ground_truth(dataset: str, root, names: list[str]) -> tuple[dict[str, GroundTruth], list[str]]:
    """GT clip of each case under `root`: MEAD's raw (and cropped: same paths) layout
    `ROOT/<id>/video/front/<emotion>/level_<k>/<nnn>.mp4` (speech in the video or `ROOT/<id>/audio/.../<nnn>.m4a`),
    or a flat `ROOT/<case>.mp4`; HDTF `ROOT/<case>.mp4` (a cut segment) or `ROOT/<video>.mp4` cut at the
    segment's 5 s. Returns ({case: GroundTruth}, names not found)."""
    from benchmarks.datasets.real import HDTF_SEGMENT_SECONDS, parse_hdtf_name, parse_mead_name

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"--data {root}: not a directory; pass the {dataset.upper()} root")
    found, missing = {}, []
    for name in names:
        flat = root / f"{name}.mp4"
        if flat.is_file():
            found[name] = GroundTruth(flat, None)
            continue
        if dataset == "mead":
            p = parse_mead_name(name)
            rel = Path(p["emotion"]) / f"level_{p['level']}"
            video = root / p["identity"] / "video" / "front" / rel / f"{p['index']}.mp4"
            audio = root / p["identity"] / "audio" / rel / f"{p['index']}.m4a"
            if video.is_file():
                found[name] = GroundTruth(video, audio if audio.is_file() else None)
                continue
        else:
            p = parse_hdtf_name(name)
            video = root / f"{p['video_id']}.mp4"
            if video.is_file():
                found[name] = GroundTruth(video, None, (p["segment"] - 1) * HDTF_SEGMENT_SECONDS,
                                          HDTF_SEGMENT_SECONDS)
                continue
        missing.append(name)
    return found, missing


def real_cases(proto: Protocol, root, lists=None) -> tuple[list[Case], dict[str, GroundTruth]]:
    """The protocol's test cases that `root` holds; any missing GT clip is a one-line InputError."""
    from benchmarks.datasets.common import preview
    from benchmarks.datasets.real import official_test_names, parse_official_name

    names = official_test_names(proto.data, lists)
    if proto.max_clips is not None:
        names = names[:proto.max_clips]
    gt, missing = find_ground_truth(proto.data, root, names)
    if missing:
        raise InputError(f"--data {root}: {len(missing)} of {len(names)} test clips of {proto.name!r} are missing "
                         f"({preview(missing)}); add them, or restrict the run to the clips you have with "
                         "--lists DIR (a test.json naming them)")
    return [Case(n, parse_official_name(n)) for n in names], gt


def video_for(videos, name: str) -> Path | None:
    for ext in (".mp4", ".avi", ".mov", ".mkv"):
        p = Path(videos) / f"{name.replace('/', '_')}{ext}"
        if p.is_file():
            return p
    return None


def check_videos(videos, cases: list[Case]) -> None:
    """Every case must have `<case>.mp4` in `videos`: the missing ones are listed in one line, before scoring."""
    from benchmarks.datasets.common import preview

    missing = [c.name for c in cases if video_for(videos, c.name) is None]
    if missing:
        raise InputError(f"--videos {videos}: {len(missing)} of {len(cases)} test cases have no video "
                         f"({preview(missing)}); generate them, or restrict the run with --lists DIR")

"""A MEAD-layout mini dataset of real-face talking clips, for end-to-end tests of the real-data loop.

No MEAD clip may be downloaded on a test machine, so tests build one from `benchmarks.realfaces`: each
case of EDTalk's official test list given (e.g. `M003#angry#level_3#001`) becomes a short 25 fps clip of
a real photo's face that moves its head and opens its jaw with a synthetic speech track. The speaker id
picks the photo and the case name seeds the motion, so the same case is the same clip on every machine.

    raw layout (MEAD as released):    ROOT/M003/video/front/angry/level_3/001.mp4  (H.264, no audio)
                                      ROOT/M003/audio/angry/level_3/001.m4a        (AAC, 16 kHz mono)
    lists:                            LISTS/test.json (the cases), LISTS/train.json (empty): pass as --lists

`edtalk data crop` turns the raw tree into the cropped one (same relative paths, audio muxed in).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from metrics.errors import InputError

__all__ = ["DEFAULT_CASES", "SPEAKER_PHOTOS", "build_mini_mead", "write_lists", "write_m4a"]

# A speaker is one face of a shipped photo: men are Tom Hanks-free on purpose (his photo is a 112-px aligned
# face, too small for 256-px clips), so M003 is Grace Hopper and W009 the astronaut; the names only have to
# match the official list's test speakers.
SPEAKER_PHOTOS = {"M003": ("grace_hopper", 0), "M030": ("t1", 3), "W009": ("astronaut", 0), "W015": ("t1", 1)}
DEFAULT_CASES = ("M003#angry#level_3#001", "M003#happy#level_1#002", "W009#sad#level_2#003",
                 "W009#neutral#level_1#001")


def write_m4a(path, audio: np.ndarray, sample_rate: int = 16000) -> Path:
    """float audio in [-1, 1] as an AAC .m4a (MEAD's audio files), written to a temporary name then renamed."""
    import av

    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    samples = np.clip(np.asarray(audio, np.float32).reshape(1, -1), -1.0, 1.0)
    with av.open(str(tmp), "w", format="ipod") as container:
        stream = container.add_stream("aac", rate=sample_rate)
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = sample_rate
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    tmp.replace(path)
    return path


def write_lists(lists_dir, test_cases, train_cases=()) -> Path:
    """A `--lists DIR` folder: test.json and train.json in the release's format (JSON lists of names)."""
    from benchmarks.datasets.real import load_official_lists

    lists_dir = Path(lists_dir)
    lists_dir.mkdir(parents=True, exist_ok=True)
    (lists_dir / "test.json").write_text(json.dumps(list(test_cases)))
    (lists_dir / "train.json").write_text(json.dumps(list(train_cases)))
    load_official_lists(lists_dir)  # the same validation a run applies: a bad name fails here, not later
    return lists_dir


def build_mini_mead(root, cases=DEFAULT_CASES, *, n_frames: int = 30, size: int = 256, seed: int = 0,
                    lists_dir=None) -> dict:
    """Write the clips of `cases` in MEAD's raw layout under `root` and their list under `lists_dir`
    (default ROOT/../lists). Returns {"root", "lists", "cases", "videos": {case: path}, "audio": {case: path}}.
    Existing files are kept, so a second call costs nothing."""
    from benchmarks.datasets.real import parse_mead_name
    from benchmarks.media import write_video
    from benchmarks.realfaces import talking_clip

    root = Path(root)
    lists_dir = Path(lists_dir) if lists_dir is not None else root.parent / "lists"
    videos, audio = {}, {}
    for name in cases:
        p = parse_mead_name(name)
        if p["identity"] not in SPEAKER_PHOTOS:
            raise InputError(f"mini MEAD has no face for speaker {p['identity']} of case {name!r}; "
                             f"speakers: {', '.join(SPEAKER_PHOTOS)}")
        photo, face = SPEAKER_PHOTOS[p["identity"]]
        rel = Path(p["emotion"]) / f"level_{p['level']}"
        video = root / p["identity"] / "video" / "front" / rel / f"{p['index']}.mp4"
        wav = root / p["identity"] / "audio" / rel / f"{p['index']}.m4a"
        if not (video.is_file() and wav.is_file()):
            case_seed = seed * 1000 + sum(ord(c) * (i + 1) for i, c in enumerate(name)) % 997
            clip = talking_clip(photo, n_frames=n_frames, size=size, seed=case_seed, face=face)
            video.parent.mkdir(parents=True, exist_ok=True)
            wav.parent.mkdir(parents=True, exist_ok=True)
            write_video(video, clip.frames, fps=25)
            write_m4a(wav, clip.audio)
        videos[name], audio[name] = video, wav
    write_lists(lists_dir, cases)
    return {"root": root, "lists": lists_dir, "cases": list(cases), "videos": videos, "audio": audio}

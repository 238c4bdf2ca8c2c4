"""Write a synthetic world to disk in a MEAD-like layout (resumable, atomic per file).

    DIR/world.json                                   preset, seed, size, fps, rate, identities, split
    DIR/clips.csv                                    name, identity, emotion, level, split, n_frames
    DIR/<id>/video/front/<emotion>/level_<k>/<nnn>.mp4
    DIR/<id>/audio/<emotion>/level_<k>/<nnn>.wav
    DIR/<id>/groundtruth/<emotion>/level_<k>/<nnn>.npz
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from benchmarks import media
from benchmarks.datasets.common import clip_name
from benchmarks.synthetic.world import FPS, GENERATOR_VERSION, SAMPLE_RATE, generate_clip, make_identity
from metrics.errors import InputError, suggest
from metrics.functional.emotion import EMOTIONS
from metrics.utils import atomic_write_bytes, atomic_write_json, atomic_write_text


@dataclass(frozen=True)
class Preset:
    identities: int
    test_identities: int
    emotions: tuple[str, ...]
    levels: tuple[int, ...]
    clips_per_level: int
    n_frames: int
    size: int


PRESETS = {
    # 18 training faces: with 6, a from-scratch smoke model learned its training faces' motion but did
    # not transfer it to unseen faces (held-out PSNR no better than copying the source; 18: +3.5 dB).
    "smoke": Preset(identities=20, test_identities=2, emotions=EMOTIONS, levels=(3,), clips_per_level=1,
                    n_frames=50, size=64),
    # The study (edtalk.presets "study"): smoke's 18 training faces and 5 held-out ones, each with every
    # emotion at every intensity (22 clips); protocol synthetic-study scores 36 of the 110 held-out clips.
    "study": Preset(identities=23, test_identities=5, emotions=EMOTIONS, levels=(1, 2, 3), clips_per_level=1,
                    n_frames=50, size=64),
}


def clip_paths(root: Path, identity: str, emotion: str, level: int, index: int) -> dict[str, Path]:
    rel = Path(emotion) / f"level_{level}" / f"{index:03d}"
    return {"video": root / identity / "video" / "front" / rel.with_suffix(".mp4"),
            "audio": root / identity / "audio" / rel.with_suffix(".wav"),
            "groundtruth": root / identity / "groundtruth" / rel.with_suffix(".npz")}


def synthesize_world(out, preset: str | Preset = "smoke", seed: int = 0, size: int | None = None) -> Path:
    """Generate (or finish generating) a world; `preset` is a name from PRESETS or a Preset."""
    if isinstance(preset, Preset):
        p, preset = preset, "custom"
    elif preset in PRESETS:
        p = PRESETS[preset]
    else:
        raise InputError(f"unknown synthetic preset {preset!r}{suggest(preset, PRESETS)}; "
                         f"choose from {sorted(PRESETS)}")
    size = size or p.size
    if size not in (64, 128, 256):
        raise InputError(f"--size must be 64, 128 or 256, not {size}")
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / "world.json"
    idents = [make_identity(seed, i) for i in range(p.identities)]
    split = {ident.name: ("test" if i >= p.identities - p.test_identities else "train")
             for i, ident in enumerate(idents)}
    meta = {"generator": GENERATOR_VERSION, "preset": preset, "seed": seed, "size": size, "fps": FPS,
            "sample_rate": SAMPLE_RATE, "n_frames": p.n_frames,
            "train_identities": [n for n, s in split.items() if s == "train"],
            "test_identities": [n for n, s in split.items() if s == "test"]}
    if meta_path.exists():
        import json

        old = json.loads(meta_path.read_text())
        if old.get("generator") != meta["generator"]:
            raise InputError(f"{root} was written by {old.get('generator')}, not {meta['generator']} "
                             f"(its videos may not be reproducible); delete it or choose another --out, and rebuild")
        if {k: old.get(k) for k in meta} != meta:
            raise InputError(f"{root} holds a different world ({old.get('preset')}, seed {old.get('seed')}, size "
                             f"{old.get('size')}); choose another --out")
    atomic_write_json(meta_path, meta)
    jobs = [(ident, e, lvl, k) for ident in idents for e in p.emotions for lvl in (p.levels if e != "neutral" else (1,))
            for k in range(1, p.clips_per_level + 1)]
    rows, t0, frames_done = [], time.time(), 0
    for ident, emotion, level, k in tqdm(jobs, desc=f"synth {preset}", unit="clip"):
        paths = clip_paths(root, ident.name, emotion, level, k)
        name = clip_name(ident.name, emotion, level, k)
        rows.append({"name": name, "identity": ident.name, "emotion": emotion, "level": level,
                     "split": split[ident.name], "n_frames": p.n_frames})
        if all(x.exists() for x in paths.values()):
            continue  # finished by an earlier, interrupted run
        clip = generate_clip(ident, emotion, level, p.n_frames, size, seed=seed * 7919 + k, world_seed=seed)
        buf = io.BytesIO()
        np.savez_compressed(buf, **{key: np.asarray(v) for key, v in clip.ground_truth.items()})
        media.write_video(paths["video"], clip.frames, fps=FPS)
        media.write_wav(paths["audio"], clip.audio, SAMPLE_RATE)
        atomic_write_bytes(paths["groundtruth"], buf.getvalue())  # last: its presence marks the clip done
        frames_done += p.n_frames
    out_csv = io.StringIO()
    w = csv.DictWriter(out_csv, fieldnames=["name", "identity", "emotion", "level", "split", "n_frames"])
    w.writeheader()
    w.writerows(rows)
    atomic_write_text(root / "clips.csv", out_csv.getvalue())
    dt = time.time() - t0
    if frames_done:
        print(f"generated {frames_done} frames in {dt:.1f}s ({frames_done / dt:.0f} frames/s incl. encoding)")
    return root

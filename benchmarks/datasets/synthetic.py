"""Reader for a synthetic world written by `edtalk data synth` (see benchmarks.synthetic.writer)."""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmarks import media
from benchmarks.datasets.common import parse_names
from benchmarks.synthetic.writer import clip_paths
from metrics.errors import InputError


@dataclass(frozen=True)
class SyntheticClip:
    name: str
    identity: str
    emotion: str
    level: int
    split: str
    video: Path
    audio: Path
    groundtruth: Path
    n_frames: int


class SyntheticWorld:
    def __init__(self, root):
        self.root = Path(root)
        meta = self.root / "world.json"
        if not meta.is_file():
            raise InputError(f"{self.root} is not a synthetic world (no world.json); create one with "
                             "`edtalk data synth --preset smoke --out DIR`")
        self.meta = json.loads(meta.read_text())
        table = self.root / "clips.csv"
        if not table.is_file():
            raise InputError(f"{table} is missing: the world was not written completely; re-run `edtalk data synth`")
        with open(table, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows:
            raise InputError(f"{table} lists no clips: the world is empty; re-run `edtalk data synth`")
        # every name must parse and be unique: the file layout is derived from it
        parsed = parse_names([r.get("name") or "" for r in rows], where=str(table))
        self._clips = []
        for r, p in zip(rows, parsed, strict=True):
            paths = clip_paths(self.root, r["identity"], r["emotion"], int(r["level"]), p["index"])
            self._clips.append(SyntheticClip(r["name"], r["identity"], r["emotion"], int(r["level"]), r["split"],
                                             paths["video"], paths["audio"], paths["groundtruth"], int(r["n_frames"])))
        self._frames = lru_cache(maxsize=256)(self._read_frames)

    def clips(self, split: str | None = None) -> list[SyntheticClip]:
        if split not in (None, "train", "test"):
            raise InputError(f"split must be 'train', 'test' or None, not {split!r}")
        return [c for c in self._clips if split is None or c.split == split]

    def _read_frames(self, clip: SyntheticClip) -> np.ndarray:
        return media.read_video(clip.video).frames

    def frames(self, clip: SyntheticClip) -> np.ndarray:
        return self._frames(clip)

    def audio(self, clip: SyntheticClip) -> np.ndarray:
        return media.read_audio(clip.audio, self.meta["sample_rate"])

    def ground_truth(self, clip: SyntheticClip) -> dict:
        with np.load(clip.groundtruth, allow_pickle=False) as z:
            return {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}

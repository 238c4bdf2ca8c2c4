"""Reader for a synthetic world written by `edtalk data synth` (see benchmarks.synthetic.writer)."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmarks import media
from benchmarks.datasets.common import parse_names
from benchmarks.synthetic.world import make_identity, render_factors
from benchmarks.synthetic.writer import clip_paths
from metrics.errors import InputError
from metrics.utils import atomic_write_bytes


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
        # Decoded frames are kept beside the world (features/frames/, ~0.6 MB a clip at 64 px): every run of a
        # sweep reads every clip (training data, the audio stage, scoring), and decoding is 0.2 s a clip on a CPU.
        # The file name carries the video's size and mtime, so a rewritten video is decoded afresh; a world on a
        # read-only disk is decoded every time.
        st = clip.video.stat()
        cached = self.root / "features" / "frames" / f"{clip.name.replace('#', '_')}-{st.st_size}-{st.st_mtime_ns}.npy"
        if cached.is_file():
            try:
                return np.load(cached, allow_pickle=False)
            except (OSError, ValueError):  # a damaged file: decode again and replace it
                pass
        frames = media.read_video(clip.video).frames
        try:
            buf = io.BytesIO()
            np.save(buf, frames, allow_pickle=False)
            atomic_write_bytes(cached, buf.getvalue())
        except OSError:
            pass
        return frames

    def frames(self, clip: SyntheticClip) -> np.ndarray:
        return self._frames(clip)

    def audio(self, clip: SyntheticClip) -> np.ndarray:
        return media.read_audio(clip.audio, self.meta["sample_rate"])

    def render_truth(self, source: SyntheticClip, drivers: dict, n_frames: int) -> np.ndarray:
        """What a perfect cross-driving model makes: `source`'s face drawn by the world's own renderer with the
        ground truth of drivers["mouth"] (mouth), drivers["pose"] (head pose) and drivers["expression"]
        (expression and blinks), first `n_frames` frames, uint8 (T, H, W, 3). Not passed through the video
        codec, like a model's output. The disentanglement metrics read it to put their reference in the
        readers' units (metrics.disentanglement.evaluate_disentanglement)."""
        ident = make_identity(int(self.meta["seed"]), int(source.identity[1:]) - 1)
        if ident.name != source.identity:
            raise InputError(f"identity {source.identity} is not the world's face #{source.identity[1:]} (seed "
                             f"{self.meta['seed']} makes {ident.name}); this world cannot render its ground truth")
        gt = {f: self.ground_truth(drivers[f]) for f in ("mouth", "pose", "expression")}
        n = int(n_frames)
        frames, _ = render_factors(ident, gt["mouth"]["mouth"][:n], gt["pose"]["pose"][:n],
                                   gt["expression"]["expression"][:n], gt["expression"]["blink"][:n],
                                   int(self.meta["size"]))
        return frames

    def ground_truth(self, clip: SyntheticClip) -> dict:
        with np.load(clip.groundtruth, allow_pickle=False) as z:
            return {k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files}

"""H.264 writing is reproducible from one process to the next.

x264's AVX-512 macroblock-tree code reads past each macroblock row when a frame's width is not a multiple of
128 px, and on the last row those bytes are whatever the heap held (see `x264_asm_without_avx512`). Each check
writes the same videos in two fresh processes whose heaps differ (glibc's MALLOC_PERTURB_ fills allocated and
freed memory with a different byte in each) and compares the files and the decoded frames. On a host without
AVX-512 the old writer passed these checks too; on this project's AVX-512 dev host it failed both.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# Writes clips of widths 64, 96 and 112 px (4, 6 and 7 macroblocks: not multiples of 8) and one of 128 px,
# moving so that the lookahead finds motion vectors, some with an AAC track; prints each file's hashes.
WRITE_SEQUENCE = """
import hashlib, json, sys
from pathlib import Path
import numpy as np
from benchmarks.media import read_video, write_video

def moving_clip(height, width, n_frames, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    centres = rng.uniform(0, min(height, width), (3, 2))
    velocities = rng.uniform(-2, 2, (3, 2))
    colours = rng.uniform(60, 255, (3, 3))
    frames = []
    for t in range(n_frames):
        img = np.full((height, width, 3), 40.0) + 0.5 * xx[..., None]
        for (cy, cx), (vy, vx), colour in zip(centres, velocities, colours):
            blob = np.exp(-((yy - cy - vy * t) ** 2 + (xx - cx - vx * t) ** 2) / 60.0)
            img = img * (1 - blob[..., None]) + colour * blob[..., None]
        frames.append(img + rng.normal(0, 3, img.shape))
    return np.clip(frames, 0, 255).astype(np.uint8)

out = Path(sys.argv[1])
hashes = []
for k, (height, width, with_audio) in enumerate([(64, 64, False), (96, 96, True), (64, 112, False),
                                                  (64, 64, True), (128, 128, False), (96, 96, False)]):
    frames = moving_clip(height, width, 16, seed=k)
    audio = np.sin(np.arange(16 * 640) * 0.05).astype(np.float32) * 0.3 if with_audio else None
    path = write_video(out / f"clip{k}.mp4", frames, fps=25, audio=audio)
    decoded = read_video(path).frames
    hashes.append({"file": hashlib.sha256(path.read_bytes()).hexdigest(),
                   "frames": hashlib.sha256(decoded.tobytes()).hexdigest()})
print(json.dumps(hashes))
"""

# Builds a small synthetic world (64 px, as the smoke and study presets) and prints each video's hashes.
SYNTHESIZE_WORLD = """
import hashlib, json, sys
from pathlib import Path
from benchmarks.media import read_video
from benchmarks.synthetic.writer import Preset, synthesize_world

preset = Preset(identities=2, test_identities=1, emotions=("angry", "neutral"), levels=(3,), clips_per_level=1,
                n_frames=20, size=64)
root = synthesize_world(Path(sys.argv[1]), preset, seed=3)
hashes = {}
for path in sorted(Path(root).rglob("*.mp4")):
    hashes[str(path.relative_to(root))] = {
        "file": hashlib.sha256(path.read_bytes()).hexdigest(),
        "frames": hashlib.sha256(read_video(path).frames.tobytes()).hexdigest()}
print(json.dumps(hashes))
"""


def _run_fresh(script: str, out: Path, heap_fill: int):
    env = {**os.environ, "MALLOC_PERTURB_": str(heap_fill), "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script, str(out)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_same_clips_give_same_files_in_two_processes(tmp_path):
    first = _run_fresh(WRITE_SEQUENCE, tmp_path / "a", heap_fill=0)
    second = _run_fresh(WRITE_SEQUENCE, tmp_path / "b", heap_fill=165)
    assert len(first) == 6
    for k, (a, b) in enumerate(zip(first, second, strict=True)):
        assert a["frames"] == b["frames"], f"clip {k}: decoded frames differ between processes"
        assert a["file"] == b["file"], f"clip {k}: files differ between processes"


def test_synthetic_world_videos_same_in_two_processes(tmp_path):
    first = _run_fresh(SYNTHESIZE_WORLD, tmp_path / "a", heap_fill=0)
    second = _run_fresh(SYNTHESIZE_WORLD, tmp_path / "b", heap_fill=165)
    assert len(first) == 4 and first.keys() == second.keys()
    for name in first:
        assert first[name]["frames"] == second[name]["frames"], f"{name}: decoded frames differ between processes"
        assert first[name]["file"] == second[name]["file"], f"{name}: files differ between processes"

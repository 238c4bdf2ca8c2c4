"""Stand-in checkpoints of the official EDTalk release: the real files' layout, seeded weights.

`official_manifest.json` (package data) lists every state-dict entry of the three released files
(EDTalk.pt['gen'], Audio2Lip.pt['audio2lip'], EDTalk_lip_pose.pt['gen']) with its shape and kind, and the
values of fixed buffers (blur kernels). `write_official_standins(seed, out_dir)` fills them by the rule of
`metrics.standin`, so the loaders, `edtalk animate --checkpoint-dir` and the parity tests run without the
real weights; the official code run on seed-1 files gave tests/fixtures/parity/parity_seed1.npz.
"""
from __future__ import annotations

import json
from pathlib import Path

from metrics.standin import seeded_state_dict

MANIFEST = Path(__file__).resolve().parent / "official_manifest.json"
FILES = ("EDTalk.pt", "Audio2Lip.pt", "EDTalk_lip_pose.pt")


def official_manifest() -> dict:
    """{file name: {group: {key: spec}}} of the released checkpoints."""
    return json.loads(MANIFEST.read_text())


def write_official_standins(seed: int, out_dir, files=FILES) -> dict[str, Path]:
    """Write the released checkpoint files with seeded weights into `out_dir`; returns {file name: path}."""
    import torch

    manifest = official_manifest()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in files:
        ckpt = {group: seeded_state_dict(specs, seed) for group, specs in manifest[name].items()}
        torch.save(ckpt, out_dir / name)
        written[name] = out_dir / name
    return written

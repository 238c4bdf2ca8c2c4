"""Train, cache, load and validate the synthetic-world evaluators.

    ev = load_evaluators("/data/world")            # UserError if `edtalk evaluators train` was not run
    ev.landmarks(frames)   # (T, 68, 2) pixels of the input frames
    ev.pose(frames)        # (T, 3) yaw/pitch/roll degrees
    ev.emotion(frames)     # (8,) clip logits = mean of ev.emotion_frames(frames) (T, 8); order EMOTIONS
    ev.identity(frames)    # (T, 64) L2-normalised; same person if cosine > ev.identity_threshold
                           # (chosen on train identities held out from the identity net's fit)
    ev.features(frames)    # (T, 256) synthetic-domain FID features (not Inception-FID, see FEATURES_NOTE)
    ev.lse(frames, audio)  # LSE-C/LSE-D/offset with ev.syncnet on predicted-landmark mouth crops

Cache: `<data dir>/evaluators/<key>/` (or `<cache_dir>/<key>/`), key = sha256 of (world.json content,
EvaluatorConfig, seed, FORMAT); one `<net>.pt` per evaluator (written as each finishes: an
interrupted training resumes), then `validation.json` and `meta.json` (written last: its presence
marks a complete cache).
"""
from __future__ import annotations

import json
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from benchmarks.evaluators.config import FORMAT, PRESETS, EvaluatorConfig, cache_key, get_config, world_digest
from benchmarks.evaluators.data import as_frames, mouth_crops, resize_frames
from benchmarks.evaluators.train import NET_ORDER, POSE_SCALE, build_net
from benchmarks.media import frames_to_tensor
from metrics.errors import CheckpointMismatchError, UserError
from metrics.functional.emotion import EMOTIONS
from metrics.utils import atomic_torch_save, atomic_write_json, provenance, resolve_device

FEATURES_NOTE = ("synthetic-domain FID features: concatenation of the identity net's and the emotion net's "
                 "penultimate layers (2 x feat_dim, after ReLU), both trained on the synthetic world's train "
                 "identities; this is NOT Inception-FID and its values are not comparable with published FIDs")
SYNC_CROPS_NOTE = ("mouth crops: square box centred between the lip corners (landmarks 48, 54; [1,2,1] temporal "
                   "smoothing), side 0.75 x the clip's median jaw width (landmarks 0-16), resized to crop_size, "
                   "BGR; GT landmarks for training, the landmark evaluator's prediction for scoring")


def _world(data_dir):
    from benchmarks.datasets.synthetic import SyntheticWorld

    return SyntheticWorld(data_dir)


def cache_root(data_dir, cache_dir=None) -> Path:
    return Path(cache_dir) if cache_dir is not None else Path(data_dir) / "evaluators"


class Evaluators:
    """The trained nets behind one call each; every method takes uint8 (T, H, W, 3) RGB frames."""

    def __init__(self, nets: dict[str, torch.nn.Module], config: EvaluatorConfig, meta: dict, device=None,
                 batch_size: int = 256):
        self.device = resolve_device(device)
        self.nets = {k: v.to(self.device).eval() for k, v in nets.items()}
        self.config, self.meta, self.batch_size = config, meta, batch_size

    @property
    def syncnet(self) -> torch.nn.Module:
        return self.nets["syncnet"]

    @property
    def validation(self) -> dict:
        return self.meta.get("validation", {})

    @property
    def identity_threshold(self) -> float:
        return float(self.meta["identity_threshold"])

    @torch.no_grad()
    def _run(self, kind: str, frames, fn=None) -> tuple[np.ndarray, tuple[int, int]]:
        frames = as_frames(frames)
        hw = frames.shape[1:3]
        small = resize_frames(frames, self.config.input_size)
        net = self.nets[kind]
        fn = fn or net
        out = [fn(frames_to_tensor(small[i:i + self.batch_size]).to(self.device)).float().cpu()
               for i in range(0, len(small), self.batch_size)]
        return torch.cat(out).numpy(), hw

    def landmarks(self, frames) -> np.ndarray:
        """(T, 68, 2) float32 landmark pixels (x, y) in the input frames' coordinates."""
        out, (h, w) = self._run("landmarks", frames)
        return ((out.reshape(-1, 68, 2) + 1) / 2 * np.array([w, h], np.float32)).astype(np.float32)

    def pose(self, frames) -> np.ndarray:
        """(T, 3) float32 yaw, pitch, roll in degrees."""
        out, _ = self._run("pose", frames)
        return (out * POSE_SCALE).astype(np.float32)

    def emotion_frames(self, frames) -> np.ndarray:
        """(T, 8) per-frame emotion logits, columns in EMOTIONS order."""
        return self._run("emotion", frames)[0]

    def emotion(self, frames) -> np.ndarray:
        """(8,) clip-level logits: the mean of the per-frame logits."""
        return self.emotion_frames(frames).mean(0)

    def identity(self, frames) -> np.ndarray:
        """(T, embed_dim) L2-normalised identity embeddings."""
        return self._run("identity", frames)[0]

    def features(self, frames) -> np.ndarray:
        """(T, 2·feat_dim) features for a synthetic-domain FID (see FEATURES_NOTE)."""
        ident = self._run("identity", frames, self.nets["identity"].features)[0]
        emo = self._run("emotion", frames, self.nets["emotion"].features)[0]
        return np.concatenate([ident, emo], axis=1)

    def mouth_crops(self, frames, landmarks=None) -> np.ndarray:
        """(T, crop_size, crop_size, 3) uint8 BGR SyncNet inputs (landmarks predicted when not given)."""
        frames = as_frames(frames)
        lm = self.landmarks(frames) if landmarks is None else np.asarray(landmarks)
        return mouth_crops(frames, lm, self.config.crop_size)

    def lse(self, frames, audio, sample_rate: int = 16000, landmarks=None) -> dict:
        """LSE-C, LSE-D and offset (syncnet_python's evaluation) with this world's SyncNet."""
        from metrics.functional.sync import lse

        return lse(self.mouth_crops(frames, landmarks), audio, sample_rate, model=self.syncnet,
                   vshift=self.config.vshift, crop_size=self.config.crop_size, device=self.device)

    def __repr__(self) -> str:
        return f"Evaluators(key={self.meta.get('key')}, nets={list(self.nets)}, device={self.device})"


# --------------------------------------------------------------------------------------------------
def _load_net(path: Path, kind: str) -> tuple[torch.nn.Module, dict]:
    from metrics.utils import safe_torch_load

    ckpt = safe_torch_load(path, "an evaluator checkpoint")
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT or ckpt.get("kind") != kind:
        raise CheckpointMismatchError(f"{path} is not a {FORMAT} {kind} checkpoint; delete it and run "
                                      "`edtalk evaluators train` again")
    net = build_net(kind, ckpt["init"])
    net.load_state_dict(ckpt["state_dict"])
    return net.eval(), ckpt


def _find_cache(root: Path, world_meta: dict, cfg: EvaluatorConfig, seed: int | None) -> Path | None:
    if seed is not None:
        d = root / cache_key(world_meta, cfg, seed)
        return d if (d / "meta.json").is_file() else None
    found = []  # any seed: prefer seed 0, then the newest
    for m in root.glob("*/meta.json"):
        try:
            meta = json.loads(m.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if meta.get("key") == cache_key(world_meta, cfg, meta.get("seed", -1)) == m.parent.name:
            found.append((meta["seed"] != 0, -m.stat().st_mtime, m.parent))
    return min(found)[2] if found else None


def load_evaluators(data_dir, train_if_missing: bool = False, *, cache_dir=None, seed: int | None = None,
                    config: str | EvaluatorConfig | None = None, device=None, progress: bool = True) -> Evaluators:
    """The trained evaluators of the world in `data_dir` (any seed when `seed` is None, seed 0 first)."""
    world = _world(data_dir)
    cfg = get_config(config)
    root = cache_root(data_dir, cache_dir)
    found = _find_cache(root, world.meta, cfg, seed)
    if found is None and config is None:
        # No default-config cache: use a cache of another named preset (e.g. "tiny") if one exists.
        for name in PRESETS:
            other = get_config(name)
            found = _find_cache(root, world.meta, other, seed)
            if found is not None:
                cfg = other
                break
    if found is None:
        if not train_if_missing:
            out = f" --out {cache_dir}" if cache_dir is not None else ""
            preset = next((k for k, v in PRESETS.items() if v == cfg), None)
            opts = out + (f" --preset {preset}" if preset not in (None, "default") else "")
            opts += f" --seed {seed}" if seed else ""
            raise UserError(f"no trained evaluators for {data_dir} in {root} (config {preset or 'custom'}, seed "
                            f"{seed or 0}); run `edtalk evaluators train --data {data_dir}{opts}`")
        found = train_evaluators(data_dir, cache_dir=cache_dir, seed=0 if seed is None else seed, config=cfg,
                                 device=device, progress=progress)
    meta = json.loads((found / "meta.json").read_text())
    nets = {kind: _load_net(found / f"{kind}.pt", kind)[0] for kind in NET_ORDER}
    return Evaluators(nets, cfg, meta, device)


@contextmanager
def _torch_threads(threads: int | None):
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def train_evaluators(data_dir, *, cache_dir=None, seed: int = 0, config: str | EvaluatorConfig | None = None,
                     device=None, progress: bool = True, force: bool = False, threads: int | None = None) -> Path:
    """Train every evaluator missing from the cache, validate on the test identities; the cache dir.

    `threads` sets torch's CPU threads while training (None: leave it); on a CPU shared with other
    jobs, 1 thread is often several times faster than oversubscribed OpenMP threads.
    """
    with _torch_threads(threads):
        return _train_evaluators(data_dir, cache_dir, seed, config, device, progress, force)


def _train_evaluators(data_dir, cache_dir, seed, config, device, progress, force) -> Path:
    from benchmarks.evaluators.data import load_split
    from benchmarks.evaluators.train import net_init, train_image_net, train_syncnet
    from benchmarks.evaluators.validate import validate

    world = _world(data_dir)
    cfg = get_config(config)
    dev = resolve_device(device)
    key = cache_key(world.meta, cfg, seed)
    out = cache_root(data_dir, cache_dir) / key
    if (out / "meta.json").is_file() and not force:
        return out
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    train = load_split(world, "train", cfg.input_size, cfg.crop_size, cfg.crop_margin, progress)
    load_seconds = time.perf_counter() - t0
    nets, info = {}, {}
    for i, kind in enumerate(NET_ORDER):
        path = out / f"{kind}.pt"
        if path.is_file() and not force:
            nets[kind], ckpt = _load_net(path, kind)
            info[kind] = ckpt["train"]
            continue
        net_seed = seed * 1000 + i
        if kind == "syncnet":
            net, stats = train_syncnet(train, cfg, net_seed, dev, progress)
        else:
            net, stats = train_image_net(kind, train, cfg, net_seed, dev, progress)
        init = net_init(kind, cfg, len(train.identities))
        net = net.cpu().eval()
        atomic_torch_save({"format": FORMAT, "kind": kind, "init": init, "state_dict": net.state_dict(),
                           "train": stats, "seed": net_seed}, path)
        nets[kind], info[kind] = net, stats
    meta = {"format": FORMAT, "key": key, "seed": seed, "world_dir": str(Path(data_dir).resolve()),
            "world": world.meta, "world_sha256": world_digest(world.meta), "config": cfg.to_dict(),
            "train_identities": train.identities, "emotions": list(EMOTIONS),
            "train_seconds": {k: v["seconds"] for k, v in info.items()}, "train": info,
            "load_seconds": load_seconds, "features": FEATURES_NOTE, "sync_crops": SYNC_CROPS_NOTE}
    ev = Evaluators(nets, cfg, meta, dev)
    t1 = time.perf_counter()
    validation, threshold = validate(ev, world, train, cfg, seed, progress)
    validation["seconds"] = time.perf_counter() - t1
    meta.update(identity_threshold=threshold, validation=validation, provenance=provenance(device=str(dev)))
    atomic_write_json(out / "validation.json", validation)
    atomic_write_json(out / "meta.json", meta)  # last: marks the cache complete
    return out

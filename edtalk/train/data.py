"""Training samples for stages 0–2: frames held in memory, pairs drawn deterministically by index.

Every sample is a pure function of (seed, epoch, index), so a resumed run sees exactly the batches an
uninterrupted one would, and a `DistributedSampler` can shard the indices across ranks. The sampler
position (epoch, next batch) is part of the checkpoint.

Sources: a synthetic world directory (`benchmarks.datasets.synthetic.SyntheticWorld`), or a world
generated in memory with `benchmarks.synthetic.generate_clip` when no directory is given.
Real MEAD/HDTF clips enter the same way, as memory-mapped frames with dlib's 68 landmarks (edtalk.train.real_data).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from benchmarks.media import frames_to_tensor
from edtalk.train.mouth_swap import mouth_box, swap_mouth
from metrics.errors import InputError


@dataclass
class PoolClip:
    name: str
    identity: str
    emotion: str
    split: str
    frames: np.ndarray  # uint8 (T,H,W,3)
    landmarks: np.ndarray  # float (T,68,2) in pixels of `frames`
    gt: dict = field(default_factory=dict)  # optional per-frame ground truth (mouth, pose, …)


class FramePool:
    """Clips grouped by identity; `neutral` clips serve as identity sources as in MEAD training."""

    def __init__(self, clips: list[PoolClip]):
        if not clips:
            raise InputError("the training data holds no clips; generate a world with `edtalk data synth`")
        shapes = {c.frames.shape[1:] for c in clips}
        if len(shapes) != 1:
            raise InputError(f"training clips have different frame sizes {sorted(shapes)}; resample them to one size")
        for c in clips:
            if c.frames.dtype != np.uint8 or c.frames.ndim != 4 or c.frames.shape[-1] != 3:
                raise InputError(f"clip {c.name}: frames must be uint8 (T,H,W,3), "
                                 f"got {c.frames.dtype} {c.frames.shape}")
            if c.landmarks.shape != (len(c.frames), 68, 2):
                raise InputError(f"clip {c.name}: landmarks must be (T,68,2) with T={len(c.frames)}, "
                                 f"got {c.landmarks.shape}")
        self.clips = clips
        self.size = clips[0].frames.shape[1]
        self.identities = sorted({c.identity for c in clips})
        self.by_identity = {i: [k for k, c in enumerate(clips) if c.identity == i] for i in self.identities}
        self.neutral = {i: [k for k in v if clips[k].emotion == "neutral"] or v for i, v in self.by_identity.items()}
        self.emotional = {i: [k for k in v if clips[k].emotion != "neutral"] or v for i, v in self.by_identity.items()}

    def split(self, split: str) -> FramePool:
        return FramePool([c for c in self.clips if c.split == split])

    @classmethod
    def from_world(cls, root, split: str | None = "train") -> FramePool:
        try:
            from benchmarks.datasets.synthetic import SyntheticWorld
        except ImportError as exc:  # pragma: no cover - depends on the data package being installed
            raise InputError(f"cannot read {root}: the synthetic-world reader is unavailable ({exc})") from exc
        world = SyntheticWorld(root)
        clips = []
        for c in world.clips(split):
            gt = world.ground_truth(c)
            clips.append(PoolClip(c.name, str(c.identity), str(c.emotion), str(c.split), world.frames(c),
                                  np.asarray(gt["landmarks"], np.float32),
                                  {k: np.asarray(gt[k]) for k in ("mouth", "pose", "expression") if k in gt}))
        if not clips:
            raise InputError(f"{root} has no {split or 'any'} clips; is it a synthetic world (world.json)?")
        return cls(clips)

    @classmethod
    def generate(cls, n_identities: int, clips_per_identity: int, n_frames: int, size: int, seed: int,
                 test_identities: int = 2) -> FramePool:
        """A small world in memory: the first `n_identities` train identities, then held-out ones."""
        from benchmarks.synthetic import generate_clip
        from metrics.functional.emotion import EMOTIONS

        clips = []
        for ident in range(n_identities + test_identities):
            split = "train" if ident < n_identities else "test"
            for j in range(clips_per_identity):
                # The first clip of each identity is neutral (the identity source), the rest emotional.
                emotion = "neutral" if j == 0 else EMOTIONS[(ident + j) % len(EMOTIONS)]
                if emotion == "neutral" and j:
                    emotion = "happy"
                level = 1 if emotion == "neutral" else 1 + (j % 3)
                c = generate_clip(identity=ident, emotion=emotion, level=level, n_frames=n_frames, size=size,
                                  seed=seed * 100003 + ident * 101 + j)
                gt = c.ground_truth if hasattr(c, "ground_truth") else c["ground_truth"]
                frames = c.frames if hasattr(c, "frames") else c["frames"]
                clips.append(PoolClip(f"id{ident:02d}_{emotion}_{j}", f"id{ident:02d}", emotion, split,
                                      np.asarray(frames, np.uint8), np.asarray(gt["landmarks"], np.float32),
                                      {k: np.asarray(gt[k]) for k in ("mouth", "pose", "expression") if k in gt}))
        return cls(clips)


def to_tensor(frame: np.ndarray) -> torch.Tensor:
    """One uint8 HWC frame → float CHW in [-1, 1] (benchmarks.media.frames_to_tensor)."""
    return frames_to_tensor(frame[None])[0]


def mouth_mask(landmarks: np.ndarray, size: int) -> torch.Tensor:
    """(1,size,size) float mask of the mouth box (landmarks 48-67 ± 5 px at 256 px, scaled), for the
    mouth-region loss."""
    x0, y0, x1, y1 = mouth_box(landmarks, margin=max(1, round(5 * size / 256)))
    m = torch.zeros(1, size, size)
    m[:, max(y0, 0):max(min(y1, size), 0), max(x0, 0):max(min(x1, size), 0)] = 1.0
    return m


class PairDataset(Dataset):
    """`kind`: "autoencoder" (source/target of one identity), "expression" (neutral source,
    emotional target), "mouth_pose" (two identities A, B and the two mouth-swapped frames)."""

    def __init__(self, pool: FramePool, kind: str, length: int, seed: int):
        if kind not in ("autoencoder", "expression", "mouth_pose"):
            raise InputError(f"unknown sample kind {kind!r}")
        self.pool, self.kind, self.length, self.seed = pool, kind, int(length), int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def _frame(self, rng, clip_idx):
        c = self.pool.clips[clip_idx]
        t = int(rng.integers(len(c.frames)))
        return c.frames[t], c.landmarks[t]

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        kinds = {"autoencoder": 0, "expression": 1, "mouth_pose": 2}
        rng = np.random.default_rng([self.seed, self.epoch, int(index), kinds[self.kind]])
        pool = self.pool
        if self.kind in ("autoencoder", "expression"):
            ident = pool.identities[int(rng.integers(len(pool.identities)))]
            src_clips = pool.neutral[ident]
            tgt_clips = pool.by_identity[ident] if self.kind == "autoencoder" else pool.emotional[ident]
            src, _ = self._frame(rng, src_clips[int(rng.integers(len(src_clips)))])
            tgt, tgt_lm = self._frame(rng, tgt_clips[int(rng.integers(len(tgt_clips)))])
            return {"source": to_tensor(src), "target": to_tensor(tgt), "target_mouth": mouth_mask(tgt_lm, pool.size)}
        # Stage 1 (paper.md §2.2): identities A and B (different when possible), for each an identity
        # frame and a target frame of the same clip; a_b = A's frame with B's mouth, b_a = B's with A's.
        ids = pool.identities
        ia = int(rng.integers(len(ids)))
        ib = int(rng.integers(len(ids) - 1)) if len(ids) > 1 else 0
        if len(ids) > 1 and ib >= ia:
            ib += 1
        out = {}
        for key, ident in (("a", ids[ia]), ("b", ids[ib])):
            clips = pool.by_identity[ident]
            ci = clips[int(rng.integers(len(clips)))]
            idf, _ = self._frame(rng, ci)
            tf, tl = self._frame(rng, ci)
            out[key + "_id"], out[key], out["_lm_" + key] = idf, tf, tl
        a_b = swap_mouth(out["b"], out["_lm_b"], out["a"], out["_lm_a"])
        b_a = swap_mouth(out["a"], out["_lm_a"], out["b"], out["_lm_b"])
        return {"a_id": to_tensor(out["a_id"]), "a": to_tensor(out["a"]), "b_id": to_tensor(out["b_id"]),
                "b": to_tensor(out["b"]), "a_b": to_tensor(a_b), "b_a": to_tensor(b_a),
                "a_mouth": mouth_mask(out["_lm_a"], pool.size), "b_mouth": mouth_mask(out["_lm_b"], pool.size)}


class ResumableDistributedSampler(DistributedSampler):
    """DistributedSampler that can start part-way through an epoch (the checkpointed position)."""

    def __init__(self, dataset, num_replicas: int, rank: int, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        self.set_epoch(epoch)
        self.start = int(start)

    def __iter__(self):
        indices = list(super().__iter__())
        return iter(indices[self.start:])

    def __len__(self) -> int:
        return self.num_samples - self.start


def epoch_length(batch_size: int, world_size: int, min_batches: int = 50) -> int:
    """Dataset length: enough indices for `min_batches` global batches per epoch."""
    return int(math.ceil(min_batches * batch_size * world_size))

"""Scoring on the built-in synthetic world: cases and the scorer (our trained model as a method: edtalk.method).

The scorer compares a method's frames for a test clip with that clip's ground truth, through the
in-project evaluators (benchmarks.evaluators) where a metric needs a network:
- psnr / ssim: scikit-image definitions against the clip's real frames (self-reenactment);
- m_lmd / f_lmd: landmark evaluator on generated frames vs the ground-truth landmarks (pixels at
  the world's size; centroid-subtracted as EAT);
- pose_err: pose evaluator on generated frames vs ground-truth yaw/pitch/roll, mean absolute error
  in degrees averaged over the three axes;
- acc_emo: emotion evaluator's clip-level arg-max == the clip's emotion (1/0 per clip);
- sync_conf: LSE-C of the world's SyncNet on mouth crops with the clip's audio (extra: lse_d, offset).
Protocols on this data say in their `reference` that the evaluators are synthetic-domain nets.
"""
from __future__ import annotations

import numpy as np

from benchmarks.protocols.engine import Case
from benchmarks.protocols.registry import Protocol
from metrics.errors import InputError


def synthetic_cases(world, protocol: Protocol) -> list[Case]:
    clips = world.clips(protocol.split)
    if protocol.max_clips:
        # Spread the cap over identities and emotions: every k-th clip of the sorted list.
        step = max(1, len(clips) // protocol.max_clips)
        clips = clips[::step][:protocol.max_clips]
    return [Case(c.name, {"identity": c.identity, "emotion": c.emotion, "level": c.level}) for c in clips]


class SyntheticScorer:
    """`scorer(case, frames) -> {metric: value}` for the synthetic protocols."""

    def __init__(self, world, evaluators, metrics: list[str], chunk: int = 64):
        self.world, self.ev, self.metrics, self.chunk = world, evaluators, list(metrics), int(chunk)
        self._by_name = {c.name: c for c in world.clips(None)}
        self.confusion = np.zeros((8, 8), np.int64)

    def __call__(self, case: Case, frames: np.ndarray) -> dict:
        from metrics.functional.image import psnr_per_frame, ssim_per_frame
        from metrics.functional.landmarks import landmark_distance
        from metrics.functional.pose import pose_error

        clip = self._by_name[case.name]
        real = self.world.frames(clip)
        gt = self.world.ground_truth(clip)
        n = min(len(frames), len(real))
        if frames.shape[1:] != real.shape[1:]:
            raise InputError(f"case {case.name}: frames are {frames.shape[1:3]} but the world's are "
                             f"{real.shape[1:3]}; generate at the protocol's size")
        frames, real = frames[:n], real[:n]
        out: dict = {}
        want = set(self.metrics)
        # Per-frame scores in chunks: psnr_per_frame works in float64 on whatever it is given, which for
        # a whole long clip is 8x the clip's uint8 size (x2 for the difference), per metric.
        def per_frame(fn):
            return np.concatenate([fn(frames[i:i + self.chunk], real[i:i + self.chunk])
                                   for i in range(0, n, self.chunk)])

        if "psnr" in want:
            out["psnr"] = float(per_frame(psnr_per_frame).mean())
        if "ssim" in want:
            out["ssim"] = float(per_frame(ssim_per_frame).mean())
        lm = None
        if want & {"m_lmd", "f_lmd", "sync_conf"}:
            lm = self.ev.landmarks(frames)
            true_lm = np.asarray(gt["landmarks"], np.float64)[:n]
            out["m_lmd"] = landmark_distance(lm, true_lm, subset="mouth")
            out["f_lmd"] = landmark_distance(lm, true_lm, subset="face")
        if "pose_err" in want:
            err = pose_error(self.ev.pose(frames), np.asarray(gt["pose"], np.float64)[:n])
            out["pose_err"] = err["mean"]
            out.update({f"pose_err_{axis}": err[axis] for axis in ("yaw", "pitch", "roll")})
        if "acc_emo" in want:
            pred = int(np.argmax(self.ev.emotion(frames)))
            label = int(gt["emotion_index"])
            self.confusion[label, pred] += 1
            out["acc_emo"] = float(pred == label)
            out["emotion_pred"] = pred
        if "sync_conf" in want:
            audio = self.world.audio(clip)[: n * 640]
            r = self.ev.lse(frames, audio, 16000, landmarks=lm)
            out["sync_conf"], out["lse_d"], out["sync_offset"] = float(r["lse_c"]), float(r["lse_d"]), int(r["offset"])
        return out


def confusion_from_results(results: dict) -> dict:
    """The emotion confusion matrix rebuilt from per-sample rows (so a resumed run has it whole)."""
    from metrics.functional.emotion import EMOTIONS

    m = np.zeros((len(EMOTIONS), len(EMOTIONS)), np.int64)
    for row in results["per_sample"]:
        pred = (row.get("extra") or {}).get("emotion_pred")
        emo = row.get("info", {}).get("emotion")
        if pred is not None and emo in EMOTIONS:
            m[EMOTIONS.index(emo), int(pred)] += 1
    return {"labels": list(EMOTIONS), "matrix": m.tolist()}


class LandmarkReaders:
    """Factor readers for the disentanglement metrics, built on the evaluators.

    Mouth parameters (jaw_open, lip_width, closure) are read from predicted landmarks through a
    linear map fitted on the *training* clips' ground-truth landmarks → ground-truth mouth, so they
    come back in the ground truth's units (never fitted on generated frames). The map depends on the
    world's ground truth only, so it is fitted once per world and kept in `<world>/features/`
    (benchmarks.protocols.feature_cache); `cache=False` fits it every time.
    """

    def __init__(self, world, evaluators, cache: bool = True):
        self.ev = evaluators
        if not cache:
            self.w = self._fit(world)
            return
        from benchmarks.protocols.feature_cache import FeatureCache

        self.w = FeatureCache(world.root / "features").get_or_compute(
            self.cache_key(world), lambda: {"w": self._fit(world)})["w"]

    @staticmethod
    def cache_key(world) -> dict:
        """What the map is computed from: the world (world.json) and every training clip's ground-truth file
        as it is on disk (size, modification time), so a rewritten world refits it."""
        from benchmarks.evaluators.config import world_digest

        files = []
        for c in world.clips("train"):
            st = c.groundtruth.stat()
            files.append([c.name, st.st_size, st.st_mtime_ns])
        return {"what": "disentanglement mouth map (landmark geometry -> GT mouth, ridge 1e-6)", "version": 1,
                "world": world_digest(world.meta),
                "train_ground_truth": files}

    def _fit(self, world) -> np.ndarray:
        xs, ys = [], []
        for c in world.clips("train"):
            g = world.ground_truth(c)
            xs.append(self._mouth_geometry(np.asarray(g["landmarks"], np.float64)))
            ys.append(np.asarray(g["mouth"], np.float64))
        x, y = np.concatenate(xs), np.concatenate(ys)
        x1 = np.concatenate([x, np.ones((len(x), 1))], 1)
        return np.linalg.solve(x1.T @ x1 + 1e-6 * np.eye(x1.shape[1]), x1.T @ y)

    @staticmethod
    def _mouth_geometry(lm: np.ndarray) -> np.ndarray:
        # Mouth points (48-67) relative to their centroid, scaled by the inter-ocular distance.
        mouth = lm[:, 48:68] - lm[:, 48:68].mean(1, keepdims=True)
        iod = np.linalg.norm(lm[:, 36] - lm[:, 45], axis=1)[:, None, None] + 1e-6
        return (mouth / iod).reshape(len(lm), -1)

    def mouth(self, frames):
        x = self._mouth_geometry(self.ev.landmarks(frames).astype(np.float64))
        return np.concatenate([x, np.ones((len(x), 1))], 1) @ self.w

    def pose(self, frames):
        return self.ev.pose(frames)

    def emotion(self, frames):
        return self.ev.emotion(frames)

    def identity(self, frames):
        return self.ev.identity(frames)

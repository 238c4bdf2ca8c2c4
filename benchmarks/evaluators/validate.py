"""Validation of the evaluators on the world's held-out TEST identities (never seen in training).

Everything goes through the public `Evaluators` methods on the stored videos at the world's size:
landmark error in pixels, pose MAE per axis (with the ground truth's own spread for scale), emotion
accuracy per clip (mean logits) and per frame, identity verification on balanced same/different
pairs with the threshold chosen on TRAIN identities held out from the identity net's fit, and the
SyncNet through the LSE code: offset found within ±1 frame (±vshift search) for the true audio,
and LSE-C/LSE-D for the true audio, the audio delayed by `shift_frames`, and another test clip's
audio ("swapped").
"""
from __future__ import annotations

import numpy as np
from tqdm import tqdm

from benchmarks import media
from benchmarks.evaluators.data import SAMPLES_PER_FRAME, Split
from benchmarks.evaluators.train import identity_roles


def _pairs(ids: np.ndarray, clips: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """n same-identity pairs (frames from different clips where possible) and n different-identity pairs."""
    a_same = rng.integers(0, len(ids), n)
    b_same = np.empty(n, np.int64)
    for i, a in enumerate(a_same):
        pool = np.flatnonzero((ids == ids[a]) & (clips != clips[a]))
        pool = pool if len(pool) else np.flatnonzero((ids == ids[a]) & (np.arange(len(ids)) != a))
        b_same[i] = rng.choice(pool)
    a_diff = rng.integers(0, len(ids), n)
    b_diff = np.array([rng.choice(np.flatnonzero(ids != ids[a])) for a in a_diff], np.int64)
    same = np.r_[np.ones(n, bool), np.zeros(n, bool)]
    return np.r_[a_same, a_diff], np.r_[b_same, b_diff], same


def best_threshold(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """The cosine threshold with the highest accuracy (midpoints between sorted scores) and that accuracy."""
    order = np.argsort(scores)
    s, y = scores[order], same[order]
    # predicting "same" above position i: correct = negatives up to i + positives after i
    neg_before = np.r_[0, np.cumsum(~y)]
    pos_after = y.sum() - np.r_[0, np.cumsum(y)]
    acc = (neg_before + pos_after) / len(s)
    i = int(np.argmax(acc))
    edges = np.r_[s[0] - 1e-3, (s[:-1] + s[1:]) / 2, s[-1] + 1e-3]
    return float(edges[i]), float(acc[i])


def _verification(emb: np.ndarray, ids: np.ndarray, clips: np.ndarray, n: int, rng) -> tuple[np.ndarray, ...]:
    a, b, same = _pairs(ids, clips, n, rng)
    return np.sum(emb[a] * emb[b], axis=1), same


def validate(ev, world, train: Split, cfg, seed: int, progress: bool = True) -> tuple[dict, float]:
    rng = np.random.default_rng([seed, 2024])
    clips = world.clips("test")
    test_ids = sorted({c.identity for c in clips})
    lm_err, mouth_err, pose_abs, pose_gt, emo_clip, emo_frame = [], [], [], [], [], []
    embs, id_idx, clip_idx, audios, frames_all, lms_all = [], [], [], [], [], []
    for k, c in enumerate(tqdm(clips, desc="validate", unit="clip", disable=not progress)):
        frames = media.read_video(c.video).frames
        gt = world.ground_truth(c)
        n = min(len(frames), len(gt["pose"]))
        frames = frames[:n]
        lm = ev.landmarks(frames)
        d = np.linalg.norm(lm - gt["landmarks"][:n], axis=-1)
        lm_err.append(d.mean(1))
        mouth_err.append(d[:, 48:68].mean(1))
        pose_abs.append(np.abs(ev.pose(frames) - gt["pose"][:n]))
        pose_gt.append(gt["pose"][:n])
        logits = ev.emotion_frames(frames)
        emo_frame.append(logits.argmax(1) == int(gt["emotion_index"]))
        emo_clip.append(int(logits.mean(0).argmax()) == int(gt["emotion_index"]))
        embs.append(ev.identity(frames))
        id_idx.append(np.full(n, test_ids.index(c.identity)))
        clip_idx.append(np.full(n, k))
        audios.append(world.audio(c))
        frames_all.append(frames)
        lms_all.append((lm, gt["landmarks"][:n]))

    # SyncNet through the LSE code: true, delayed and swapped audio
    shift = cfg.shift_frames * SAMPLES_PER_FRAME
    sync = {"true": [], "true_gt_crops": [], "shifted": [], "swapped": []}
    sync_clips = list(zip(frames_all, audios, lms_all, strict=True))
    for k, (frames, audio, (lm, gt_lm)) in enumerate(tqdm(sync_clips, desc="sync", unit="clip", disable=not progress)):
        delayed = np.r_[np.zeros(shift, audio.dtype), audio][: len(audio)]
        other = audios[(k + 1) % len(audios)]
        sync["true"].append(ev.lse(frames, audio, landmarks=lm))
        sync["true_gt_crops"].append(ev.lse(frames, audio, landmarks=gt_lm))
        sync["shifted"].append(ev.lse(frames, delayed, landmarks=lm))
        sync["swapped"].append(ev.lse(frames, other, landmarks=lm))

    def within(results, expected):
        return float(np.mean([abs(r["offset"] - expected) <= 1 for r in results]))

    # identity verification: threshold from held-out train identities, accuracy on the test identities
    held = np.isin(train.identity, identity_roles(len(train.identities))[1])
    train_emb = ev.identity(train.frames[held])
    thr_scores, thr_same = _verification(train_emb, train.identity[held], train.clip[held], cfg.verification_pairs,
                                         rng)
    threshold, train_acc = best_threshold(thr_scores, thr_same)
    scores, same = _verification(np.concatenate(embs), np.concatenate(id_idx), np.concatenate(clip_idx),
                                 cfg.verification_pairs, rng)
    pose_abs, pose_gt = np.concatenate(pose_abs), np.concatenate(pose_gt)
    axes = ("yaw", "pitch", "roll")
    out = {
        "split": "test", "identities": test_ids, "clips": len(clips), "frames": int(len(pose_abs)),
        "size": int(world.meta["size"]),
        "landmarks": {"mean_px": float(np.concatenate(lm_err).mean()),
                      "mouth_px": float(np.concatenate(mouth_err).mean())},
        "pose": {"mae_deg": {a: float(v) for a, v in zip(axes, pose_abs.mean(0), strict=True)},
                 "gt_std_deg": {a: float(v) for a, v in zip(axes, pose_gt.std(0), strict=True)}},
        "emotion": {"clip_accuracy": float(np.mean(emo_clip)),
                    "frame_accuracy": float(np.concatenate(emo_frame).mean()), "chance": 1 / 8},
        "identity": {"verification_accuracy": float(np.mean((scores > threshold) == same)),
                     "threshold": threshold, "train_accuracy": train_acc,
                     "threshold_identities": [train.identities[k] for k in identity_roles(len(train.identities))[1]],
                     "pairs_each": cfg.verification_pairs,
                     "mean_cos_same": float(scores[same].mean()), "mean_cos_different": float(scores[~same].mean())},
        "sync": {"offset_accuracy": within(sync["true"], 0),
                 "offset_accuracy_gt_crops": within(sync["true_gt_crops"], 0),
                 "shifted_offset_accuracy": within(sync["shifted"], -cfg.shift_frames),
                 "chance": 3 / (2 * cfg.vshift + 1), "shift_frames": cfg.shift_frames,
                 "lse_c": {k: float(np.mean([r["lse_c"] for r in v])) for k, v in sync.items()},
                 "lse_d": {k: float(np.mean([r["lse_d"] for r in v])) for k, v in sync.items()}},
    }
    return out, threshold

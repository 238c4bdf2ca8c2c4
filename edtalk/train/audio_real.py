"""Stage `audio` on real video (MEAD/HDTF): its `ClipRecord`s built from the real-data cache of stages 0-2.

The paper's recipe: the audio predictors regress the coefficients the trained encoder and heads (MLN, PLN,
ELN) extract from the real frames, so the targets always come from the trained generator of a stages-0-2
run (`targets="model"`; real video has no ground-truth coefficients). From the cache
(`edtalk.train.real_data`) each clip gives its frames at the model's size, the release's mel windows aligned
to them, its 16 kHz speech (utterance features of the expression predictor) and dlib's 68 landmarks; the
emotion label is parsed from the MEAD clip name (HDTF has none: neutral).

Real clips have no measured jaw or head pose, which the stage's held-out evaluation compares against. It
uses what the landmarks do measure (written into the stage's data.json and results.json):
- mouth: the inner-lip gap (dlib points 61-63 to 67-65) over the distance between the eye centres;
- pose: yaw/pitch/roll in degrees of a perspective-n-point fit of six landmarks (nose tip, chin, outer eye
  corners, mouth corners) onto a generic 3D face, focal length = frame width: an estimate from 2D
  landmarks, coarse at small frame sizes, not a head-pose measurement.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from edtalk.train.audio_config import AudioStageConfig
from edtalk.train.audio_data import ClipRecord, model_targets
from metrics.errors import InputError, MissingWeightsError

__all__ = ["GROUND_TRUTH", "jaw_opening", "landmark_pose_deg", "records_from_real", "train_audio_on_real"]

GROUND_TRUTH = {
    "mouth": "inner-lip gap (dlib-68 points 61-63 to 67-65) / eye-centre distance, per frame",
    "pose_deg": "yaw/pitch/roll of cv2.solvePnP of dlib-68 points 30, 8, 36, 45, 48, 54 onto a generic 3D face "
                "(focal = frame width): a landmark estimate, not a measured head pose",
}
# A generic face in millimetres (nose tip at the origin), in camera axes: x right, y down, z away from the
# camera, so a frontal face has no rotation. The widely used six-point model (learnopencv's head-pose note).
_FACE_3D = np.array([(0.0, 0.0, 0.0), (0.0, 330.0, 65.0), (-225.0, -170.0, 135.0), (225.0, -170.0, 135.0),
                     (-150.0, 150.0, 125.0), (150.0, 150.0, 125.0)])
_PNP_POINTS = (30, 8, 36, 45, 48, 54)
# The audio stage needs a clip at least this long: the mouth predictor's 5-frame windows (cfg.mouth_window)
# and the offline speech statistics (0.1 s of audio).
_MIN_SPEECH_SAMPLES = 1600


def jaw_opening(landmarks: np.ndarray) -> np.ndarray:
    """(T,68,2) dlib landmarks -> (T,) inner-lip gap over the eye-centre distance (scale-free mouth opening)."""
    lm = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(lm[:, [61, 62, 63]] - lm[:, [67, 66, 65]], axis=-1).mean(1)
    eyes = np.linalg.norm(lm[:, 36:42].mean(1) - lm[:, 42:48].mean(1), axis=-1)
    return gap / np.maximum(eyes, 1e-6)


def landmark_pose_deg(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(T,68,2) landmarks in a `size`-px frame -> (T,3) yaw, pitch, roll in degrees (PnP on a generic face)."""
    import cv2

    camera = np.array([[size, 0, size / 2], [0, size, size / 2], [0, 0, 1]], np.float64)
    out = np.zeros((len(landmarks), 3))
    for t, lm in enumerate(np.asarray(landmarks, np.float64)):
        ok, rvec, _ = cv2.solvePnP(_FACE_3D, lm[list(_PNP_POINTS)], camera, None, flags=cv2.SOLVEPNP_ITERATIVE)
        if not ok:
            raise InputError(f"frame {t}: no head pose fits its landmarks; check the clip's face crop")
        r = cv2.Rodrigues(rvec)[0]
        out[t] = np.degrees([np.arctan2(-r[2, 0], np.hypot(r[2, 1], r[2, 2])),  # yaw (about y)
                             np.arctan2(r[2, 1], r[2, 2]),  # pitch (about x)
                             np.arctan2(r[1, 0], r[0, 0])])  # roll (in the image plane)
    return out


def _emotion_index(dataset: str, emotion: str) -> int:
    from metrics.functional.emotion import EMOTIONS

    return EMOTIONS.index(emotion if dataset == "mead" else "neutral")


def records_from_real(pools, dataset: str, cfg: AudioStageConfig, model, device=None,
                      extractor=None) -> tuple[list[ClipRecord], dict]:
    """(records, what was left out) from `load_real_pools`' (train, test) pools, targets from `model`.

    A clip too short for the mouth predictor's window or the speech features is left out and counted."""
    from edtalk.model.expression_predictor import build_extractor
    from metrics.utils import resolve_device

    if model is None:
        raise MissingWeightsError("the audio stage on real video needs the trained generator of stages 0-2 (its "
                                  "coefficients are the targets); train them first with `edtalk train --dataset`")
    extractor = extractor or build_extractor(cfg.exp_features, cfg.exp_features_dir, cfg.exp_features_dim)
    device = resolve_device(device)
    clips = [c for pool in pools if pool is not None for c in pool.clips]
    records, skipped = [], {}
    for clip in tqdm(clips, desc="audio stage: real clips", unit="clip", leave=False):
        wav = np.load(clip.gt["speech_path"])
        n = len(clip.frames)
        if n < cfg.mouth_window or wav.size < _MIN_SPEECH_SAMPLES:
            skipped.setdefault("too_short", []).append(
                f"{clip.name}: {n} frames, {wav.size / 16000:.2f} s of speech (needs {cfg.mouth_window} frames "
                "and 0.1 s)")
            continue
        targets = model_targets(model, clip.frames, device)
        if targets.get("expression") is None and "expression" in cfg.parts:
            raise InputError("the trained model has no expression head; train stage 2 first or drop 'expression' "
                             "from --parts")
        expression = targets.get("expression", torch.zeros(n, 1))
        records.append(ClipRecord(
            name=clip.name, identity=clip.identity, split=clip.split, emotion=_emotion_index(dataset, clip.emotion),
            mel=torch.from_numpy(np.load(clip.gt["mel_path"])), mouth=targets["mouth"], pose=targets["pose"],
            expression=expression.mean(0),
            speech=torch.from_numpy(np.asarray(extractor(wav, 16000, clip.name), np.float32)),
            gt_jaw=torch.from_numpy(jaw_opening(clip.landmarks).astype(np.float32)),
            gt_pose_deg=torch.from_numpy(landmark_pose_deg(clip.landmarks, clip.frames.shape[1]).astype(np.float32)),
            frames_ref=clip.frames))
    report = {"skipped": {k: len(v) for k, v in skipped.items()}, "skipped_clips": skipped,
              "records": {s: sum(r.split == s for r in records) for s in ("train", "test")},
              "targets": "model", "ground_truth": GROUND_TRUTH}
    return records, report


def train_audio_on_real(run_dir, root, dataset: str, *, lists=None, limit_clips: int | None = None, cache=None,
                        workers: int = 1, preset: str = "smoke", seed: int = 0, cfg: AudioStageConfig | None = None,
                        max_steps: int | None = None, device=None, resume: bool = False,
                        detector_factory=None) -> dict:
    """Train stage `audio` of the stages-0-2 run in `run_dir` on MEAD/HDTF under `root`; returns its results.

    `lists`, `limit_clips`, `cache`, `workers`: as `edtalk train --dataset` (the clips are those stages 0-2
    read, from the same cache). `cfg`: the audio stage's config (default the preset's; its targets are always
    the trained model's). `max_steps` caps each part's iterations (dry runs). Writes RUN/audio/ (see
    `train_audio_stage`), with RUN/audio/data.json and logs/audio_data.log counting every clip left out."""
    from edtalk.presets import audio_stage_preset
    from edtalk.train.audio_stage import load_trained_generator, train_audio_stage
    from edtalk.train.real_data import load_real_pools, report_lines

    run_dir = Path(run_dir)
    cfg = (cfg or audio_stage_preset(preset)).capped(max_steps)
    if cfg.targets == "gt":
        raise InputError("real video has no ground-truth coefficients: the audio stage's targets are the trained "
                         "model's (--targets model or auto)")
    cfg = dataclasses.replace(cfg, targets="model")
    model = load_trained_generator(run_dir, device)
    if model is None:
        raise MissingWeightsError(f"{run_dir / 'model.pt'} not found: train stages 0-2 on the same data first "
                                  f"(`edtalk train --dataset {dataset} --data {root} --out {run_dir}`)")
    t0 = time.perf_counter()
    train, test, report = load_real_pools(root, dataset, model.cfg.size, lists, limit_clips, cache,
                                          detector_factory=detector_factory, workers=workers)
    records, report["audio_stage"] = records_from_real((train, test), dataset, cfg, model, device)
    if not any(r.split == "train" for r in records):
        raise InputError(f"--data {root}: no training clip is long enough for the audio stage "
                         f"({report['audio_stage']['skipped_clips']}); use longer clips")
    _log_audio_data(run_dir, report)
    fingerprint = {"dataset": dataset, "limit_clips": limit_clips,
                   "clips": {s: [r.name for r in records if r.split == s] for s in ("train", "test")}}
    results = train_audio_stage(run_dir, root, preset, seed, cfg=cfg, model=model, device=device, records=records,
                                resume=resume, data_record=fingerprint, read_seconds=time.perf_counter() - t0,
                                notes={"data": str(root), "dataset": dataset, "ground_truth": GROUND_TRUTH,
                                       "data_report": report_lines(report)})
    return results


def _log_audio_data(run_dir: Path, report: dict) -> None:
    """RUN/audio/data.json and a dated block in RUN/logs/audio_data.log: what the stage used and left out."""
    import os

    from edtalk.train.real_data import report_lines
    from metrics.utils import atomic_write_json

    if os.environ.get("RANK", "0") != "0":  # under torchrun, rank 0 writes
        return
    (run_dir / "audio").mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / "audio" / "data.json", report)
    stage = report["audio_stage"]
    lines = report_lines(report) + [
        f"audio stage: {stage['records']['train']} train / {stage['records']['test']} held-out clips; "
        f"left out: {', '.join(f'{n} {k}' for k, n in stage['skipped'].items()) or 'none'}"]
    lines += [f"  skipped ({k}) {c}" for k, v in stage["skipped_clips"].items() for c in v]
    lines += [f"evaluation ground truth ({k}): {v}" for k, v in GROUND_TRUTH.items()]
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    with open(run_dir / "logs" / "audio_data.log", "a") as f:
        f.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}\n" + "\n".join(lines) + "\n")
    for line in lines[:12]:
        print(line)


"""Stage `audio` (paper stage 3, EDTalk-A): train the three speech predictors of `Audio2Motion`.

- mouth: AudioToCoefficients (Audio2Lip; the no-bank variant when the trained model has no mouth
  bank) on 5-frame windows, against the lip coefficients the trained mouth head extracts from the
  real frames: feature MSE + 0.1·MSE of temporal differences (release trainer_audio2mouth.py),
  + reconstruction L1 through the frozen generator (when a trained EDTalk is given)
  + `sync_weight`·SyncNet expert loss (when a sync expert is given; the release uses 5 and
  Wav2Lip's SyncNet_color on the lower half of 96×96 mouth crops);
- pose: PoseFlow by exact NLL on random windows of the pose head's coefficients;
- expression: ExpressionPredictor by MSE to the clip-mean expression-head coefficients + emotion CE.

Targets come from the trained model's heads (`targets="model"`, the paper's recipe), or, when no
trained EDTalk is available, from the synthetic world's ground truth (`targets="gt"`: mouth
jaw/width/closure, yaw/pitch/roll, expression weights), which trains the same predictors on a
known-good signal and is what the smoke tests use. Each part checkpoints atomically with its
optimizer and iteration, so an interrupted stage resumes where it stopped.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edtalk.presets import audio_stage_preset
from edtalk.train.audio_config import AUDIO_PARTS, AudioStageConfig
from edtalk.train.audio_data import ClipRecord, records_from_world
from edtalk.train.audio_eval import evaluate_audio2motion
from edtalk.train.audio_parts import _Progress, train_expression, train_mouth, train_pose_flow
from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError, UserError
from metrics.utils import atomic_torch_save, atomic_write_json, provenance

__all__ = [
    "AudioStageConfig",
    "audio_stage_preset",
    "ClipRecord",
    "records_from_world",
    "train_mouth",
    "train_pose_flow",
    "train_expression",
    "evaluate_audio2motion",
    "train_audio_stage",
    "AUDIO_PARTS",
]


def _first_last(history: list[dict[str, float]]) -> list[dict[str, float]]:
    """Mean of each loss over the first and the last 10% of iterations (single batches are noisy)."""
    n = max(1, len(history) // 10)
    keys = history[0].keys()
    return [
        {k: float(np.mean([h[k] for h in part if k in h])) for k in keys}
        for part in (history[:n], history[-n:])
    ]


def _build(
    cfg: AudioStageConfig,
    n_mouth: int,
    n_pose: int,
    n_exp: int,
    speech_dim: int,
    n_emotions: int,
    mouth_direct: bool = False,
):
    from edtalk.model.audio2motion import Audio2Motion, Audio2MotionConfig

    a_cfg = Audio2MotionConfig(
        # a model trained without a mouth bank ("no-banks" variant) has a latent-sized mouth direction
        # as its mouth "coefficients": the audio predictor is then the paper's w/o-Bank Audio2Lip_nobank
        mouth_variant="no-bank" if mouth_direct else "bank",
        n_mouth=n_mouth,
        pose={
            "n_pose": n_pose,
            "audio_dim": 160,
            "history": cfg.pose_history,
            "hidden": cfg.pose_hidden,
            "n_steps": cfg.pose_steps,
            "dropout": 0.1,
        },
        expression={
            "in_dim": speech_dim,
            "n_exp": n_exp,
            "n_emotions": n_emotions,
            "hidden": 256,
            "dropout": 0.2,
            "extractor": cfg.exp_features,
        },
    )
    a2m = Audio2Motion(a_cfg, with_mouth="mouth" in cfg.parts)
    a2m.trained_parts = tuple(cfg.parts)
    return a2m


def train_audio_stage(
    run_dir,
    data_dir=None,
    preset: str = "smoke",
    seed: int = 0,
    *,
    cfg: AudioStageConfig | None = None,
    world=None,
    model=None,
    sync_expert=None,
    sync_inputs=None,
    device=None,
    records: list[ClipRecord] | None = None,
    resume: bool = False,
    data_record: dict | None = None,
    read_seconds: float = 0.0,
    notes: dict | None = None,
) -> dict[str, Any]:
    """Train (or resume) stage `audio` into `run_dir/audio/`; returns the evaluation dict.

    Writes `audio/config.json`, per-part progress checkpoints, the final `audio2motion.pt`
    (loadable with `Audio2Motion.load`) and `audio/results.json` with held-out numbers, timings and
    provenance. Records built by the caller (e.g. `edtalk.train.audio_real` from real video) come with
    `data_record`, what identifies their data (kept in audio/config.json: a resume on other data is refused),
    `read_seconds`, the time it took to build them, and `notes` merged into results.json (e.g. what the
    evaluation's ground truth is on real clips).
    """

    from edtalk.train.engine import init_distributed

    cfg = cfg or audio_stage_preset(preset)
    unknown = set(cfg.parts) - set(AUDIO_PARTS)
    if unknown:
        raise InputError(f"unknown audio-stage parts {sorted(unknown)}; choose from {', '.join(AUDIO_PARTS)}")
    if records is None and world is None and data_dir is None:  # fail before writing anything
        raise InputError("stage audio needs --data DIR (a synthetic world or prepared data set)")
    # under torchrun every rank trains on its own batches; rank 0 writes files and evaluates
    dist_info, device = init_distributed(device)
    out_dir = Path(run_dir) / "audio"
    _open_stage_dir(out_dir, cfg, preset, seed, data_dir, resume, dist_info, data_record)
    torch.manual_seed(seed)
    timings: dict[str, float] = {"read_s": read_seconds}
    if records is None:
        if world is None:
            from benchmarks.datasets.synthetic import SyntheticWorld

            world = SyntheticWorld(data_dir)
        t0 = time.perf_counter()
        records = records_from_world(world, cfg, model=model, device=device)
        timings["read_s"] = time.perf_counter() - t0
    a2m = _build_for(cfg, records, model)
    histories = _train_parts(a2m, records, cfg, device, seed, out_dir, timings, model, sync_expert, sync_inputs)
    if not dist_info.main:
        torch.distributed.barrier()  # wait for rank 0's evaluation, then return its files' numbers
        return json.loads((out_dir / "results.json").read_text())
    atomic_torch_save(
        a2m.checkpoint(preset=preset, seed=seed, stage_config=cfg.to_dict(), trained_parts=list(cfg.parts)),
        out_dir / "audio2motion.pt",
    )
    t0 = time.perf_counter()
    results = evaluate_audio2motion(
        a2m, records, temperature=cfg.eval_temperature, seed=seed, device=device, parts=cfg.parts
    )
    timings["eval_s"] = time.perf_counter() - t0
    results.update(
        timings=timings,
        preset=preset,
        targets=cfg.targets,
        first_last_loss={k: _first_last(h) for k, h in histories.items() if h},
        provenance=provenance(stage="audio", seed=seed, device=str(device)),
        **(notes or {}),
    )
    atomic_write_json(out_dir / "results.json", results)
    if dist_info.enabled:
        torch.distributed.barrier()
    return results


def _open_stage_dir(out_dir: Path, cfg: AudioStageConfig, preset, seed, data_dir, resume, dist_info,
                    data_record: dict | None = None) -> None:
    """Create `out_dir` with its config.json, or check that a resumed run has the same config, seed and data."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = out_dir / "config.json"
    if cfg_path.exists() and not resume:
        raise UserError(
            f"{out_dir} already holds an audio-stage run; pass --resume to continue it or choose a new --out"
        )
    if cfg_path.exists():
        saved = json.loads(cfg_path.read_text())
        if saved.get("config") != json.loads(json.dumps(cfg.to_dict())) or saved.get("seed") != seed:
            raise InputError(
                f"{cfg_path} was written with a different config or seed; resume with the same "
                "settings or use a new run directory"
            )
        if saved.get("data_record") != json.loads(json.dumps(data_record)):
            raise InputError(
                f"{cfg_path} was written for other data ({_data_summary(saved.get('data_record'))}, now "
                f"{_data_summary(data_record)}); resume with the same --data/--dataset/--lists/--limit-clips "
                "or use a new run directory"
            )
    elif dist_info.main:
        atomic_write_json(
            cfg_path,
            {
                "config": cfg.to_dict(),
                "preset": preset,
                "seed": seed,
                "data_dir": str(data_dir) if data_dir else None,
                "world_size": dist_info.world_size,
                "data_record": data_record,
            },
        )


def _data_summary(record: dict | None) -> str:
    if not record:
        return "a synthetic world"
    limit = f", --limit-clips {record['limit_clips']}" if record.get("limit_clips") else ""
    return f"--dataset {record['dataset']}{limit}, {len(record['clips']['train'])} train clips"


def _build_for(cfg: AudioStageConfig, records: list[ClipRecord], model):
    """The Audio2Motion whose sizes match the records' targets (and the trained model's mouth bank)."""
    r0 = records[0]
    n_emotions = max(8, 1 + max(r.emotion for r in records))  # the 8 MEAD emotions (datasets.common)
    mouth_mode = getattr(getattr(model, "cfg", None), "mouth_bank", "bases") if model is not None else "bases"
    return _build(cfg, r0.mouth.shape[1], r0.pose.shape[1], r0.expression.shape[0], r0.speech.shape[0],
                  n_emotions, mouth_mode == "direct")


def _train_parts(a2m, records, cfg: AudioStageConfig, device, seed: int, out_dir: Path, timings: dict, model,
                 sync_expert, sync_inputs) -> dict[str, list]:
    """Train each part of `cfg.parts` in turn (resuming from its progress file); fills `timings`."""
    histories: dict[str, list] = {}
    for part in cfg.parts:
        prog = _Progress(out_dir / f"progress_{part}.pt", cfg.checkpoint_every)
        t0 = time.perf_counter()
        if part == "mouth":
            histories[part] = train_mouth(a2m.mouth, records, cfg, device, seed, generator=model,
                                          sync_expert=sync_expert, sync_inputs=sync_inputs, progress=prog)
        elif part == "pose":
            histories[part] = train_pose_flow(a2m.pose_flow, records, cfg, device, seed, progress=prog)
        else:
            histories[part] = train_expression(a2m.expression, records, cfg, device, seed, progress=prog)
        timings[f"{part}_s"] = time.perf_counter() - t0
    return histories


# ----------------------------------------------------------------------------------------------------
# CLI glue (called by `edtalk train --stage audio`)
# ----------------------------------------------------------------------------------------------------
def load_trained_generator(run_dir, device=None):
    """The EDTalk trained by stages 0-2 in `run_dir` (its `model.pt`), frozen, or None if absent."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        return None
    from edtalk.trained import load_trained_model

    try:
        model = load_trained_model(path, device)[0]
    except Exception as exc:  # unreadable, foreign or mismatched file: one line naming it
        raise CheckpointMismatchError(
            f"{path}: cannot load the trained generator ({type(exc).__name__}); "
            "re-run `edtalk train` stages 0-2 or use --targets gt"
        ) from None
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def add_audio_arguments(parser) -> None:
    """Options of `edtalk train --stage audio` (no-ops for the other stages)."""
    g = parser.add_argument_group("stage audio (EDTalk-A)")
    g.add_argument(
        "--parts",
        default=",".join(AUDIO_PARTS),
        help="which audio predictors to train: any of mouth,pose,expression",
    )
    g.add_argument(
        "--targets",
        choices=("auto", "model", "gt"),
        default="auto",
        help="training targets: the trained heads' coefficients (model, the paper's recipe), the "
        "synthetic ground truth (gt), or model if RUN/model.pt exists else gt (auto)",
    )
    g.add_argument("--exp-features", choices=("offline-stats", "precomputed"), default="offline-stats")
    g.add_argument(
        "--exp-features-dir", default=None, help="folder of <clip>.npy (T,D) features, e.g. HuBERT"
    )
    g.add_argument("--exp-features-dim", type=int, default=None)


def run_from_args(args) -> int:
    """`edtalk train --stage audio --out RUN --data DIR --preset P --seed S [audio options]`."""
    out = getattr(args, "out", None) or getattr(args, "run_dir", None)
    if not out:
        raise InputError("stage audio needs --out RUN (the run directory of stages 0-2, or a new one)")
    run_dir = Path(out)
    preset = getattr(args, "preset", "smoke") or "smoke"
    device = getattr(args, "device", None)
    model = None
    targets = getattr(args, "targets", "auto") or "auto"
    if targets in ("auto", "model"):
        model = load_trained_generator(run_dir, device)
        if model is None and targets == "model":
            raise MissingWeightsError(
                f"{run_dir}/model.pt not found: --targets model needs stages 0-2 trained "
                "into this run directory first (or use --targets gt)"
            )
        targets = "model" if model is not None else "gt"
    cfg = config_from_args(args, targets)
    res = train_audio_stage(
        run_dir,
        getattr(args, "data", None),
        preset,
        int(getattr(args, "seed", 0) or 0),
        cfg=cfg,
        model=model if targets == "model" else None,
        device=device,
        resume=bool(getattr(args, "resume", False)),
    )
    print_results(res, run_dir)
    return 0


def config_from_args(args, targets: str) -> AudioStageConfig:
    """The preset's audio-stage config with the command line's --parts, --exp-features* and `targets`."""
    cfg = audio_stage_preset(getattr(args, "preset", "smoke") or "smoke")
    parts = tuple(
        p.strip() for p in str(getattr(args, "parts", ",".join(AUDIO_PARTS))).split(",") if p.strip()
    )
    return dataclasses.replace(
        cfg,
        parts=parts,
        targets=targets,
        exp_features=getattr(args, "exp_features", cfg.exp_features) or cfg.exp_features,
        exp_features_dir=getattr(args, "exp_features_dir", None),
        exp_features_dim=getattr(args, "exp_features_dim", None),
    )


def print_results(res: dict, run_dir: Path) -> None:
    """The stage's headline numbers and where its files are."""
    print(
        json.dumps(
            {
                k: res[k]
                for k in (
                    "mouth_jaw_r",
                    "pose_nll_per_frame",
                    "pose_velocity_deg_s",
                    "emotion_acc_centroid",
                    "emotion_acc_head",
                    "timings",
                )
                if k in res
            },
            indent=2,
        )
    )
    print(f"wrote {run_dir / 'audio' / 'audio2motion.pt'} and {run_dir / 'audio' / 'results.json'}")

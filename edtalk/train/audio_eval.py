"""Stage `audio`: held-out evaluation of the three predictors (jaw correlation, pose NLL and velocity,
emotion accuracy)."""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from edtalk.train.audio_config import AUDIO_PARTS, FPS
from edtalk.train.audio_data import ClipRecord, records_of_split
from metrics.errors import InputError
from metrics.utils import resolve_device


def _linear_probe(x: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Least-squares map (with bias) from coefficients to a ground-truth quantity, fitted on train."""
    xa = torch.cat([x, torch.ones(len(x), 1)], 1).double()
    w = torch.linalg.lstsq(xa, y.double().reshape(len(x), -1)).solution
    return lambda z: (torch.cat([z, torch.ones(len(z), 1)], 1).double() @ w).float()


def _pearson(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double().flatten(), b.double().flatten()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))


def angular_velocity(pose_deg: torch.Tensor, fps: float = FPS) -> torch.Tensor:
    """Per-frame angular speed (deg/s): |Δ(yaw, pitch, roll)|·fps."""
    return (pose_deg[1:] - pose_deg[:-1]).norm(dim=-1) * fps


@torch.no_grad()
def evaluate_audio2motion(
    a2m,
    records: Sequence[ClipRecord],
    temperature: float = 0.7,
    seed: int = 0,
    device=None,
    parts: Sequence[str] = AUDIO_PARTS,
) -> dict[str, Any]:
    """Held-out numbers for the trained `parts`: mouth↔GT jaw r, flow pose NLL (+ references) and
    velocity statistics, emotion accuracy of the predicted expression coefficients."""
    device = resolve_device(device)
    train, test = records_of_split(records, "train"), records_of_split(records, "test")
    if not test:
        raise InputError("no held-out (test) clips to evaluate the audio stage on")
    a2m = a2m.to(device).eval()
    out: dict[str, Any] = {"n_test_clips": len(test), "test_identities": sorted({r.identity for r in test})}
    if "mouth" in parts and a2m.mouth is not None:
        out.update(_mouth_numbers(a2m, train, test, device))
    if "pose" in parts:
        out.update(_pose_numbers(a2m.pose_flow, train, test, temperature, seed, device))
    if "expression" in parts:
        out.update(_expression_numbers(a2m, train, test, device))
    return out


def _mouth_numbers(a2m, train, test, device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    probe = _linear_probe(torch.cat([r.mouth for r in train]), torch.cat([r.gt_jaw for r in train]))
    preds = [a2m.predict_mouth(r.mel.to(device)).cpu() for r in test]
    jaw_hat = torch.cat([probe(p).flatten() for p in preds])
    jaw = torch.cat([r.gt_jaw for r in test])
    out["mouth_jaw_r"] = _pearson(jaw_hat, jaw)
    # the same probe on the *target* coefficients: the ceiling the audio predictor can reach
    out["mouth_jaw_r_target_ceiling"] = _pearson(torch.cat([probe(r.mouth).flatten() for r in test]), jaw)
    return out


def _pose_numbers(flow, train, test, temperature: float, seed: int, device) -> dict[str, Any]:
    from edtalk.model.pose_flow import mel_window_stats

    out: dict[str, Any] = {}
    # Per-frame NLL on frames t >= 1 (frame 0 has no history), with two references: the same flow
    # fed another clip's audio (does it use the speech?) and a Gaussian random walk fitted on the
    # training poses' frame-to-frame steps (does it beat a simple motion prior?).
    steps = torch.cat([r.pose[1:] - r.pose[:-1] for r in train]).double()
    mu, var = steps.mean(0), steps.var(0).clamp_min(1e-10)
    own, shuffled, walk = [], [], []
    for i, r in enumerate(test):
        x = r.pose.unsqueeze(0).to(device)
        own.append(-flow.log_prob(x, mel_window_stats(r.mel).unsqueeze(0).to(device))[0, 1:].cpu())
        other = test[(i + 1) % len(test)].mel
        n = min(len(other), len(r.mel))
        shuffled.append(
            -flow.log_prob(x[:, :n], mel_window_stats(other[:n]).unsqueeze(0).to(device))[0, 1:].cpu()
        )
        dx = (r.pose[1:] - r.pose[:-1]).double()
        walk.append(0.5 * (((dx - mu) ** 2 / var) + torch.log(2 * math.pi * var)).sum(-1))
    out["pose_nll_per_frame"] = float(torch.cat(own).mean())
    out["pose_nll_other_clip_audio"] = float(torch.cat(shuffled).mean())
    out["pose_nll_random_walk_baseline"] = float(torch.cat(walk).mean())
    # pose coefficients → degrees through a probe fitted on train (identity map when targets are GT)
    to_deg = _linear_probe(torch.cat([r.pose for r in train]), torch.cat([r.gt_pose_deg for r in train]))
    v_gen, v_gt = [], []
    for i, r in enumerate(test):
        sample = flow.sample(
            mel_window_stats(r.mel).unsqueeze(0).to(device),
            temperature=temperature,
            seed=seed + i,
            init=r.pose[:1].to(device),
        )[0].cpu()
        v_gen.append(angular_velocity(to_deg(sample)))
        v_gt.append(angular_velocity(r.gt_pose_deg))
    vg, vt = torch.cat(v_gen), torch.cat(v_gt)
    out["pose_velocity_deg_s"] = {
        "flow_mean": float(vg.mean()),
        "flow_std": float(vg.std()),
        "gt_mean": float(vt.mean()),
        "gt_std": float(vt.std()),
        "temperature": temperature,
    }
    return out


def _expression_numbers(a2m, train, test, device) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # expression → emotion: nearest class centroid of the *training targets*, applied to predictions
    pred_exp = a2m.expression(torch.stack([r.speech for r in test]).to(device)).cpu()
    tgt_train = torch.stack([r.expression for r in train])
    emo_train = torch.tensor([r.emotion for r in train])
    emo_test = torch.tensor([r.emotion for r in test])
    classes = sorted(set(emo_train.tolist()))
    cents = torch.stack([tgt_train[emo_train == c].mean(0) for c in classes])
    scale = tgt_train.std(0).clamp_min(1e-6)

    def nearest(v: torch.Tensor) -> torch.Tensor:
        return torch.tensor(classes)[torch.cdist(v / scale, cents / scale).argmin(1)]

    out["emotion_acc_centroid"] = float((nearest(pred_exp) == emo_test).float().mean())
    # the same classifier on the test clips' *target* coefficients: how far emotion is recoverable
    tgt_test = torch.stack([r.expression for r in test])
    out["emotion_acc_target_ceiling"] = float((nearest(tgt_test) == emo_test).float().mean())
    out["emotion_acc_head"] = float(
        (a2m.expression.emotion_logits(pred_exp.to(device)).argmax(1).cpu() == emo_test).float().mean()
    )
    out["emotion_chance"] = 1.0 / max(1, a2m.expression.n_emotions)
    out["expression_mse_test"] = float(((pred_exp - tgt_test) ** 2).mean())
    return out

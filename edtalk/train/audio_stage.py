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
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError, UserError
from metrics.utils import atomic_torch_save, atomic_write_json, provenance, resolve_device

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

AUDIO_PARTS = ("mouth", "pose", "expression")
FPS = 25


@dataclass
class AudioStageConfig:
    parts: tuple[str, ...] = AUDIO_PARTS
    targets: str = "gt"  # "model" (trained heads) | "gt" (synthetic ground truth)
    # mouth (release: batch 4 clips × 5 frames, Adam lr 0.0016·reg-ratio, betas (0, 0.99^r))
    mouth_iters: int = 300
    mouth_batch: int = 16
    mouth_window: int = 5
    mouth_lr: float = 1e-3
    smooth_weight: float = 0.1
    recon_weight: float = 1.0  # applies only when a trained EDTalk is given
    sync_weight: float = 5.0  # applies only when a sync expert is given
    # The release freezes a pretrained Wav2Lip audio encoder and trains only Linear(512,20). Without
    # Wav2Lip weights (offline) the encoder must learn too.
    train_audio_encoder: bool = True
    # pose flow
    pose_iters: int = 400
    pose_batch: int = 16
    pose_window: int = 40
    pose_lr: float = 2e-3
    pose_hidden: int = 96
    pose_steps: int = 6
    pose_history: int = 4
    # expression predictor
    exp_iters: int = 400
    exp_batch: int = 32
    exp_lr: float = 1e-3
    exp_cls_weight: float = 1.0
    exp_features: str = "offline-stats"
    exp_features_dir: str | None = None
    exp_features_dim: int | None = None
    checkpoint_every: int = 100
    eval_temperature: float = 0.7

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def audio_stage_preset(name: str) -> AudioStageConfig:
    """smoke: ~1 min on 2 CPU cores; standard: the numbers in the issue's closing note; paper: longer."""
    if name == "smoke":
        return AudioStageConfig(mouth_iters=150, pose_iters=200, exp_iters=300, pose_window=24)
    if name == "standard":
        return AudioStageConfig(
            mouth_iters=1500,
            pose_iters=1500,
            exp_iters=1500,
            pose_window=50,
            pose_hidden=128,
            pose_steps=8,
            checkpoint_every=250,
        )
    if name == "paper":
        return AudioStageConfig(
            mouth_iters=20000,
            pose_iters=20000,
            exp_iters=5000,
            mouth_batch=20,
            pose_window=64,
            pose_hidden=256,
            pose_steps=12,
            checkpoint_every=1000,
            targets="model",
        )
    raise InputError(f"unknown audio-stage preset {name!r}; choose smoke, standard or paper")


@dataclass
class ClipRecord:
    """Everything the audio stage needs from one clip (tensors on CPU)."""

    name: str
    identity: str
    split: str
    emotion: int
    mel: torch.Tensor  # (T, 80, 16) mel windows
    mouth: torch.Tensor  # (T, n_mouth) target lip coefficients
    pose: torch.Tensor  # (T, n_pose) target pose coefficients
    expression: torch.Tensor  # (n_exp,) utterance-level target
    speech: torch.Tensor  # (D,) utterance speech features
    gt_jaw: torch.Tensor  # (T,) ground-truth mouth opening (evaluation only)
    gt_pose_deg: torch.Tensor  # (T, 3) ground-truth yaw/pitch/roll in degrees (evaluation only)
    frames_ref: Any = None  # callable → uint8 (T,H,W,3), replaced by the array once loaded


# ----------------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------------
def _model_targets(model, frames: np.ndarray, device, batch: int = 32) -> dict[str, torch.Tensor]:
    """Coefficients the trained heads extract from real frames (mouth, pose, expression)."""
    from benchmarks.media import frames_to_tensor

    out: dict[str, list[torch.Tensor]] = {}
    with torch.no_grad():
        for i in range(0, len(frames), batch):
            x = frames_to_tensor(frames[i : i + batch]).to(device)
            latent, _ = model.encode(x)
            for k, v in model.coefficients(latent).items():
                if v is not None:
                    out.setdefault(k, []).append(v.float().cpu())
    return {k: torch.cat(v) for k, v in out.items()}


def records_from_world(
    world,
    cfg: AudioStageConfig,
    model=None,
    extractor=None,
    device=None,
    splits: Sequence[str] = ("train", "test"),
    limit: int | None = None,
) -> list[ClipRecord]:
    """Read clips of a `SyntheticWorld`-like reader into `ClipRecord`s (mel, targets, speech features)."""
    from edtalk.audio_features import mel_windows, melspectrogram
    from edtalk.model.expression_predictor import build_extractor

    if cfg.targets not in ("gt", "model"):
        raise InputError(f"audio stage targets must be 'gt' or 'model', not {cfg.targets!r}")
    if cfg.targets == "model" and model is None:
        raise MissingWeightsError(
            "audio stage with targets='model' needs a trained EDTalk (stages 0-2); "
            "train it first or use targets='gt' on the synthetic world"
        )
    extractor = extractor or build_extractor(cfg.exp_features, cfg.exp_features_dir, cfg.exp_features_dim)
    device = resolve_device(device)
    clips = [c for s in splits for c in world.clips(s)]
    if limit:
        clips = clips[:limit]
    if not clips:
        raise InputError(f"the data set has no clips in splits {list(splits)}")
    records = []
    for clip in tqdm(clips, desc="audio stage: reading clips", unit="clip", leave=False):
        wav = world.audio(clip)
        gt = world.ground_truth(clip)
        n = int(clip.n_frames)
        mel = torch.from_numpy(np.asarray(mel_windows(melspectrogram(wav), n, fps=FPS), dtype=np.float32))
        if cfg.targets == "model":
            t = _model_targets(model, world.frames(clip), device)
            mouth, pose, exp_frames = t["mouth"], t["pose"], t.get("expression")
            if exp_frames is None:
                raise InputError(
                    "the trained model has no expression head; train stage 2 first or "
                    "drop 'expression' from --parts"
                )
        else:
            mouth = torch.as_tensor(np.asarray(gt["mouth"]), dtype=torch.float32)
            pose = torch.as_tensor(np.asarray(gt["pose"]), dtype=torch.float32)
            exp_frames = torch.as_tensor(np.asarray(gt["expression"]), dtype=torch.float32)
        records.append(
            ClipRecord(
                name=clip.name,
                identity=str(clip.identity),
                split=clip.split,
                emotion=int(gt["emotion_index"]),
                mel=mel[:n],
                mouth=mouth[:n],
                pose=pose[:n],
                expression=exp_frames[:n].mean(0),
                speech=torch.from_numpy(np.asarray(extractor(wav, 16000, clip.name), dtype=np.float32)),
                gt_jaw=torch.as_tensor(np.asarray(gt["mouth"])[:n, 0], dtype=torch.float32),
                gt_pose_deg=torch.as_tensor(np.asarray(gt["pose"])[:n], dtype=torch.float32),
                frames_ref=(lambda c=clip: world.frames(c)),
            )
        )
    return records


def _split(records: Sequence[ClipRecord], split: str) -> list[ClipRecord]:
    return [r for r in records if r.split == split]


# ----------------------------------------------------------------------------------------------------
# part trainers (each: fixed seed, tqdm, checkpoint/resume through `state` callbacks)
# ----------------------------------------------------------------------------------------------------
def _rank_world() -> tuple[int, int]:
    """(rank, world size) when launched under torchrun (the engine's init_distributed set it up)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _broadcast_params(module) -> None:
    """Every rank starts from rank 0's weights and buffers (normalisers included)."""
    rank, ws = _rank_world()
    if ws > 1:
        import torch.distributed as dist

        for t in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(t.data, 0)


def _average_gradients(params) -> None:
    """Data-parallel step: each rank drew its own batch; average the gradients (what DDP does).
    Done by hand because the flow trains through `nll()`, not `forward()`, which DDP hooks."""
    rank, ws = _rank_world()
    if ws > 1:
        import torch.distributed as dist

        for p in params:
            if p.grad is not None:
                dist.all_reduce(p.grad)
                p.grad /= ws


def _batch_generator(seed: int) -> torch.Generator:
    rank, _ = _rank_world()
    return torch.Generator().manual_seed(seed + 7919 * rank)  # different batches per rank


class _Progress:
    """Resume bookkeeping for one part: `state` is loaded from / saved to `path` atomically.

    Every rank's batch-sampling generator and global RNG (dropout) are saved, so a resumed part
    continues exactly where the interrupted one would have gone (for the same world size).
    """

    def __init__(self, path: Path | None, every: int):
        self.path, self.every = path, every

    def load(self) -> dict | None:
        if self.path is not None and self.path.exists():
            try:
                st = torch.load(self.path, map_location="cpu", weights_only=True)
            except Exception as exc:  # a truncated or foreign file: say which and what to do
                raise CheckpointMismatchError(
                    f"{self.path}: unreadable progress checkpoint ({type(exc).__name__}); delete it to "
                    "restart this part from scratch"
                ) from None
            rank, ws = _rank_world()
            if len(st["gen"]) != ws:
                raise InputError(
                    f"{self.path} was written by {len(st['gen'])} process(es); resume with the same "
                    f"number (now {ws}) or start a new run directory"
                )
            return {**st, "gen": st["gen"][rank], "rng": st["rng"][rank]}
        return None

    def save(self, it: int, module, opt, history, gen: torch.Generator, done: bool = False) -> None:
        if self.path is None or not (done or (it % self.every == 0)):
            return
        rank, ws = _rank_world()
        gens, rngs = [gen.get_state()], [torch.get_rng_state()]
        if ws > 1:
            import torch.distributed as dist

            gens, rngs = [None] * ws, [None] * ws
            dist.all_gather_object(gens, gen.get_state())
            dist.all_gather_object(rngs, torch.get_rng_state())
        if rank == 0:
            atomic_torch_save(
                {
                    "iteration": it,
                    "state_dict": module.state_dict(),
                    "optimizer": opt.state_dict(),
                    "history": history,
                    "done": done,
                    "gen": gens,
                    "rng": rngs,
                },
                self.path,
            )


def _run_loop(
    name: str,
    module,
    opt,
    n_iters: int,
    step: Callable[[int], dict[str, float]],
    progress: _Progress | None,
    gen: torch.Generator,
) -> list[dict[str, float]]:
    history: list[dict[str, float]] = []
    start = 0
    if progress is not None and (st := progress.load()) is not None:
        module.load_state_dict(st["state_dict"])
        opt.load_state_dict(st["optimizer"])
        history, start = list(st["history"]), int(st["iteration"])
        torch.set_rng_state(st["rng"])
        gen.set_state(st["gen"])
        if st.get("done"):
            return history
    bar = tqdm(range(start, n_iters), desc=f"audio stage: {name}", initial=start, total=n_iters, leave=False)
    for it in bar:
        logs = step(it)
        history.append(logs)
        if it % 10 == 0:
            bar.set_postfix({k: f"{v:.3f}" for k, v in logs.items()}, refresh=False)
        if progress is not None:
            progress.save(it + 1, module, opt, history, gen, done=it + 1 == n_iters)
    return history


def _mouth_forward(mouth, mel: torch.Tensor) -> torch.Tensor:
    """(N,80,16) → (N, C) for either the release-style Audio2Lip(mel, B, T) or a plain module(mel)."""
    x = mel.unsqueeze(1)
    try:
        out = mouth(x)
    except TypeError:
        out = mouth(x, x.shape[0], 1)
    return out.reshape(mel.shape[0], -1)


def train_mouth(
    mouth,
    records: Sequence[ClipRecord],
    cfg: AudioStageConfig,
    device=None,
    seed: int = 0,
    generator=None,
    sync_expert=None,
    sync_inputs: Callable | None = None,
    progress: _Progress | None = None,
) -> list[dict[str, float]]:
    """Train the audio→mouth predictor; returns per-iteration loss logs.

    `generator` (a trained, frozen EDTalk) adds the reconstruction L1 of frames rendered from the
    predicted lip and target pose coefficients; `sync_expert` with `sync_inputs(mel_win, frames)`
    (which turns the window's mel and rendered frames into the expert's audio/video inputs) adds
    the sync loss.
    """
    from edtalk.model.audio2motion import SyncLoss

    device = resolve_device(device)
    train = [r for r in _split(records, "train") if len(r.mel) >= cfg.mouth_window]
    if not train:
        raise InputError(f"no training clip has {cfg.mouth_window}+ frames for the mouth predictor")
    g = _batch_generator(seed)
    mouth = mouth.to(device).train()
    enc = getattr(mouth, "audio_encoder", None)
    if enc is not None:
        for p in enc.parameters():
            p.requires_grad_(cfg.train_audio_encoder)
        if not cfg.train_audio_encoder:
            enc.eval()  # a frozen (pretrained) encoder keeps its BatchNorm statistics too
    _broadcast_params(mouth)
    params = [p for p in mouth.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.mouth_lr, betas=(0.5, 0.99))
    sync = SyncLoss(sync_expert).to(device) if (sync_expert is not None and cfg.sync_weight > 0) else None
    if sync is not None and sync_inputs is None:
        raise InputError("a sync expert needs sync_inputs(mel_windows, frames) to build its inputs")
    if sync is not None and generator is None:
        raise InputError(
            "the sync loss scores rendered frames: it needs the trained, frozen EDTalk generator "
            "(targets='model'); drop the sync expert or train stages 0-2 first"
        )
    if generator is not None:
        generator.eval()
        for p in generator.parameters():
            p.requires_grad_(False)
    w = cfg.mouth_window

    def step(_it: int) -> dict[str, float]:
        idx = torch.randint(len(train), (cfg.mouth_batch,), generator=g).tolist()
        mels, tgts, poses, starts, ids = [], [], [], [], []
        for i in idx:
            r = train[i]
            s = int(torch.randint(len(r.mel) - w + 1, (1,), generator=g))
            ids.append(int(torch.randint(len(r.mel), (1,), generator=g)))  # identity frame, as the release
            starts.append(s)
            mels.append(r.mel[s : s + w])
            tgts.append(r.mouth[s : s + w])
            poses.append(r.pose[s : s + w])
        mel = torch.stack(mels).to(device)
        tgt = torch.stack(tgts).to(device)
        pred = _mouth_forward(mouth, mel.reshape(-1, 80, 16)).reshape(len(idx), w, -1)
        if pred.shape[-1] != tgt.shape[-1]:
            raise InputError(
                f"the mouth predictor outputs {pred.shape[-1]} values but the targets have "
                f"{tgt.shape[-1]}; build it with n_out = the mouth head's size"
            )
        feat = F.mse_loss(pred, tgt)
        smooth = F.mse_loss(pred[:, 1:] - pred[:, :-1], tgt[:, 1:] - tgt[:, :-1])
        loss = feat + cfg.smooth_weight * smooth
        logs = {"feature": float(feat.detach()), "smooth": float(smooth.detach())}
        if (generator is not None and cfg.recon_weight > 0) or sync is not None:
            frames = _render(generator, train, idx, ids, w, pred, torch.stack(poses).to(device), device)
            real = torch.stack([_frames(train[i], s, w) for i, s in zip(idx, starts, strict=True)]).to(device)
            if generator is not None and cfg.recon_weight > 0:
                rec = F.l1_loss(frames, real)
                loss = loss + cfg.recon_weight * rec
                logs["recon_l1"] = float(rec.detach())
            if sync is not None:
                a_in, v_in = sync_inputs(mel, frames)
                sl = sync(a_in, v_in)
                loss = loss + cfg.sync_weight * sl
                logs["sync"] = float(sl.detach())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _average_gradients(params)
        opt.step()
        logs["loss"] = float(loss.detach())
        return logs

    return _run_loop("mouth", mouth, opt, cfg.mouth_iters, step, progress, g)


def _frames(rec: ClipRecord, start: int, w: int) -> torch.Tensor:
    """Real frames [start, start+w) of a clip in [-1,1] (T,3,H,W); loaded once, then cached.

    `frames_ref` is a loader (→ uint8 (T,H,W,3)), the loaded uint8 array, or a float tensor
    (T,3,H,W) already in [-1,1].
    """
    if rec.frames_ref is None:
        raise InputError(f"clip {rec.name}: no frames available; reconstruction/sync losses need the video")
    if callable(rec.frames_ref):
        rec.frames_ref = np.asarray(rec.frames_ref())
    if torch.is_tensor(rec.frames_ref):
        return rec.frames_ref[start : start + w]
    from benchmarks.media import frames_to_tensor

    return frames_to_tensor(rec.frames_ref[start : start + w])


def _render(generator, train, idx, ids, w, pred, poses, device) -> torch.Tensor:
    """Frames (B,w,3,H,W) from the frozen generator: a random frame of the clip as the identity source,
    the predicted lip coefficients and the target pose coefficients. The model's own `compose`
    interprets them (bank weights, or 512-d latents for a no-bank model)."""
    out = []
    for b, i in enumerate(idx):
        src = _frames(train[i], ids[b], 1).to(device)
        with torch.no_grad():
            latent, feats = generator.encode(src)
        latent = latent.expand(w, -1)
        feats = [f.expand(w, *f.shape[1:]) for f in feats]
        d, e = generator.compose({"mouth": pred[b], "pose": poses[b]})  # no expression: as the release
        out.append(generator.decode(latent, d, feats, None))
    return torch.stack(out)


def train_pose_flow(
    flow,
    records: Sequence[ClipRecord],
    cfg: AudioStageConfig,
    device=None,
    seed: int = 0,
    progress: _Progress | None = None,
) -> list[dict[str, float]]:
    """Fit the flow by exact NLL on random `pose_window`-frame windows of the training clips."""
    from edtalk.model.pose_flow import mel_window_stats

    device = resolve_device(device)
    train = [r for r in _split(records, "train") if len(r.mel) >= 2]
    if not train:
        raise InputError("no training clips for the pose flow")
    w = min(cfg.pose_window, min(len(r.mel) for r in train))
    feats = [mel_window_stats(r.mel) for r in train]
    flow.fit_normalizer(torch.cat([r.pose for r in train]), torch.cat(feats))
    flow = flow.to(device).train()
    _broadcast_params(flow)
    params = list(flow.parameters())
    opt = torch.optim.Adam(params, lr=cfg.pose_lr)
    g = _batch_generator(seed)

    def step(_it: int) -> dict[str, float]:
        xs, auds = [], []
        for i in torch.randint(len(train), (cfg.pose_batch,), generator=g).tolist():
            s = int(torch.randint(len(train[i].mel) - w + 1, (1,), generator=g))
            xs.append(train[i].pose[s : s + w])
            auds.append(feats[i][s : s + w])
        nll = flow.nll(torch.stack(xs).to(device), torch.stack(auds).to(device))
        opt.zero_grad(set_to_none=True)
        nll.backward()
        _average_gradients(params)
        torch.nn.utils.clip_grad_norm_(params, 5.0)  # flows spike early; keep steps bounded
        opt.step()
        return {"nll": float(nll.detach())}

    return _run_loop("pose flow", flow, opt, cfg.pose_iters, step, progress, g)


def train_expression(
    predictor,
    records: Sequence[ClipRecord],
    cfg: AudioStageConfig,
    device=None,
    seed: int = 0,
    progress: _Progress | None = None,
) -> list[dict[str, float]]:
    """MSE to the clip-level expression coefficients + emotion CE on the predicted coefficients."""
    device = resolve_device(device)
    train = _split(records, "train")
    if not train:
        raise InputError("no training clips for the expression predictor")
    x = torch.stack([r.speech for r in train])
    y = torch.stack([r.expression for r in train])
    e = torch.tensor([r.emotion for r in train])
    predictor.fit_normalizer(x, y)
    predictor = predictor.to(device).train()
    _broadcast_params(predictor)
    x, y, e = x.to(device), y.to(device), e.to(device)
    params = list(predictor.parameters())
    opt = torch.optim.AdamW(params, lr=cfg.exp_lr, weight_decay=1e-3)
    g = _batch_generator(seed)

    def step(_it: int) -> dict[str, float]:
        idx = torch.randint(len(x), (min(cfg.exp_batch, len(x)),), generator=g).to(device)
        loss, logs = predictor.loss(x[idx], y[idx], e[idx], cls_weight=cfg.exp_cls_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _average_gradients(params)
        opt.step()
        return {"loss": float(loss.detach()), **logs}

    return _run_loop("expression", predictor, opt, cfg.exp_iters, step, progress, g)


# ----------------------------------------------------------------------------------------------------
# evaluation on held-out clips
# ----------------------------------------------------------------------------------------------------
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
    from edtalk.model.pose_flow import mel_window_stats

    device = resolve_device(device)
    train, test = _split(records, "train"), _split(records, "test")
    if not test:
        raise InputError("no held-out (test) clips to evaluate the audio stage on")
    a2m = a2m.to(device).eval()
    out: dict[str, Any] = {"n_test_clips": len(test), "test_identities": sorted({r.identity for r in test})}
    if "mouth" in parts and a2m.mouth is not None:
        probe = _linear_probe(torch.cat([r.mouth for r in train]), torch.cat([r.gt_jaw for r in train]))
        preds = [a2m.predict_mouth(r.mel.to(device)).cpu() for r in test]
        jaw_hat = torch.cat([probe(p).flatten() for p in preds])
        jaw = torch.cat([r.gt_jaw for r in test])
        out["mouth_jaw_r"] = _pearson(jaw_hat, jaw)
        # the same probe on the *target* coefficients: the ceiling the audio predictor can reach
        out["mouth_jaw_r_target_ceiling"] = _pearson(torch.cat([probe(r.mouth).flatten() for r in test]), jaw)
    if "pose" in parts:
        flow = a2m.pose_flow
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
    if "expression" in parts:
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


# ----------------------------------------------------------------------------------------------------
# the stage
# ----------------------------------------------------------------------------------------------------
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
) -> dict[str, Any]:
    """Train (or resume) stage `audio` into `run_dir/audio/`; returns the evaluation dict.

    Writes `audio/config.json`, per-part progress checkpoints, the final `audio2motion.pt`
    (loadable with `Audio2Motion.load`) and `audio/results.json` with held-out numbers, timings and
    provenance.
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
    main = dist_info.main
    out_dir = Path(run_dir) / "audio"
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
    elif main:
        atomic_write_json(
            cfg_path,
            {
                "config": cfg.to_dict(),
                "preset": preset,
                "seed": seed,
                "data_dir": str(data_dir) if data_dir else None,
                "world_size": dist_info.world_size,
            },
        )
    torch.manual_seed(seed)
    if records is None:
        if world is None:
            from benchmarks.datasets.synthetic import SyntheticWorld

            world = SyntheticWorld(data_dir)
        t0 = time.perf_counter()
        records = records_from_world(world, cfg, model=model, device=device)
        t_read = time.perf_counter() - t0
    else:
        t_read = 0.0
    r0 = records[0]
    n_emotions = max(8, 1 + max(r.emotion for r in records))  # the 8 MEAD emotions (datasets.common)
    mouth_mode = getattr(getattr(model, "cfg", None), "mouth_bank", "bases") if model is not None else "bases"
    mouth_direct = mouth_mode == "direct"
    a2m = _build(
        cfg,
        r0.mouth.shape[1],
        r0.pose.shape[1],
        r0.expression.shape[0],
        r0.speech.shape[0],
        n_emotions,
        mouth_direct,
    )
    timings: dict[str, float] = {"read_s": t_read}
    histories: dict[str, list] = {}
    for part in cfg.parts:
        prog = _Progress(out_dir / f"progress_{part}.pt", cfg.checkpoint_every)
        t0 = time.perf_counter()
        if part == "mouth":
            histories[part] = train_mouth(
                a2m.mouth,
                records,
                cfg,
                device,
                seed,
                generator=model,
                sync_expert=sync_expert,
                sync_inputs=sync_inputs,
                progress=prog,
            )
        elif part == "pose":
            histories[part] = train_pose_flow(a2m.pose_flow, records, cfg, device, seed, progress=prog)
        else:
            histories[part] = train_expression(a2m.expression, records, cfg, device, seed, progress=prog)
        timings[f"{part}_s"] = time.perf_counter() - t0
    if not main:
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
    )
    atomic_write_json(out_dir / "results.json", results)
    if dist_info.enabled:
        torch.distributed.barrier()
    return results


# ----------------------------------------------------------------------------------------------------
# CLI glue (called by `edtalk train --stage audio`)
# ----------------------------------------------------------------------------------------------------
def load_trained_generator(run_dir, device=None):
    """The EDTalk trained by stages 0-2 in `run_dir` (its `model.pt`), frozen, or None if absent."""
    path = Path(run_dir) / "model.pt"
    if not path.exists():
        return None
    from edtalk.config import ModelConfig
    from edtalk.model import EDTalk
    from metrics.errors import CheckpointMismatchError

    try:
        from metrics.utils import safe_torch_load

        ck = safe_torch_load(path, "a model.pt from `edtalk train`")
        model = EDTalk(ModelConfig(**ck["model_config"]))
        model.load_state_dict(ck["model"])
    except Exception as exc:  # unreadable, foreign or mismatched file: one line naming it
        raise CheckpointMismatchError(
            f"{path}: cannot load the trained generator ({type(exc).__name__}); "
            "re-run `edtalk train` stages 0-2 or use --targets gt"
        ) from None
    model.to(resolve_device(device)).eval()
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
    cfg = audio_stage_preset(preset)
    parts = tuple(
        p.strip() for p in str(getattr(args, "parts", ",".join(AUDIO_PARTS))).split(",") if p.strip()
    )
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
    cfg = dataclasses.replace(
        cfg,
        parts=parts,
        targets=targets,
        exp_features=getattr(args, "exp_features", cfg.exp_features) or cfg.exp_features,
        exp_features_dir=getattr(args, "exp_features_dir", None),
        exp_features_dim=getattr(args, "exp_features_dim", None),
    )
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
    return 0

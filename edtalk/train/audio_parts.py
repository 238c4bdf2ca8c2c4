"""Stage `audio`: the three part trainers (mouth, pose flow, expression), each with a fixed seed, DDP
gradient averaging under torchrun and an atomic progress checkpoint to resume from."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from edtalk.train.audio_config import AudioStageConfig
from edtalk.train.audio_data import ClipRecord, records_of_split
from metrics.errors import CheckpointMismatchError, InputError
from metrics.utils import atomic_torch_save, resolve_device


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
    train = [r for r in records_of_split(records, "train") if len(r.mel) >= cfg.mouth_window]
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
    _check_sync_setup(sync, sync_inputs, generator)
    if generator is not None:
        generator.eval()
        for p in generator.parameters():
            p.requires_grad_(False)
    w = cfg.mouth_window

    def step(_it: int) -> dict[str, float]:
        idx, ids, starts, mels, tgts, poses = _mouth_windows(train, cfg.mouth_batch, w, g)
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


def _check_sync_setup(sync, sync_inputs, generator) -> None:
    if sync is not None and sync_inputs is None:
        raise InputError("a sync expert needs sync_inputs(mel_windows, frames) to build its inputs")
    if sync is not None and generator is None:
        raise InputError(
            "the sync loss scores rendered frames: it needs the trained, frozen EDTalk generator "
            "(targets='model'); drop the sync expert or train stages 0-2 first"
        )


def _mouth_windows(train: list[ClipRecord], batch: int, w: int, g: torch.Generator):
    """A batch of random `w`-frame windows: (clip indices, identity frames, starts, mels, targets, poses)."""
    idx = torch.randint(len(train), (batch,), generator=g).tolist()
    mels, tgts, poses, starts, ids = [], [], [], [], []
    for i in idx:
        r = train[i]
        s = int(torch.randint(len(r.mel) - w + 1, (1,), generator=g))
        ids.append(int(torch.randint(len(r.mel), (1,), generator=g)))  # identity frame, as the release
        starts.append(s)
        mels.append(r.mel[s : s + w])
        tgts.append(r.mouth[s : s + w])
        poses.append(r.pose[s : s + w])
    return idx, ids, starts, mels, tgts, poses


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
    train = [r for r in records_of_split(records, "train") if len(r.mel) >= 2]
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
    train = records_of_split(records, "train")
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

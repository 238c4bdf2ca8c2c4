"""Training loops for the evaluators, on the world's TRAIN identities only.

Each net has its own seeded generator (seed, net index), so a resumed training (nets already saved
are skipped) gives the same nets as an uninterrupted one. Image nets see colour/brightness jitter,
random channel permutation (not the identity net: colour is identity here) and ±2-pixel shifts, so
they transfer to unseen faces. The SyncNet is trained contrastively as in Chung & Zisserman's "Perfect Match" (multi-way
matching): for each 5-frame mouth-crop window, a softmax over the negative Euclidean distances (the
distance LSE uses) to every audio window of the batch — the same clip at offsets up to ±K and
beyond, and other clips — with the in-sync window as the target.
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from benchmarks.evaluators.config import EvaluatorConfig
from benchmarks.evaluators.data import Split
from benchmarks.evaluators.nets import ConvNet, IdentityNet, LandmarkNet, PoseNet, SyncNet
from metrics.functional.emotion import EMOTIONS

POSE_SCALE = np.array([20.0, 12.0, 8.0], np.float32)  # the world's yaw/pitch/roll limits: targets in ~[-1, 1]
NET_ORDER = ("landmarks", "pose", "emotion", "identity", "syncnet")


def build_net(kind: str, init: dict) -> torch.nn.Module:
    if kind == "syncnet":
        return SyncNet(**init)
    if kind == "identity":
        return IdentityNet(**init)
    if kind == "pose":
        return PoseNet(**init)
    if kind == "landmarks":
        return LandmarkNet(**init)
    return ConvNet(**init)


def net_init(kind: str, cfg: EvaluatorConfig, n_identities: int) -> dict:
    """Constructor arguments of each net (stored in its checkpoint so loading needs no config)."""
    img = {"in_size": cfg.input_size, "width": cfg.width, "feat_dim": cfg.feat_dim}
    return {"landmarks": img, "pose": img,
            "emotion": {"out_dim": len(EMOTIONS), **img},
            "identity": {"n_classes": len(identity_roles(n_identities)[0]), "embed_dim": cfg.embed_dim, **img},
            "syncnet": {"crop_size": cfg.crop_size, "embed_dim": cfg.sync_embed_dim}}[kind]


def identity_roles(n: int) -> tuple[list[int], list[int]]:
    """Train identities the identity net is fitted on, and those held out to choose its threshold.

    Every third train identity (indices 2, 5, …) is held out when that leaves >= 2 of each, because a
    threshold picked on the fitted faces (whose embeddings are pulled tight) does not transfer to
    unseen faces; with fewer identities all are used for both.
    """
    held = [k for k in range(n) if k % 3 == 2]
    fit = [k for k in range(n) if k % 3 != 2]
    return (fit, held) if len(held) >= 2 and len(fit) >= 2 else (list(range(n)), list(range(n)))


def augment(x: torch.Tensor, gen: torch.Generator, colour: str, shift: float, scale: float = 0.0,
            landmarks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """uint8 (B, S, S, 3) -> float (B, 3, S, S) in [-1, 1], with landmarks (pixels) moved along if given.

    Geometry: independent x/y scaling by up to ±`scale` about the centre (faces of other widths and
    heights; the pose does not change) and shifts of up to ±`shift` pixels. Colour: "strong" permutes
    the channels half of the time and jitters per-channel gain and offset; "mild" only brightness.
    """
    b, s = x.shape[0], x.shape[1]
    img = x.permute(0, 3, 1, 2).float()
    if shift or scale:
        sxy = 1 + scale * (2 * torch.rand(b, 2, generator=gen) - 1)
        txy = shift * (2 * torch.rand(b, 2, generator=gen) - 1)
        theta = torch.zeros(b, 2, 3)
        theta[:, 0, 0], theta[:, 1, 1] = 1 / sxy[:, 0], 1 / sxy[:, 1]  # output -> input sampling
        theta[:, :, 2] = -txy * 2 / s / sxy
        grid = F.affine_grid(theta, (b, 3, s, s), align_corners=False)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if landmarks is not None:
            landmarks = (landmarks - s / 2) * sxy[:, None, :] + s / 2 + txy[:, None, :]
    if colour == "strong":
        perm = torch.argsort(torch.rand(b, 3, generator=gen), dim=1)
        keep = torch.rand(b, generator=gen) < 0.5
        perm[keep] = torch.arange(3)
        img = torch.gather(img, 1, perm[:, :, None, None].expand_as(img))
        gain = 0.7 + 0.6 * torch.rand(b, 3, 1, 1, generator=gen)
        offset = 50 * torch.rand(b, 1, 1, 1, generator=gen) - 25
    else:
        gain = 0.9 + 0.2 * torch.rand(b, 1, 1, 1, generator=gen)
        offset = 16 * torch.rand(b, 1, 1, 1, generator=gen) - 8
    img = (img * gain + offset).clamp(0, 255) / 127.5 - 1.0
    return img, landmarks


def _optimiser(net: torch.nn.Module, lr: float, steps: int):
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(1.0, i / steps))))
    return opt, sched


def _loop(net, lr: float, steps: int, loss_fn, desc: str, progress: bool) -> dict:
    opt, sched = _optimiser(net, lr, steps)
    net.train()
    t0, ema = time.perf_counter(), None
    bar = tqdm(range(steps), desc=f"train {desc}", unit="step", disable=not progress)
    for _ in bar:
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        value = float(loss.detach())
        ema = value if ema is None else 0.95 * ema + 0.05 * value
        bar.set_postfix(loss=f"{ema:.4f}")
    net.eval()
    return {"seconds": time.perf_counter() - t0, "steps": steps, "final_loss": ema}


def train_image_net(kind: str, split: Split, cfg: EvaluatorConfig, seed: int, device, progress: bool = True
                    ) -> tuple[torch.nn.Module, dict]:
    """Train the landmark, pose, emotion or identity net on `split` (the train identities)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = build_net(kind, net_init(kind, cfg, len(split.identities))).to(device)
    frames = torch.from_numpy(split.frames)
    s = cfg.input_size
    lms = torch.from_numpy(split.landmarks)
    pose = torch.from_numpy(split.pose / POSE_SCALE)
    emotion, identity = torch.from_numpy(split.emotion), torch.from_numpy(split.identity)
    pool = torch.arange(len(frames))
    if kind == "identity":  # fit on some train identities only (see identity_roles), labels renumbered
        fit = identity_roles(len(split.identities))[0]
        pool = torch.from_numpy(np.flatnonzero(np.isin(split.identity, fit)))
        remap = torch.full((len(split.identities),), -1, dtype=torch.long)
        remap[fit] = torch.arange(len(fit))
        identity = remap[identity]
    if kind == "pose":  # landmarks -> pose, ridge regression on the training ground truth
        a = np.c_[(split.landmarks / s * 2 - 1).reshape(len(split.landmarks), -1), np.ones(len(split.landmarks))]
        w = np.linalg.solve(a.T @ a + cfg.pose_ridge * np.eye(a.shape[1]), a.T @ (split.pose / POSE_SCALE))
        net.geometry.copy_(torch.from_numpy(w.astype(np.float32)))
    steps = {"landmarks": cfg.landmark_steps, "pose": cfg.pose_steps,
             "emotion": max(cfg.emotion_steps, math.ceil(cfg.emotion_epochs * len(frames) / cfg.batch_size)),
             "identity": cfg.identity_steps}[kind]

    def loss_fn():
        idx = pool[torch.randint(0, len(pool), (cfg.batch_size,), generator=gen)]
        if kind == "landmarks":
            x, lm = augment(frames[idx], gen, "strong", 2, cfg.scale_aug, lms[idx])
            target = (lm / s * 2 - 1).flatten(1).to(device)
            return F.smooth_l1_loss(net(x.to(device)), target, beta=0.01)
        if kind == "pose":
            x, lm = augment(frames[idx], gen, "strong", 2, cfg.scale_aug, lms[idx])
            lm_pred, direct, geometric = net.heads(x.to(device))
            target = pose[idx].to(device)
            return (F.smooth_l1_loss(lm_pred, (lm / s * 2 - 1).flatten(1).to(device), beta=0.01)
                    + F.smooth_l1_loss(direct, target, beta=0.05) + F.smooth_l1_loss(geometric, target, beta=0.05))
        if kind == "emotion":
            x, _ = augment(frames[idx], gen, "strong", 2, cfg.scale_aug)
            return F.cross_entropy(net(x.to(device)), emotion[idx].to(device), label_smoothing=0.1)
        x, _ = augment(frames[idx], gen, "mild", 2)
        return F.cross_entropy(net.logits(x.to(device), identity[idx].to(device)), identity[idx].to(device))

    lr = cfg.landmark_lr if kind == "landmarks" else cfg.lr
    return net, _loop(net, lr, steps, loss_fn, kind, progress)


def train_syncnet(split: Split, cfg: EvaluatorConfig, seed: int, device, progress: bool = True
                  ) -> tuple[SyncNet, dict]:
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = SyncNet(**net_init("syncnet", cfg, 0))
    all_mfcc = np.concatenate(split.mfccs, axis=1)
    net.mfcc_mean.copy_(torch.from_numpy(all_mfcc.mean(1)))
    net.mfcc_std.copy_(torch.from_numpy(all_mfcc.std(1) + 1e-3))
    net = net.to(device)
    usable = [k for k, w in enumerate(split.windows) if w >= cfg.sync_windows + 2]
    if not usable:
        from metrics.errors import InputError

        raise InputError(f"clips are too short to train the SyncNet: need at least {cfg.sync_windows + 7} frames")
    L, m, c = cfg.sync_windows, cfg.crop_margin, cfg.crop_size
    K = max(1, min(cfg.sync_offsets, (min(split.windows[k] for k in usable) - L) // 2))
    crops = [torch.from_numpy(x) for x in split.crops]
    mfccs = [torch.from_numpy(x) for x in split.mfccs]

    def loss_fn():
        lips, auds = [], []
        for k in torch.randint(0, len(usable), (cfg.sync_clips,), generator=gen).tolist():
            k = usable[k]
            i0 = int(torch.randint(K, split.windows[k] - L - K + 1, (1,), generator=gen))
            # one jitter per window plus ±1 px per frame (the predicted-landmark crops at test time wobble)
            dx, dy = torch.randint(-(m - 1), m, (2,), generator=gen).tolist() if m > 1 else (0, 0)
            fx = torch.randint(-1, 2, (L + 4, 2), generator=gen) if m > 1 else torch.zeros(L + 4, 2, dtype=torch.long)
            seq = torch.stack([crops[k][i0 + t, m + dy + fy: m + dy + fy + c, m + dx + fx_: m + dx + fx_ + c]
                               for t, (fx_, fy) in enumerate(fx.tolist())])  # (L+4, c, c, 3) BGR
            gain = 0.8 + 0.4 * torch.rand(1, 1, 1, 3, generator=gen)
            seq = (seq.float() * gain).clamp(0, 255).permute(3, 0, 1, 2)  # (3, L+4, c, c)
            lips += [seq[:, t:t + 5] for t in range(L)]
            auds += [mfccs[k][None, :, 4 * j: 4 * j + 20] for j in range(i0 - K, i0 + L + K)]
        lip = net.forward_lip(torch.stack(lips).to(device))  # (B·L, D)
        aud = net.forward_aud(torch.stack(auds).to(device))  # (B·(L+2K), D)
        # every audio window of the batch is a candidate: the same clip at offsets −K-l..L+K-l, other clips
        dist = torch.cdist(lip[None], aud[None])[0]
        b, l = torch.meshgrid(torch.arange(cfg.sync_clips), torch.arange(L), indexing="ij")
        target = (b * (L + 2 * K) + l + K).flatten().to(device)
        return F.cross_entropy(-dist, target)

    return net, _loop(net, cfg.lr, cfg.sync_steps, loss_fn, "syncnet", progress)

"""Lip-sync scores with SyncNet (Chung & Zisserman 2016): LSE-D (min distance) and LSE-C (confidence).

`SyncNet` has the layer names of syncnet_python's `S` model, so `syncnet_v2.model` loads unchanged.
The evaluation follows syncnet_python's `SyncNetInstance.evaluate` exactly (5-frame 224x224 BGR
windows against 20-step MFCC windows, offsets +-15 over zero-padded audio features, distance = min
over offsets of the mean distance, confidence = median - min, offset = vshift - argmin), but runs
every window of a clip through the network in large batches and computes all offsets at once.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from metrics.base import Metric
from metrics.errors import InputError, MissingWeightsError

SYNCNET_URL = "http://www.robots.ox.ac.uk/~vgg/software/lipsync/data/syncnet_v2.model"


def _conv_bn_relu(conv: nn.Module, bn: nn.Module) -> list[nn.Module]:
    return [conv, bn, nn.ReLU(inplace=True)]


class SyncNet(nn.Module):
    """syncnet_python's `S(num_layers_in_fc_layers=1024)`: audio (N,1,13,20) and video (N,3,5,224,224) towers."""

    def __init__(self, embed_dim: int = 1024):
        super().__init__()
        self.netcnnaud = nn.Sequential(
            *_conv_bn_relu(nn.Conv2d(1, 64, 3, 1, 1), nn.BatchNorm2d(64)), nn.MaxPool2d(1, 1),
            *_conv_bn_relu(nn.Conv2d(64, 192, 3, 1, 1), nn.BatchNorm2d(192)), nn.MaxPool2d(3, (1, 2)),
            *_conv_bn_relu(nn.Conv2d(192, 384, 3, padding=1), nn.BatchNorm2d(384)),
            *_conv_bn_relu(nn.Conv2d(384, 256, 3, padding=1), nn.BatchNorm2d(256)),
            *_conv_bn_relu(nn.Conv2d(256, 256, 3, padding=1), nn.BatchNorm2d(256)), nn.MaxPool2d(3, 2),
            *_conv_bn_relu(nn.Conv2d(256, 512, (5, 4), padding=0), nn.BatchNorm2d(512)),
        )
        self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, embed_dim))
        self.netcnnlip = nn.Sequential(
            *_conv_bn_relu(nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn_relu(nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            *_conv_bn_relu(nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256)),
            nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
            *_conv_bn_relu(nn.Conv3d(256, 512, (1, 6, 6), padding=0), nn.BatchNorm3d(512)),
        )

    def forward_aud(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfcaud(self.netcnnaud(x).flatten(1))

    def forward_lip(self, x: torch.Tensor) -> torch.Tensor:
        return self.netfclip(self.netcnnlip(x).flatten(1))


def load_syncnet(path, device="cpu") -> SyncNet:
    """syncnet_v2.model (a plain state dict of `S`), read with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"SyncNet weights {path} not found; download syncnet_v2.model from {SYNCNET_URL}")
    from metrics.utils import safe_torch_load, state_dict_differences

    state = safe_torch_load(path, "syncnet_python's SyncNet state dict")
    model = SyncNet()
    diff = state_dict_differences(model.state_dict(), state) if isinstance(state, dict) else \
        f"it holds a {type(state).__name__}"
    if diff:
        raise InputError(f"{path} is not a syncnet_python S state dict: {diff}")
    model.load_state_dict(state)
    return model.to(device).eval()


def mfcc_features(audio: np.ndarray, sample_rate: int = 16000) -> np.ndarray:
    """python_speech_features.mfcc with its defaults on the raw samples (int16 scale), as (13, N)."""
    import python_speech_features

    return np.asarray(python_speech_features.mfcc(audio, sample_rate)).T


def _validate(frames: np.ndarray, audio: np.ndarray, sample_rate: int, crop_size: int = 224) -> None:
    if (not isinstance(frames, np.ndarray) or frames.dtype != np.uint8 or frames.ndim != 4
            or frames.shape[1:] != (crop_size, crop_size, 3)):
        what = "face crops" if crop_size == 224 else "crops"
        raise InputError(f"lse needs frames as uint8 (T, {crop_size}, {crop_size}, 3) BGR {what}, got "
                         f"{getattr(frames, 'dtype', type(frames))} {getattr(frames, 'shape', '')}")
    audio = np.asarray(audio)
    if audio.ndim != 1:
        raise InputError(f"lse needs mono audio as a 1-D array, got shape {audio.shape}; downmix first")
    if sample_rate != 16000:
        raise InputError(f"lse needs 16 kHz audio (25 fps video = 640 samples per frame), got {sample_rate} Hz; "
                         "resample first")
    if min(len(frames), len(audio) // 640) < 6:
        raise InputError(f"clip too short for SyncNet: {len(frames)} frames, {len(audio) / 16000:.2f} s of audio "
                         "(needs at least 6 frames of both)")


@torch.no_grad()
def sync_distances(model: nn.Module, frames: np.ndarray, audio: np.ndarray, sample_rate: int = 16000,
                   vshift: int = 15, batch_size: int = 64, crop_size: int = 224) -> torch.Tensor:
    """(windows, 2*vshift+1) distances between each video window and the audio at every offset.

    `crop_size` is the side of the square crops `model.forward_lip` takes: 224 for syncnet_python's
    network; a smaller SyncNet of the same design (e.g. benchmarks.evaluators' synthetic-world one on
    mouth crops) passes its own. Nothing else changes.
    """
    _validate(frames, audio, sample_rate, crop_size)
    dev = next(model.parameters()).device
    model.eval()
    if np.issubdtype(np.asarray(audio).dtype, np.floating) and np.abs(audio).max() <= 1.0:
        audio = np.asarray(audio) * 32768.0  # syncnet_python reads int16 wavs: MFCCs on that scale
    mfcc = torch.from_numpy(mfcc_features(np.asarray(audio), sample_rate).astype(np.float32))  # (13, N)
    n = min(len(frames), len(audio) // 640)
    last = n - 5
    video = torch.from_numpy(frames[:n]).float().permute(3, 0, 1, 2)  # (3, T, S, S), BGR 0..255
    lip, aud = [], []
    for start in range(0, last, batch_size):
        idx = range(start, min(last, start + batch_size))
        lip.append(model.forward_lip(torch.stack([video[:, i:i + 5] for i in idx]).to(dev)).cpu())
        aud.append(model.forward_aud(torch.stack([mfcc[None, :, 4 * i: 4 * i + 20] for i in idx]).to(dev)).cpu())
    lip_f, aud_f = torch.cat(lip), torch.cat(aud)
    padded = torch.nn.functional.pad(aud_f, (0, 0, vshift, vshift))
    windows = padded.unfold(0, 2 * vshift + 1, 1).permute(0, 2, 1)[: len(lip_f)]  # (W, 2v+1, D)
    # torch.pairwise_distance adds eps=1e-6 to the difference before the norm; keep that.
    return torch.linalg.vector_norm(lip_f[:, None, :] - windows + 1e-6, dim=-1)


def lse_from_distances(dists: torch.Tensor, vshift: int = 15) -> dict:
    mean = dists.mean(0)
    min_val, min_idx = torch.min(mean, 0)
    return {"lse_d": float(min_val), "lse_c": float(torch.median(mean) - min_val), "offset": int(vshift - min_idx)}


#: the columns of LipSyncError's per-clip state, in order
CLIP_SCORES = ("lse_d", "lse_c", "offset")


class LipSyncError(Metric):
    """Streaming LSE-C/LSE-D over clips: `update(frames, audio)` per clip, `compute()` the means.

    `higher_is_better` refers to LSE-C; LSE-D is lower-is-better (both are returned). Per clip:
    `per_clip` (a list of {"lse_d", "lse_c", "offset"}), from the (clips, 3) state `clip_scores`."""

    higher_is_better = True
    name = "lse"

    def __init__(self, weights=None, model: nn.Module | None = None, vshift: int = 15, batch_size: int = 64,
                 crop: str = "cropped", device=None, crop_size: int = 224, **kwargs: Any):
        super().__init__(**kwargs)
        from metrics.utils import resolve_device

        if model is None:
            if weights is None:
                raise MissingWeightsError(f"LipSyncError needs SyncNet weights (syncnet_v2.model from {SYNCNET_URL}) "
                                          "or a model")
            model = load_syncnet(weights, resolve_device(device))
        if crop != "cropped":
            raise InputError(f"crop mode {crop!r} is not available yet; pass 224x224 face crops (crop='cropped')")
        self.model, self.vshift, self.batch_size, self.crop_size = model, vshift, batch_size, crop_size
        self.protocol = {"crop": crop, "vshift": vshift, "reference": "syncnet_python SyncNetInstance.evaluate"}
        if crop_size != 224:
            self.protocol["crop_size"] = crop_size
        self.add_state("clip_scores", [], dist_reduce_fx="cat")

    def update(self, frames: np.ndarray, audio: np.ndarray, sample_rate: int = 16000) -> None:
        d = sync_distances(self.model, frames, audio, sample_rate, self.vshift, self.batch_size, self.crop_size)
        r = lse_from_distances(d, self.vshift)
        self.append_sample("clip_scores", [r[k] for k in CLIP_SCORES])

    @property
    def per_clip(self) -> list[dict]:
        """One {"lse_d", "lse_c", "offset"} per clip, in update order."""
        rows = self.per_sample("clip_scores").reshape(-1, len(CLIP_SCORES))
        return [{"lse_d": float(d), "lse_c": float(c), "offset": int(o)} for d, c, o in rows]

    def compute(self) -> dict:
        rows = self.per_sample("clip_scores").reshape(-1, len(CLIP_SCORES))
        if not len(rows):
            raise InputError("LipSyncError.compute() called before any update()")
        return {"lse_c": float(np.mean(rows[:, 1])), "lse_d": float(np.mean(rows[:, 0])), "clips": len(rows)}

"""Lip-sync scores with SyncNet (Chung & Zisserman 2016): LSE-D (min distance) and LSE-C (confidence).

`SyncNet` has the layer names of syncnet_python's `S` model, so `syncnet_v2.model` loads unchanged.
The evaluation follows syncnet_python's `SyncNetInstance.evaluate` exactly (5-frame 224x224 BGR
windows against 20-step MFCC windows, offsets +-15 over zero-padded audio features, distance = min
over offsets of the mean distance, confidence = median - min, offset = vshift - argmin), but streams:
windows go through the network `batch_size` at a time (across clips with `sync_distances_many`), each
batch's distances at every offset are taken as soon as its audio neighbours are embedded, and only the
frames and audio embeddings still needed are held, so memory is flat in clip length.
"""
from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from queue import Full, Queue
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


def _mfcc_tensor(audio: np.ndarray, sample_rate: int) -> torch.Tensor:
    audio = np.asarray(audio)
    if np.issubdtype(audio.dtype, np.floating) and np.abs(audio).max() <= 1.0:
        audio = audio * 32768.0  # syncnet_python reads int16 wavs: MFCCs on that scale
    return torch.from_numpy(mfcc_features(audio, sample_rate).astype(np.float32))  # (13, N)


class _Clip:
    """One clip being scored: its crops, MFCCs, the next window to embed, the rolling audio embeddings
    (rows `aud_lo`..) that the next windows' +-vshift offsets still need, and its distance rows so far."""

    def __init__(self, frames: np.ndarray, audio: np.ndarray, sample_rate: int, crop_size: int):
        _validate(frames, audio, sample_rate, crop_size)
        self.frames, self.mfcc = frames, _mfcc_tensor(audio, sample_rate)
        self.windows = min(len(frames), len(audio) // 640) - 5
        self.next = 0
        self.aud, self.aud_lo = None, 0
        self.rows: list[torch.Tensor] = []

    def lip_input(self, start: int, stop: int) -> torch.Tensor:
        """(stop - start, 3, 5, S, S) float BGR windows; only these frames are converted to float."""
        video = torch.from_numpy(self.frames[start:stop + 4]).float().permute(3, 0, 1, 2)  # (3, L, S, S)
        return torch.stack([video[:, i:i + 5] for i in range(stop - start)])

    def audio_block(self, model: nn.Module, start: int, stop: int, vshift: int, dev) -> torch.Tensor:
        """Audio embeddings of windows start - vshift .. stop + vshift - 1, zero rows outside the clip (the
        reference's zero padding); embeds only the rows not yet embedded and forgets those no longer needed."""
        hi = self.aud_lo + (0 if self.aud is None else len(self.aud))
        need = min(self.windows, stop + vshift)
        if need > hi:
            mfcc = torch.stack([self.mfcc[None, :, 4 * i: 4 * i + 20] for i in range(hi, need)])
            new = model.forward_aud(mfcc.to(dev)).cpu()
            self.aud = new if self.aud is None else torch.cat([self.aud, new])
        lo = max(0, start - vshift)
        block = self.aud[lo - self.aud_lo: need - self.aud_lo]
        block = torch.nn.functional.pad(block, (0, 0, lo - (start - vshift), stop + vshift - need))
        keep_from = max(0, stop - vshift)  # the next window (stop) looks back vshift rows, no further
        self.aud, self.aud_lo = self.aud[keep_from - self.aud_lo:], keep_from
        return block


def _prefetched(items: Iterable, depth: int) -> Iterator:
    """`items` produced by a background thread, up to `depth` ahead (decoding overlaps the network)."""
    if depth <= 0:
        yield from items
        return
    queue: Queue = Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(entry) -> bool:
        while not stop.is_set():  # the consumer may be gone (an error, a generator closed early)
            try:
                queue.put(entry, timeout=0.1)
                return True
            except Full:
                continue
        return False

    def produce():
        try:
            for item in items:
                if not put(("item", item)):
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
            put(("error", exc))
            return
        put(("item", done))

    worker = threading.Thread(target=produce, name="lse-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = queue.get()
            if kind == "error":
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()


@torch.no_grad()
def sync_distances_many(model: nn.Module, clips: Iterable, sample_rate: int = 16000, vshift: int = 15,
                        batch_size: int = 64, crop_size: int = 224, prefetch: int = 2) -> Iterator[torch.Tensor]:
    """`sync_distances` of every (frames, audio) clip of `clips`, yielded in order, one (windows, 2v+1) each.

    Windows are batched across clips (a batch may end one clip and start the next), and `clips` (a list or
    a lazy iterable that decodes and crops) is read by a background thread up to `prefetch` clips ahead,
    so that work overlaps the network. Memory stays flat in clip length: a batch converts only its own
    frames, and audio embeddings are kept only while a later window's +-vshift offsets still need them.
    """
    model.eval()
    dev = next(model.parameters()).device
    source = _prefetched((_Clip(f, a, sample_rate, crop_size) for f, a in clips), prefetch)
    pending: list[_Clip] = []  # clips with windows left to embed, in order; the first is yielded first
    exhausted = False
    while True:
        while not exhausted and sum(c.windows - c.next for c in pending) < batch_size:
            clip = next(source, None)
            exhausted = clip is None
            if clip is not None:
                pending.append(clip)
        if not pending:
            return
        pieces, room = [], batch_size
        for clip in pending:
            take = min(room, clip.windows - clip.next)
            if take:
                pieces.append((clip, clip.next, clip.next + take))
                room -= take
            if not room:
                break
        lip = model.forward_lip(torch.cat([c.lip_input(s, e) for c, s, e in pieces]).to(dev)).cpu()
        used = 0
        for clip, start, stop in pieces:
            block = clip.audio_block(model, start, stop, vshift, dev)
            windows = block.unfold(0, 2 * vshift + 1, 1).permute(0, 2, 1)  # (stop - start, 2v+1, D)
            # torch.pairwise_distance adds eps=1e-6 to the difference before the norm; keep that.
            own = lip[used:used + stop - start]
            clip.rows.append(torch.linalg.vector_norm(own[:, None, :] - windows + 1e-6, dim=-1))
            clip.next, used = stop, used + stop - start
        while pending and pending[0].next == pending[0].windows:
            yield torch.cat(pending.pop(0).rows)


def sync_distances(model: nn.Module, frames: np.ndarray, audio: np.ndarray, sample_rate: int = 16000,
                   vshift: int = 15, batch_size: int = 64, crop_size: int = 224) -> torch.Tensor:
    """(windows, 2*vshift+1) distances between each video window and the audio at every offset.

    `crop_size` is the side of the square crops `model.forward_lip` takes: 224 for syncnet_python's
    network; a smaller SyncNet of the same design (e.g. benchmarks.evaluators' synthetic-world one on
    mouth crops) passes its own. Nothing else changes. Streams `batch_size` windows at a time.
    """
    return next(sync_distances_many(model, [(frames, audio)], sample_rate, vshift, batch_size, crop_size, 0))


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

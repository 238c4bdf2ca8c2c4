"""Streaming LSE: chunked windows, batches across clips and prefetching give syncnet_python's numbers, with
bounded memory (no batch larger than asked, audio embeddings forgotten once no later window needs them)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from metrics.errors import InputError
from metrics.sync import _Clip, lse_from_distances, sync_distances, sync_distances_many


def _assert_matches(result: dict, expected) -> None:
    conf, dist, offset = expected
    assert result["offset"] == int(offset)
    assert abs(result["lse_d"] - dist) / dist < 1e-5
    assert abs(result["lse_c"] - conf) < 0.01


def test_chunked_and_batched_across_clips_match_syncnet_python(syncnet_seed4, lse_seed4):
    from metrics.sync import load_syncnet

    model = load_syncnet(syncnet_seed4)
    pairs = [(lse_seed4[f"clip{k}_frames"], lse_seed4[f"clip{k}_audio"]) for k in range(2)]
    # 35 + 45 windows in batches of 16: each clip spans several chunks, whose offsets need audio embeddings
    # from the chunks either side, and the third batch ends clip 0 and starts clip 1
    results = [lse_from_distances(d) for d in sync_distances_many(model, iter(pairs), batch_size=16, prefetch=2)]
    assert len(results) == 2
    for k, r in enumerate(results):
        _assert_matches(r, lse_seed4[f"clip{k}_expected"])


class _LinearSync(nn.Module):
    """A cheap model with SyncNet's interface (random linear towers) that records the batches it sees."""

    def __init__(self, side: int):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.lip = nn.Parameter(torch.randn(3 * 5 * side * side, 6, generator=g) / 100)
        self.aud = nn.Parameter(torch.randn(13 * 20, 6, generator=g))
        self.lip_batches: list[int] = []

    def forward_lip(self, x):
        self.lip_batches.append(len(x))
        return x.flatten(1) @ self.lip

    def forward_aud(self, x):
        return x.flatten(1) @ self.aud


def _reference_distances(model, frames, audio, vshift):
    """syncnet_python's evaluate with every window at once and its calc_pdist loop."""
    from metrics.sync import mfcc_features

    mfcc = torch.from_numpy(mfcc_features(audio).astype(np.float32))
    last = min(len(frames), len(audio) // 640) - 5
    video = torch.from_numpy(frames).float().permute(3, 0, 1, 2)
    lip = model.forward_lip(torch.stack([video[:, i:i + 5] for i in range(last)]))
    aud = model.forward_aud(torch.stack([mfcc[None, :, 4 * i:4 * i + 20] for i in range(last)]))
    padded = torch.nn.functional.pad(aud, (0, 0, vshift, vshift))
    return torch.stack([torch.nn.functional.pairwise_distance(lip[[i]].repeat(2 * vshift + 1, 1),
                                                              padded[i:i + 2 * vshift + 1]) for i in range(last)])


@pytest.mark.parametrize("batch_size,vshift", [(3, 15), (7, 15), (40, 3), (500, 15)])
def test_streamed_distances_equal_all_at_once(batch_size, vshift):
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (120, 8, 8, 3), dtype=np.uint8)
    audio = rng.normal(0, 3000, 120 * 640).astype(np.int16)
    model = _LinearSync(8)
    with torch.no_grad():
        expected = _reference_distances(model, frames, audio, vshift)
    model.lip_batches.clear()
    got = sync_distances(model, frames, audio, vshift=vshift, batch_size=batch_size, crop_size=8)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-4)
    assert max(model.lip_batches) <= batch_size and sum(model.lip_batches) == 115


def test_audio_embeddings_are_a_rolling_window():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (400, 8, 8, 3), dtype=np.uint8)
    clip = _Clip(frames, rng.normal(0, 3000, 400 * 640).astype(np.int16), 16000, 8)
    model, held = _LinearSync(8), []
    with torch.no_grad():
        for start in range(0, clip.windows, 10):
            stop = min(clip.windows, start + 10)
            assert len(clip.audio_block(model, start, stop, 15, "cpu")) == stop - start + 30
            held.append(len(clip.aud))
    assert max(held) <= 10 + 2 * 15  # one batch and its offsets, however long the clip


def test_bad_clip_read_ahead_raises_in_order(syncnet_seed4, lse_seed4):
    model = _LinearSync(8)
    rng = np.random.default_rng(3)
    good = (rng.integers(0, 256, (30, 8, 8, 3), dtype=np.uint8), rng.normal(0, 3000, 30 * 640).astype(np.int16))
    bad = (good[0][:, :4], good[1])
    stream = sync_distances_many(model, iter([good, bad, good]), batch_size=100, crop_size=8, prefetch=2)
    with pytest.raises(InputError, match="8, 8, 3"):
        list(stream)

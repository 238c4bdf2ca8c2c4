"""Stage `audio`: the pose flow and expression predictor train through train_audio_stage, write a
loadable checkpoint and results, and resume exactly after an interruption."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from edtalk.model.audio2motion import Audio2Motion
from edtalk.train import audio_stage as A
from metrics.errors import InputError, MissingWeightsError, UserError


def _records(n_ids=6, clips_per_id=4, t=32, seed=0):
    """Clips whose pose follows the audio loudness and whose speech features carry the emotion."""
    g = torch.Generator().manual_seed(seed)
    recs = []
    centres = torch.randn(8, 10, generator=g) * 2
    proj = torch.randn(10, 12, generator=g)
    for i in range(n_ids):
        for c in range(clips_per_id):
            emo = (i + c) % 8
            loud = torch.rand(t, generator=g)
            mel = loud.view(t, 1, 1) * torch.linspace(1, 0, 80).view(1, 80, 1) + 0.1 * torch.randn(
                t, 80, 16, generator=g
            )
            yaw = torch.cumsum(loud - 0.5, 0) * 2
            pose = torch.stack([yaw, 0.5 * yaw, 0.1 * torch.randn(t, generator=g)], -1)
            exp = centres[emo] + 0.1 * torch.randn(10, generator=g)
            recs.append(
                A.ClipRecord(
                    name=f"id{i}_c{c}",
                    identity=f"id{i}",
                    split="test" if i >= n_ids - 2 else "train",
                    emotion=emo,
                    mel=mel,
                    mouth=torch.stack([loud, 1 - loud, loud**2], -1),
                    pose=pose,
                    expression=exp,
                    speech=exp @ proj + 0.2 * torch.randn(12, generator=g),
                    gt_jaw=loud,
                    gt_pose_deg=pose,
                )
            )
    return recs


def _cfg(**kw):
    base = dataclasses.replace(
        A.audio_stage_preset("smoke"),
        parts=("pose", "expression"),
        pose_iters=30,
        exp_iters=60,
        pose_window=16,
        pose_batch=8,
        pose_hidden=24,
        pose_steps=2,
        checkpoint_every=10,
    )
    return dataclasses.replace(base, **kw)


def test_stage_trains_writes_results_and_a_loadable_checkpoint(tmp_path):
    recs = _records()
    res = A.train_audio_stage(tmp_path, preset="smoke", seed=0, cfg=_cfg(), records=recs, device="cpu")
    out = tmp_path / "audio"
    for name in (
        "config.json",
        "results.json",
        "audio2motion.pt",
        "progress_pose.pt",
        "progress_expression.pt",
    ):
        assert (out / name).exists(), name
    first, last = res["first_last_loss"]["pose"]
    assert last["nll"] < first["nll"]
    first, last = res["first_last_loss"]["expression"]
    assert last["loss"] < first["loss"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["n_test_clips"] == 8 and saved["test_identities"] == ["id4", "id5"]
    assert set(saved["pose_velocity_deg_s"]) >= {"flow_mean", "gt_mean", "flow_std", "gt_std"}
    for k in ("pose_nll_per_frame", "pose_nll_other_clip_audio", "pose_nll_random_walk_baseline"):
        assert np.isfinite(saved[k]), k
    assert saved["emotion_acc_centroid"] > saved["emotion_chance"]
    assert "mouth_jaw_r" not in saved  # mouth part not trained here
    model = Audio2Motion.load(out / "audio2motion.pt")
    assert model.mouth is None
    mel = recs[-1].mel
    a = model.predict_pose(mel, "flow", source_pose=recs[-1].pose[0], seed=3)
    assert torch.equal(a, model.predict_pose(mel, "flow", source_pose=recs[-1].pose[0], seed=3))
    assert a.shape == (len(mel), 3)
    still = model.predict_pose(mel, "source", source_pose=recs[-1].pose[0])
    assert torch.equal(still, recs[-1].pose[0].expand(len(mel), -1))
    vid = model.predict_pose(mel, "video", video_pose=recs[0].pose[:10])
    assert vid.shape == (len(mel), 3) and torch.equal(vid[10:], recs[0].pose[9].expand(len(mel) - 10, -1))
    with pytest.raises(InputError, match="pose-sampling"):
        model.predict_pose(mel, "dance")
    with pytest.raises(InputError, match="source image"):
        model.predict_pose(mel, "source")
    with pytest.raises(MissingWeightsError, match="mouth"):
        model.predict_mouth(mel)


def test_stage_resumes_exactly_after_an_interruption(tmp_path, monkeypatch):
    recs = _records()
    full = A.train_audio_stage(tmp_path / "full", cfg=_cfg(), records=recs, device="cpu")
    real_save = A._Progress.save
    calls = {"n": 0}

    def dying_save(self, it, *args, **kw):
        real_save(self, it, *args, **kw)
        if "pose" in self.path.name and it == 20:
            raise KeyboardInterrupt  # killed right after the iteration-20 checkpoint
        calls["n"] += 1

    monkeypatch.setattr(A._Progress, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        A.train_audio_stage(tmp_path / "cut", cfg=_cfg(), records=recs, device="cpu")
    monkeypatch.setattr(A._Progress, "save", real_save)
    with pytest.raises(UserError, match="--resume"):
        A.train_audio_stage(tmp_path / "cut", cfg=_cfg(), records=recs, device="cpu")
    with pytest.raises(InputError, match="different config"):
        A.train_audio_stage(tmp_path / "cut", cfg=_cfg(exp_iters=61), records=recs, device="cpu", resume=True)
    resumed = A.train_audio_stage(tmp_path / "cut", cfg=_cfg(), records=recs, device="cpu", resume=True)
    # a truncated progress file is a one-line error naming the file
    from metrics.errors import CheckpointMismatchError

    prog = tmp_path / "cut" / "audio" / "progress_pose.pt"
    prog.write_bytes(prog.read_bytes()[:100])
    with pytest.raises(CheckpointMismatchError, match="progress_pose.pt: unreadable"):
        A.train_audio_stage(tmp_path / "cut", cfg=_cfg(), records=recs, device="cpu", resume=True)
    sd_full = torch.load(tmp_path / "full" / "audio" / "audio2motion.pt", weights_only=True)["state_dict"]
    sd_cut = torch.load(tmp_path / "cut" / "audio" / "audio2motion.pt", weights_only=True)["state_dict"]
    assert sd_full.keys() == sd_cut.keys()
    for k in sd_full:
        assert torch.equal(sd_full[k], sd_cut[k]), k
    assert resumed["pose_nll_per_frame"] == full["pose_nll_per_frame"]


def test_stage_input_errors(tmp_path):
    recs = _records()
    with pytest.raises(InputError, match="unknown audio-stage parts"):
        A.train_audio_stage(tmp_path / "a", cfg=_cfg(parts=("lips",)), records=recs)
    with pytest.raises(InputError, match="test"):
        A.train_audio_stage(tmp_path / "b", cfg=_cfg(), records=[r for r in recs if r.split == "train"])
    with pytest.raises(InputError, match="--data"):
        A.train_audio_stage(tmp_path / "c", cfg=_cfg())
    with pytest.raises(InputError, match="preset"):
        A.audio_stage_preset("huge")
    with pytest.raises(MissingWeightsError, match="not found"):
        Audio2Motion.load(tmp_path / "none.pt")
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something-else"}, bad)
    from metrics.errors import CheckpointMismatchError

    with pytest.raises(CheckpointMismatchError, match="not an audio-to-motion checkpoint"):
        Audio2Motion.load(bad)
    bad.write_bytes(b"garbage")
    with pytest.raises(CheckpointMismatchError, match="not a readable"):
        Audio2Motion.load(bad)


def _ddp_worker(rank, world, port, out, q):
    import os

    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    try:
        res = A.train_audio_stage(
            out, cfg=_cfg(pose_iters=10, exp_iters=10), records=_records(), device="cpu"
        )
        from edtalk.model.audio2motion import Audio2Motion as M  # noqa: F401  (import in the child)

        q.put((rank, res["pose_nll_per_frame"], None))
    except Exception as exc:  # report instead of hanging the parent
        q.put((rank, None, repr(exc)))
    finally:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


@pytest.mark.slow  # spawns two interpreters (≈15 s)
def test_stage_runs_data_parallel_under_torchrun_env(tmp_path):
    """Two gloo ranks: each draws its own batches, gradients are averaged, rank 0 writes the files."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, port, tmp_path, q)) for r in range(2)]
    for p in procs:
        p.start()
    got = sorted(q.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(30)
    assert [g[2] for g in got] == [None, None], got
    assert got[0][1] == got[1][1]  # rank 1 returns rank 0's evaluation
    st = torch.load(tmp_path / "audio" / "progress_pose.pt", weights_only=True)
    assert len(st["gen"]) == 2 and st["done"]
    assert json.loads((tmp_path / "audio" / "config.json").read_text())["world_size"] == 2


class _FrozenGenerator(torch.nn.Module):
    """EDTalk's encode/compose/decode with a closed form: frame brightness = tanh(Σ mouth + Σ pose)."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Linear(1, 1)  # a parameter, to check the stage freezes it

    def encode(self, img):
        return img.mean((1, 2, 3)).view(-1, 1), [img]

    def compose(self, c):
        assert "expression" not in c  # the release renders audio-driven lips without expression
        return (c["mouth"].sum(-1) + c["pose"].sum(-1)).view(-1, 1), None

    def decode(self, latent, d, feats, e):
        return torch.tanh(d).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)


class _TinyMouth(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(80, 16), torch.nn.ReLU(), torch.nn.Linear(16, n)
        )

    def forward(self, mel):  # (N,1,80,16)
        return self.net(mel.mean(-1))


class _Expert(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.v = torch.nn.Linear(80, 4), torch.nn.Linear(5, 4)

    def forward_aud(self, mel):
        return torch.relu(self.a(mel.mean((1, 3))))

    def forward_lip(self, video):  # (B,3,5,H,W)
        return torch.relu(self.v(video.mean((1, 3, 4))))


def test_mouth_training_with_frozen_generator_reconstruction_and_sync_loss():
    recs = _records(n_ids=3, clips_per_id=2, t=12)
    for r in recs:  # real frames rendered from the target coefficients by the same closed form
        r.mouth = r.mouth[:, :2]
        r.frames_ref = torch.tanh(r.mouth.sum(-1) + r.pose.sum(-1)).view(-1, 1, 1, 1).expand(-1, 3, 4, 4)
    gen, expert = _FrozenGenerator(), _Expert()
    cfg = dataclasses.replace(A.audio_stage_preset("smoke"), mouth_iters=40, mouth_batch=4, mouth_lr=3e-3)
    torch.manual_seed(0)
    hist = A.train_mouth(
        _TinyMouth(2),
        recs,
        cfg,
        device="cpu",
        generator=gen,
        sync_expert=expert,
        sync_inputs=lambda mel, frames: (mel[:, 0:1], frames.permute(0, 2, 1, 3, 4)),
    )
    assert {"feature", "smooth", "recon_l1", "sync", "loss"} <= set(hist[0])
    first, last = A._first_last(hist)
    assert last["recon_l1"] < first["recon_l1"] and last["loss"] < first["loss"]
    assert all(not p.requires_grad for p in gen.parameters())
    assert all(not p.requires_grad for p in expert.parameters())


def test_cli_glue_errors(tmp_path):
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--out")
    parser.add_argument("--data")
    A.add_audio_arguments(parser)
    args = parser.parse_args(["--parts", "pose", "--targets", "model", "--out", str(tmp_path)])
    assert args.parts == "pose" and args.exp_features == "offline-stats"
    with pytest.raises(MissingWeightsError, match="model.pt not found"):
        A.run_from_args(args)
    with pytest.raises(InputError, match="--out"):
        A.run_from_args(parser.parse_args([]))
    with pytest.raises(SystemExit):
        parser.parse_args(["--targets", "teacher"])

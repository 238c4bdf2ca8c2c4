"""`edtalk animate` writes a playable mp4 with sound of the right length."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import media
from edtalk.cli import main
from edtalk.model import EDTalk
from edtalk.presets import model_preset


@pytest.fixture
def inputs(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((80, 80, 3)) * 255).astype(np.uint8)).save(tmp_path / "src.png")
    media.write_video(tmp_path / "mouth.mp4", (rng.random((12, 64, 64, 3)) * 255).astype(np.uint8))
    t = np.arange(16000) / 16000
    media.write_wav(tmp_path / "speech.wav", 0.3 * np.sin(2 * np.pi * 180 * t))
    return tmp_path


def test_small_model_with_mouth_video_and_audio(inputs):
    torch.manual_seed(0)
    model = EDTalk(model_preset("smoke"))
    torch.save({"format": "edtalk-bench/model@1", "model_config": dataclasses.asdict(model.cfg),
                "model": model.state_dict()}, inputs / "model.pt")
    out = inputs / "out.mp4"
    assert main(["animate", "--checkpoint", str(inputs / "model.pt"), "--source", str(inputs / "src.png"),
                 "--mouth", str(inputs / "mouth.mp4"), "--audio", str(inputs / "speech.wav"), "--out", str(out),
                 "--device", "cpu"]) == 0
    info = media.probe_video(out)
    assert info["fps"] == 25 and info["n_frames"] == 12 and info["has_audio"] and info["width"] == 64
    audio = media.read_audio(out)
    assert abs(len(audio) / 16000 - 12 / 25) < 0.07  # AAC adds at most one 1024-sample frame of padding


def test_missing_driver_is_a_one_line_error(inputs, capsys):
    torch.save({"format": "edtalk-bench/model@1", "model_config": dataclasses.asdict(model_preset("smoke")),
                "model": EDTalk(model_preset("smoke")).state_dict()}, inputs / "model.pt")
    code = main(["animate", "--checkpoint", str(inputs / "model.pt"), "--source", str(inputs / "src.png"),
                 "--out", str(inputs / "o.mp4")])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing drives the source" in err[0]
    assert not (inputs / "o.mp4").exists()


@pytest.mark.slow
def test_official_weights_audio_driven(inputs, official_standins):
    """Release-shaped weights (seeded stand-ins): audio through Audio2Lip, 256 px, sound muxed."""
    ck = official_standins(3)
    t = np.arange(4000) / 16000
    media.write_wav(inputs / "short.wav", 0.3 * np.sin(2 * np.pi * 180 * t))
    out = inputs / "official.mp4"
    assert main(["animate", "--checkpoint-dir", str(ck), "--source", str(inputs / "src.png"), "--audio",
                 str(inputs / "short.wav"), "--out", str(out)]) == 0
    info = media.probe_video(out)
    assert info["n_frames"] == 6 and info["has_audio"] and info["width"] == 256

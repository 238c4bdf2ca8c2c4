"""`edtalk animate --source photo`: the photo's face is cropped as the release's crop_image2.py does."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import media
from edtalk.cli import main
from edtalk.model import EDTalk
from edtalk.presets import model_preset
from edtalk.source_photo import load_source_image

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "edtalk_source_reference.npz"


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from benchmarks.realfaces import load_photo, two_face_frame

    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(load_photo("astronaut")).save(d / "astronaut.png")
    Image.fromarray(two_face_frame(256)).save(d / "two.png")
    Image.fromarray(np.full((40, 40, 3), 128, np.uint8)).save(d / "plain.png")
    return d


def test_the_photo_is_cropped_as_the_release_and_fitted_to_the_model(photos):
    image, record = load_source_image(photos / "astronaut.png", 256)
    diff = np.abs(image.astype(int) - np.load(FIXTURE)["astronaut"])
    assert diff.max() <= 1 and (diff == 0).mean() >= 0.999 and record["faces"] == 1
    small, _ = load_source_image(photos / "astronaut.png", 64)
    assert small.shape == (64, 64, 3)
    assert np.abs(small.astype(int) - np.asarray(Image.fromarray(image).resize((64, 64), Image.BICUBIC))).max() == 0
    given, record = load_source_image(photos / "astronaut.png", 64, crop=False)
    assert record["crop"].startswith("none") and np.array_equal(given, media.read_image(photos / "astronaut.png", 64))


def test_no_face_warns_and_uses_the_image_as_given(photos):
    lines = []
    image, record = load_source_image(photos / "plain.png", 64, warn=lines.append)
    assert record["crop"] == "none (no face found)" and image.shape == (64, 64, 3)
    assert len(lines) == 1 and "no face found" in lines[0] and "used as given" in lines[0]


def test_cli_crops_and_refuses_two_faces(photos, tmp_path, capsys):
    torch.manual_seed(0)
    model = EDTalk(model_preset("smoke"))
    torch.save({"format": "edtalk-bench/model@1", "model_config": dataclasses.asdict(model.cfg),
                "model": model.state_dict()}, tmp_path / "model.pt")
    mouth = (np.random.default_rng(0).random((3, 64, 64, 3)) * 255).astype(np.uint8)
    media.write_video(tmp_path / "mouth.mp4", mouth)
    base = ["animate", "--checkpoint", str(tmp_path / "model.pt"), "--mouth", str(tmp_path / "mouth.mp4"),
            "--device", "cpu", "--out"]
    assert main([*base, str(tmp_path / "b.mp4"), "--source", str(photos / "two.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 faces" in err[0] and "--face 0..1" in err[0] and not (tmp_path / "b.mp4").exists()
    assert main([*base, str(tmp_path / "a.mp4"), "--source", str(photos / "two.png"), "--face", "1"]) == 0
    assert media.probe_video(tmp_path / "a.mp4")["n_frames"] == 3

"""face_alignment's 2D-FAN landmarks (metrics.crops.fan) and their use by the mouth-sync crop.

tests/fixtures/faces/fan_face_alignment.npz holds what face_alignment 1.3.4's own code returned
(`FaceAlignment.get_landmarks_from_directory`, as EAT's align_68.align_folder calls it, on PNG files of
clips.npz frames `case_keys[i]`[`case_frames[i]`]) with its SFDDetector on seeded S3FD weights
(metrics.crops.s3fd.seeded_state_dict(sfd_seed), renamed to its keys) and face_alignment's FAN
(models/fan.py, the network its TorchScript file holds, last stack's output) on
metrics.crops.fan.seeded_state_dict(fan_seed): every frame's first face's landmarks and first box, and for
the first frame's first face the 256-px network input, the heatmaps of every 4th point, each point's
heatmap sum and argmax.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from metrics.crops.fan import FAN, FanLandmarks, face_box_frame, fan_inputs, heatmap_points, load_fan_state
from metrics.crops.fan import seeded_state_dict as fan_state
from metrics.crops.s3fd import rename_keys
from metrics.crops.s3fd import seeded_state_dict as sfd_state
from metrics.errors import CheckpointMismatchError, MissingWeightsError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURES / "fan_face_alignment.npz"))


@pytest.fixture(scope="module")
def frames(ref):
    clips = np.load(FIXTURES / "clips.npz")
    return np.stack([clips[str(k)][int(t)] for k, t in zip(ref["case_keys"], ref["case_frames"], strict=True)])


@pytest.fixture(scope="module")
def fan(ref):
    sfd = rename_keys(sfd_state(int(ref["sfd_seed"])), to_face_alignment=True)
    return FanLandmarks(state_dict=fan_state(int(ref["fan_seed"])), device="cpu", detector_state=sfd)


def test_crop_and_heatmaps_match_face_alignment(ref, frames, fan):
    centre, scale = face_box_frame(ref["first_box"][0])
    crop = fan_inputs(frames[0], centre, scale)
    np.testing.assert_array_equal(crop, ref["crop0"])
    heatmaps, _, _ = fan.heatmaps(frames[0], ref["first_box"][0])
    assert np.abs(heatmaps[::4] - ref["heatmaps0_every4th"]).max() <= 1e-4
    np.testing.assert_allclose(heatmaps.astype(np.float64).sum((1, 2)), ref["heatmaps0_sums"], rtol=0, atol=1e-2)
    np.testing.assert_array_equal(heatmaps.reshape(68, -1).argmax(1), ref["heatmaps0_argmax"])


def test_landmarks_match_get_landmarks_from_directory(ref, frames, fan):
    boxes = [fan.detector(f) for f in frames]
    np.testing.assert_allclose(np.stack([b[0] for b in boxes]), ref["first_box"], rtol=0, atol=1e-3)  # float32 convs
    assert [len(b) for b in boxes] == list(ref["n_faces"])
    marks = fan(frames)
    np.testing.assert_array_equal(marks, ref["landmarks"])  # whole pixels: 1.3.4 truncates to int
    assert fan.name == "fan-2d + s3fd-fa" and fan.deviations == []


def test_heatmap_decoding_shifts_a_quarter_pixel_towards_the_higher_neighbour():
    hm = np.zeros((68, 64, 64), np.float32)
    hm[:, 10, 20] = 1.0
    hm[0, 10, 21], hm[0, 11, 20] = 0.5, 0.2    # right and below higher: +0.25, +0.25
    hm[1, 10, 19], hm[1, 9, 20] = 0.5, 0.2     # left and above higher: -0.25, -0.25
    hm[2, 0, 5] = 2.0                           # on the border: no shift
    preds, image = heatmap_points(hm, np.array([32.0, 32.0]), 0.32)
    np.testing.assert_array_equal(preds[0], [20.75, 10.75])
    np.testing.assert_array_equal(preds[1], [20.25, 10.25])
    np.testing.assert_array_equal(preds[2], [5.5, 0.5])
    np.testing.assert_array_equal(preds[3], [20.5, 10.5])  # equal neighbours: sign 0
    # 64 px of heatmap span 200 * 0.32 = 64 image px around (32, 32): x_img = x - 32 + 32, truncated
    np.testing.assert_array_equal(image[:4], [[20, 10], [20, 10], [5, 0], [20, 10]])
    assert image.dtype == np.int32


def test_state_dict_layout_is_2dfan4():
    state = FAN().state_dict()
    # 2DFAN4: 1129 tensors, 23.87 M values (4 stacks of depth-4 hourglasses, BN buffers included)
    assert len(state) == 1129 and sum(v.numel() for v in state.values()) == 23_874_504
    for key in ("conv1.weight", "m3.b2_plus_1.conv3.weight", "top_m_3.bn1.running_var", "conv4.downsample.2.weight",
                "l3.weight", "bl2.weight", "al2.weight", "m0.b1_4.bn3.num_batches_tracked"):
        assert key in state, key
    assert "bl3.weight" not in state and "m0.b2_plus_2.conv1.weight" not in state
    assert tuple(state["l3.weight"].shape) == (68, 256, 1, 1) and tuple(state["al0.weight"].shape) == (256, 68, 1, 1)


def test_a_wrapped_state_dict_is_unwrapped_and_a_foreign_one_is_one_line():
    state = {f"module.{k}": v for k, v in fan_state(1).items()}
    FanLandmarks(state_dict=state, device="cpu", detector=lambda frame: np.zeros((0, 5)))
    with pytest.raises(CheckpointMismatchError, match="2D-FAN"):
        FanLandmarks(state_dict={"conv1.weight": torch.zeros(1)}, device="cpu", detector="dlib-hog")


@pytest.mark.filterwarnings("ignore:`torch.jit.trace")  # the deprecated tracer is what wrote face_alignment's archives
def test_torchscript_archive_is_read_without_running_it(tmp_path):
    small = FAN(stacks=1).eval()
    small.load_state_dict({k: v for k, v in fan_state(2).items() if k in small.state_dict()})
    scripted = torch.jit.trace(small, torch.zeros(1, 3, 64, 64), check_trace=False)
    path = tmp_path / "2DFAN4-test.zip"
    scripted.save(str(path))
    state = load_fan_state(path)
    expected = small.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


def test_torchscript_archive_with_foreign_globals_is_refused(tmp_path, capsys):
    import pickle
    import zipfile

    class Evil:
        def __reduce__(self):
            return (print, ("ran",))

    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("bad/data.pkl", pickle.dumps(Evil()))
        archive.writestr("bad/code/__torch__/x.py", "")
    with pytest.raises(CheckpointMismatchError, match="not face_alignment's 2DFAN4 TorchScript archive"):
        load_fan_state(path)
    assert "ran" not in capsys.readouterr().out


def test_missing_fan_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="edtalk weights fetch fan-2d") as err:
        FanLandmarks(device="cpu")
    assert "\n" not in str(err.value) and "2DFAN4-cd938726ad.zip" in str(err.value)


@pytest.fixture(scope="module")
def fan_file(tmp_path_factory, ref):
    path = tmp_path_factory.mktemp("fan") / "2DFAN4-cd938726ad.zip"
    torch.save(fan_state(int(ref["fan_seed"])), path)  # a plain state dict under the archive's name is read too
    return path


def _weights_dir(tmp_path, ref, fan_file, with_detector: bool):
    (tmp_path / fan_file.name).symlink_to(fan_file)
    if with_detector:
        torch.save(rename_keys(sfd_state(int(ref["sfd_seed"])), to_face_alignment=True),
                   tmp_path / "s3fd-619a316812.pth")
    return tmp_path


def test_mouth_sync_uses_fan_when_its_weights_are_found(tmp_path, monkeypatch, ref, frames, fan_file):
    from metrics.crops import crop

    monkeypatch.setenv("EDTALK_WEIGHTS", str(_weights_dir(tmp_path, ref, fan_file, with_detector=True)))
    result = crop(frames[:1], "mouth-sync", device="cpu")
    assert result.detector == "fan-2d + s3fd-fa"
    assert not any("dlib" in d or "2D-FAN" in d for d in result.deviations)
    np.testing.assert_array_equal(result.boxes, ref["landmarks"][:1])
    assert result.frames.shape == (1, 224, 224, 3)


def test_mouth_sync_fan_on_dlib_boxes_without_s3fd_is_a_deviation(tmp_path, monkeypatch, ref, fan_file):
    from benchmarks.realfaces import load_photo
    from metrics.crops import crop

    pytest.importorskip("dlib")
    monkeypatch.setenv("EDTALK_WEIGHTS", str(_weights_dir(tmp_path, ref, fan_file, with_detector=False)))
    face = load_photo("astronaut")[::2, ::2].copy()
    result = crop(face, "mouth-sync", device="cpu")
    assert result.detector == "fan-2d + dlib-hog"
    assert any("dlib-hog instead of face_alignment's S3FD" in d and "s3fd-619a316812.pth" in d
               for d in result.deviations)
    assert result.boxes.shape == (1, 68, 2) and np.isfinite(result.boxes).all()


def test_an_explicit_fan_path_that_is_missing_is_one_line(tmp_path, frames):
    from metrics.crops import crop

    with pytest.raises(MissingWeightsError, match="fan-2d"):
        crop(frames[:1], "mouth-sync", fan=tmp_path / "nope.zip")

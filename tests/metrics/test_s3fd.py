"""S3FD (metrics.crops.s3fd) against syncnet_python's own detector code on seeded weights.

tests/fixtures/faces/s3fd_syncnet_python.npz holds two real photos (skimage's astronaut at 256 px, Grace
Hopper at half size), and for four (photo, scales) cases syncnet_python's network outputs (offsets, face
scores, priors; captured at the input of its Detect) and the boxes `S3FD.detect_faces(conf_th=0.9)` returned,
all for weights `metrics.crops.s3fd.seeded_state_dict(seed)`, whose rule its docstring gives.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from metrics.crops.s3fd import S3FD, S3FDNet, greedy_nms, seeded_state_dict
from metrics.errors import CheckpointMismatchError, MissingWeightsError

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "faces" / "s3fd_syncnet_python.npz"


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(FIXTURE))


@pytest.fixture(scope="module")
def detector(reference):
    return S3FD(state_dict=seeded_state_dict(int(reference["seed"])), device="cpu")


def _cases(reference):
    return sorted({int(k.split("_")[0][4:]) for k in reference if k.startswith("case")})


def test_network_outputs_match_syncnet_python(reference, detector):
    compared = 0
    for c in _cases(reference):
        image = reference[f"image_{int(reference[f'case{c}_image'])}"]
        for k, scale in enumerate(reference[f"case{c}_scales"]):
            loc, score, priors = detector.network(image, float(scale))
            np.testing.assert_allclose(priors.numpy(), reference[f"case{c}_scale{k}_priors"], rtol=0, atol=1e-7)
            assert np.abs(loc.numpy() - reference[f"case{c}_scale{k}_loc"]).max() <= 1e-4
            assert np.abs(score.numpy() - reference[f"case{c}_scale{k}_score"]).max() <= 1e-4
            compared += 1
    assert compared == 5


def test_boxes_after_decode_and_nms_match_syncnet_python(reference, detector):
    for c in _cases(reference):
        detector.scales = tuple(float(s) for s in reference[f"case{c}_scales"])
        boxes = detector.detect(reference[f"image_{int(reference[f'case{c}_image'])}"])
        expected = reference[f"case{c}_boxes"]
        assert len(expected) > 1, "the fixture should exercise NMS with several faces"
        assert boxes.shape == expected.shape
        np.testing.assert_allclose(boxes, expected, rtol=0, atol=1e-4)
    detector.scales = (0.25,)


def test_state_dict_layout_is_sfd_face_pth():
    keys = S3FDNet().state_dict()
    convs = [k for k in keys if k.startswith("vgg.") and k.endswith(".weight")]
    assert [int(k.split(".")[1]) for k in convs] == [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28, 31, 33]
    assert tuple(keys["conf.0.weight"].shape) == (4, 256, 3, 3) and tuple(keys["loc.5.weight"].shape) == (4, 256, 3, 3)
    assert {"L2Norm3_3.weight", "L2Norm4_3.weight", "L2Norm5_3.weight"} <= set(keys)


def test_greedy_nms_keeps_best_and_drops_overlaps():
    dets = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.95], [50, 50, 60, 60, 0.5]], dtype=float)
    assert greedy_nms(dets, 0.1).tolist() == [1, 2]
    assert greedy_nms(dets, 0.9).tolist() == [1, 0, 2]


def test_missing_or_wrong_weights_are_one_line_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="sfd_face.pth.*robots.ox.ac.uk"):
        S3FD()
    import torch

    torch.save({"vgg.0.weight": torch.zeros(1)}, tmp_path / "sfd_face.pth")
    with pytest.raises(CheckpointMismatchError, match="S3FD"):
        S3FD()


def test_weights_file_is_loaded_from_the_weights_dir(tmp_path, monkeypatch, reference):
    import torch

    torch.save(seeded_state_dict(int(reference["seed"])), tmp_path / "sfd_face.pth")
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))
    boxes = S3FD(device="cpu").detect(reference["image_0"])
    np.testing.assert_allclose(boxes, reference["case0_boxes"], rtol=0, atol=1e-4)


def test_frames_too_small_for_the_network_are_one_line(detector):
    from metrics.errors import InputError

    with pytest.raises(InputError, match="16x16 frame at detection scale 0.25 is under the 32 px"):
        detector.detect(np.zeros((16, 16, 3), np.uint8))
    assert detector.detect(np.zeros((128, 128, 3), np.uint8)).shape[1] == 5  # 32 px after scaling is enough


# face_alignment's S3FD (EDTalk's crop_video.py detector): tests/fixtures/faces/s3fd_face_alignment.npz holds
# what face_alignment 1.3.5's own SFDDetector returned, called through crop_video.py's own `extract_bbox`, on
# weights seeded_state_dict(seed) renamed to its keys: for skimage's astronaut at 256 px (case 0) and resized
# to 800x720 (case 1, shrunk to 640 first): the candidates' count, column sums and every 50th row, and the boxes.
FA_FIXTURE = FIXTURE.with_name("s3fd_face_alignment.npz")


def _fa_case(k: int):
    import cv2

    from benchmarks.realfaces import load_photo

    astro = load_photo("astronaut")
    return astro[::2, ::2].copy() if k == 0 else cv2.resize(astro, (800, 720), interpolation=cv2.INTER_LINEAR)


@pytest.fixture(scope="module")
def fa_reference():
    return dict(np.load(FA_FIXTURE))


@pytest.fixture(scope="module")
def fa_detector(fa_reference):
    from metrics.crops.s3fd import FaceAlignmentSFD, rename_keys

    state = rename_keys(seeded_state_dict(int(fa_reference["seed"])), to_face_alignment=True)
    assert set(rename_keys(state)) == set(S3FDNet().state_dict())  # the renaming is a bijection
    return FaceAlignmentSFD(state_dict=state, device="cpu")


@pytest.mark.parametrize("k", [0, 1])
def test_face_alignment_candidates_match(fa_reference, fa_detector, k):
    from skimage import img_as_ubyte
    from skimage.transform import resize

    image = _fa_case(k)
    if k == 1:  # crop_video's extract_bbox shrinks frames over 640 px
        factor = max(image.shape[:2]) / 640.0
        image = img_as_ubyte(resize(image, (int(image.shape[0] / factor), int(image.shape[1] / factor))))
    found = fa_detector.candidates(image)
    assert len(found) == int(fa_reference[f"case{k}_n_candidates"])
    np.testing.assert_allclose(found[::50], fa_reference[f"case{k}_candidates_every_50th"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(found.sum(0), fa_reference[f"case{k}_candidates_sum"], rtol=1e-9)


@pytest.mark.parametrize("k", [0, pytest.param(1, marks=pytest.mark.slow)])  # case 1: NMS over 30k seeded anchors
def test_face_alignment_boxes_match_extract_bbox(fa_reference, fa_detector, k):
    boxes = fa_detector.detect(_fa_case(k))
    expected = fa_reference[f"case{k}_boxes"]
    assert boxes.shape == (len(expected), 5) and len(expected) > 1
    np.testing.assert_allclose(boxes[:, :4], expected, rtol=0, atol=1e-6)

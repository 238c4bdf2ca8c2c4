"""Pose error: Hopenet loads the release's layout, decodes bins like deep-head-pose, MAE equals numpy's."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError
from metrics.functional.pose import hopenet_degrees, pose_error
from metrics.pose import Hopenet, HopenetEstimator, PoseError, expand_box, load_hopenet


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(5)
    m = Hopenet()
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_var.uniform_(0.5, 1.5)
    return m.eval()


def test_state_dict_layout_is_the_release(model):
    import torchvision

    body = {
        k: tuple(v.shape)
        for k, v in torchvision.models.resnet50().state_dict().items()
        if not k.startswith("fc.")
    }
    heads = {
        f"fc_{a}.{p}": ((66, 2048) if p == "weight" else (66,))
        for a in ("yaw", "pitch", "roll")
        for p in ("weight", "bias")
    }
    heads.update({"fc_finetune.weight": (3, 2051), "fc_finetune.bias": (3,)})
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {**body, **heads}


def test_release_file_loads(model, tmp_path, monkeypatch):
    # the release is a plain state dict saved by an old PyTorch: no num_batches_tracked, legacy format
    state = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))
    torch.save(state, tmp_path / "hopenet_robust_alpha1.pkl", _use_new_zipfile_serialization=False)
    loaded = load_hopenet(verify=False)
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        for a, b in zip(loaded(x), model(x), strict=True):
            assert torch.allclose(a, b, atol=1e-5)
    torch.save({"fc_yaw.weight": torch.zeros(3)}, tmp_path / "bad.pkl")
    with pytest.raises(CheckpointMismatchError, match="not a Hopenet"):
        load_hopenet(tmp_path / "bad.pkl", verify=False)


def test_missing_weights_one_line():
    with pytest.raises(MissingWeightsError, match="hopenet_robust_alpha1.pkl") as err:
        PoseError().update_frames(np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8))
    assert "\n" not in str(err.value)


def test_decoding_one_hot_and_uniform():
    logits = torch.full((66, 66), -1e4)
    logits[torch.arange(66), torch.arange(66)] = 0.0  # row k: all mass on bin k
    assert torch.allclose(hopenet_degrees(logits), torch.arange(66.0) * 3 - 99, atol=1e-4)
    assert hopenet_degrees(torch.zeros(66)).item() == pytest.approx(32.5 * 3 - 99)
    with pytest.raises(InputError, match="66 bins"):
        hopenet_degrees(torch.zeros(2, 65))


def test_estimator_preprocessing_matches_torchvision_pil_pipeline(model):
    from PIL import Image
    from torchvision import transforms

    frames = np.random.default_rng(2).integers(0, 256, (2, 224, 300, 3), dtype=np.uint8)
    est = HopenetEstimator(model)
    ref_tf = transforms.Compose(
        [
            transforms.Resize(224),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
        ]
    )
    ref = torch.stack([ref_tf(Image.fromarray(f)) for f in frames])
    assert torch.allclose(est.preprocess(frames), ref, atol=1e-6)
    with torch.no_grad():
        yaw, pitch, roll = model(ref)
    idx = torch.arange(66, dtype=torch.float32)  # deep-head-pose's decoding, written out
    expected = torch.stack([(torch.softmax(t, 1) * idx).sum(1) * 3 - 99 for t in (yaw, pitch, roll)], 1)
    assert np.allclose(est(frames), expected.numpy(), atol=1e-4)


def test_mae_matches_numpy(rng):
    pred, target = rng.uniform(-90, 90, (50, 3)), rng.uniform(-90, 90, (50, 3))
    pred[7, 1] = np.nan  # a frame without a face on one side: skipped
    r = pose_error(pred, target)
    keep = np.ones(50, bool)
    keep[7] = False
    d = pred[keep] - target[keep]
    assert [r["yaw"], r["pitch"], r["roll"]] == pytest.approx(np.mean(np.abs(d), axis=0).tolist())
    assert r["mean"] == pytest.approx(np.mean(np.abs(d))) and r["l2"] == pytest.approx(
        np.sqrt((d**2).sum(1)).mean()
    )
    assert r["frames"] == 49 and r["skipped"] == 1


def test_streaming_pools_frames_and_plugs_an_estimator(rng):
    a, b = rng.normal(0, 20, (10, 3)), rng.normal(0, 20, (10, 3))
    m = PoseError()
    m.update(a[:3], b[:3])
    m.update(a[3:], b[3:])
    r = m.compute()
    ref = pose_error(a, b)
    assert all(r[k] == pytest.approx(ref[k]) for k in ("yaw", "pitch", "roll", "mean", "l2"))
    assert m.higher_is_better is False

    def estimator(frames):  # the first pixel's value as yaw, 0 pitch/roll
        return np.stack([frames[:, 0, 0, 0].astype(float), np.zeros(len(frames)), np.zeros(len(frames))], 1)

    pred = np.zeros((4, 4, 4, 3), np.uint8)
    pred[:, 0, 0, 0] = [10, 20, 30, 40]
    m2 = PoseError(estimator=estimator)
    m2.update_frames(pred, np.zeros((2, 4, 4, 3), np.uint8))  # pairs pred frames 0 and 2 with GT 0, 1
    assert m2.compute()["yaw"] == pytest.approx(20.0) and m2.compute()["mean"] == pytest.approx(20 / 3)


def test_expand_box_and_bad_inputs():
    assert expand_box((40, 40, 80, 100), (120, 100)) == (20, 0, 100, 115)
    with pytest.raises(InputError, match=r"\(T, 3\)"):
        pose_error(np.zeros((4, 2)), np.zeros((4, 2)))
    with pytest.raises(InputError, match="differ in length"):
        pose_error(np.zeros((4, 3)), np.zeros((3, 3)))
    with pytest.raises(InputError, match="compute"):
        PoseError().compute()

"""Inception-FID: our FID Inception equals pytorch-fid's InceptionV3([3]) on the same (stand-in) weights,
and the streaming FID equals np.cov + scipy.linalg.sqrtm on the same features."""
import warnings

import numpy as np
import pytest
import torch

from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError
from metrics.fid import FrechetInceptionDistance
from metrics.functional.fid import frechet_inception_distance, inception_features
from metrics.inception import load_fid_inception

FILENAME = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="module")
def weights(tmp_path_factory, fid_inception_state):
    """The seeded, He-initialised stand-in of the exact architecture (tests/conftest.py)."""
    path = tmp_path_factory.mktemp("fid_weights") / FILENAME
    torch.save(fid_inception_state, path)
    return path


@pytest.fixture(scope="module")
def model(weights):
    return load_fid_inception(weights, device="cpu", verify=False)


def _images(n, h, w, seed, lo=0.0, hi=1.0):
    g = torch.Generator().manual_seed(seed)
    return lo + (hi - lo) * torch.rand(n, 3, h, w, generator=g)


def test_loads_and_gives_pool3_features(model, weights):
    state = torch.load(weights, weights_only=True)
    assert set(model.state_dict()) == set(state)
    assert "fc.weight" in state and tuple(state["fc.weight"].shape) == (1008, 2048)
    f = inception_features(_images(2, 40, 56, 1), model)
    assert f.shape == (2, 2048) and f.dtype == np.float64 and np.isfinite(f).all() and f.std() > 1e-2
    # uint8 is read as x / 255, exactly pytorch-fid's ToTensor()
    u8 = (_images(1, 32, 32, 2) * 255).round().byte()
    assert np.allclose(inception_features(u8, model), inception_features(u8.float() / 255, model), atol=0)


def test_matches_pytorch_fid_features(model, weights, monkeypatch):
    pfi = pytest.importorskip("pytorch_fid.inception")
    state = torch.load(weights, weights_only=True)
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: state)
    ref = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    x = _images(3, 70, 90, 3)  # not 299: exercises the resize
    with torch.no_grad():
        expected = ref(x)[0].flatten(1).double().numpy()
    ours = inception_features(x, model)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(ours, expected, rtol=0, atol=1e-5)


def test_streaming_fid_equals_scipy(model):
    from scipy import linalg

    real, fake = _images(6, 48, 48, 4), _images(7, 48, 48, 5, 0.2, 0.9)
    a, b = inception_features(real, model), inception_features(fake, model)
    m1, m2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert ref > 1e-2
    fid = FrechetInceptionDistance(inception=model, batch_size=4)
    fid.update(real[:4], real=True)
    fid.update(real[4:], real=True)
    fid.update(fake, real=False)
    with pytest.warns(UserWarning, match="biased"):
        value = fid.compute()
    assert value == pytest.approx(ref, rel=1e-6)
    assert frechet_inception_distance(real, fake, model) == pytest.approx(ref, rel=1e-6)
    assert FrechetInceptionDistance.higher_is_better is False
    # precomputed features stream into the same running sums
    pre = FrechetInceptionDistance(inception=model)
    pre.update_features(a, real=True)
    pre.update_features(torch.from_numpy(b), real=False)
    for key in ("real_sum", "real_outer", "fake_sum", "fake_outer"):
        np.testing.assert_allclose(getattr(pre, key), getattr(fid, key), rtol=1e-9, atol=1e-9)
    assert (pre.real_n, pre.fake_n) == (6, 7)
    with pytest.raises(InputError, match="2048"):
        pre.update_features(a[:, :64], real=True)


def test_input_and_weight_errors(model, weights, tmp_path):
    with pytest.raises(InputError, match=r"\(x \+ 1\) / 2"):
        inception_features(_images(1, 32, 32, 6, -1, 1), model)
    with pytest.raises(InputError, match="255"):
        inception_features(_images(1, 32, 32, 6, 0, 255), model)
    with pytest.raises(InputError, match=r"\(N, 3, H, W\)"):
        inception_features(torch.rand(1, 1, 32, 32), model)
    with pytest.raises(MissingWeightsError) as info:
        FrechetInceptionDistance()
    assert FILENAME in str(info.value) and "\n" not in str(info.value)
    bad = tmp_path / FILENAME
    torch.save({"Conv2d_1a_3x3.conv.weight": torch.zeros(32, 3, 3, 3)}, bad)
    with pytest.raises(CheckpointMismatchError, match="missing"):
        load_fid_inception(bad, verify=False)

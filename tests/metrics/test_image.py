"""PSNR/SSIM equal scikit-image's on uint8 RGB; streaming aggregation is as documented."""
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from metrics.errors import InputError
from metrics.functional.image import psnr_per_frame, ssim_per_frame
from metrics.image import PeakSignalNoiseRatio, StructuralSimilarity


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 40, 48, 3)) * 255).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 30, a.shape), 0, 255).astype(np.uint8)
    return a, b


def test_psnr_matches_skimage(pair):
    a, b = pair
    ref = [peak_signal_noise_ratio(b[i], a[i], data_range=255) for i in range(3)]
    assert np.allclose(psnr_per_frame(a, b), ref, atol=1e-10)


def test_ssim_matches_skimage(pair):
    a, b = pair
    ref = [structural_similarity(a[i], b[i], channel_axis=-1, data_range=255) for i in range(3)]
    assert np.allclose(ssim_per_frame(a, b), ref, atol=1e-10)


def test_streaming_aggregations(pair):
    a, b = pair
    frames, videos = PeakSignalNoiseRatio("frames"), PeakSignalNoiseRatio("videos")
    for m in (frames, videos):
        m.update(a[:1], b[:1])
        m.update(a[1:], b[1:])
    per = psnr_per_frame(a, b)
    assert frames.compute() == pytest.approx(per.mean())
    assert videos.compute() == pytest.approx(np.mean([per[0], per[1:].mean()]))
    s = StructuralSimilarity()
    s.update(a, b)
    assert s.compute() == pytest.approx(ssim_per_frame(a, b).mean())


def test_bad_inputs(pair):
    a, b = pair
    with pytest.raises(InputError, match="uint8"):
        psnr_per_frame(a.astype(np.float32) / 255, b.astype(np.float32) / 255)
    with pytest.raises(InputError, match="differ in shape"):
        psnr_per_frame(a, b[:2])
    with pytest.raises(InputError, match="aggregation"):
        PeakSignalNoiseRatio("median")


def test_fid_streaming_equals_direct_scipy():
    from scipy import linalg

    from metrics.functional.image import fid_from_features
    from metrics.image import FrechetDistance

    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(300, 8)), rng.normal(0.3, 1.2, size=(250, 8))
    # straightforward reference
    m1, m2, s1, s2 = a.mean(0), b.mean(0), np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    ref = ((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real)
    assert fid_from_features(a, b) == pytest.approx(ref, rel=1e-9)
    m = FrechetDistance()
    for i in range(0, 300, 70):
        m.update(a[i:i + 70], real=True)
    for i in range(0, 250, 33):
        m.update(b[i:i + 33], real=False)
    assert m.compute() == pytest.approx(ref, rel=1e-7)
    assert fid_from_features(a, a) == pytest.approx(0, abs=1e-6)

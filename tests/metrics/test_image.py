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

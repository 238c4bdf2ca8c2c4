"""Mel features equal the release's (official audio.py output, mel_fixture.npz) exactly."""
import numpy as np
import pytest

from edtalk.audio_features import crop_to_frames, mel_basis, mel_windows, melspectrogram
from metrics.errors import InputError


@pytest.fixture(scope="module")
def fixture(parity_dir):
    return dict(np.load(parity_dir / "mel_fixture.npz"))


def test_melspectrogram_matches_release(fixture):
    mel = melspectrogram(crop_to_frames(fixture["wav"]))
    assert mel.shape == fixture["mel"].shape and mel.dtype == np.float32
    assert np.abs(mel - fixture["mel"]).max() == 0  # librosa's STFT and filterbank in float64, as the release


def test_windows_match_release(fixture):
    w = mel_windows(fixture["mel"], fixture["windows"].shape[0])
    assert w.shape == fixture["windows"].shape
    assert np.abs(w - fixture["windows"]).max() == 0


def test_filterbank_is_the_releases(fixture):
    librosa = pytest.importorskip("librosa")
    ref_basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)  # audio._build_mel_basis
    assert mel_basis().shape == (80, 401) and np.array_equal(mel_basis(), ref_basis)


def test_bad_audio_is_refused():
    with pytest.raises(InputError, match="mono"):
        melspectrogram(np.zeros((2, 16000), np.float32))
    with pytest.raises(InputError, match="too short"):
        melspectrogram(np.zeros(100, np.float32))
    with pytest.raises(InputError, match="NaN"):
        melspectrogram(np.full(16000, np.nan, np.float32))

"""Mel features match the release's (fixture) and an independent librosa computation."""
import numpy as np
import pytest

from edtalk.audio_features import crop_to_frames, mel_basis, mel_windows, melspectrogram
from metrics.errors import InputError


@pytest.fixture(scope="module")
def fixture(parity_dir):
    return dict(np.load(parity_dir / "mel_fixture.npz"))


def test_melspectrogram_matches_release(fixture):
    mel = melspectrogram(crop_to_frames(fixture["wav"]))
    assert mel.shape == fixture["mel"].shape
    assert np.abs(mel - fixture["mel"]).max() < 1e-4


def test_windows_match_release(fixture):
    w = mel_windows(fixture["mel"], fixture["windows"].shape[0])
    assert w.shape == fixture["windows"].shape
    assert np.abs(w - fixture["windows"]).max() == 0


def test_against_librosa(fixture):
    librosa = pytest.importorskip("librosa")
    ref_basis = librosa.filters.mel(sr=16000, n_fft=800, n_mels=80, fmin=55, fmax=7600)
    assert np.abs(mel_basis() - ref_basis).max() < 1e-6
    wav = crop_to_frames(fixture["wav"])
    from scipy.signal import lfilter

    y = lfilter([1, -0.97], [1], wav)
    spec = np.abs(librosa.stft(y=y, n_fft=800, hop_length=200, win_length=800))
    db = 20 * np.log10(np.maximum(1e-5, ref_basis @ spec)) - 20
    ref = np.clip(8 * ((db + 100) / 100) - 4, -4, 4)
    assert np.abs(melspectrogram(wav) - ref).max() < 1e-3


def test_bad_audio_is_refused():
    with pytest.raises(InputError, match="mono"):
        melspectrogram(np.zeros((2, 16000), np.float32))
    with pytest.raises(InputError, match="too short"):
        melspectrogram(np.zeros(100, np.float32))
    with pytest.raises(InputError, match="NaN"):
        melspectrogram(np.full(16000, np.nan, np.float32))

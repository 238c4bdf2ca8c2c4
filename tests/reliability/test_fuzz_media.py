"""Fuzzing the video/audio readers on mutated files: every outcome is either a decoded clip or the
documented one-line InputError naming the file — never another exception or a crash."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.media import read_audio, read_video, write_video
from metrics.errors import InputError


@pytest.fixture(scope="module")
def clean_mp4(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "clip.mp4"
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    audio = (0.1 * np.sin(np.linspace(0, 400, 8 * 640))).astype(np.float32)
    write_video(path, frames, fps=25, audio=audio, sample_rate=16000)
    return path  # a path, not bytes: hypothesis prints the fixture on failure


def _check(path, reader):
    try:
        out = reader(path)
    except InputError as exc:
        msg = str(exc)
        assert "\n" not in msg and str(path) in msg, msg
        return "error"
    return out


def _check_audio(path):
    out = _check(path, read_audio)
    if not isinstance(out, str):
        assert out.dtype == np.float32 and out.ndim == 1 and np.isfinite(out).all()


mutation = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.99)),
    st.tuples(st.just("flip"), st.lists(st.tuples(st.floats(0, 0.999), st.integers(0, 255)), min_size=1, max_size=16)),
    st.tuples(st.just("zero"), st.tuples(st.floats(0, 0.99), st.integers(1, 512))),
)


def _mutate(data: bytes, m) -> bytes:
    kind, arg = m
    b = bytearray(data)
    if kind == "truncate":
        return bytes(b[: int(len(b) * arg)])
    if kind == "flip":
        for pos, val in arg:
            b[int(pos * len(b))] = val
        return bytes(b)
    start, n = arg
    s = int(start * len(b))
    b[s:s + n] = bytes(len(b[s:s + n]))
    return bytes(b)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=mutation)
def test_mutated_video_reads_or_fails_with_one_line(tmp_path, clean_mp4, m):
    path = tmp_path / "mutated.mp4"
    path.write_bytes(_mutate(clean_mp4.read_bytes(), m))
    out = _check(path, read_video)
    if out != "error":
        assert out.frames.dtype == np.uint8 and out.frames.ndim == 4 and out.frames.shape[-1] == 3
    _check_audio(path)


def test_empty_and_text_files_are_refused(tmp_path):
    for name, data in (("empty.mp4", b""), ("text.mp4", b"not a video at all\n" * 10)):
        p = tmp_path / name
        p.write_bytes(data)
        assert _check(p, read_video) == "error"
        assert _check(p, read_audio) == "error"


@pytest.fixture(scope="module")
def clean_wav(tmp_path_factory):
    from benchmarks.media import write_wav

    path = tmp_path_factory.mktemp("fuzz") / "speech.wav"
    write_wav(path, (0.1 * np.sin(np.linspace(0, 900, 4000))).astype(np.float32), 16000)
    return path


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(m=mutation)
def test_mutated_wav_reads_or_fails_with_one_line(tmp_path, clean_wav, m):
    path = tmp_path / "mutated.wav"
    path.write_bytes(_mutate(clean_wav.read_bytes(), m))
    _check_audio(path)

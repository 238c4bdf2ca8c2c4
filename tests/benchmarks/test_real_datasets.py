"""MEAD/HDTF readers on the official lists, and preprocessing, on tiny fixture files made here."""
from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import media
from benchmarks.datasets.real import (
    HDTF,
    MEAD,
    load_official_lists,
    official_list,
    official_test_names,
    parse_mead_name,
    preprocess_clip,
    resample_indices,
)
from metrics.errors import InputError


def test_bundled_official_lists_parse(tmp_path):
    lists = load_official_lists()  # the copies shipped as package data, no --lists
    mead_test = MEAD(tmp_path).clips("test")
    assert {c.identity for c in mead_test} == {"M003", "M030", "W009", "W015"}  # the paper's test speakers
    hdtf = HDTF(tmp_path)
    assert not set(hdtf.videos("train")) & set(hdtf.videos("test"))
    assert len(mead_test) + len(hdtf.segments("test")) == len(lists["test"]) == 4287
    assert [c.name for c in mead_test] == official_test_names("mead")
    assert len(official_test_names("hdtf")) == len(hdtf.segments("test"))


def test_lists_dir_overrides_the_bundled_lists(tmp_path):
    d = _lists(tmp_path, ["M005#happy#level_3#002"], ["W009#sad#level_2#001", "RD_Radio1_000#3"])
    assert official_list("test", d) == ["W009#sad#level_2#001", "RD_Radio1_000#3"]
    assert official_test_names("mead", d) == ["W009#sad#level_2#001"]
    assert official_test_names("hdtf", d) == ["RD_Radio1_000#3"]
    only_test = tmp_path / "only-test"
    only_test.mkdir()
    (only_test / "test.json").write_text(json.dumps(["M003#angry#level_1#001"]))
    assert official_test_names("mead", only_test) == ["M003#angry#level_1#001"]  # no train.json needed for this
    with pytest.raises(InputError, match=r"train.json not found; --lists DIR must hold train.json"):
        load_official_lists(only_test)


def _lists(tmp_path, train, test):
    d = tmp_path / "lists"
    d.mkdir()
    (d / "train.json").write_text(json.dumps(train))
    (d / "test.json").write_text(json.dumps(test))
    return d


def test_mead_layout_and_preprocess(tmp_path):
    root = tmp_path / "MEAD"
    vid = root / "M003" / "video" / "front" / "happy" / "level_2" / "001.mp4"
    aud = root / "M003" / "audio" / "happy" / "level_2" / "001.m4a"
    rng = np.random.default_rng(0)
    frames = (rng.random((60, 48, 64, 3)) * 255).astype(np.uint8)  # 2 s at 30 fps, not square
    media.write_video(vid, frames, fps=30)
    t = np.arange(44100 * 2) / 44100
    # audio at 44.1 kHz stereo-like content in an AAC .m4a, as MEAD ships it
    import av

    aud.parent.mkdir(parents=True)
    with av.open(str(aud), "w", format="ipod") as c:
        s = c.add_stream("aac", rate=44100)
        s.layout = "mono"
        pcm = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
        for i in range(0, len(pcm), 1024):
            f = av.AudioFrame.from_ndarray(pcm[None, i:i + 1024], format="flt", layout="mono")
            f.sample_rate, f.pts = 44100, i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    lists = _lists(tmp_path, ["M005#sad#level_1#004"], ["M003#happy#level_2#001", "M003#happy#level_2#002"])
    mead = MEAD(root, lists)
    have, missing = mead.available("test")
    assert [c.name for c in have] == ["M003#happy#level_2#001"] and missing == ["M003#happy#level_2#002"]
    rec = preprocess_clip(have[0].video, tmp_path / "out.mp4", tmp_path / "out.wav", audio=have[0].audio, size=32)
    assert rec["resampled"] and rec["frames"] == 50 and rec["source_fps"] == 30
    info = media.probe_video(tmp_path / "out.mp4")
    assert info["fps"] == 25 and info["n_frames"] == 50 and info["width"] == 32 == info["height"]
    wav = media.read_audio(tmp_path / "out.wav")
    assert abs(len(wav) - 32000) <= 1 and abs(rec["audio_video_mismatch_s"]) < 0.01


def test_hdtf_segments_are_five_seconds(tmp_path):
    lists = _lists(tmp_path, ["RD_Radio1_000#1"], ["WDA_Test_000#1", "WDA_Test_000#3"])
    segs = HDTF(tmp_path, lists).segments("test")
    assert [(s.video_id, s.start) for s in segs] == [("WDA_Test_000", 0.0), ("WDA_Test_000", 10.0)]


def test_bad_names_and_lists(tmp_path):
    with pytest.raises(InputError, match="not a MEAD clip name"):
        parse_mead_name("M003#joyful#level_1#001")
    with pytest.raises(InputError, match="twice"):
        load_official_lists(_lists(tmp_path, ["a#1", "a#1"], []))
    with pytest.raises(InputError, match="not found"):
        load_official_lists(tmp_path / "nowhere")


def test_resample_indices():
    assert resample_indices(60, 30, 25).tolist() == [int(i * 30 / 25 + 1e-6) for i in range(50)]
    assert resample_indices(50, 25, 25).tolist() == list(range(50))

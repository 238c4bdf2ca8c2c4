"""Bad media and data inputs (issue #9 A): each one is either a one-line InputError naming the file and
what to do, or a documented conversion that is recorded. Every input is built here with PyAV/soundfile."""
from __future__ import annotations

import csv
import json
from fractions import Fraction

import av
import numpy as np
import pytest
import soundfile as sf
import torch

from benchmarks import media
from benchmarks.datasets.common import parse_names
from benchmarks.datasets.real import HDTF, MEAD, load_official_lists, preprocess_clip, resample_indices
from benchmarks.datasets.synthetic import SyntheticWorld
from benchmarks.protocols.engine import Case, folder_method
from metrics.errors import InputError
from metrics.functional.image import psnr, ssim
from metrics.landmarks import MouthLandmarkDistance


def _one_line(excinfo, *parts):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for p in parts:
        assert str(p) in msg, (p, msg)
    return msg


def _ramp(n, h=32, w=32):
    """Frame i is flat grey 8 * i (so a decoded frame tells which source frame it was)."""
    return np.repeat((8 * np.arange(n, dtype=np.uint8))[:, None, None, None], h * w * 3).reshape(n, h, w, 3)


def _which(frames):
    return np.round(frames.reshape(len(frames), -1).mean(1) / 8).astype(int)


def _write(path, frames, codec, pix_fmt, src_fmt, rate=25, pts_ms=None):
    """Encode `frames` (uint8, layout of `src_fmt`) with any codec/pixel format; `pts_ms` gives frame times."""
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], pix_fmt
        if pts_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format=src_fmt)
            if pts_ms is not None:
                vf.pts, vf.time_base = int(pts_ms[i]), Fraction(1, 1000)
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


# -- 1. videos -------------------------------------------------------------------------------------

def test_truncated_mp4_is_one_line_error(tmp_path):
    good = media.write_video(tmp_path / "good.mp4", _ramp(10))
    bad = tmp_path / "cut.mp4"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    with pytest.raises(InputError) as e:
        media.read_video(bad)
    _one_line(e, bad)


def test_zero_frame_video(tmp_path):
    path = tmp_path / "empty.mkv"  # a video stream without a single packet (the audio makes FFmpeg write it)
    with av.open(str(path), "w") as c:
        v = c.add_stream("ffv1", rate=25)
        v.width = v.height = 32
        v.pix_fmt = "yuv420p"
        a = c.add_stream("aac", rate=16000)
        a.layout = "mono"
        f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
        f.sample_rate, f.pts = 16000, 0
        for p in [*a.encode(f), *a.encode(None)]:
            c.mux(p)
    assert media.probe_video(path)["n_frames"] == 0  # counted from packets, not guessed from the duration
    with pytest.raises(InputError) as e:
        media.read_video(path)
    _one_line(e, path, "zero decodable frames")


def test_variable_frame_rate_is_probed_refused_or_resampled_by_timestamp(tmp_path):
    times = np.r_[np.arange(15) * 40, 600 + np.arange(15) * 20]  # 25 fps for 0.6 s, then 50 fps
    path = _write(tmp_path / "vfr.mp4", _ramp(30), "libx264", "yuv420p", "rgb24", pts_ms=times)
    info = media.probe_video(path)
    assert info["vfr"] and info["n_frames"] == 30
    assert info["fps_min"] == pytest.approx(25) and info["fps_max"] == pytest.approx(50)
    clip = media.read_video(path)
    assert clip.vfr and np.allclose(clip.times, times / 1000)
    with pytest.raises(InputError) as e:
        media.conform_fps(clip, 25, policy="refuse")
    _one_line(e, path, "variable frame rate (25-50 fps", "ffmpeg -i IN -r 25")
    out, rec = media.conform_fps(clip, 25, policy="resample")
    # independent rule: output frame k shows the last source frame whose time is <= k / 25
    n_out = int(np.floor((times[-1] + 20) / 40 + 1e-6))
    expected = [max(i for i in range(30) if times[i] <= 40 * k + 1e-3) for k in range(n_out)]
    assert rec["action"] == "resampled" and rec["vfr"] and rec["frames_out"] == n_out == 22
    assert rec["dropped"] == 30 - len(set(expected)) == 8
    assert out.fps == 25 and not out.vfr and out.conversions["fps"] is rec
    assert _which(out.frames).tolist() == expected


def test_fps_30_is_refused_with_measured_rate_or_resampled(tmp_path):
    path = media.write_video(tmp_path / "thirty.mp4", _ramp(30), fps=30)
    info = media.probe_video(path)
    assert info["fps"] == 30 and not info["vfr"]
    with pytest.raises(InputError) as e:
        media.conform_fps(path, 25, policy="refuse")
    _one_line(e, path, "30.000 fps but 25 fps is needed")
    out, rec = media.conform_fps(path, 25)
    assert rec == {"source_fps": 30.0, "target_fps": 25.0, "vfr": False, "policy": "resample", "frames_in": 30,
                   "action": "resampled", "method": "nearest earlier frame (ffmpeg -r)", "frames_out": 25,
                   "repeated": 0, "dropped": 5}
    assert _which(out.frames).tolist() == resample_indices(30, 30, 25).tolist()
    same, rec25 = media.conform_fps(media.read_video(media.write_video(tmp_path / "ok.mp4", _ramp(5))), 25)
    assert rec25["action"] == "none" and same.fps == 25
    with pytest.raises(InputError, match="policy"):
        media.conform_fps(same, 25, policy="drop")


def test_wrong_size_is_refused_with_actual_expected_and_fix(tmp_path):
    clip = media.read_video(media.write_video(tmp_path / "wide.mp4", _ramp(2, 48, 64)))
    with pytest.raises(InputError) as e:
        media.check_size(clip, 32)
    _one_line(e, tmp_path / "wide.mp4", "64x48 (WxH) but 32x32 is needed", "preprocess_clip")
    media.check_size(clip, (48, 64))
    small = media.read_video(tmp_path / "wide.mp4", size=32)
    media.check_size(small, 32)
    assert small.conversions["size"] == {"from": [64, 48], "to": [32, 32]}


def test_gray_and_alpha_frames_become_rgb_and_are_recorded(tmp_path):
    gray = _write(tmp_path / "gray.mkv", _ramp(4)[..., 0], "ffv1", "gray", "gray")
    info = media.probe_video(gray)
    assert info["gray"] and not info["alpha"] and info["pix_fmt"] == "gray"
    clip = media.read_video(gray)
    assert clip.frames.dtype == np.uint8 and clip.frames.shape == (4, 32, 32, 3)
    assert (clip.frames == _ramp(4)).all()  # ffv1 is lossless: R = G = B = the gray value
    assert clip.conversions["color"] == {"pix_fmt": "gray", "to": "rgb24", "note": "gray replicated to R=G=B"}

    rgba = np.zeros((3, 32, 32, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2] = 200, 100, 50
    rgba[..., 3] = np.arange(3)[:, None, None] * 100  # transparency must not change the colour
    path = _write(tmp_path / "alpha.mov", rgba, "png", "rgba", "rgba")
    assert media.probe_video(path)["alpha"]
    clip = media.read_video(path)
    assert clip.frames.shape == (3, 32, 32, 3) and (clip.frames == rgba[..., :3]).all()
    assert clip.conversions["color"]["note"] == "alpha channel dropped (not composited)"
    assert "color" not in media.read_video(media.write_video(tmp_path / "rgb.mp4", _ramp(2))).conversions


def test_missing_audio_track_is_refused(tmp_path):
    path = media.write_video(tmp_path / "silent.mp4", _ramp(3))
    assert not media.probe_video(path)["has_audio"]
    with pytest.raises(InputError) as e:
        media.read_audio(path)
    _one_line(e, path, "has no audio track")


def test_audio_video_length_rule():
    rec = media.check_av_sync(50, 25, 32000, 16000)
    assert rec["action"] == "none" and rec["mismatch_s"] == 0
    wav = np.ones(32000 - 400, np.float32)  # 25 ms short: within one frame, padded with silence
    out, rec = media.fit_audio_to_video(wav, 50, 25, 16000)
    assert len(out) == 32000 and (out[-400:] == 0).all() and (out[:-400] == 1).all()
    assert rec["action"] == "pad" and rec["within_one_frame"] and rec["mismatch_s"] == -0.025
    out, rec = media.fit_audio_to_video(np.ones(32000 + 4800, np.float32), 50, 25, 16000)  # 0.3 s longer
    assert len(out) == 32000 and rec["action"] == "trim" and not rec["within_one_frame"]
    assert rec["mismatch_frames"] == 7.5
    with pytest.raises(InputError) as e:
        media.fit_audio_to_video(np.ones(32000 + 19200), 50, 25, 16000, source="clip.mp4")  # 1.2 s longer
    _one_line(e, "clip.mp4", "the audio is 1.200 s (30.0 frames at 25 fps) longer than the video", "0.5 s")
    with pytest.raises(InputError, match="the video is 0.600 s"):
        media.check_av_sync(50, 25, 32000 - 9600, 16000)
    # a segment cut from a longer recording may have more audio; never less
    assert media.check_av_sync(50, 25, 10 * 32000, 16000, allow_longer_audio=True)["action"] == "trim"
    assert media.check_av_sync(50, 25, 32000, 16000, tolerance_s=0.01)["tolerance_s"] == 0.01


def test_non_16k_and_stereo_audio_are_converted_and_recorded(tmp_path):
    stereo = np.zeros((44100, 2), np.float32)
    stereo[:, 0], stereo[:, 1] = 0.4, 0.1
    sf.write(tmp_path / "s44.wav", stereo, 44100)
    info: dict = {}
    wav = media.read_audio(tmp_path / "s44.wav", info=info)
    assert info == {"source": str(tmp_path / "s44.wav"), "source_sample_rate": 44100, "source_channels": 2,
                    "sample_rate": 16000, "resampled": True, "downmixed": True, "n_samples": 16000}
    # the downmix is the channel mean (librosa.to_mono) on the FFmpeg path too, not FFmpeg's 1/sqrt(2) matrix
    assert len(wav) == 16000 and np.allclose(wav[1000:15000], 0.25, atol=1e-3)
    sf.write(tmp_path / "s16.wav", stereo[:16000], 16000)
    info16: dict = {}
    assert np.allclose(media.read_audio(tmp_path / "s16.wav", info=info16), 0.25, atol=1e-4)  # PCM_16
    assert info16["downmixed"] and not info16["resampled"]
    plain: dict = {}
    media.read_audio(media.write_wav(tmp_path / "m.wav", np.zeros(800)), info=plain)
    assert not plain["downmixed"] and not plain["resampled"]


def test_preprocess_records_conversions_and_refuses_far_off_audio(tmp_path):
    video = _write(tmp_path / "gray30.mkv", _ramp(30, 32, 48)[..., 0], "ffv1", "gray", "gray", rate=30)  # 1 s
    sf.write(tmp_path / "near.wav", np.full((47040, 2), 0.1, np.float32), 48000)  # 0.98 s stereo at 48 kHz
    rec = preprocess_clip(video, tmp_path / "o.mp4", tmp_path / "o.wav", audio=tmp_path / "near.wav", size=16)
    assert rec["fps_conversion"]["action"] == "resampled" and rec["frames"] == 25
    assert rec["color_conversion"]["pix_fmt"] == "gray"
    assert rec["audio_conversion"]["source_sample_rate"] == 48000 and rec["audio_conversion"]["downmixed"]
    sync = rec["audio_sync"]
    assert sync["action"] == "pad" and sync["within_one_frame"] and sync["mismatch_s"] == pytest.approx(-0.02)
    assert rec["audio_video_mismatch_s"] == 0 and len(media.read_audio(tmp_path / "o.wav")) == 16000
    sf.write(tmp_path / "far.wav", np.full((4800, 1), 0.1, np.float32), 16000)  # 0.3 s
    with pytest.raises(InputError) as e:
        preprocess_clip(video, tmp_path / "f.mp4", tmp_path / "f.wav", audio=tmp_path / "far.wav", size=16)
    _one_line(e, tmp_path / "far.wav", "the video is 0.700 s (17.5 frames at 25 fps) longer than the audio")


# -- 2. NaN / inf ----------------------------------------------------------------------------------

def test_nan_and_inf_frames_are_refused_with_counts():
    x = np.zeros((2, 8, 8, 3), np.float32)
    x[0, 0, 0, 0] = x[1, 2, 2, 1] = np.nan
    x[1, 0, 0, 2] = np.inf
    y = np.zeros((2, 8, 8, 3), np.uint8)
    for fn in (psnr, ssim):
        with pytest.raises(InputError) as e:
            fn(x, y)
        _one_line(e, "predicted frames contain 2 NaN and 1 inf values (of 384)")
    with pytest.raises(InputError) as e:
        media.frames_to_tensor(torch.from_numpy(x))
    _one_line(e, "frames contain 2 NaN and 1 inf values")
    with pytest.raises(InputError, match="expected uint8"):
        media.frames_to_tensor(np.zeros((1, 8, 8, 3), np.float32))  # finite floats: the dtype error as before


# -- 3. folders and names --------------------------------------------------------------------------

def test_videos_folder_problems(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError) as e:
        folder_method(empty)
    _one_line(e, empty, "no video files")

    nested = tmp_path / "nested"
    media.write_video(nested / "run1" / "a.mp4", _ramp(2))
    with pytest.raises(InputError) as e:
        folder_method(nested)
    _one_line(e, "no videos at its top level but 1 in subfolders", "run1/a.mp4")

    dup = tmp_path / "dup"
    clip = media.write_video(dup / "a.mp4", _ramp(2))
    (dup / "a.MP4").write_bytes(clip.read_bytes())
    (dup / "b.mp4").write_bytes(clip.read_bytes())
    (dup / "sub").mkdir()
    (dup / "sub" / "b.mkv").write_bytes(clip.read_bytes())
    with pytest.raises(InputError) as e:
        folder_method(dup)
    _one_line(e, "2 case names have more than one video", "a.MP4 + a.mp4", "b.mp4 + sub/b.mkv")


def test_videos_folder_lookup_fps_and_conversions(tmp_path):
    d = tmp_path / "videos"
    media.write_video(d / "M003#angry#level_1#001.MP4", _ramp(5))  # upper-case extension is found
    media.write_video(d / "thirty.mp4", _ramp(6), fps=30)
    method = folder_method(d)
    assert method(Case("M003#angry#level_1#001")).shape == (5, 32, 32, 3)
    with pytest.raises(InputError) as e:
        method(Case("M003#angry#level_1#002"))
    _one_line(e, "expected M003#angry#level_1#002.mp4", "closest file: M003#angry#level_1#001.MP4")
    with pytest.raises(InputError) as e:
        method(Case("thirty"))
    _one_line(e, d / "thirty.mp4", "30.000 fps but 25 fps is needed")
    lenient = folder_method(d, fps_policy="resample", size=32)
    assert len(lenient(Case("thirty"))) == 5 and lenient.conversions["thirty"]["fps"]["frames_out"] == 5
    with pytest.raises(InputError, match="but 16x16 is needed"):
        folder_method(d, size=16)(Case("M003#angry#level_1#001"))


def test_clip_names_that_do_not_parse_are_listed(tmp_path):
    names = ["M003#angry#level_1#001", "x", "M003#joyful#level_1#001", "y#z", "M003#sad#level_9#001", "q"]
    with pytest.raises(InputError) as e:
        parse_names(names, where="my.csv")
    _one_line(e, "my.csv: 5 of 6 clip names do not parse", "'x', 'M003#joyful#level_1#001', 'y#z' and 2 more")
    with pytest.raises(InputError, match="occur more than once: 'M003#angry#level_1#001'"):
        parse_names(names[:1] * 2)

    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.json").write_text(json.dumps(["M003#angry#level_1#001", "not a name", "W009#sad#level_2"]))
    (lists / "test.json").write_text(json.dumps([]))
    with pytest.raises(InputError) as e:
        load_official_lists(lists)
    _one_line(e, "train.json: 2 of 3 clip names do not parse", "'not a name', 'W009#sad#level_2'")
    (lists / "train.json").write_text(json.dumps(["a#1", "a#1", "b#2", "b#2"]))
    with pytest.raises(InputError, match="2 clip names twice: 'a#1', 'b#2'"):
        load_official_lists(lists)


def test_synthetic_world_with_bad_or_duplicate_names(tmp_path):
    (tmp_path / "world.json").write_text(json.dumps({"sample_rate": 16000}))

    def table(names):
        with open(tmp_path / "clips.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["name", "identity", "emotion", "level", "split", "n_frames"])
            for n in names:
                w.writerow([n, "id0", "happy", 1, "test", 8])

    table([])
    with pytest.raises(InputError, match="lists no clips"):
        SyntheticWorld(tmp_path)
    table(["id0#happy#level_1#000", "id0#happy#lvl_1#001", "id0 happy 2"])
    with pytest.raises(InputError) as e:
        SyntheticWorld(tmp_path)
    _one_line(e, "clips.csv: 2 of 3 clip names do not parse", "'id0#happy#lvl_1#001', 'id0 happy 2'")
    table(["id0#happy#level_1#000"] * 2)
    with pytest.raises(InputError, match="more than once"):
        SyntheticWorld(tmp_path)
    table(["id0#happy#level_1#007"])
    assert SyntheticWorld(tmp_path).clips()[0].video.name == "007.mp4"


def test_empty_dataset_roots(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.json").write_text(json.dumps(["M003#angry#level_1#001"]))
    (lists / "test.json").write_text(json.dumps(["RD_Radio1_000#1"]))
    for cls, split in ((MEAD, "train"), (HDTF, "test")):
        root = tmp_path / cls.__name__
        root.mkdir()
        with pytest.raises(InputError) as e:
            cls(root, lists).available(split)
        _one_line(e, root, "is an empty directory")


# -- 4. no face ------------------------------------------------------------------------------------

def test_detector_without_a_face_names_the_video_and_frame():
    base = np.stack([np.linspace(0, 60, 68), np.linspace(0, 30, 68)], 1)

    def detector(frames):  # a face only in frames whose first pixel is non-zero
        out = np.repeat(base[None], len(frames), 0)
        out[frames[:, 0, 0, 0] == 0] = np.nan
        return out

    pred, target = np.zeros((4, 8, 8, 3), np.uint8), np.full((4, 8, 8, 3), 9, np.uint8)
    with pytest.raises(InputError) as e:
        MouthLandmarkDistance(detector=detector).update_frames(pred, target, source="out/case7.mp4")
    _one_line(e, "out/case7.mp4", "no face in any of the 4 generated frames", "frame 0", "another detector")
    pred[2] = 9  # one face is enough: frames without one are skipped as in EAT
    m = MouthLandmarkDistance(detector=detector)
    m.update_frames(pred, target)
    assert m.skipped == 3 and m.compute() == 0

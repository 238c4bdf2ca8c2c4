"""The synthetic world is deterministic, decodes as its table says, and is learnable and honest."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks import media
from benchmarks.datasets.common import EMOTIONS, parse_clip_name
from benchmarks.datasets.synthetic import SyntheticWorld
from benchmarks.synthetic import generate_clip, make_identity
from benchmarks.synthetic.face import deform, project, render
from benchmarks.synthetic.writer import Preset, synthesize_world
from metrics.errors import InputError

TINY = Preset(identities=3, test_identities=1, emotions=("happy", "sad"), levels=(3,), clips_per_level=1,
              n_frames=12, size=64)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    a = synthesize_world(tmp_path_factory.mktemp("w") / "a", TINY, seed=5)
    b = synthesize_world(tmp_path_factory.mktemp("w") / "b", TINY, seed=5)
    return SyntheticWorld(a), SyntheticWorld(b)


def test_same_seed_same_world_and_files_decode_as_described(worlds):
    wa, wb = worlds
    assert [c.name for c in wa.clips()] == [c.name for c in wb.clips()]
    assert set(wa.meta["train_identities"]).isdisjoint(wa.meta["test_identities"])
    for ca, cb in zip(wa.clips(), wb.clips(), strict=True):
        assert np.array_equal(wa.frames(ca), wb.frames(cb))
        ga, gb = wa.ground_truth(ca), wb.ground_truth(cb)
        assert all(np.array_equal(ga[k], gb[k]) for k in ga)
        info = media.probe_video(ca.video)
        assert info["fps"] == 25 and info["n_frames"] == ca.n_frames == len(wa.frames(ca))
        audio = wa.audio(ca)
        assert len(audio) == ca.n_frames * 640  # 16 kHz, one 25 fps frame = 640 samples
        parse_clip_name(ca.name)


def test_render_truth_draws_the_source_with_each_drivers_factors(worlds):
    from benchmarks.synthetic.world import generate_clip, make_identity

    w = worlds[0]
    a = w.clips()[0]
    b = next(c for c in w.clips() if c.identity != a.identity)
    # every factor from the clip itself: the clip as generated, before the video codec
    own = w.render_truth(a, dict.fromkeys(("mouth", "pose", "expression"), a), a.n_frames)
    ident = make_identity(5, int(a.identity[1:]) - 1)
    raw = generate_clip(ident, a.emotion, a.level, a.n_frames, 64, seed=5 * 7919 + 1, world_seed=5).frames
    assert np.array_equal(own, raw)
    assert np.abs(own.astype(int) - w.frames(a).astype(int)).mean() < 5.0  # the stored H.264 frames (lossy)
    # a's face with b's pose: b's head turns, a's colours stay
    posed = w.render_truth(a, {"mouth": a, "pose": b, "expression": a}, 5)
    assert posed.shape == (5, 64, 64, 3) and not np.array_equal(posed, own[:5])
    assert np.abs(posed.mean((0, 1, 2)) - own[:5].mean((0, 1, 2))).max() < 8
    b_itself = w.render_truth(b, dict.fromkeys(("mouth", "pose", "expression"), b), 5)
    assert np.abs(posed.astype(int) - b_itself).mean() > 10


def test_decoded_frames_are_kept_beside_the_world_and_redone_when_the_video_changes(worlds):
    import os

    a = worlds[1].clips()[0]
    decoded = media.read_video(a.video).frames
    first = SyntheticWorld(worlds[1].root).frames(a)  # a fresh reader: no in-memory cache
    kept = sorted((worlds[1].root / "features" / "frames").glob(a.name.replace("#", "_") + "-*.npy"))
    assert len(kept) == 1 and np.array_equal(first, decoded)
    assert np.array_equal(SyntheticWorld(worlds[1].root).frames(a), decoded)  # read back from the kept file
    st = a.video.stat()
    os.utime(a.video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "rewritten": decoded afresh, kept anew
    assert np.array_equal(SyntheticWorld(worlds[1].root).frames(a), decoded)
    assert len(list((worlds[1].root / "features" / "frames").glob(a.name.replace("#", "_") + "-*.npy"))) == 2


def test_resume_skips_finished_clips_and_refuses_another_world(worlds, tmp_path):
    wa, _ = worlds
    mtimes = {c.name: c.video.stat().st_mtime_ns for c in wa.clips()}
    synthesize_world(wa.root, TINY, seed=5)
    assert {c.name: c.video.stat().st_mtime_ns for c in SyntheticWorld(wa.root).clips()} == mtimes
    with pytest.raises(InputError, match="different world"):
        synthesize_world(wa.root, TINY, seed=6)
    with pytest.raises(InputError, match="not a synthetic world"):
        SyntheticWorld(tmp_path)


def test_mouth_opening_follows_audio_energy():
    rs = []
    for ident, emotion in ((0, "neutral"), (1, "happy"), (2, "sad")):
        c = generate_clip(ident, emotion, 2, 100, 64, seed=11)
        energy = np.sqrt((c.audio.reshape(100, 640) ** 2).mean(1))
        opening = c.ground_truth["mouth"][:, 0] * (1 - c.ground_truth["mouth"][:, 2])
        rs.append(np.corrcoef(opening, energy)[0, 1])
    assert min(rs) > 0.4, rs


def test_landmarks_land_on_drawn_features():
    c = generate_clip(0, "surprised", 3, 5, 256, seed=2)
    img, lm = c.frames[0].astype(int), c.ground_truth["landmarks"][0]
    skin = np.array(make_identity(0, 0).appearance.skin)
    def colour_at(points):
        p = np.round(points).astype(int)
        return img[p[:, 1], p[:, 0]]
    # eye centres are white/iris, the inner mouth dark: both far from skin colour
    eyes = np.stack([lm[36:42].mean(0), lm[42:48].mean(0)])
    assert np.abs(colour_at(eyes) - skin).sum(1).min() > 60
    mouth_centre = lm[60:68].mean(0)[None]
    assert np.abs(colour_at(mouth_centre) - skin).sum() > 60
    # a point on the cheek (between jaw and nose) is skin-coloured
    cheek = ((lm[3] + lm[31]) / 2)[None] + [0, -6]
    assert np.abs(colour_at(cheek) - skin).sum() < 120


def test_pose_moves_the_pixels():
    ident = make_identity(0, 1)
    pts = deform(ident.template, np.zeros(3), np.zeros(6), 0.0)
    a = render(project(pts, np.array([0.0, 0, 0]), 64), ident.appearance, np.zeros(3), 64).astype(int)
    b = render(project(pts, np.array([18.0, 0, 0]), 64), ident.appearance, np.array([18.0, 0, 0]), 64).astype(int)
    assert np.abs(a - b).mean() > 3


def _aligned(clip, size=32):
    """Frames aligned on eye and mouth centres (standard face alignment), grey, flattened."""
    import cv2

    out = []
    for img, lm in zip(clip.frames, clip.ground_truth["landmarks"], strict=True):
        src = np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[48:68].mean(0)]).astype(np.float32)
        dst = np.float32([[0.3, 0.35], [0.7, 0.35], [0.5, 0.75]]) * size
        m, _ = cv2.estimateAffinePartial2D(src, dst)
        g = cv2.cvtColor(cv2.warpAffine(img, m, (size, size)), cv2.COLOR_RGB2GRAY).astype(np.float32)
        out.append(((g - g.mean()) / (g.std() + 1e-6)).ravel())
    return np.stack(out)


def test_emotions_are_distinguishable_from_frames_of_held_out_identities():
    def data(idents, seed):
        x, y = [], []
        for i in idents:
            for k, e in enumerate(EMOTIONS):
                f = _aligned(generate_clip(i, e, 3, 8, 64, seed=seed))
                x.append(f)
                y += [k] * len(f)
        return np.concatenate(x), np.array(y)

    xtr, ytr = data(range(6), 1)
    xte, yte = data((6, 7), 2)
    onehot = np.eye(len(EMOTIONS))[ytr]
    w = np.linalg.solve(xtr.T @ xtr + 10.0 * np.eye(xtr.shape[1]), xtr.T @ onehot)  # ridge classifier
    acc = ((xte @ w).argmax(1) == yte).mean()
    assert acc > 0.5, acc  # chance is 1/8


def test_cli_unknown_preset_is_one_line(tmp_path, capsys):
    from edtalk.cli import main

    assert main(["data", "synth", "--preset", "smok", "--out", str(tmp_path / "w")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "did you mean 'smoke'" in err[0]


def test_a_world_of_an_older_generator_is_refused_with_what_to_do(tmp_path):
    import json

    root = tmp_path / "old"
    root.mkdir()
    (root / "world.json").write_text(json.dumps({"generator": "synthetic-world@1", "preset": "smoke", "seed": 0}))
    with pytest.raises(InputError, match="written by synthetic-world@1.*rebuild"):
        synthesize_world(root, TINY, seed=0)

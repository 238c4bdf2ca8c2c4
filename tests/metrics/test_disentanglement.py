"""Disentanglement metrics on constructed models whose answers are known, and on a tiny synthetic world."""
from __future__ import annotations

import json
import zlib

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr

from metrics.disentanglement import (
    FACTORS,
    bank_geometry,
    bank_geometry_of,
    emotion_accuracy,
    evaluate_disentanglement,
    identity_across_outputs,
    identity_preservation,
    leakage_matrix,
    transfer_errors,
)
from metrics.errors import InputError

DIMS = {"mouth": 3, "pose": 3, "expression": 6}


def one_line(excinfo) -> str:
    msg = str(excinfo.value)
    assert msg and "\n" not in msg
    return msg


# -- transfer ------------------------------------------------------------------------------------


def test_transfer_errors_match_scipy_and_definitions(rng):
    truth = rng.normal(size=(3, 40, 2))
    measured = 2.0 * truth + 0.5 + 0.3 * rng.normal(size=truth.shape)
    res = transfer_errors({"pose": measured}, {"pose": truth})["pose"]
    ref_r = np.mean([pearsonr(measured[n, :, k], truth[n, :, k])[0] for n in range(3) for k in range(2)])
    assert res.pearson == pytest.approx(ref_r, abs=1e-12)
    assert res.mae == pytest.approx(np.abs(measured - truth).mean())
    assert res.mae_per_dim == pytest.approx(np.abs(measured - truth).mean((0, 1)))
    assert (res.n_clips, res.n_frames, res.n_pearson) == (3, 120, 6)

    exact = transfer_errors({"mouth": truth[0], "pose": truth[1]}, {"pose": truth[1], "mouth": truth[0]})
    assert list(exact) == ["mouth", "pose"]
    assert all(r.mae == 0 and r.pearson == pytest.approx(1.0) for r in exact.values())
    flipped = transfer_errors({"pose": -truth[0] + 3.0}, {"pose": truth[0]})["pose"]
    assert flipped.pearson == pytest.approx(-1.0)
    offset = transfer_errors({"pose": truth[0] + 2.0}, {"pose": truth[0]})["pose"]
    assert offset.mae == pytest.approx(2.0) and offset.pearson == pytest.approx(1.0)


def test_transfer_pearson_leaves_out_constant_series(rng):
    truth = np.stack([np.linspace(0, 1, 10), np.full(10, 0.25)], axis=1)  # 2nd dim constant
    res = transfer_errors({"mouth": truth.copy()}, {"mouth": truth})["mouth"]
    assert res.n_pearson == 1 and res.pearson == pytest.approx(1.0)
    flat = transfer_errors({"mouth": np.zeros((10, 3))}, {"mouth": np.zeros((10, 3))})["mouth"]
    assert np.isnan(flat.pearson) and flat.n_pearson == 0 and flat.to_dict()["pearson"] is None


def test_transfer_and_accuracy_validation():
    with pytest.raises(InputError) as e:
        transfer_errors({"pose": np.zeros((10, 3))}, {"pose": np.zeros((9, 3))})
    assert "shape" in one_line(e)
    with pytest.raises(InputError) as e:
        transfer_errors({"pose": np.zeros((10, 3))}, {"mouth": np.zeros((10, 3))})
    one_line(e)
    with pytest.raises(InputError) as e:
        transfer_errors({"pose": np.full((10, 3), np.nan)}, {"pose": np.zeros((10, 3))})
    one_line(e)
    with pytest.raises(InputError):
        transfer_errors({"pose": np.zeros(10)}, {"pose": np.zeros(10)})
    logits = np.eye(8)[[0, 3, 5, 7]] * 4.0
    assert emotion_accuracy(logits, [0, 3, 5, 7]) == 1.0
    assert emotion_accuracy(logits, np.array([0, 3, 1, 1])) == 0.5
    assert emotion_accuracy(logits[1], 3) == 1.0
    with pytest.raises(InputError) as e:
        emotion_accuracy(logits, [0, 3, 5, 8])
    one_line(e)
    with pytest.raises(InputError):
        emotion_accuracy(logits, [0, 3])


# -- leakage on constructed models -------------------------------------------------------------


def make_clip(rng, t=30):
    """A driver clip's ground truth: smooth per-factor trajectories."""
    time = np.linspace(0, 1, t)[:, None]
    out = {}
    for f, d in DIMS.items():
        freq, phase, amp = rng.uniform(0.5, 2, d), rng.uniform(0, 1, d), rng.uniform(0.5, 2, d)
        out[f] = amp * np.sin(2 * np.pi * (freq * time + phase))
    return out


def cross_drive(model, n=12, seed=0):
    """Run `model(drivers, source) -> {factor: (T, d)}` on n tuples (base and one-driver swaps).

    Returns leakage_matrix's arguments (base, swapped, truth_base, truth_swapped)."""
    rng = np.random.default_rng(seed)
    base, swapped = {m: [] for m in FACTORS}, {c: {m: [] for m in FACTORS} for c in FACTORS}
    tb, ts = {c: {m: [] for m in FACTORS} for c in FACTORS}, {c: {m: [] for m in FACTORS} for c in FACTORS}
    for _ in range(n):
        drv = {f: make_clip(rng) for f in FACTORS}
        repl = {f: make_clip(rng) for f in FACTORS}
        source = make_clip(rng)
        out = model(drv, source)
        for m in FACTORS:
            base[m].append(out[m])
        for c in FACTORS:
            sw = model({**drv, c: repl[c]}, source)
            for m in FACTORS:
                swapped[c][m].append(sw[m])
                tb[c][m].append(drv[c][m])
                ts[c][m].append(repl[c][m])

    def stack(d):
        return {k: stack(v) if isinstance(v, dict) else np.stack(v) for k, v in d.items()}

    return stack(base), stack(swapped), stack(tb), stack(ts)


def oracle(drv, source):
    return {m: drv[m][m] for m in FACTORS}


def copy_pose(drv, source):  # the output is the pose driver's frame: every factor follows it
    return {m: drv["pose"][m] for m in FACTORS}


def ignore_mouth(drv, source):
    return {**oracle(drv, source), "mouth": source["mouth"]}


def half_leak(drv, source):  # mouth follows the mouth and the pose driver half each
    return {**oracle(drv, source), "mouth": 0.5 * drv["mouth"]["mouth"] + 0.5 * drv["pose"]["mouth"]}


def test_oracle_is_diagonal():
    res = leakage_matrix(*cross_drive(oracle))
    assert res.labels == FACTORS
    np.testing.assert_allclose(res.matrix, np.eye(3), atol=1e-12)
    assert res.off_diagonal_mean == 0 and res.diagonal_mean == pytest.approx(1.0)
    resp = leakage_matrix(*cross_drive(oracle)[:2], reference="response")
    np.testing.assert_allclose(resp.matrix, np.eye(3), atol=1e-12)


def test_copying_the_pose_frame_leaks_the_whole_pose_row():
    res = leakage_matrix(*cross_drive(copy_pose))
    p = FACTORS.index("pose")
    np.testing.assert_allclose(res.matrix[p], 1.0, atol=1e-12)       # pose swap moves every factor fully
    np.testing.assert_allclose(np.delete(res.matrix, p, axis=0), 0.0)  # mouth/expression drivers ignored
    assert res.off_diagonal_mean == pytest.approx(2 / 6)
    assert res.to_dict()["matrix"][p] == pytest.approx([1.0, 1.0, 1.0])


def test_ignored_driver_has_zero_diagonal_and_partial_leak_is_proportional():
    res = leakage_matrix(*cross_drive(ignore_mouth))
    assert res.matrix[0, 0] == 0.0
    np.testing.assert_allclose(np.diagonal(res.matrix)[1:], 1.0)
    assert res.off_diagonal_mean == 0.0
    half = leakage_matrix(*cross_drive(half_leak))
    m, p = FACTORS.index("mouth"), FACTORS.index("pose")
    assert half.matrix[m, m] == pytest.approx(0.5) and half.matrix[p, m] == pytest.approx(0.5)
    resp = leakage_matrix(*cross_drive(half_leak)[:2], reference="response")  # relative to own-driver moves
    assert resp.matrix[p, m] == pytest.approx(half.movement[p, m] / half.movement[m, m])
    ign = leakage_matrix(*cross_drive(ignore_mouth)[:2], reference="response")
    assert np.isnan(ign.matrix[:, m]).all() and ign.to_dict()["matrix"][0][0] is None


def test_leakage_matches_an_explicit_loop(rng):
    n, t = 5, 7
    base = {f: rng.normal(size=(n, t, 2)) for f in FACTORS}
    sw = {c: {m: rng.normal(size=(n, t, 2)) for m in FACTORS} for c in FACTORS}
    tb = {c: {m: rng.normal(size=(n, t, 2)) for m in FACTORS} for c in FACTORS}
    ts = {c: {m: rng.normal(size=(n, t, 2)) for m in FACTORS} for c in FACTORS}
    res = leakage_matrix(base, sw, tb, ts)
    for i, c in enumerate(FACTORS):
        for j, m in enumerate(FACTORS):
            num = sum(np.mean(np.abs(sw[c][m][k] - base[m][k])) for k in range(n))
            den = sum(np.mean(np.abs(ts[c][m][k] - tb[c][m][k])) for k in range(n))
            assert res.matrix[i, j] == pytest.approx(num / den)
    off = res.matrix[~np.eye(3, dtype=bool)]
    assert res.off_diagonal_mean == pytest.approx(off.mean())


def test_leakage_validation():
    base, sw, tb, ts = cross_drive(oracle, n=2)
    bad = {**base, "pose": base["pose"][:, :-1]}
    with pytest.raises(InputError) as e:
        leakage_matrix(bad, sw, tb, ts)
    assert "shape" in one_line(e)
    with pytest.raises(InputError) as e:
        leakage_matrix(base, {k: v for k, v in sw.items() if k != "pose"}, tb, ts)
    one_line(e)
    with pytest.raises(InputError) as e:
        leakage_matrix(base, sw)
    assert "response" in one_line(e)
    with pytest.raises(InputError):
        leakage_matrix(base, sw, tb, ts, reference="own")
    short = {c: {m: v[:, :-1] for m, v in row.items()} for c, row in ts.items()}
    with pytest.raises(InputError) as e:
        leakage_matrix(base, sw, tb, short)
    one_line(e)


# -- identity ------------------------------------------------------------------------------------


def test_identity_preservation(rng):
    src = rng.normal(size=16)
    assert identity_preservation(src, np.stack([src, 3 * src])) == pytest.approx(1.0)
    other = rng.normal(size=16)
    other -= other @ src / (src @ src) * src  # orthogonal to src
    assert identity_preservation(src, np.stack([src, other])) == pytest.approx(0.5)
    outs = rng.normal(size=(4, 16))
    ref = np.mean([o @ src / np.linalg.norm(o) / np.linalg.norm(src) for o in outs])
    assert identity_preservation(torch.tensor(src), torch.tensor(outs)) == pytest.approx(ref)
    res = identity_across_outputs(np.stack([src, src]), {"base": [src[None], other[None]],
                                                         "swap_pose": [src[None], src[None]]})
    assert res.per_output == pytest.approx({"base": 0.5, "swap_pose": 1.0})
    assert (res.mean, res.min, res.n) == (pytest.approx(0.75), pytest.approx(0.0, abs=1e-12), 4)
    with pytest.raises(InputError) as e:
        identity_preservation(src, rng.normal(size=(3, 8)))
    one_line(e)
    with pytest.raises(InputError) as e:
        identity_preservation(np.zeros(16), outs)
    assert "zero norm" in one_line(e)
    with pytest.raises(InputError):
        identity_across_outputs(np.stack([src, src]), {"base": [src[None]]})


# -- bank geometry -------------------------------------------------------------------------------

GROUPS = {"mouth": slice(0, 20), "pose": slice(20, 26), "expression": slice(26, 36)}


def test_orthonormal_bases_have_zero_error_and_right_angles(rng):
    q, _ = np.linalg.qr(rng.normal(size=(64, 36)))
    g = bank_geometry(q, GROUPS)
    assert g.orthonormality_error < 1e-12 and max(g.group_error.values()) < 1e-12
    assert list(g.min_angle_deg) == ["mouth/pose", "mouth/expression", "pose/expression"]
    assert all(a == pytest.approx(90.0, abs=1e-6) for a in g.min_angle_deg.values())
    rand = bank_geometry(rng.normal(size=(64, 36)), GROUPS)
    assert rand.orthonormality_error > 50  # diagonal alone: norms^2 ~ 64 instead of 1
    assert all(a < 89 for a in rand.min_angle_deg.values())


def test_known_principal_angle():
    theta = np.radians(30.0)
    a = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]])[:, :2]  # span(e1, e2)
    b = np.array([[np.cos(theta), 0], [0, 0], [np.sin(theta), 0], [0, 1.0]])  # e1 tilted 30°, e4
    g = bank_geometry(np.concatenate([a, 2 * b], axis=1), {"mouth": slice(0, 2), "pose": slice(2, 4)})
    assert g.min_angle_deg["mouth/pose"] == pytest.approx(30.0)
    assert g.group_error["mouth"] == pytest.approx(0.0)
    assert g.group_error["pose"] == pytest.approx(np.sqrt(18))  # columns of norm 2: diag(4, 4) - I
    with pytest.raises(InputError) as e:
        bank_geometry(a, {"mouth": slice(0, 5)})
    one_line(e)
    with pytest.raises(InputError):
        bank_geometry(a, {"mouth": [0, 1]})


def test_bank_geometry_of_smoke_model():
    from edtalk.model import EDTalk
    from edtalk.presets import model_preset

    torch.manual_seed(0)
    cfg = model_preset("smoke")
    g = bank_geometry_of(EDTalk(cfg))
    assert g.n_columns == cfg.n_mouth + cfg.n_pose + cfg.n_exp and g.latent_dim == cfg.latent_dim
    assert g.orthonormality_error < 1e-4  # float32 QR of all banks jointly
    assert all(a == pytest.approx(90.0, abs=1e-3) for a in g.min_angle_deg.values())
    raw = bank_geometry_of(EDTalk(model_preset("smoke", orthogonal=False)))
    assert raw.orthonormality_error > 10 and all(a < 85 for a in raw.min_angle_deg.values())
    direct = bank_geometry_of(EDTalk(model_preset("smoke", pose_bank="direct")))
    assert list(direct.group_error) == ["mouth", "expression"]


# -- the whole procedure on a tiny synthetic world -------------------------------------------------

MAGIC = b"EDTB"
N_EMB = 8


def embedding(identity: str) -> np.ndarray:
    return np.random.default_rng(zlib.crc32(identity.encode())).normal(size=N_EMB)


def encode(t_frames: int, size: int, mouth, pose, emotion_index: int, ident: np.ndarray) -> np.ndarray:
    """Frames whose first bytes carry the factors as float32 (what a perfect renderer+reader pair sees)."""
    out = np.zeros((t_frames, size, size, 3), np.uint8)
    for t in range(t_frames):
        vals = np.concatenate([mouth[t], pose[t], [emotion_index], ident]).astype(np.float32)
        payload = np.frombuffer(MAGIC + vals.tobytes(), np.uint8)
        out[t].reshape(-1)[: len(payload)] = payload
    return out


def decode(frame: np.ndarray) -> np.ndarray | None:
    flat = frame.reshape(-1)
    if flat[:4].tobytes() != MAGIC:
        return None
    return np.frombuffer(flat[4: 4 + 4 * (7 + N_EMB)].tobytes(), np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from benchmarks.datasets.synthetic import SyntheticWorld
    from benchmarks.synthetic.writer import Preset, synthesize_world

    preset = Preset(identities=3, test_identities=3, emotions=("angry", "happy", "neutral", "sad"),
                    levels=(3,), clips_per_level=1, n_frames=10, size=64)
    w = SyntheticWorld(synthesize_world(tmp_path_factory.mktemp("world"), preset, seed=3))
    # a perfect face reader for the world's own frames: frame 0 of each clip -> that clip
    w.by_first_frame = {w.frames(c)[0].tobytes(): c for c in w.clips()}

    def render_truth(source, drivers, n_frames):  # the world's truth, drawn in the fake models' encoding
        gt = {f: w.ground_truth(c) for f, c in drivers.items()}
        return encode(n_frames, 64, gt["mouth"]["mouth"][:n_frames], gt["pose"]["pose"][:n_frames],
                      gt["expression"]["emotion_index"], embedding(source.identity))

    w.render_truth = render_truth
    return w


class Readers:
    """Decode what the fake models encoded; read the identity of real world frames by lookup."""

    def __init__(self, world):
        self.world = world

    def _vals(self, frames):
        vals = [decode(f) for f in frames]
        assert all(v is not None for v in vals), "readers got frames that no model produced"
        return np.stack(vals)

    def mouth(self, frames):
        return self._vals(frames)[:, 0:3]

    def pose(self, frames):
        return self._vals(frames)[:, 3:6]

    def emotion(self, frames):
        return 30.0 * np.eye(8)[int(round(self._vals(frames)[0, 6]))]

    def identity(self, frames):
        out = []
        for f in frames:
            v = decode(f)
            out.append(v[7:] if v is not None else embedding(self.world.by_first_frame[f.tobytes()].identity))
        return np.stack(out)


def make_model(world, kind: str):
    def clip_of(frames):
        return world.by_first_frame[np.asarray(frames[0]).tobytes()]

    def model_fn(source, mouth_frames, pose_frames, expression_frames):
        t = len(mouth_frames)
        assert len(pose_frames) == len(expression_frames) == t
        src = world.by_first_frame[source.tobytes()]
        drv = {"mouth": clip_of(mouth_frames), "pose": clip_of(pose_frames),
               "expression": clip_of(expression_frames)}
        if kind == "copy_pose":
            drv = dict.fromkeys(drv, drv["pose"])
            src = drv["pose"]
        if kind == "ignore_mouth":
            drv["mouth"] = src
        gt = {f: world.ground_truth(c) for f, c in drv.items()}
        return encode(t, source.shape[0], gt["mouth"]["mouth"], gt["pose"]["pose"],
                      gt["expression"]["emotion_index"], embedding(src.identity))

    return model_fn


def test_evaluate_oracle(world):
    res = evaluate_disentanglement(make_model(world, "oracle"), world, Readers(world), n_tuples=6, seed=1)
    json.dumps(res, allow_nan=False)
    assert res["n_frames"] == 10 and len(res["tuples"]) == 6
    for tup in res["tuples"]:
        src_id = tup["source"].split("#")[0]
        assert all(tup[f].split("#")[0] != src_id for f in FACTORS)  # other identities drive the source
        assert all(tup["replacements"][f] != tup[f] for f in FACTORS)
        assert all(tup["replacements"][f].split("#")[1] != tup[f].split("#")[1] for f in FACTORS)
    assert res["transfer"]["mouth"]["mae"] < 1e-6 and res["transfer"]["pose"]["mae"] < 1e-4
    assert res["transfer"]["pose"]["pearson"] == pytest.approx(1.0)
    assert res["transfer"]["expression"]["accuracy"] == 1.0
    np.testing.assert_allclose(res["leakage"]["matrix"], np.eye(3), atol=1e-6)
    assert res["leakage"]["labels"] == list(FACTORS) and res["leakage"]["off_diagonal_mean"] < 1e-6
    assert res["reference"] == "reader"
    np.testing.assert_allclose(res["reader_floor"]["matrix"], np.eye(3), atol=1e-6)  # exact readers add nothing
    by_truth = evaluate_disentanglement(make_model(world, "oracle"), world, Readers(world), n_tuples=6, seed=1,
                                        reference="truth")
    assert "reader_floor" not in by_truth and by_truth["reference"] == "truth"
    np.testing.assert_allclose(by_truth["leakage"]["matrix"], res["leakage"]["matrix"], atol=1e-6)
    assert res["identity"]["mean"] == pytest.approx(1.0) and res["identity"]["min"] == pytest.approx(1.0)
    again = evaluate_disentanglement(make_model(world, "oracle"), world, Readers(world), n_tuples=6, seed=1)
    assert again["tuples"] == res["tuples"]
    other = evaluate_disentanglement(make_model(world, "oracle"), world, Readers(world), n_tuples=6, seed=2,
                                     max_frames=7)
    assert other["tuples"] != res["tuples"] and other["n_frames"] == 7


def test_evaluate_copy_pose_and_ignored_mouth(world):
    cp = evaluate_disentanglement(make_model(world, "copy_pose"), world, Readers(world), n_tuples=6, seed=1)
    m = np.array(cp["leakage"]["matrix"])
    np.testing.assert_allclose(m[1], 1.0, atol=1e-6)  # pose row: every factor follows the pose driver
    np.testing.assert_allclose(m[[0, 2]], 0.0, atol=1e-6)
    assert cp["leakage"]["off_diagonal_mean"] == pytest.approx(1 / 3, abs=1e-6)
    assert cp["transfer"]["mouth"]["mae"] > 0.01
    assert cp["identity"]["mean"] < 0.9  # the pose driver's face replaced the source's
    ig = evaluate_disentanglement(make_model(world, "ignore_mouth"), world, Readers(world), n_tuples=6,
                                  seed=1)
    d = np.diagonal(np.array(ig["leakage"]["matrix"]))
    assert d[0] == 0.0 and d[1:] == pytest.approx([1.0, 1.0], abs=1e-6)
    assert ig["leakage"]["off_diagonal_mean"] < 1e-6


class BlurryReaders(Readers):
    """Readers as weak as trained ones: the mouth reading keeps 40% of the mouth's movement and picks up 0.05 of
    the head pose (a turned head changes the mouth's outline); the emotion posterior is soft."""

    def mouth(self, frames):
        v = self._vals(frames)
        return 0.4 * v[:, 0:3] + 0.05 * v[:, 3:6]

    def emotion(self, frames):
        return 0.5 * np.eye(8)[int(round(self._vals(frames)[0, 6]))]


def test_reader_reference_removes_the_readers_gain_and_states_their_leakage(world):
    oracle = make_model(world, "oracle")
    by_truth = evaluate_disentanglement(oracle, world, BlurryReaders(world), n_tuples=6, seed=1, reference="truth")
    by_reader = evaluate_disentanglement(oracle, world, BlurryReaders(world), n_tuples=6, seed=1)
    d_truth = np.diagonal(np.array(by_truth["leakage"]["matrix"]))
    assert d_truth[0] < 0.5 and d_truth[2] < 0.2  # measured against the truth, a perfect model looks unresponsive
    np.testing.assert_allclose(np.diagonal(np.array(by_reader["leakage"]["matrix"])), 1.0, atol=1e-6)
    floor = np.array(by_reader["reader_floor"]["matrix"])
    np.testing.assert_allclose(floor, by_reader["leakage"]["matrix"], atol=1e-6)  # the oracle sits on the floor
    assert floor[1, 0] > 0.05 and floor[0, 1] < 1e-6 and floor[2, 0] < 1e-6  # pose leaks into the mouth reading
    ig = evaluate_disentanglement(make_model(world, "ignore_mouth"), world, BlurryReaders(world), n_tuples=6, seed=1)
    assert np.array(ig["leakage"]["matrix"])[0, 0] == 0.0


def test_evaluate_validation(world):
    readers = Readers(world)
    with pytest.raises(InputError) as e:
        evaluate_disentanglement(lambda s, a, b, c: np.zeros((3, 8, 8, 3), np.uint8), world, readers,
                                 n_tuples=1)
    assert "T = 10" in one_line(e)
    with pytest.raises(InputError) as e:
        evaluate_disentanglement(make_model(world, "oracle"), world, object(), n_tuples=1)
    one_line(e)

    class BadPose(Readers):
        def pose(self, frames):
            return super().pose(frames)[:-1]

    with pytest.raises(InputError) as e:
        evaluate_disentanglement(make_model(world, "oracle"), world, BadPose(world), n_tuples=1)
    assert "readers.pose" in one_line(e)
    with pytest.raises(InputError):
        evaluate_disentanglement(make_model(world, "oracle"), world, readers, split="train")

    class Unrendered:  # a world without render_truth: only the truth reference applies
        def __init__(self, w):
            self.clips, self.frames, self.ground_truth = w.clips, w.frames, w.ground_truth

    with pytest.raises(InputError) as e:
        evaluate_disentanglement(make_model(world, "oracle"), Unrendered(world), readers, n_tuples=1)
    assert "reference='truth'" in one_line(e)
    res = evaluate_disentanglement(make_model(world, "oracle"), Unrendered(world), readers, n_tuples=2,
                                   reference="truth")
    np.testing.assert_allclose(res["leakage"]["matrix"], np.eye(3), atol=1e-6)
    with pytest.raises(InputError):
        evaluate_disentanglement(make_model(world, "oracle"), world, readers, n_tuples=1, reference="driver")

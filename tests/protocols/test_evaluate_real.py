"""Real-data evaluation (`edtalk evaluate --protocol mead-edtalk --videos GEN --data ROOT`).

* EAT parity: the scorer's PSNR/SSIM/M-LMD/F-LMD on the fixture clips (tests/fixtures/faces/clips.npz) equal
  the numbers evaluation_eat's own scripts gave on them (eat_aligned_ref.npz), relative 1e-3.
* `fid` equals pytorch-fid's `calculate_fid_given_paths` on the same aligned crops written as PNG folders,
  with the same Inception weight file (a seeded stand-in of the exact architecture), relative 1e-4.
* End to end from the CLI on a MEAD-layout mini dataset (benchmarks.datasets.mini_mead) with seeded
  stand-ins of every evaluator and the real dlib models: the GT videos themselves and a "copy the source
  frame" baseline; every Table-1 metric plus LPIPS, CSIM and pose error, with provenance; resume; bad input.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dlib")

from benchmarks.protocols.engine import Case  # noqa: E402
from benchmarks.protocols.real import RealEvaluators, RealScorer, sample_fid  # noqa: E402
from benchmarks.protocols.registry import get_protocol  # noqa: E402
from metrics.errors import InputError, MissingWeightsError  # noqa: E402

FACES = Path(__file__).resolve().parents[1] / "fixtures" / "faces"
TABLE1 = ("psnr", "ssim", "m_lmd", "f_lmd", "fid", "fid_eat", "sync_conf", "lse_d", "acc_emo")
EXTRA = ("lpips", "csim", "pose_err")


def _row(case: str, scores: dict, names) -> dict:
    """A row as the engine stores it: the clip-level scores, the rest under "extra"."""
    clip = [n for n in names if get_protocol("mead-edtalk").metric(n).level == "clip"]
    return {"case": case, "scores": {n: scores.get(n) for n in clip},
            "extra": {k: v for k, v in scores.items() if k not in names}}


@pytest.fixture(scope="module")
def clips():
    return dict(np.load(FACES / "clips.npz"))


def test_eat_numbers_from_the_scorer(clips, tmp_path):
    """What EAT's test_psnr_ssim.py / test_lmd.py printed for the (fake, gt) fixture pair."""
    ref = dict(np.load(FACES / "eat_aligned_ref.npz"))
    names = ["psnr", "ssim", "m_lmd", "f_lmd"]
    scorer = RealScorer(get_protocol("mead-edtalk"), names, {}, tmp_path, RealEvaluators(), tmp_path / "f")
    case = Case("M003#angry#level_3#001", {"emotion": "angry"})
    scores = scorer.score_frames(case, clips["fake"], clips["gt"])
    agg = scorer.reference_aggregates([_row(case.name, scores, names)])
    for name in names:
        assert agg[name]["value"] == pytest.approx(float(ref[name]), rel=1e-3), name
        assert scores[name] == pytest.approx(float(ref[name]), rel=1e-3), name  # one video: per clip = pooled


def test_reference_aggregation_pools_frames_and_averages_videos(tmp_path):
    """PSNR/SSIM pooled over frame pairs (a long video weighs more); LMD a plain mean over videos."""
    names = ["psnr", "ssim", "m_lmd", "f_lmd"]
    scorer = RealScorer(get_protocol("mead-edtalk"), names, {}, tmp_path, RealEvaluators(verify=False), tmp_path)
    rows = [_row("a", {"psnr": 20.0, "psnr_sum": 20.0 * 10, "ssim": 0.5, "ssim_sum": 5.0, "pairs": 10,
                       "m_lmd": 2.0, "f_lmd": 1.0}, names),
            _row("b", {"psnr": 30.0, "psnr_sum": 30.0 * 30, "ssim": 0.9, "ssim_sum": 27.0, "pairs": 30,
                       "m_lmd": 4.0, "f_lmd": 3.0}, names)]
    agg = scorer.reference_aggregates(rows)
    assert agg["psnr"]["value"] == pytest.approx(27.5) and agg["ssim"]["value"] == pytest.approx(0.8)
    assert agg["m_lmd"]["value"] == pytest.approx(3.0) and agg["f_lmd"]["value"] == pytest.approx(2.0)


@pytest.fixture(scope="module")
def fid_weights(tmp_path_factory, fid_inception_state):
    """The He-initialised FID Inception under pytorch-fid's file name in a torch hub cache."""
    import torch

    home = tmp_path_factory.mktemp("torch_home")
    path = home / "hub" / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth"
    path.parent.mkdir(parents=True)
    torch.save(fid_inception_state, path)
    return home, path


@pytest.mark.slow
def test_fid_equals_pytorch_fid(clips, fid_weights, tmp_path, monkeypatch):
    fid_score = pytest.importorskip("pytorch_fid.fid_score")
    from PIL import Image

    home, path = fid_weights
    monkeypatch.setenv("EDTALK_WEIGHTS", str(path.parent))
    monkeypatch.setenv("TORCH_HOME", str(home))  # pytorch-fid's load_state_dict_from_url finds the same file
    names = ["fid"]
    scorer = RealScorer(get_protocol("mead-edtalk"), names, {}, tmp_path, RealEvaluators(verify=False),
                        tmp_path / "features", fid_resamples=5)
    rows = []
    dirs = {"real": tmp_path / "gt_png", "fake": tmp_path / "gen_png"}
    for d in dirs.values():
        d.mkdir()
    pairs = (("M003#angry#level_3#001", "fake", "gt"), ("W009#sad#level_2#003", "tom", "astro"))
    for case, gen, gt in pairs:
        scores = scorer.score_frames(Case(case, {"emotion": "angry"}), clips[gen], clips[gt])
        rows.append(_row(case, scores, names))
        # the same paired aligned crops, as PNG folders
        from benchmarks.protocols.real import pair_crops
        from metrics.crops import crop

        a, b = pair_crops(crop(clips[gen], "eat-aligned").frames, crop(clips[gt], "eat-aligned").frames)
        for side, frames in (("fake", a), ("real", b)):
            for i, f in enumerate(frames):
                Image.fromarray(f).save(dirs[side] / f"{case}_{i:03d}.png")
    ours = scorer.aggregate_set("fid", rows)
    expected = fid_score.calculate_fid_given_paths([str(dirs["real"]), str(dirs["fake"])], 50, "cpu", 2048, 0)
    assert expected > 1e-3
    assert ours["mean"] == pytest.approx(expected, rel=1e-4)
    assert ours["n"] == 2 and ours["ci_low"] <= ours["ci_high"]
    # about 50 s on 2 shared cores, most of it pytorch-fid's scipy sqrtm of a 2048 x 2048 product


def test_sample_fid_equals_the_covariance_formula():
    from metrics.functional.image import fid_from_features

    rng = np.random.default_rng(0)
    for n_a, n_b in ((40, 30), (90, 70)):  # fewer and more samples than dimensions
        a, b = rng.standard_normal((n_a, 64)), rng.standard_normal((n_b, 64)) + 0.3
        assert sample_fid(a, b) == pytest.approx(fid_from_features(a, b), rel=1e-6)


# --- end to end from the CLI -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    import shutil

    from benchmarks.datasets.mini_mead import build_mini_mead
    from benchmarks.media import read_audio, read_video, write_video

    base = tmp_path_factory.mktemp("mini_mead")
    cases = ("M003#angry#level_3#001", "W009#sad#level_2#003")
    data = build_mini_mead(base / "root", cases, n_frames=30)
    gt_dir, copy_dir = base / "gen_gt", base / "gen_copy"
    gt_dir.mkdir()
    copy_dir.mkdir()
    for case in cases:
        frames, audio = read_video(data["videos"][case]).frames, read_audio(data["audio"][case])
        shutil.copy(data["videos"][case], gt_dir / f"{case}.mp4")  # the GT file itself: no speech in it
        # the "copy the source frame" baseline: the clip's first frame held, with the clip's speech
        write_video(copy_dir / f"{case}.mp4", np.repeat(frames[:1], len(frames), 0), fps=25, audio=audio)
    return {**data, "weights": base / "weights", "gt": gt_dir, "copy": copy_dir}


def _standins(mini, keys=None):
    """Seeded stand-ins (metrics.standin) in the mini dataset's weights folder; 600 MB for all seven."""
    from metrics.standin import STANDIN_KEYS, write_evaluator_standins

    return write_evaluator_standins(mini["weights"], seed=0, keys=keys or STANDIN_KEYS)


def _evaluate(mini, videos, out, *extra):
    from edtalk.cli import main

    return main(["evaluate", "--protocol", "mead-edtalk", "--videos", str(videos), "--data", str(mini["root"]),
                 "--lists", str(mini["lists"]), "--out", str(out), "--unverified-weights", "--fid-resamples", "5",
                 *extra])


@pytest.mark.slow
def test_cli_scores_gt_and_copy_baseline_with_provenance(mini, tmp_path, monkeypatch, capsys):
    """About 1 min per clip and method on 2 shared CPU cores (Inception x2, Hopenet, SyncNet, Emotion-FAN)."""
    _standins(mini)
    monkeypatch.setenv("EDTALK_WEIGHTS", str(mini["weights"]))
    results = {}
    for method in ("gt", "copy"):
        out = tmp_path / method / "results.json"
        assert _evaluate(mini, mini[method], out) == 0
        results[method] = json.loads(out.read_text())
    for method, res in results.items():
        assert set(res["aggregates"]) == set(TABLE1 + EXTRA), method
        assert len(res["per_sample"]) == 2
        for name in TABLE1 + EXTRA:
            prov = res["metric_provenance"][name]
            assert prov["crop"] in ("eat-aligned", "syncnet-track", "emotion-chip") and prov["detector"]
            assert all(len(w["sha256"]) == 64 for w in prov["weights"].values()), name
        assert res["metric_provenance"]["psnr"]["crop_encoding"] == "lossless"
        assert any("dlib-hog instead of" in d for d in res["metric_provenance"]["sync_conf"]["deviations"])
        for name in ("fid", "fid_eat"):
            assert res["aggregates"][name]["level"] == "set" and np.isfinite(res["aggregates"][name]["mean"])
    gt, copy = results["gt"], results["copy"]
    # the GT scored against itself: identical aligned crops
    assert gt["reference_aggregates"]["psnr"]["value"] is None  # infinite PSNR, said so
    assert gt["reference_aggregates"]["ssim"]["value"] == pytest.approx(1.0)
    assert gt["aggregates"]["m_lmd"]["mean"] == pytest.approx(0.0, abs=1e-9)
    for name in ("fid", "fid_eat", "pose_err"):
        assert gt["aggregates"][name]["mean"] == pytest.approx(0.0, abs=1e-9), name
    assert gt["metric_provenance"]["sync_conf"]["crop"] == "syncnet-track"
    audio = {r["extra"]["crops"]["syncnet-track"]["audio"] for r in gt["per_sample"]}
    assert audio == {"ground-truth speech (the video has none)"}
    # a frozen frame loses to the GT on every paired metric
    assert copy["reference_aggregates"]["ssim"]["value"] < 0.999
    assert copy["aggregates"]["m_lmd"]["mean"] > 0.05
    assert copy["aggregates"]["lpips"]["mean"] > gt["aggregates"]["lpips"]["mean"]
    assert copy["reference_aggregates"]["psnr"]["value"] < 60
    assert "reference" in capsys.readouterr().out


def test_cli_refuses_bad_input_in_one_line(mini, tmp_path, monkeypatch, capsys):
    import shutil

    monkeypatch.setenv("EDTALK_WEIGHTS", str(mini["weights"]))
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(next(mini["gt"].glob("M003*.mp4")), partial)
    assert _evaluate(mini, partial, tmp_path / "r.json") == 2
    err = capsys.readouterr().err.strip()
    assert "1 of 2 test cases have no video" in err and "W009#sad#level_2#003" in err and "\n" not in err
    # missing GT clips: the count and the names
    lists = tmp_path / "lists"
    from benchmarks.datasets.mini_mead import write_lists

    write_lists(lists, ["M003#angry#level_3#001", "W015#happy#level_1#001"])
    from edtalk.cli import main

    rc = main(["evaluate", "--protocol", "mead-edtalk", "--videos", str(mini["gt"]), "--data", str(mini["root"]),
               "--lists", str(lists), "--out", str(tmp_path / "x.json")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "1 of 2 test clips" in err and "W015#happy#level_1#001" in err


def test_missing_evaluator_weights_name_the_key(mini, tmp_path, monkeypatch):
    empty = tmp_path / "no_weights"
    empty.mkdir()
    monkeypatch.setenv("EDTALK_WEIGHTS", str(empty))
    ev = RealEvaluators(verify=False)
    with pytest.raises(MissingWeightsError, match="edtalk weights fetch syncnet-v2") as info:
        ev.require(["sync_conf"])
    assert "\n" not in str(info.value)


def test_resume_after_a_kill_loses_and_duplicates_nothing(mini, tmp_path, monkeypatch):
    """A run killed after the first clip (its row and features on disk) resumes with the second only."""
    from benchmarks.protocols import real

    _standins(mini, ["inception-v3-torchvision"])
    monkeypatch.setenv("EDTALK_WEIGHTS", str(mini["weights"]))
    out = tmp_path / "results.json"
    metrics = ["psnr", "m_lmd", "fid_eat"]
    calls = []
    original = real.RealScorer.score_frames

    def killed_after_one(self, case, *a, **k):
        if calls:
            raise KeyboardInterrupt
        calls.append(case.name)
        return original(self, case, *a, **k)

    monkeypatch.setattr(real.RealScorer, "score_frames", killed_after_one)
    assert _evaluate(mini, mini["copy"], out, "--metrics", ",".join(metrics)) == 130  # the CLI's Ctrl-C code
    rows = out.with_name(out.name + ".rows.jsonl").read_text().splitlines()
    assert len(rows) == 2  # header + the first case
    monkeypatch.setattr(real.RealScorer, "score_frames", original)
    seen = []
    monkeypatch.setattr(real.RealScorer, "score_frames",
                        lambda self, case, *a, **k: seen.append(case.name) or original(self, case, *a, **k))
    assert _evaluate(mini, mini["copy"], out, "--metrics", ",".join(metrics)) == 0
    assert seen == ["W009#sad#level_2#003"] and calls == ["M003#angry#level_3#001"]
    res = json.loads(out.read_text())
    assert [r["case"] for r in res["per_sample"]] == ["M003#angry#level_3#001", "W009#sad#level_2#003"]
    assert res["aggregates"]["fid_eat"]["n"] == 2 and np.isfinite(res["aggregates"]["fid_eat"]["mean"])
    assert sorted(p.name for p in out.with_name(out.name + ".features").iterdir()) == [
        "M003#angry#level_3#001.npz", "W009#sad#level_2#003.npz"]


def test_missing_video_case_error_is_raised_before_scoring():
    with pytest.raises(InputError):
        from benchmarks.protocols.real import check_videos

        check_videos("/nonexistent", [Case("M003#angry#level_3#001")])


def test_eat_roundtrip_option_reproduces_the_lossy_mp4v_pass(clips, tmp_path):
    """EAT's shipped pipeline scores crops written through OpenCV's mp4v: lossy, so PSNR moves; results say so."""
    names = ["psnr", "ssim"]
    case = Case("M003#angry#level_3#001", {"emotion": "angry"})
    runs = {}
    for roundtrip in (False, True):
        scorer = RealScorer(get_protocol("mead-edtalk"), names, {}, tmp_path, RealEvaluators(), tmp_path,
                            eat_roundtrip=roundtrip)
        row = _row(case.name, scorer.score_frames(case, clips["fake"], clips["gt"]), names)
        runs[roundtrip] = (scorer.reference_aggregates([row]), scorer.provenance([row]))
    lossless, shipped = runs[False], runs[True]
    assert lossless[0]["psnr"]["value"] != pytest.approx(shipped[0]["psnr"]["value"], abs=1e-3)
    assert abs(lossless[0]["psnr"]["value"] - shipped[0]["psnr"]["value"]) < 3.0
    assert lossless[1]["psnr"]["crop_encoding"] == "lossless"
    assert shipped[1]["psnr"]["crop_encoding"].startswith("mp4v round trip")
    assert not any("mp4v" in d for d in shipped[1]["psnr"]["deviations"])


def test_hdtf_ground_truth_is_a_cut_segment_or_the_full_video(tmp_path):
    from benchmarks.protocols.real import find_ground_truth

    (tmp_path / "RD_Radio1_000#2.mp4").write_bytes(b"")
    (tmp_path / "WDA_A_000.mp4").write_bytes(b"")
    found, missing = find_ground_truth("hdtf", tmp_path, ["RD_Radio1_000#2", "WDA_A_000#3", "WRA_B_000#1"])
    assert found["RD_Radio1_000#2"].video.name == "RD_Radio1_000#2.mp4" and found["RD_Radio1_000#2"].start == 0
    assert found["WDA_A_000#3"].video.name == "WDA_A_000.mp4" and found["WDA_A_000#3"].start == 10.0
    assert found["WDA_A_000#3"].duration == 5.0 and missing == ["WRA_B_000#1"]


def _eat_inception_standin(path) -> None:
    """torchvision inception_v3 by metrics.standin's rule (seed 3) with He gain on the convs, so features are
    O(0.1) instead of vanishing: the weights evaluation_eat's utils_fid ran with for eat_fid_ref.npz."""
    import torch
    from torchvision.models import inception_v3

    from metrics.standin import seeded_state_dict

    model = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    specs = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
             for k, v in model.state_dict().items()}
    state = {k: v * np.sqrt(2.0) if v.ndim == 4 else v for k, v in seeded_state_dict(specs, 3).items()}
    torch.save(state, path)


def test_fid_eat_equals_evaluation_eats_utils_fid(clips, tmp_path, monkeypatch):
    """eat_fid_ref.npz: evaluation_eat's utils_fid.calculate_fid / calculate_frechet_distance (test_fid.py's
    pairing and 5-frame sampling) on EAT's own aligned crops of (fake, gt) and (tom, astro)."""
    ref = dict(np.load(FACES / "eat_fid_ref.npz"))
    _eat_inception_standin(tmp_path / "inception_v3_google-0cc3c7bd.pth")
    monkeypatch.setenv("EDTALK_WEIGHTS", str(tmp_path))
    names = ["fid_eat"]
    scorer = RealScorer(get_protocol("mead-edtalk"), names, {}, tmp_path, RealEvaluators(verify=False),
                        tmp_path / "features", fid_resamples=5)
    rows = []
    for case, gen, gt in (("M003#angry#level_3#001", "fake", "gt"), ("W009#sad#level_2#003", "tom", "astro")):
        rows.append(_row(case, scorer.score_frames(Case(case, {"emotion": "sad"}), clips[gen], clips[gt]), names))
    fake = np.concatenate([scorer._load_features(r["case"], "fid_eat_fake") for r in rows])
    real = np.concatenate([scorer._load_features(r["case"], "fid_eat_real") for r in rows])
    np.testing.assert_allclose(fake, ref["fake_acts"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(real, ref["gt_acts"], rtol=0, atol=1e-5)
    assert scorer.aggregate_set("fid_eat", rows)["mean"] == pytest.approx(float(ref["fid"]), rel=1e-3)

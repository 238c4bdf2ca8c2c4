"""A sweep scored in both settings: EDTalk-A (results-audio.json) is its own table above EDTalk-V's, the ground
truth is a row of both, the claims read per-clip metrics from the audio setting and leakage from the video-driven
disentanglement.json, each row naming its setting; the matplotlib PDF opens with the claims table too."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_claims import _leakage
from test_table1 import _pdftotext_first_page

from benchmarks.protocols.engine import Case, evaluate
from benchmarks.protocols.ground_truth import GROUND_TRUTH_NAME, GroundTruthMethod
from reports import collect_results, render_report
from reports.claims import NOT_SIGNIFICANT, REPRODUCED, claims_section, evaluate_claims
from reports.collect import SETTING_TITLES
from reports.tables import build_tables

N = 12
CASES = [Case(f"clip{i:02d}", {"i": i}) for i in range(N)]
HARD = np.random.default_rng(3).normal(0, 1.0, N)


def scores(label: str, seed: int, setting: str, i: int) -> dict[str, float]:
    s = {"psnr": 24.0 + HARD[i] + 0.05 * seed + (1.0 if setting == "video" else 0.0), "acc_emo": float(i % 2 == 0)}
    if label == "no-eem" and setting == "audio":  # the drop shows only audio-driven: which setting is read matters
        s["acc_emo"] = 0.0
    if label == GROUND_TRUTH_NAME:
        s = {"acc_emo": 1.0}
    return s


def _score(here: Path, name: str, label: str, seed, setting: str | None, info: dict) -> None:
    evaluate("synthetic-smoke", lambda case: np.zeros((2, 8, 8, 3), np.uint8), CASES,
             lambda case, frames: scores(label, seed or 0, setting or "video", case.info["i"]), here / name,
             metrics=["acc_emo"] if label == GROUND_TRUTH_NAME else ["psnr", "acc_emo"], method_info=info,
             progress=False)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    """As `edtalk sweep --preset study` leaves it: per run results.json (EDTalk-V, no setting recorded, with
    disentanglement.json) and results-audio.json (EDTalk-A), and the ground truth's results.json."""
    root = tmp_path_factory.mktemp("settings")
    for label, seed in (("full", 0), ("full", 1), ("no-orthogonality", 0), ("no-eem", 0)):
        here = root / "runs" / f"{label}-s{seed}"
        run = {"variant": label, "seed": seed, "run_dir": str(here)}
        _score(here, "results.json", label, seed, None, run)
        _score(here, "results-audio.json", label, seed, "audio", {**run, "setting": "audio"})
        (here / "disentanglement.json").write_text(json.dumps(_leakage(0.05 if label == "full" else 0.4, True, 9)))
    _score(root / "ground-truth", "results.json", GROUND_TRUTH_NAME, None, None, dict(GroundTruthMethod.describe))
    return root


def test_the_audio_setting_is_its_own_table_first_with_the_ground_truth_in_both(sweep):
    runs = collect_results(sweep)
    assert sorted(r["setting"] or "-" for r in runs) == ["-"] * 5 + ["audio"] * 4
    audio, video = build_tables(runs)
    assert (audio.setting, video.setting) == ("audio", "video") and audio.protocol_key == video.protocol_key
    assert audio.title.endswith(SETTING_TITLES["audio"]) and video.title.endswith(SETTING_TITLES["video"])
    for t in (audio, video):
        assert [r.label for r in t.rows] == ["full", "no-orthogonality", "no-eem", GROUND_TRUTH_NAME]
    # each table holds its own setting's scores: video-driven PSNR is 1 dB above audio-driven by construction
    assert video.row("full").cells["psnr"].mean - audio.row("full").cells["psnr"].mean == pytest.approx(1.0)
    # the video table alone would not show no-eem's drop: the claims must read the audio table for it
    on_video = {(r.claim.variant, r.claim.metric): r.verdict for r in evaluate_claims(video)}
    assert on_video[("no-eem", "acc_emo")] == NOT_SIGNIFICANT


def test_claims_read_per_clip_metrics_audio_driven_and_leakage_video_driven(sweep):
    (view,) = claims_section(build_tables(collect_results(sweep)))
    rows = {(r["variant"], r["metric"]): r for r in view.rows}
    assert rows[("no-eem", "acc_emo")]["verdict"] == REPRODUCED
    assert rows[("no-eem", "acc_emo")]["setting"] == rows[("no-orthogonality", "acc_emo")]["setting"] == \
        "EDTalk-A (audio)"
    leak = rows[("no-orthogonality", "leakage")]
    assert leak["setting"] == "EDTalk-V (video)" and leak["verdict"] == REPRODUCED  # per-tuple CI, 0.05 -> 0.4
    # the ceiling row is read from the audio table it joined: full's 0.5 below the ground truth's 1.0
    assert view.has_ground_truth and rows[("no-eem", "acc_emo")]["ceiling"] == "1.000" and not view.saturated
    assert SETTING_TITLES["audio"] not in view.title


def test_report_shows_both_tables_and_the_pdf_fallback_opens_with_the_claims(sweep, tmp_path):
    out = render_report(sweep, html=True, pdf=True, out=tmp_path / "report.html", pdf_engine="matplotlib")
    html = out["html"].read_text()
    assert html.index('id="claims"') < html.index("EDTalk-A (audio-driven), the paper&#39;s setting") < \
        html.index(SETTING_TITLES["video"])
    assert 'data-variant="no-eem" data-metric="acc_emo" data-verdict="reproduced" data-setting="EDTalk-A (audio)"' \
        in html
    assert 'id="disentanglement"' in html  # the video-driven study, shown once per run
    assert out["pdf_engine"] == "matplotlib"
    page1 = _pdftotext_first_page(out["pdf"])
    for word in ("claims, tested", "w/o EEM", "no-eem", "acc_emo", "EDTalk-A (audio)", "EDTalk-V (video)",
                 "reproduced"):
        assert word in page1, word
    assert "EDTalk-Bench report" not in page1  # the title page comes after the claims

"""The claims table: made-up per-clip scores whose verdicts are known by construction, a ground-truth row
that makes one metric saturated, and the report that opens with the table (HTML in Chromium, PDF page 1)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from browser import load_in_chromium
from test_table1 import _pdftotext_first_page

from benchmarks.protocols.engine import Case, evaluate
from benchmarks.protocols.ground_truth import GROUND_TRUTH_NAME
from reports import collect_results, render_report
from reports.claims import (
    CLAIMS,
    NO_CI,
    NOT_READABLE,
    NOT_SIGNIFICANT,
    OPPOSITE,
    REPRODUCED,
    evaluate_claims,
    saturated_metrics,
    verdict,
)
from reports.tables import build_tables

N = 12
CASES = [Case(f"clip{i:02d}", {"i": i}) for i in range(N)]
HARD = np.random.default_rng(7).normal(0, 1.0, N)       # per-case difficulty, shared by every method
METRICS = ["psnr", "ssim", "acc_emo", "m_lmd"]


def scores(label: str, seed: int, i: int) -> dict[str, float]:
    right = float(i % 4 != 0)  # full and the ground truth: 3 clips in 4 read correctly (full at the ceiling)
    s = {"psnr": 25.0 + HARD[i] + 0.05 * seed, "ssim": 0.80 + 0.01 * HARD[i], "acc_emo": right,
         "m_lmd": 1.0 + 0.1 * HARD[i]}
    if label == "no-banks":     # PSNR clearly lower (claimed: reproduced); SSIM clearly higher (opposite)
        s["psnr"] -= 2.0
        s["ssim"] += 0.05
    elif label == "no-orthogonality":  # emotion accuracy: as often right, on other clips (not significant)
        s["acc_emo"] = float((i + 1) % 4 != 0)
    elif label == "no-eem":     # emotion accuracy drops on every clip (reproduced), yet full sits at the ceiling
        s["acc_emo"] = float(i == 3)
    elif label == GROUND_TRUTH_NAME:
        s = {"ssim": 1.0, "acc_emo": right, "m_lmd": 0.2 + 0.01 * HARD[i]}
    return s


def _leakage(off: float, per_tuple: bool, seed: int) -> dict:
    k = 3
    move = np.full((6, k, k), off) + np.random.default_rng(seed).uniform(0, 0.02, (6, k, k))
    move[:, np.arange(k), np.arange(k)] = 0.9
    ref = np.ones((6, k, k))
    leak = {"labels": ["mouth", "pose", "expression"], "matrix": (move.sum(0) / ref.sum(0)).tolist()}
    if per_tuple:
        leak["per_tuple"] = {"movement": move.tolist(), "reference": ref.tolist()}
    return {"leakage": leak}


def _build(root: Path) -> Path:
    runs = [("full", 0), ("full", 1), ("no-banks", 0), ("no-orthogonality", 0), ("no-eem", 0),
            (GROUND_TRUTH_NAME, None)]
    for label, seed in runs:
        here = root / (f"{label}-s{seed}" if seed is not None else "ground-truth")
        names = METRICS if label != GROUND_TRUTH_NAME else METRICS[1:]
        info = {"variant": label, "seed": seed} if seed is not None else {"kind": "ground-truth", "name": label}
        evaluate("synthetic-smoke", lambda case: np.zeros((2, 8, 8, 3), np.uint8), CASES,
                 lambda case, frames, label=label, seed=seed: scores(label, seed or 0, case.info["i"]),
                 here / "results.json", metrics=names, method_info=info, progress=False)
        if label == "full":
            doc = _leakage(0.05, True, seed)
        elif label == "no-banks":   # leakage clearly up, with per-tuple data: reproduced
            doc = _leakage(0.40, True, 9)
        elif label == "no-orthogonality":  # leakage up but one matrix only: no CI
            doc = _leakage(0.40, False, 9)
        else:
            continue
        (here / "disentanglement.json").write_text(json.dumps(doc))
    return root


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return _build(tmp_path_factory.mktemp("claims"))


def test_verdict_reads_the_ci_against_the_claimed_direction():
    assert verdict(-2.0, -0.5, -1) == REPRODUCED and verdict(0.5, 2.0, +1) == REPRODUCED
    assert verdict(0.5, 2.0, -1) == OPPOSITE and verdict(-2.0, -0.5, +1) == OPPOSITE
    assert verdict(-0.1, 0.3, -1) == NOT_SIGNIFICANT and verdict(0.0, 0.3, +1) == NOT_SIGNIFICANT
    assert verdict(float("nan"), 1.0, -1) == NO_CI and verdict(None, None, 1) == NO_CI


def test_claims_are_data_for_the_papers_three_ablations():
    assert {c.variant for c in CLAIMS} == {"no-banks", "no-orthogonality", "no-eem"}
    assert all(c.expected in (-1, 1) for c in CLAIMS)
    assert ("no-eem", "acc_emo", -1) in {(c.variant, c.metric, c.expected) for c in CLAIMS}


def test_known_effects_get_their_verdicts(results):
    (table,) = build_tables(collect_results(results))
    got = {(r.claim.variant, r.claim.metric): r for r in evaluate_claims(table)}
    assert ("no-banks", "fid") not in got  # the protocol has no FID: that claim is left out, not failed
    psnr = got[("no-banks", "psnr")]
    assert psnr.verdict == REPRODUCED and psnr.effect == pytest.approx(-2.0 - 0.025, abs=1e-9)
    assert psnr.hi < 0 and psnr.n == N
    assert psnr.full_seeds == 2 and psnr.full_seed_spread == pytest.approx(0.05)  # seed 1 is +0.05 dB
    assert psnr.paper_full == pytest.approx(21.628) and psnr.paper_variant == pytest.approx(20.302)
    assert got[("no-banks", "ssim")].verdict == OPPOSITE
    assert got[("no-orthogonality", "acc_emo")].verdict == NOT_SIGNIFICANT
    eem = got[("no-eem", "acc_emo")]
    assert eem.verdict == REPRODUCED and eem.saturated and eem.ceiling == pytest.approx(0.75)
    leak = got[("no-banks", "leakage")]
    assert leak.verdict == REPRODUCED and leak.lo > 0.3 and leak.n == 6
    assert got[("no-banks", "responsiveness")].verdict in (NOT_SIGNIFICANT, NO_CI)
    assert got[("no-orthogonality", "leakage")].verdict == NO_CI
    assert got[("no-orthogonality", "leakage")].effect == pytest.approx(0.35, abs=0.03)


def test_a_metric_of_full_at_the_ground_truths_ceiling_is_flagged_saturated(results):
    (table,) = build_tables(collect_results(results))
    sat = saturated_metrics(table)
    # acc_emo: full 0.75 = ground truth 0.75; m_lmd/ssim: full is far from the evaluator's ceiling
    assert set(sat) == {"acc_emo"} and sat["acc_emo"] == pytest.approx(0.75)
    assert table.row(GROUND_TRUTH_NAME).cells["psnr"] is None


def test_a_missing_variant_is_not_measured_and_says_why(results, tmp_path):
    import shutil

    part = tmp_path / "part"
    shutil.copytree(results, part, ignore=shutil.ignore_patterns("no-eem-*"))
    (table,) = build_tables(collect_results(part))
    (eem,) = [r for r in evaluate_claims(table) if r.claim.variant == "no-eem"]
    assert eem.verdict == "not measured" and "no-eem" in eem.why


def test_disentanglement_claims_are_not_readable_while_full_ignores_a_driver(results, tmp_path):
    import shutil

    part = tmp_path / "deaf"
    shutil.copytree(results, part)
    for seed in (0, 1):  # full's expression no longer follows its driver (issue 19's smoke: 0.02)
        path = part / f"full-s{seed}" / "disentanglement.json"
        doc = json.loads(path.read_text())
        doc["leakage"]["matrix"][2][2] = 0.02
        path.write_text(json.dumps(doc))
    (table,) = build_tables(collect_results(part))
    got = {(r.claim.variant, r.claim.metric): r for r in evaluate_claims(table)}
    for key in (("no-banks", "leakage"), ("no-banks", "responsiveness"), ("no-orthogonality", "leakage")):
        assert got[key].verdict == NOT_READABLE and "expression 0.02" in got[key].why, key
    assert got[("no-banks", "psnr")].verdict == REPRODUCED  # the other claims are read as before


def _with_emotion_transfer(results, tmp_path, accuracy: float) -> Path:
    """The fixture's results with full's cross-driving emotion accuracy set (8 tuples, 8 emotion classes)."""
    import shutil

    part = tmp_path / f"transfer-{accuracy}"
    shutil.copytree(results, part)
    for seed in (0, 1):
        here = part / f"full-s{seed}"
        doc = json.loads((here / "disentanglement.json").read_text())
        doc["transfer"] = {"expression": {"accuracy": accuracy, "n_clips": 8}}
        (here / "disentanglement.json").write_text(json.dumps(doc))
        labels = ["angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised"]
        (here / "confusion.json").write_text(json.dumps({"labels": labels, "matrix": np.eye(8, dtype=int).tolist()}))
    return part


def test_emotion_claims_say_when_full_does_not_take_its_expression_drivers_emotion(results, tmp_path):
    from reports.claims import claims_section

    def rows(accuracy):
        (view,) = claims_section(build_tables(collect_results(_with_emotion_transfer(results, tmp_path, accuracy))))
        return {(r["variant"], r["metric"]): r for r in view.rows}

    deaf, hearing = rows(0.0), rows(0.5)
    for key in (("no-orthogonality", "acc_emo"), ("no-eem", "acc_emo")):
        assert "does not take its expression driver's emotion" in deaf[key]["why"], key
        assert "accuracy 0.00 over 8 tuples, chance 0.12" in deaf[key]["why"], key
        assert "expression driver" not in hearing[key]["why"], key
        assert deaf[key]["verdict"] == hearing[key]["verdict"], key  # a note, never a changed verdict
    assert "saturated: cannot show a drop" in deaf[("no-orthogonality", "acc_emo")]["why"]  # kept beside the note
    assert "expression driver" not in deaf[("no-banks", "psnr")]["why"]  # only the emotion claims get it


def test_the_report_opens_with_the_claims_table_and_closes_with_the_timings(results, tmp_path):
    (results / "timings.json").write_text(json.dumps({"phases_s": {"world": 120.0, "sweep": 2400.0}}))
    out = render_report(results, html=True, pdf=True, out=tmp_path / "report.html")
    html = out["html"].read_text()
    assert html.index('id="claims"') < html.index('id="results"') < html.index('id="timings"')
    assert "<th scope=\"row\">total</th><td>42.0 min</td>" in html
    assert 'data-claim="bank-quality" data-variant="no-banks" data-metric="psnr" data-verdict="reproduced"' in html
    assert 'data-variant="no-banks" data-metric="ssim" data-verdict="opposite"' in html
    assert 'class="note saturated-note" data-metric="acc_emo"' in html
    assert f'data-variant="{GROUND_TRUTH_NAME}"' in html  # the ceiling row in the results table
    if out["pdf_engine"] == "weasyprint":
        page1 = _pdftotext_first_page(out["pdf"])  # -layout: a wrapped cell's words land on several lines
        for word in ("claims, tested", "w/o Bank", "w/o EEM", "lowers", "no-banks", "reproduced", "opposite",
                     "not significant", "saturated", "21.628 → 20.302"):
            assert word in page1, word
        assert "Results by protocol" not in page1  # the results start on page 2
    load_in_chromium(out["html"], tmp_path, "1400,1000")

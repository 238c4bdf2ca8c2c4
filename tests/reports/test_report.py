"""reports: genuine results.json files from the evaluation engine → HTML and PDF.

Three variants × two seeds are scored by `benchmarks.protocols.engine.evaluate` with a fake method
and a scorer whose effects are known by construction, so the test knows which cell must be best,
which Δ must be significant and in which direction. The HTML is then checked for self-containment
and loaded in headless Chromium; the PDF pages are rasterised with pdftoppm.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import load_in_chromium

from benchmarks.datasets.common import EMOTIONS
from benchmarks.protocols.engine import Case, bootstrap_ci, evaluate
from reports import collect_results, render_report
from reports.stats import paired_diff_ci, seed_pooled_ci

VARIANTS = ("full", "no-eem", "no-orthogonality")
SEEDS = (0, 1)
METRICS = ["psnr", "m_lmd", "acc_emo"]
N_CASES = 8
CASES = [Case(f"clip{i:02d}", {"i": i}) for i in range(N_CASES)]
# Effects by construction: every case has a common difficulty (cancels in paired differences).
CASE_EFFECT = np.random.default_rng(123).normal(0, 1.0, N_CASES)
ALTERNATE = np.array([0.5 if i % 2 else -0.5 for i in range(N_CASES)])


def scores_for(variant: str, seed: int, i: int) -> dict[str, float]:
    c, s = CASE_EFFECT[i], 0.01 * seed
    psnr = 20.0 + c + s
    m_lmd = 1.5 + 0.05 * c
    acc = 0.6 + 0.01 * c
    if variant == "no-eem":  # clearly worse PSNR, clearly better (lower) M-LMD, worse accuracy
        psnr, m_lmd, acc = psnr - 3.0, m_lmd - 0.3, acc - 0.2
    elif variant == "no-orthogonality":  # PSNR: +0.05 on average, ±0.5 per case (not significant)
        psnr, m_lmd, acc = psnr + 0.05 + ALTERNATE[i], m_lmd + 0.3, acc + 0.02
    return {"psnr": psnr, "m_lmd": m_lmd, "acc_emo": acc}


def _write_run_dir(run: Path, seed: int) -> None:
    from PIL import Image

    (run / "logs").mkdir(parents=True)
    (run / "samples").mkdir()
    for stage in ("autoencoder", "mouth_pose"):
        lines = ["step,loss_rec,loss_adv"] + [f"{s},{2.0 / (1 + s) + 0.1 * seed:.6g},{0.5 + 0.01 * s:.6g}"
                                              for s in range(0, 50, 10)]
        (run / "logs" / f"{stage}.csv").write_text("\n".join(lines) + "\n")
    rng = np.random.default_rng(seed)
    for step in (10, 20):
        Image.fromarray(rng.integers(0, 255, (32, 96, 3), dtype=np.uint8)).save(
            run / "samples" / f"autoencoder_{step:06d}.png")


def _build(root: Path) -> Path:
    from benchmarks.media import write_video

    results = root / "results"
    for v in VARIANTS:
        for seed in SEEDS:
            run = root / "runs" / f"{v}-s{seed}"
            _write_run_dir(run, seed)
            here = results / v / f"seed{seed}"

            def method(case, v=v):
                return np.full((3, 16, 16, 3), 40 * (VARIANTS.index(v) + 1), np.uint8)

            def scorer(case, frames, v=v, seed=seed):
                return scores_for(v, seed, case.info["i"])

            evaluate("synthetic-smoke", method, CASES, scorer, here / "results.json", metrics=METRICS,
                     method_info={"variant": v, "seed": seed, "run_dir": str(run)}, seeds={"seed": seed},
                     config={"preset": "smoke", "variant": v},
                     evaluator_weights={"synthetic-landmarks": "ab" * 32},
                     progress=False)
            if v != "no-orthogonality":
                leak = np.eye(3) * 0.9 + (0.05 if v == "full" else 0.3) * (1 - np.eye(3))
                (here / "disentanglement.json").write_text(json.dumps({
                    "leakage": {"labels": ["mouth", "pose", "expression"], "matrix": leak.tolist()},
                    "transfer": {"mouth": {"mae": 0.1 + seed * 0.01, "pearson": 0.9},
                                 "expression": {"accuracy": 0.7}},
                    "bank_geometry": {"orthonormality_error": 1e-6, "min_angle_deg": {"mouth/pose": 89.9}}}))
                conf = np.eye(8) * 5 + np.random.default_rng(seed).integers(0, 2, (8, 8))
                (here / "confusion.json").write_text(json.dumps({
                    "labels": list(EMOTIONS),
                    "matrix": conf.tolist()}))
            if seed == 0 and v == "full":
                frames = np.zeros((10, 32, 32, 3), np.uint8)
                frames[:, 8:24, 8:24] = np.linspace(0, 255, 10, dtype=np.uint8)[:, None, None, None]
                write_video(here / "videos" / "clip00.mp4", frames, fps=25)
    (results / "evaluators.json").write_text(json.dumps({
        "split": "test", "clips": 24,
        "synthetic-emotion": {"val_accuracy": 0.97, "n_val": 400},
        "synthetic-pose": {"val_mae_deg": {"yaw": 0.8, "pitch": 0.9}}}))
    decoy = results / "training" / "audio"
    decoy.mkdir(parents=True)
    (decoy / "results.json").write_text(json.dumps({"schema": "edtalk-bench/audio-stage@1"}))
    return results


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    results = _build(root)
    out = render_report(results, html=True, pdf=True, out=root / "out" / "report.html")
    return {"root": root, "results": results, "out": out, "html": out["html"].read_text()}


class _Cells(HTMLParser):
    """Every results-table cell: (variant, kind, metric) -> {"class", attrs…, "text"}."""

    def __init__(self):
        super().__init__()
        self.cells: dict[tuple[str, str, str], dict] = {}
        self.row: dict = {}
        self.cur: dict | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr":
            self.row = a
        elif tag == "td" and "data-metric" in a and "data-variant" in self.row:
            self.cur = {**a, "text": ""}
            self.cells[(self.row["data-variant"], self.row["data-kind"], a["data-metric"])] = self.cur

    def handle_endtag(self, tag):
        if tag == "td":
            self.cur = None

    def handle_data(self, data):
        if self.cur is not None:
            self.cur["text"] += data


def _independent_means(results: Path) -> dict[tuple[str, str], float]:
    """Mean of per-seed means, straight from the files (no reports code)."""
    per: dict[tuple[str, str], list[float]] = {}
    for p in results.rglob("results.json"):
        d = json.loads(p.read_text())
        if d.get("schema") != "edtalk-bench/results@1":
            continue
        for m in METRICS:
            per.setdefault((d["method"]["variant"], m), []).append(
                float(np.mean([r["scores"][m] for r in d["per_sample"]])))
    return {k: float(np.mean(v)) for k, v in per.items()}


def test_collect_finds_runs_and_extras(built):
    runs = collect_results(built["results"])
    assert sorted((r["label"], r["seed"]) for r in runs) == sorted((v, s) for v in VARIANTS for s in SEEDS)
    full0 = next(r for r in runs if r["label"] == "full" and r["seed"] == 0)
    ex = full0["extras"]
    assert set(ex["curves"]) == {"autoencoder", "mouth_pose"}
    assert ex["curves"]["autoencoder"]["step"][-1] == 40
    assert [p.name for p in ex["videos"]] == ["clip00.mp4"] and len(ex["samples"]) == 2
    assert ex["disentanglement"]["leakage"]["matrix"][0][1] == pytest.approx(0.05)
    orth = next(r for r in runs if r["label"] == "no-orthogonality")
    assert orth["extras"]["confusion"] is None and orth["extras"]["videos"] == []


def test_table_best_delta_and_paper_rows(built):
    parser = _Cells()
    parser.feed(built["html"])
    cells = parser.cells
    expected = _independent_means(built["results"])
    for (v, m), mean in expected.items():
        assert float(cells[(v, "ours", m)]["data-mean"]) == pytest.approx(mean, rel=1e-9)
    best = {m: [v for v in VARIANTS if "best" in cells[(v, "ours", m)]["class"].split()] for m in METRICS}
    assert best == {"psnr": ["no-orthogonality"], "m_lmd": ["no-eem"], "acc_emo": ["no-orthogonality"]}
    # Independently: argmax/argmin of the file means agrees with the construction above.
    assert max(VARIANTS, key=lambda v: expected[(v, "psnr")]) == "no-orthogonality"
    assert min(VARIANTS, key=lambda v: expected[(v, "m_lmd")]) == "no-eem"
    eem_psnr, eem_lmd = cells[("no-eem", "ours", "psnr")], cells[("no-eem", "ours", "m_lmd")]
    assert float(eem_psnr["data-delta"]) == pytest.approx(-3.0) and eem_psnr["data-significant"] == "1"
    assert "Δ -3.00†" in eem_psnr["text"] and "worse" in built["html"]
    assert float(eem_lmd["data-delta"]) == pytest.approx(-0.3) and eem_lmd["data-significant"] == "1"
    orth_psnr = cells[("no-orthogonality", "ours", "psnr")]
    assert float(orth_psnr["data-delta"]) == pytest.approx(0.05) and orth_psnr["data-significant"] == "0"
    assert "†" not in orth_psnr["text"]
    assert float(cells[("no-orthogonality", "ours", "m_lmd")]["data-delta"]) > 0
    assert "data-delta" not in cells[("full", "ours", "psnr")]  # the reference has no Δ
    # Paper rows: their own rows, labelled as MEAD numbers not comparable with the synthetic scale.
    assert float(cells[("full", "paper", "psnr")]["data-mean"]) == pytest.approx(21.628)
    assert float(cells[("no-eem", "paper", "acc_emo")]["data-mean"]) == pytest.approx(49.37)
    assert float(cells[("no-orthogonality", "paper", "acc_emo")]["data-mean"]) == pytest.approx(38.71)
    assert "best" not in cells[("full", "paper", "psnr")].get("class", "")
    assert built["html"].count("paper (MEAD), not comparable in scale") >= 4  # block header + 3 rows


def test_html_is_self_contained_with_all_sections(built):
    html = built["html"]
    assert "http://" not in html and "https://" not in html and 'src="file' not in html
    assert "<script" not in html and "<link" not in html
    srcs = re.findall(r'\s(?:src|poster|href)="([^"]*)"', html)
    outside = [s[:40] for s in srcs if not s.startswith(("data:", "#"))]
    assert srcs and not outside, outside
    # bars, 2 leakage maps, 2 confusion matrices, 2 stages of curves, 3 variants' strips
    assert html.count('src="data:image/png;base64,') >= 1 + 2 + 2 + 2 + 3
    assert 'src="data:video/mp4;base64,' in html
    assert "A model&#39;s metric is only as good as its evaluator" in html and "val_accuracy" in html
    assert 'data-evaluator="overview"' in html and "val_mae_deg.pitch" in html
    assert "<details" in html and "ab" * 6 in html  # provenance with evaluator weight hashes
    assert "edtalk-bench/audio-stage@1" not in html  # the decoy was not read


def _nonblank(png: Path) -> bool:
    from PIL import Image

    a = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    return a.std() > 5 and (a < 128).mean() > 0.002


def _pdf_pages_nonblank(pdf: Path, tmp: Path) -> int:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm not installed (apt-get install poppler-utils): PDF pages not rasterised")
    subprocess.run(["pdftoppm", "-png", "-r", "50", str(pdf), str(tmp / "page")], check=True, timeout=60)
    pages = sorted(tmp.glob("page-*.png"))
    assert pages and all(p.stat().st_size > 0 for p in pages)
    assert _nonblank(pages[0]) and sum(_nonblank(p) for p in pages) >= len(pages) // 2
    return len(pages)


def test_pdf_weasyprint(built, tmp_path):
    pdf = built["out"]["pdf"]
    assert pdf == built["root"] / "out" / "report.pdf" and pdf.read_bytes().startswith(b"%PDF")
    try:
        import weasyprint  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        assert built["out"]["pdf_engine"] == "matplotlib", exc
    else:
        assert built["out"]["pdf_engine"] == "weasyprint"
    assert _pdf_pages_nonblank(pdf, tmp_path) >= 2


def test_pdf_fallback_when_weasyprint_cannot_run(built, tmp_path, monkeypatch, capsys):
    from reports import render

    monkeypatch.setattr(render, "_weasyprint_error", lambda: "OSError: cannot load library 'libpango-1.0-0'")
    out = render_report(built["results"], html=False, pdf=True, out=tmp_path / "fb")
    assert out["html"] is None and out["pdf_engine"] == "matplotlib"
    assert out["pdf"] == tmp_path / "fb" / "report.pdf"
    assert "matplotlib fallback" in capsys.readouterr().err
    assert _pdf_pages_nonblank(out["pdf"], tmp_path) >= 8  # title, table, bars, leakage, confusion, curves…


def test_html_renders_in_headless_chromium(built, tmp_path):
    assert _nonblank(load_in_chromium(built["out"]["html"], tmp_path, "1280,2000"))


def test_cli_report_and_empty_dir_error(built, tmp_path, capsys):
    from edtalk.cli import main

    target = tmp_path / "cli" / "r.html"
    assert main(["report", str(built["results"]), "--html", "--out", str(target)]) == 0
    assert target.is_file() and not target.with_suffix(".pdf").exists()
    assert main(["report", str(tmp_path / "cli")]) == 2
    assert "no edtalk-bench/results@1 results.json found" in capsys.readouterr().err


def test_bootstrap_helpers_match_engine_and_detect_shifts():
    x = np.random.default_rng(4).normal(3, 1, 30)
    mean, lo, hi = seed_pooled_ci([x])
    assert mean == pytest.approx(x.mean()) and (lo, hi) == pytest.approx(bootstrap_ci(x, 2000, 0))
    y = np.random.default_rng(5).normal(0, 1, 40)
    d, lo, hi, n = paired_diff_ci(y + 0.8, y + np.random.default_rng(6).normal(0, 0.1, 40))
    assert n == 40 and lo > 0 and lo < d < hi
    d, lo, hi, n = paired_diff_ci(y + ALTERNATE.repeat(5), y)
    assert d == pytest.approx(0.0, abs=1e-12) and lo < 0 < hi


def test_a_run_with_shared_stages_shows_the_parents_curves_for_them(tmp_path):
    from reports.collect import _extras

    parent, child = tmp_path / "runs" / "full-s0", tmp_path / "runs" / "no-eem-s0"
    _write_run_dir(parent, 0)
    (child / "logs").mkdir(parents=True)
    (child / "logs" / "expression.csv").write_text("step,loss_rec\n1,0.5\n2,0.4\n")
    (child / "config.json").write_text(json.dumps({"shared_stages": {
        "from": str(parent / "checkpoints" / "mouth_pose.pt"), "stages": ["autoencoder", "mouth_pose"]}}))
    ex = _extras(child / "results.json", {"run_dir": str(child)}, tmp_path)
    assert set(ex["curves"]) == {"autoencoder", "mouth_pose", "expression"}
    assert ex["curves"]["autoencoder"]["step"][-1] == 40 and ex["curves"]["expression"]["step"] == [1, 2]

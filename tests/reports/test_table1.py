"""The Table-1 report: two methods' results.json on mead-edtalk (written by the evaluation engine with a scorer
of known per-clip values and E's per-metric provenance fields) -> HTML (headless Chromium) and PDF (table on
page 1), with the paper's rows, best per column and a pipeline footnote per metric."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from browser import load_in_chromium

from benchmarks.datasets.real import official_test_names, parse_official_name
from benchmarks.protocols.engine import Case, bootstrap_ci, evaluate
from benchmarks.protocols.registry import get_protocol

CASES = [Case(n, parse_official_name(n)) for n in official_test_names("mead")[:4]]
CLIP_METRICS = ("psnr", "ssim", "m_lmd", "f_lmd", "sync_conf", "lse_d", "acc_emo", "lpips", "csim", "pose_err")
# per-clip values by construction: EDTalk-A beats copy-source on everything but CSIM (copying the source wins)
BASE = {"psnr": 28.0, "ssim": 0.80, "m_lmd": 1.5, "f_lmd": 1.3, "sync_conf": 6.0, "lse_d": 8.0, "acc_emo": 1.0,
        "lpips": 0.10, "csim": 0.80, "pose_err": 3.0}
WORSE = {"psnr": -4.0, "ssim": -0.1, "m_lmd": 0.5, "f_lmd": 0.4, "sync_conf": -5.0, "lse_d": 3.0, "acc_emo": -1.0,
         "lpips": 0.1, "csim": 0.15, "pose_err": 2.0}


class KnownScorer:
    """Per-clip scores, set-level FIDs and the provenance records benchmarks.protocols.real writes."""

    def __init__(self, worse: bool):
        self.worse = worse

    def __call__(self, case, frames):
        i = CASES.index(case)
        out = {m: BASE[m] + (WORSE[m] if self.worse else 0.0) + 0.01 * i for m in CLIP_METRICS}
        out["acc_emo"] = float(i % 2 == 0) if self.worse else 1.0
        out.update(fid=None, fid_eat=None, pairs=10, psnr_sum=10 * out["psnr"], ssim_sum=10 * out["ssim"])
        return out

    def aggregate_set(self, name, rows):
        value = (40.0 if self.worse else 20.0) + (1.0 if name == "fid_eat" else 0.0)
        return {"mean": value, "ci_low": value - 2, "ci_high": value + 2, "n": len(rows), "n_images": 40,
                "n_invalid": 0, "higher_is_better": False, "level": "set",
                "ci": "95% percentile bootstrap over clips, 20 resamples",
                "note": "40 images per side (< 2048): singular covariances, biased upwards"}

    def reference_aggregates(self, rows):
        pairs = sum(r["extra"]["pairs"] for r in rows)
        out = {n: {"value": sum(r["extra"][f"{n}_sum"] for r in rows) / pairs, "frame_pairs": pairs,
                   "aggregation": "pooled over every frame pair of every video (EAT test_psnr_ssim.py)"}
               for n in ("psnr", "ssim")}
        for n in ("m_lmd", "f_lmd"):
            out[n] = {"value": float(np.mean([r["scores"][n] for r in rows])), "videos": len(rows),
                      "aggregation": "per-video mean, then mean over videos (EAT test_lmd.py)"}
        return out

    def provenance(self, rows):
        aligned = {"crop": "eat-aligned", "detector": ["dlib-68"], "deviations": [], "dropped_frames": 2,
                   "dropped_videos": 0, "crop_encoding": "lossless",
                   "weights": {"dlib-68": {"path": "/w/dlib68.dat", "sha256": "ab" * 32, "manifest_check": "ok"}}}
        sync = {"crop": "syncnet-track", "detector": ["dlib-hog"], "crop_encoding": None, "dropped_frames": 0,
                "dropped_videos": 0, "deviations": ["face detector dlib-hog instead of S3FD (sfd_face.pth not found)"],
                "weights": {"syncnet-v2": {"sha256": "cd" * 32, "manifest_check": "stand-in (hash not in manifest)"}}}
        return {m: sync if m in ("sync_conf", "lse_d") else aligned for m in (*CLIP_METRICS, "fid", "fid_eat")}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("table1")
    gen = root / "gen" / "edtalk-a"
    gen.mkdir(parents=True)
    (gen / "generate.json").write_text(json.dumps({"method": {
        "name": "EDTalk-A", "setting": "audio", "source_frame": "the first frame of the ground-truth clip",
        "drivers": {"mouth": "audio-to-lip model", "pose": "GT frame i", "expression": "GT frames"}}}))
    files = {}
    for name, worse in (("edtalk-a", False), ("copy-source", True)):
        out = root / f"{name}.json"
        method = {"kind": "videos", "name": name, "path": str(root / "gen" / name)}
        evaluate("mead-edtalk", lambda case: np.zeros((2, 8, 8, 3), np.uint8), CASES, KnownScorer(worse), out,
                 method_info=method, progress=False)
        files[name] = out
    return files


class _Cells(HTMLParser):
    """{(method, source, metric): {"value": data-value, "class", "text", "colspan"}} of the Table-1 tables."""

    def __init__(self):
        super().__init__()
        self.cells, self.method, self.source, self.cell, self.in_source = {}, None, None, None, False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "data-method" in a:
            self.method = a["data-method"]
        elif tag == "td" and a.get("class") == "source":
            self.in_source = True
        elif tag == "td" and "data-metric" in a and self.method:
            self.cell = {"value": a.get("data-value"), "class": a.get("class", ""), "text": "",
                         "colspan": a.get("colspan")}
            self.cells[(self.method, self.source, a["data-metric"])] = self.cell

    def handle_endtag(self, tag):
        if tag == "td":
            self.cell, self.in_source = None, False
        elif tag == "tr":
            self.method = None

    def handle_data(self, data):
        if self.in_source:
            self.source = data.strip()
        elif self.cell is not None:
            self.cell["text"] += data


def test_table_cells_best_and_paper_rows(results, tmp_path):
    from reports.table1 import render_table1

    out = render_table1([results["edtalk-a"], results["copy-source"]], html=True, pdf=False, out=tmp_path)
    parser = _Cells()
    parser.feed(out["html"].read_text())
    cells = parser.cells
    # the EAT-style number: PSNR pooled over 10 pairs per clip = the clip mean here; Acc_emo in percent
    assert float(cells[("edtalk-a", "ours", "psnr")]["value"]) == pytest.approx(28.015)
    assert float(cells[("copy-source", "ours", "acc_emo")]["value"]) == pytest.approx(50.0)
    assert float(cells[("copy-source", "ours", "fid_eat")]["value"]) == pytest.approx(41.0)
    lo, hi = bootstrap_ci(sorted(28.0 + 0.01 * i for i in range(4)), 2000, 0)  # rows are sorted by case name
    assert f"clip mean 28.015[{lo:.3f}, {hi:.3f}]" in cells[("edtalk-a", "ours", "psnr")]["text"]
    best = {m for (meth, src, m), c in cells.items() if src == "ours" and "best" in c["class"].split()
            and meth == "copy-source"}
    assert best == {"csim"}  # copy-source is best only where copying the source wins
    assert all("best" in cells[("edtalk-a", "ours", m)]["class"] for m in (*CLIP_METRICS, "fid", "fid_eat")
               if m != "csim")
    # the paper's rows, marked paper; its FID spans both FID columns; an unreadable cell is "?"
    assert float(cells[("EDTalk-A", "paper", "psnr")]["value"]) == pytest.approx(21.628)
    assert float(cells[("EDTalk-A", "paper", "acc_emo")]["value"]) == pytest.approx(67.32)
    assert cells[("EDTalk-V", "paper", "fid")]["colspan"] == "2" and ("EDTalk-V", "paper", "fid_eat") not in cells
    assert cells[("EDTalk-V", "paper", "f_lmd")]["text"].strip() == "?"
    assert float(cells[("EAT", "paper", "fid")]["value"]) == pytest.approx(21.465)


def test_footnote_per_metric_names_the_pipeline(results, tmp_path):
    from reports.table1 import build_table1, gather_runs

    (table,) = build_table1(gather_runs([results["edtalk-a"], results["copy-source"]]))
    notes = {f["metric"]: f for f in table["footnotes"]}
    assert set(notes) == set(get_protocol("mead-edtalk").metric_names)
    assert notes["psnr"]["pipeline"] == ["crop eat-aligned (lossless); detector dlib-68; weights dlib-68 sha256 "
                                         "abababababab… (ok); deviations: none"]
    assert notes["psnr"]["notes"] == ["Dropped (faceless frames, unscored videos): edtalk-a 2 frames; "
                                      "copy-source 2 frames"]
    assert "dlib-hog instead of S3FD" in notes["sync_conf"]["pipeline"][0]
    assert "pooled over every frame pair" in notes["psnr"]["aggregation"]
    assert "Set-level" in notes["fid"]["aggregation"] and "biased upwards" in notes["fid"]["notes"][0]
    assert notes["lpips"]["extra"] and not notes["psnr"]["extra"]
    methods = {m["label"]: m for m in table["methods"]}
    assert methods["edtalk-a"]["generation"]["setting"] == "audio" and methods["copy-source"]["generation"] is None


def _pdftotext_first_page(pdf: Path) -> str:
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext not installed (apt-get install poppler-utils)")
    return subprocess.run(["pdftotext", "-f", "1", "-l", "1", "-layout", str(pdf), "-"], check=True,
                          capture_output=True, text=True, timeout=60).stdout


def test_cli_report_html_in_chromium_and_pdf_table_on_page_one(results, tmp_path, capsys):
    from edtalk.cli import main

    assert main(["report", str(results["edtalk-a"]), str(results["copy-source"]), "--html", "--pdf",
                 "--out", str(tmp_path / "t1")]) == 0
    html, pdf = tmp_path / "t1" / "table1.html", tmp_path / "t1" / "table1.pdf"
    assert f"html: {html}" in capsys.readouterr().out and pdf.read_bytes().startswith(b"%PDF")
    page1 = _pdftotext_first_page(pdf)
    for word in ("PSNR", "SSIM", "M-LMD", "F-LMD", "FID", "Sync_conf", "Acc_emo", "edtalk-a", "copy-source",
                 "paper", "21.628", "28.015", "Pose err", "LPIPS"):
        assert word in page1, word
    text = html.read_text()
    assert "<script" not in text and "http://" not in text and "https://" not in text
    load_in_chromium(html, tmp_path, "1400,1200")


def test_a_synthetic_results_file_is_not_a_table1_input(tmp_path):
    from reports.table1 import build_table1, is_table1

    out = tmp_path / "synthetic.json"
    evaluate("synthetic-smoke", lambda case: np.zeros((2, 8, 8, 3), np.uint8), [Case("a")],
             lambda case, frames: {"psnr": 1.0}, out, metrics=["psnr"], progress=False)
    run = {"path": out, "label": "x", "results": json.loads(out.read_text())}
    assert not is_table1([run])
    from metrics.errors import InputError

    with pytest.raises(InputError, match="no results of a real protocol"):
        build_table1([run])

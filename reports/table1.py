"""The paper's Table 1 from `edtalk evaluate` results on the real protocols (mead-edtalk, hdtf-edtalk).

    edtalk report gen/edtalk-a.json gen/copy-source.json --html --pdf --out table1/

One table per dataset: a row per results file (a method: ours, a baseline's videos, a user's), a column per
metric in Table 1's order (PSNR, SSIM, M-LMD, F-LMD, FID, Sync_conf, Acc_emo) then our extra columns (FID of
EAT's Inception, LSE-D, LPIPS, CSIM, pose error). A cell shows the number as the reference pipeline aggregates
it (`reference_aggregates`: EAT pools PSNR/SSIM over every frame pair, averages LMD per video) where the results
have one, else the mean over clips; under it the mean over clips with its 95% bootstrap CI over clips. Bold =
best of our rows in that column. The paper's rows (reports/paper_table1.json: only the cells that could be
read) sit below ours, marked "paper"; its FID spans both FID columns because which Inception it used is
unknown. A footnote per metric says which pipeline produced it, from each results file's `metric_provenance`:
crop style, detector, evaluator weights (sha256), crop encoding, deviations from the reference, drops.
"""
from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

from metrics.errors import InputError

__all__ = ["TABLE1_METRICS", "gather_runs", "is_table1", "build_table1", "render_table1", "paper_table1"]

PAPER_FILE = Path(__file__).resolve().parent / "paper_table1.json"
TEMPLATES = Path(__file__).resolve().parent / "templates"
# Table 1's columns in the paper's order, then the extra columns the protocols add
TABLE1_METRICS = ("psnr", "ssim", "m_lmd", "f_lmd", "fid", "fid_eat", "sync_conf", "acc_emo")
EXTRA_METRICS = ("lse_d", "lpips", "csim", "pose_err")
LABELS = {"psnr": "PSNR", "ssim": "SSIM", "m_lmd": "M-LMD", "f_lmd": "F-LMD", "fid": "FID",
          "fid_eat": "FID (EAT)", "sync_conf": "Sync_conf", "acc_emo": "Acc_emo (%)", "lse_d": "LSE-D",
          "lpips": "LPIPS", "csim": "CSIM", "pose_err": "Pose err (°)"}
DECIMALS = {"acc_emo": 2, "lpips": 4, "pose_err": 2}
SCALE = {"acc_emo": 100.0}  # our accuracy is a fraction; the paper prints percent
DATASETS = {"mead": "MEAD", "hdtf": "HDTF"}


def paper_table1() -> dict:
    """The paper's readable Table-1 cells (reports/paper_table1.json)."""
    return json.loads(PAPER_FILE.read_text())


def gather_runs(paths) -> list[dict]:
    """Every results file named (or found under a named folder), as {"path", "label", "results"}; labels are
    the method names, made unique with the file's folder where two clash."""
    from benchmarks.protocols.engine import load_results
    from reports.collect import collect_results, run_label

    runs: list[dict] = []
    for p in [Path(x) for x in paths]:
        if p.is_dir():
            runs += [{"path": r["path"], "label": r["label"], "results": r["results"]} for r in collect_results(p)]
        else:
            data = load_results(p)
            runs.append({"path": p.resolve(), "label": run_label(data.get("method") or {}, p, p.parent),
                         "results": data})
    seen: dict[str, int] = {}
    for r in runs:
        seen[r["label"]] = seen.get(r["label"], 0) + 1
    for r in runs:
        if seen[r["label"]] > 1:
            r["label"] = f"{r['label']} ({Path(r['path']).parent.name}/{Path(r['path']).name})"
    return runs


def _dataset(run: dict) -> str | None:
    return (run["results"].get("protocol") or {}).get("data")


def is_table1(runs: list[dict]) -> bool:
    """True when every run scored a real dataset (MEAD or HDTF): the Table-1 layout applies."""
    return bool(runs) and all(_dataset(r) in DATASETS for r in runs)


def _num(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _fmt(x: float | None, metric: str) -> str:
    return "–" if x is None else f"{x:.{DECIMALS.get(metric, 3)}f}"


def _cell(results: dict, metric: str) -> dict:
    agg = (results.get("aggregates") or {}).get(metric) or {}
    ref = (results.get("reference_aggregates") or {}).get(metric) or {}
    scale = SCALE.get(metric, 1.0)
    def scaled(x):
        return None if _num(x) is None else _num(x) * scale

    mean, lo, hi = (scaled(agg.get(k)) for k in ("mean", "ci_low", "ci_high"))
    ref_value = scaled(ref.get("value"))
    value = ref_value if ref_value is not None else mean
    ci = f"[{_fmt(lo, metric)}, {_fmt(hi, metric)}]" if lo is not None and hi is not None else ""
    detail = ([f"clip mean {_fmt(mean, metric)}"] if ref_value is not None else []) + ([ci] if ci else [])
    return {"value": value, "text": _fmt(value, metric), "detail": detail, "n": agg.get("n"),
            "reference": ref_value is not None, "best": False, "lo": lo, "hi": hi, "mean": mean}


def _higher_is_better(runs: list[dict], metric: str) -> bool:
    for r in runs:
        agg = (r["results"].get("aggregates") or {}).get(metric) or {}
        if "higher_is_better" in agg:
            return bool(agg["higher_is_better"])
    return metric in ("psnr", "ssim", "sync_conf", "acc_emo", "csim")


def _weights_text(weights: dict) -> str:
    parts = []
    for key, info in sorted((weights or {}).items()):
        sha = (info or {}).get("sha256")
        check = (info or {}).get("manifest_check")
        parts.append(f"{key} sha256 {sha[:12]}…" + (f" ({check})" if isinstance(check, str) else "") if sha
                     else f"{key} (not recorded)")
    return ", ".join(parts)


def _pipeline(results: dict, metric: str) -> str:
    """One line: how this results file produced `metric` (its metric_provenance, else the protocol's spec)."""
    prov = (results.get("metric_provenance") or {}).get(metric)
    spec = next((m for m in (results.get("protocol") or {}).get("metrics", []) if m.get("name") == metric), {})
    if not prov:
        return (f"crop {spec.get('crop', '?')}, evaluator {spec.get('evaluator', '?')} "
                "(this results file records no per-metric provenance)")
    bits = [f"crop {prov.get('crop')}" + (f" ({prov['crop_encoding']})" if prov.get("crop_encoding") else "")]
    detectors = [d for d in prov.get("detector") or [] if d]
    if detectors:
        bits.append("detector " + ", ".join(detectors))
    if prov.get("weights"):
        bits.append("weights " + _weights_text(prov["weights"]))
    bits.append("deviations: " + ("; ".join(prov["deviations"]) if prov.get("deviations") else "none"))
    return "; ".join(bits)


def _drops(results: dict, metric: str) -> str:
    """What this results file dropped for `metric` (faceless frames, videos without a score), or ''."""
    prov = (results.get("metric_provenance") or {}).get(metric) or {}
    return ", ".join(f"{prov[k]} {k.split('_')[1]}" for k in ("dropped_frames", "dropped_videos") if prov.get(k))


def _aggregation(runs: list[dict], metric: str) -> str:
    for r in runs:
        ref = (r["results"].get("reference_aggregates") or {}).get(metric) or {}
        if ref.get("aggregation"):
            return (f"Number: {ref['aggregation']}; below it the mean over clips with its "
                    "95% bootstrap CI over clips.")
    agg = next(((r["results"].get("aggregates") or {}).get(metric) or {} for r in runs), {})
    if agg.get("level") == "set":
        return f"Set-level over every clip's frames; CI: {agg.get('ci', 'bootstrap over clips')}."
    return "Mean over clips with its 95% bootstrap CI over clips."


def _footnotes(runs: list[dict], metrics: list[str]) -> list[dict]:
    notes = []
    for m in metrics:
        lines = {}
        for r in runs:
            lines.setdefault(_pipeline(r["results"], m), []).append(r["label"])
        pipeline = ([next(iter(lines))] if len(lines) == 1 else
                    [f"{', '.join(labels)}: {text}" for text, labels in lines.items()])
        extra = sorted({str(((r["results"].get("aggregates") or {}).get(m) or {}).get("note")) for r in runs
                        if ((r["results"].get("aggregates") or {}).get(m) or {}).get("note")})
        drops = [f"{r['label']} {_drops(r['results'], m)}" for r in runs if _drops(r["results"], m)]
        if drops:
            extra.append("Dropped (faceless frames, unscored videos): " + "; ".join(drops))
        notes.append({"metric": m, "label": LABELS.get(m, m), "aggregation": _aggregation(runs, m),
                      "pipeline": pipeline, "notes": extra, "extra": m in EXTRA_METRICS})
    return notes


def _method_info(run: dict) -> dict:
    """What a row is: the method record, and how its videos were generated when a generate.json is beside them."""
    results = run["results"]
    method = results.get("method") or {}
    info = {"label": run["label"], "file": str(run["path"]), "kind": method.get("kind", "?"),
            "videos": method.get("path"), "cases": len(results.get("per_sample") or []),
            "protocol": (results.get("protocol") or {}).get("id"),
            "config": (results.get("provenance") or {}).get("config") or {}, "generation": None}
    manifest = Path(str(method.get("path"))) / "generate.json" if method.get("path") else None
    if manifest is not None and manifest.is_file():
        try:
            gen = json.loads(manifest.read_text()).get("method") or {}
        except ValueError:
            gen = {}
        info["generation"] = {k: gen[k] for k in ("name", "setting", "source_frame", "drivers", "expression_schedule")
                              if k in gen}
    return info


def build_table1(runs: list[dict], paper: dict | None = None) -> list[dict]:
    """One table per dataset: {"dataset", "title", "metrics", "labels", "rows", "paper_rows", "footnotes",
    "methods"}; rows' cells are {"value", "text", "detail", "best", ...} keyed by metric."""
    paper = paper_table1() if paper is None else paper
    tables = []
    for key, name in DATASETS.items():
        group = [r for r in runs if _dataset(r) == key]
        if not group:
            continue
        present = {m for r in group for m in (r["results"].get("aggregates") or {})}
        metrics = [m for m in (*TABLE1_METRICS, *EXTRA_METRICS) if m in present]
        metrics += sorted(present - set(metrics))
        rows = [{"label": r["label"], "cells": {m: _cell(r["results"], m) for m in metrics}} for r in group]
        for m in metrics:
            vals = [row["cells"][m]["value"] for row in rows if row["cells"][m]["value"] is not None]
            if vals:
                best = max(vals) if _higher_is_better(group, m) else min(vals)
                for row in rows:
                    row["cells"][m]["best"] = row["cells"][m]["value"] == best
        tables.append({"dataset": key, "title": f"{name}: {', '.join(sorted({str(_proto_id(r)) for r in group}))}",
                       "metrics": metrics, "labels": {m: LABELS.get(m, m) for m in metrics}, "rows": rows,
                       "arrows": {m: "↑" if _higher_is_better(group, m) else "↓" for m in metrics},
                       "paper_rows": _paper_rows(paper.get("tables", {}).get(key, []), metrics),
                       "footnotes": _footnotes(group, metrics), "methods": [_method_info(r) for r in group]})
    if not tables:
        raise InputError("no results of a real protocol (mead-edtalk, hdtf-edtalk) among the files given; "
                         "score videos with `edtalk evaluate --protocol mead-edtalk ...` first")
    return tables


def _proto_id(run: dict) -> str:
    proto = run["results"].get("protocol") or {}
    return proto.get("id") or f"{proto.get('name')}@{proto.get('version')}"


def _paper_rows(rows: list[dict], metrics: list[str]) -> list[dict]:
    """The paper's rows as cells over our columns: FID spans fid and fid_eat when both are shown."""
    out = []
    for row in rows:
        cells = []
        for m in metrics:
            if m == "fid_eat" and "fid" in metrics:
                continue  # covered by the FID cell's span
            source_key = "fid" if m == "fid_eat" else m
            value = _num(row.get(source_key)) if m not in EXTRA_METRICS else None
            span = 2 if m == "fid" and "fid_eat" in metrics else 1
            cells.append({"metric": m, "text": "?" if value is None and m not in EXTRA_METRICS else
                          ("" if value is None else _fmt(value, m)), "value": value, "span": span})
        out.append({"label": row["method"], "source": row.get("source", ""), "cells": cells})
    return out


def render_html(tables: list[dict], title: str = "EDTalk-Bench: Table 1") -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    paper = paper_table1()
    return env.get_template("table1.html.j2").render(
        title=title, tables=tables, paper_about=paper.get("about", ""),
        generated=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"))


def render_table1(paths, html: bool = True, pdf: bool = True, out: str | os.PathLike | None = None) -> dict:
    """Write the Table-1 report of the results files `paths` (files or folders); returns {"html", "pdf"} paths.
    `out`: a .html/.pdf path (the other gets the same stem) or a folder (table1.html, table1.pdf inside);
    default: beside the first results file."""
    from metrics.utils import atomic_write_bytes, atomic_write_text

    if not html and not pdf:
        raise InputError("nothing to render: ask for --html and/or --pdf")
    runs = gather_runs(paths)
    tables = build_table1(runs)
    first = Path(runs[0]["path"]).parent
    if out is None:
        html_path, pdf_path = first / "table1.html", first / "table1.pdf"
    else:
        p = Path(out)
        if p.suffix.lower() in (".html", ".htm", ".pdf"):
            html_path, pdf_path = p.with_suffix(".html"), p.with_suffix(".pdf")
        else:
            html_path, pdf_path = p / "table1.html", p / "table1.pdf"
    page = render_html(tables)
    result: dict[str, Any] = {"html": None, "pdf": None, "tables": tables}
    if html:
        atomic_write_text(html_path, page)
        result["html"] = html_path
    if pdf:
        try:
            import weasyprint
        except Exception as exc:  # noqa: BLE001 - ImportError, or OSError from a missing Pango library
            raise InputError(f"the PDF needs WeasyPrint, which cannot run here ({type(exc).__name__}: {exc}); "
                             "install its system libraries (apt-get install libpango-1.0-0 libpangoft2-1.0-0) "
                             "or ask for --html only") from None
        import logging

        logging.getLogger("weasyprint").setLevel(logging.ERROR)  # unsupported-CSS chatter
        atomic_write_bytes(pdf_path, weasyprint.HTML(string=page).write_pdf())
        result["pdf"] = pdf_path
    return result

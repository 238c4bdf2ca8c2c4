"""`render_report`: results files → one self-contained HTML file and a PDF of the same content.

The HTML inlines everything (CSS, figures, frame strips and videos as base64 data URIs) and loads
nothing from anywhere, so it can be mailed or archived as one file; it has no script. The PDF is
the same HTML printed by WeasyPrint (print CSS hides the videos and shows their first frame); where
WeasyPrint cannot run (its Pango/HarfBuzz system libraries are missing) a matplotlib PdfPages
rendering of the same tables and figures is written instead, and the report says so.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any

from metrics.errors import InputError
from metrics.utils import atomic_write_bytes, atomic_write_text
from reports.claims import claims_section
from reports.collect import collect_results, load_evaluators
from reports.sections import (
    EVALUATOR_HEADING,
    confusion_section,
    curves_section,
    disentanglement_section,
    evaluators_section,
    fmt_value,
    provenance_section,
    strips_section,
    table_view,
    videos_section,
)
from reports.tables import FOOTNOTE, build_tables

__all__ = ["render_report", "build_context", "render_html", "write_pdf", "output_paths"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


def build_context(results_dir: str | os.PathLike, runs: list[dict] | None = None) -> dict:
    """Everything the templates (and the PDF fallback) show, computed once."""
    root = Path(results_dir).resolve()
    runs = collect_results(root) if runs is None else runs
    tables = build_tables(runs)
    return {
        "title": "EDTalk-Bench report",
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "results_dir": str(root),
        "n_runs": len(runs),
        "footnote": FOOTNOTE,
        # The first section (page 1 of the PDF): the paper's claims, tested on these tables.
        "claims": claims_section(tables),
        "tables": [table_view(t) for t in tables],
        "disentanglement": disentanglement_section(runs),
        "confusion": confusion_section(runs),
        "curves": curves_section(runs),
        "strips": strips_section(runs),
        "videos": videos_section(runs),
        "evaluators": evaluators_section(load_evaluators(root)),
        "evaluator_heading": EVALUATOR_HEADING,
        "provenance": provenance_section(runs, root),
        # `nox -s study` leaves each phase's wall time beside the sweep: the report closes with it.
        "timings": _timings(root),
        "notes": [],
    }


def _timings(root: Path) -> list[tuple[str, str]]:
    try:
        phases = json.loads((root / "timings.json").read_text()).get("phases_s") or {}
    except (OSError, ValueError, AttributeError):
        return []
    seconds = {name: float(s) for name, s in phases.items() if isinstance(s, (int, float))}
    rows = [(name, f"{s / 60:.1f} min") for name, s in seconds.items()]
    return rows + [("total", f"{sum(seconds.values()) / 60:.1f} min")] if rows else []


def render_html(context: dict) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html", "j2"]),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["fmt"] = fmt_value
    return env.get_template("report.html.j2").render(**context)


def _weasyprint_error() -> str | None:
    """None if WeasyPrint can render here, else why not (one line)."""
    try:
        import weasyprint  # noqa: F401  (imports Pango/HarfBuzz through cffi: fails without the libraries)
    except Exception as exc:  # ImportError, OSError from a missing system library
        return f"{exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()
    return None


def write_pdf(context: dict, path: Path, engine: str = "auto") -> str:
    """Write the PDF; returns the engine used ("weasyprint" or "matplotlib")."""
    if engine not in ("auto", "weasyprint", "matplotlib"):
        raise InputError(f"PDF engine must be auto, weasyprint or matplotlib, not {engine!r}")
    why = _weasyprint_error() if engine in ("auto", "weasyprint") else "matplotlib requested"
    if why is None:
        import logging

        import weasyprint

        logging.getLogger("weasyprint").setLevel(logging.ERROR)  # unsupported-CSS chatter
        html = render_html({**context, "for_print": True})
        atomic_write_bytes(path, weasyprint.HTML(string=html).write_pdf())
        return "weasyprint"
    if engine == "weasyprint":
        raise InputError(f"WeasyPrint cannot run here ({why}); install its system libraries "
                         "(apt-get install libpango-1.0-0 libpangoft2-1.0-0) or use the matplotlib engine")
    from reports.pdf_fallback import write_fallback_pdf

    note = f"PDF rendered with the matplotlib fallback (WeasyPrint unavailable: {why})"
    if engine == "auto":
        print(f"edtalk report: {note}", file=sys.stderr)
    write_fallback_pdf({**context, "notes": [*context.get("notes", []), note]}, path)
    return "matplotlib"


def output_paths(results_dir: Path, out: str | os.PathLike | None) -> tuple[Path, Path]:
    """(html path, pdf path): `out` may be a .html/.pdf file (the other gets the same stem) or a folder."""
    if out is None:
        base = Path(results_dir) / "report"
        return base.with_suffix(".html"), base.with_suffix(".pdf")
    p = Path(out)
    suffix = p.suffix.lower()
    if suffix in (".html", ".htm"):
        return p, p.with_suffix(".pdf")
    if suffix == ".pdf":
        return p.with_suffix(".html"), p
    if p.exists() and not p.is_dir():
        raise InputError(f"--out {p}: exists and is not a folder; give a .html/.pdf path or a folder")
    return p / "report.html", p / "report.pdf"


def render_report(results_dir: str | os.PathLike, html: bool = True, pdf: bool = True,
                  out: str | os.PathLike | None = None, *, pdf_engine: str = "auto") -> dict:
    """Render the report of every results file under `results_dir`.

    Args:
        results_dir: folder searched recursively for results.json files (schema results@1).
        html, pdf: which outputs to write (at least one).
        out: a .html or .pdf path (the other output gets the same stem) or a folder
            (report.html / report.pdf inside); default `results_dir`/report.{html,pdf}.
        pdf_engine: "auto" (WeasyPrint, else the matplotlib fallback with a note), "weasyprint"
            (error if unavailable) or "matplotlib".
    Returns:
        {"html": Path|None, "pdf": Path|None, "pdf_engine": "weasyprint"|"matplotlib"|None}.
    """
    if not html and not pdf:
        raise InputError("nothing to render: ask for --html and/or --pdf")
    root = Path(results_dir)
    context = build_context(root)
    html_path, pdf_path = output_paths(root, out)
    result: dict[str, Any] = {"html": None, "pdf": None, "pdf_engine": None}
    if html:
        atomic_write_text(html_path, render_html({**context, "for_print": False}))
        result["html"] = html_path
    if pdf:
        result["pdf_engine"] = write_pdf(context, pdf_path, pdf_engine)
        result["pdf"] = pdf_path
    return result

"""Reports: results files → a self-contained HTML page and a PDF (tables, plots, media, provenance).

    from reports import render_report, collect_results
    render_report("results/", html=True, pdf=True)        # results/report.html, results/report.pdf

The package reads results files only (docs/DESIGN.md, layer 6); matplotlib, Jinja2 and WeasyPrint
are imported when a report is rendered, not on import.
"""
from __future__ import annotations

from reports.collect import collect_results
from reports.render import render_report

__all__ = ["render_report", "collect_results"]

"""The report as a matplotlib PdfPages document: used when WeasyPrint cannot run.

Same content as the HTML, page by page: the claims table first (page 1, as in the HTML's print), notes, one table
per protocol and setting (best cell bold, Δ vs full with †, paper rows in italics on a tinted background), then
every figure, frame strip and video first frame, the evaluators' validation and the provenance summary.
"""
from __future__ import annotations

import io
import textwrap
from pathlib import Path

from metrics.utils import atomic_write_bytes
from reports.plots import new_figure

__all__ = ["write_fallback_pdf"]

PAGE = (11.69, 8.27)  # A4 landscape, inches
PAPER_BG = "#f6f3ea"
BEST_BG = "#eaf4ea"


def _text_page(pdf, title: str, paragraphs: list[str]) -> None:
    fig = new_figure(*PAGE)
    fig.text(0.05, 0.93, title, fontsize=16, weight="bold", va="top")
    y = 0.86
    for p in paragraphs:
        lines = textwrap.wrap(p, 150) or [""]
        for line in lines:
            fig.text(0.05, y, line, fontsize=8.5, va="top")
            y -= 0.025
        y -= 0.012
        if y < 0.05:
            pdf.savefig(fig)
            fig = new_figure(*PAGE)
            y = 0.93
    pdf.savefig(fig)


def _table_page(pdf, title: str, header: list[str], rows: list[list[str]], styles: list[list[dict]],
                notes: list[str], col_widths: list[float] | None = None, fontsize: float = 7.5) -> None:
    fig = new_figure(*PAGE)
    fig.text(0.03, 0.96, title, fontsize=13, weight="bold", va="top")
    ax = fig.add_axes((0.03, 0.2, 0.94, 0.7))
    ax.axis("off")
    tab = ax.table(cellText=rows, colLabels=header, loc="upper center", cellLoc="center", colWidths=col_widths)
    tab.auto_set_font_size(False)
    tab.set_fontsize(fontsize)
    tab.scale(1.0, 2.6)
    # A row as tall as its longest cell (a claim's verdict with its note runs to several lines): 1.25 line
    # heights a line, in the axes' fraction of the page.
    base, line = tab[0, 0].get_height(), 1.25 * fontsize / 72 / (0.7 * fig.get_figheight())
    for i, row in enumerate(rows, start=1):
        lines = max(str(v).count("\n") + 1 for v in row)
        for j in range(len(header)):
            tab[i, j].set_height(max(base, (lines + 1) * line))
    for j in range(len(header)):
        tab[0, j].set_facecolor("#eef2f9")
        tab[0, j].set_text_props(weight="bold")
    for i, row_styles in enumerate(styles, start=1):
        for j, st in enumerate(row_styles):
            cell = tab[i, j]
            if "bg" in st:
                cell.set_facecolor(st["bg"])
            cell.set_text_props(**{k: v for k, v in st.items() if k != "bg"})
    y = 0.17
    for n in notes:
        for line in textwrap.wrap(n, 190):
            fig.text(0.03, y, line, fontsize=6.5, va="top", color="#444444")
            y -= 0.018
    pdf.savefig(fig)


def _image_page(pdf, title: str, png: bytes, caption: str = "") -> None:
    from matplotlib.image import imread

    img = imread(io.BytesIO(png), format="png")
    fig = new_figure(*PAGE)
    fig.text(0.03, 0.97, title, fontsize=12, weight="bold", va="top")
    ax = fig.add_axes((0.03, 0.07, 0.94, 0.85))
    ax.imshow(img, interpolation="nearest" if img.shape[1] < 600 else "antialiased")
    ax.axis("off")
    if caption:
        fig.text(0.03, 0.04, caption, fontsize=8, va="top", color="#444444")
    pdf.savefig(fig)


def _results_table(pdf, view: dict, footnote: str) -> None:
    t = view["t"]
    arrows = ["↑" if m["higher_is_better"] else "↓" for m in t.metrics]
    header = ["variant", "source"] + [f"{m['name']} {a}" for m, a in zip(t.metrics, arrows, strict=True)]
    rows, styles = [], []
    for r in t.rows:
        seeds = f": {', '.join(map(str, r.seeds))}" if r.seeds else ""
        line = [r.label, r.source + seeds]
        st: list[dict] = [{"weight": "bold"} if r.is_reference else {}, {"color": "#555555"}]
        for m in t.metrics:
            c = r.cells.get(m["name"])
            if c is None:
                line.append("–")
                st.append({})
                continue
            line.append("\n".join(x for x in (c.text, c.delta_text) if x))
            s: dict = {}
            if c.best:
                s = {"weight": "bold", "bg": BEST_BG}
            if c.better is not None and c.delta_text:
                s["color"] = "#17803d" if c.better else "#b42318"
            st.append(s)
        rows.append(line)
        styles.append(st)
    for r in t.paper_rows:
        cells = [r.cells.get(m["name"]) for m in t.metrics]
        rows.append([r.label, r.source] + [c.text if c is not None else "–" for c in cells])
        styles.append([{"style": "italic", "bg": PAPER_BG}] * (2 + len(t.metrics)))
    _table_page(pdf, t.title, header, rows, styles, [footnote, *t.notes])


VERDICT_COLOURS = {"reproduced": "#17803d", "opposite": "#b42318"}
CLAIMS_NOTE = ("Effect = mean over test cases of (variant − full), each case averaged over seeds; CI = 95% paired "
               "bootstrap. Verdict: reproduced (CI excludes 0 in the claimed direction), not significant (contains 0), "
               "opposite (excludes 0 the other way); not readable: full's responsiveness < 0.5 for some factor. "
               "Setting: the results a verdict reads (per-clip claims: EDTalk-A where scored, the paper's setting; "
               "leakage: the video-driven cross-driving). Claims and test fixed in reports/claims.py first. An "
               "emotion row notes where full's output does not take its expression driver's emotion (Acc_emo then "
               "rests on the source frame); that note came after the first numbers and changes no verdict.")


def _claims_pages(pdf, claims: list) -> None:
    """The claims tables (reports.claims.claims_section), one page per protocol."""
    header = ["claim", "variant", "metric", "setting", "claimed", "effect", "95% CI", "full → variant",
              "full's\nseed spread", "ceiling", "paper (MEAD)", "verdict"]
    widths = [0.13, 0.09, 0.07, 0.08, 0.05, 0.06, 0.09, 0.08, 0.06, 0.06, 0.11, 0.12]
    for view in claims:
        rows, styles = [], []
        for r in view.rows:
            verdict = r["verdict"] + (f"\n{textwrap.fill(textwrap.shorten(r['why'], 240), 30)}" if r["why"] else "")
            rows.append([textwrap.fill(r["statement"], 26), r["variant"], r["metric"], r["setting"], r["expected"],
                         r["effect"], r["ci"], r["change"], r["spread"],
                         r["ceiling"] + ("\n(saturated)" if r["saturated"] else ""), r["paper"].replace(" (", "\n("),
                         verdict])
            st: list[dict] = [{} for _ in header]
            if r["verdict"] in VERDICT_COLOURS:
                st[-1] = {"color": VERDICT_COLOURS[r["verdict"]], "weight": "bold"}
            styles.append(st)
        notes = [CLAIMS_NOTE] + [f"{m}: full sits at the ground truth's ceiling ({c:.3g}): saturated, cannot show a "
                                 "drop" for m, c in view.saturated.items()]
        if not view.has_ground_truth:
            notes.append("No ground-truth row under this protocol: a saturated metric cannot be flagged.")
        _table_page(pdf, f"The paper's claims, tested: {view.title}", header, rows, styles, notes, widths, 6.5)


def write_fallback_pdf(context: dict, path: Path) -> Path:
    """Write `context` (reports.render.build_context) as a PDF at `path` (atomically)."""
    from matplotlib.backends.backend_pdf import PdfPages

    buf = io.BytesIO()
    with PdfPages(buf) as pdf:
        _claims_pages(pdf, context.get("claims") or [])  # page 1, as in the HTML
        intro = (f"{context['n_runs']} results files under {context['results_dir']}; "
                 f"generated {context['generated']}")
        _text_page(pdf, context["title"], [intro, *context.get("notes", [])])
        for view in context["tables"]:
            _results_table(pdf, view, context["footnote"])
            if view.get("bars"):
                _image_page(pdf, view["bars"]["title"], view["bars"]["png"])
        dis = context.get("disentanglement")
        if dis:
            for f in dis["heatmaps"]:
                _image_page(pdf, f"Disentanglement: {f['title']}", f["png"], f["caption"])
            for name, tab in (("Transfer", dis["transfer"]), ("Bank geometry", dis["geometry"])):
                if tab:
                    rows = [[k, *vals] for k, vals in tab["rows"]]
                    plain = [[{}] * len(r) for r in rows]
                    _table_page(pdf, name, ["quantity", *tab["columns"]], rows, plain, [])
        for f in context.get("confusion") or []:
            _image_page(pdf, f"Emotion confusion: {f['title']}", f["png"], f["caption"])
        for f in context.get("curves") or []:
            _image_page(pdf, f"Training curves: stage {f['title']}", f["png"])
        for s in context.get("strips") or []:
            for f in s["images"]:
                _image_page(pdf, f"Frame strip: {s['variant']} (seed {s['seed']}), {f['title']}", f["png"])
        for v in context.get("videos") or []:
            for item in v["clips"]:
                if item.get("poster_png"):
                    title = f"Video {item['name']}: {v['variant']} (seed {v['seed']})"
                    _image_page(pdf, title, item["poster_png"], "first frame; the video plays in the HTML")
        for e in context.get("evaluators") or []:
            rows = [[k, v] for k, v in e["rows"]]
            _table_page(pdf, f"{context['evaluator_heading']}: {e['name']}", ["quantity", "value"], rows,
                        [[{}, {}] for _ in rows], [])
        prov = context["provenance"]
        rows = [[s["label"], str(s["seed"]), s["protocol"], s["path"], s["git"], s["created"], str(s["n"])]
                for s in prov["summary"]]
        for start in range(0, len(rows), 18):
            chunk = rows[start:start + 18]
            header = ["variant", "seed", "protocol", "results file", "git hash", "created (UTC)", "clips"]
            _table_page(pdf, "Provenance", header, chunk, [[{}] * 7 for _ in chunk],
                        ["full provenance (versions, config, seeds, evaluator weights): see the HTML report"])
    return atomic_write_bytes(path, buf.getvalue())

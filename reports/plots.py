"""Report figures as PNG bytes (matplotlib's Agg canvas; pyplot's global state is never touched)."""
from __future__ import annotations

import io
import math
from collections.abc import Sequence

import numpy as np

__all__ = ["fig_to_png", "metric_bars", "heatmap", "training_curves", "new_figure"]

DPI = 100
ARROW = {True: "↑", False: "↓"}


def new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def fig_to_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    return buf.getvalue()


def _colors(n: int):
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(i % 10) for i in range(n)]


def metric_bars(table) -> bytes | None:
    """One panel per metric: a bar per variant at its mean, error bars = its 95% CI."""
    metrics = [m for m in table.metrics if any(r.cells.get(m["name"]) is not None for r in table.rows)]
    if not metrics:
        return None
    ncol = min(4, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    labels = [r.label for r in table.rows]
    fig = new_figure(3.2 * ncol, 0.6 + 2.9 * nrow)
    colors = _colors(len(labels))
    for k, m in enumerate(metrics):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        means, err_lo, err_hi = [], [], []
        for r in table.rows:
            c = r.cells.get(m["name"])
            mean = c.mean if c is not None else math.nan
            means.append(mean)
            ok = c is not None and np.isfinite(c.lo) and np.isfinite(c.hi)
            err_lo.append(max(mean - c.lo, 0.0) if ok else 0.0)
            err_hi.append(max(c.hi - mean, 0.0) if ok else 0.0)
        x = np.arange(len(labels))
        bars = ax.bar(x, np.nan_to_num(means), yerr=[err_lo, err_hi], color=colors, capsize=3,
                      edgecolor="black", linewidth=0.5)
        for b, r in zip(bars, table.rows, strict=True):
            if r.is_reference:
                b.set_hatch("//")
        finite = [v for v in means if np.isfinite(v)]
        if finite:  # zoom to the data: bars of 20.1 vs 20.3 are not all "about 20"
            lo = min(v - e for v, e in zip(means, err_lo, strict=True) if np.isfinite(v))
            hi = max(v + e for v, e in zip(means, err_hi, strict=True) if np.isfinite(v))
            pad = (hi - lo) * 0.15 or abs(hi) * 0.05 or 1.0
            ax.set_ylim(lo - pad if lo - pad > 0 or lo < 0 else 0, hi + pad)
        ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=8)
        ax.set_title(f"{m['name']} {ARROW[m['higher_is_better']]}", fontsize=10)
        ax.tick_params(axis="y", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(f"{table.title}: mean and 95% CI per variant (hatched = reference)", fontsize=11)
    fig.tight_layout()
    return fig_to_png(fig)


def heatmap(matrix, row_labels: Sequence[str], col_labels: Sequence[str], title: str, *,
            xlabel: str = "", ylabel: str = "", vmin: float | None = None, vmax: float | None = None,
            cmap: str = "viridis", fmt: str = "{:.2f}") -> bytes:
    """An annotated heatmap; NaN cells are grey and labelled 'n/a'."""
    a = np.array([[math.nan if v is None else float(v) for v in row] for row in matrix], dtype=np.float64)
    n_r, n_c = a.shape
    fig = new_figure(1.2 + 0.75 * n_c, 1.0 + 0.6 * n_r)
    ax = fig.add_subplot(1, 1, 1)
    from matplotlib import colormaps

    cm = colormaps[cmap].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(a), cmap=cm, vmin=vmin, vmax=vmax, aspect="auto")
    for i in range(n_r):
        for j in range(n_c):
            v = a[i, j]
            txt = "n/a" if not np.isfinite(v) else fmt.format(v)
            r, g, b, _ = cm(im.norm(v)) if np.isfinite(v) else (1.0, 1.0, 1.0, 1.0)
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.5  # white text on dark cells
            ax.text(j, i, txt, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    tilt = n_c > 4
    ax.set_xticks(range(n_c), list(col_labels), rotation=35 if tilt else 0, ha="right" if tilt else "center",
                  fontsize=8)
    ax.set_yticks(range(n_r), list(row_labels), fontsize=8)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig_to_png(fig)


def training_curves(stage: str, series: Sequence[tuple[str, object, dict]]) -> bytes | None:
    """One panel per logged loss term of `stage`; a line per (variant, seed), colour = variant.

    series: (variant label, seed, curve) with curve = {"columns", "step", "values"} from collect.
    """
    columns: list[str] = []
    for _, _, c in series:
        columns += [k for k in c["columns"] if k not in columns]
    if not columns:
        return None
    ncol = min(4, len(columns))
    nrow = math.ceil(len(columns) / ncol)
    fig = new_figure(3.3 * ncol, 0.7 + 2.5 * nrow)
    labels = list(dict.fromkeys(s[0] for s in series))
    color = dict(zip(labels, _colors(len(labels)), strict=True))
    styles = ["-", "--", ":", "-."]
    seed_idx: dict[str, int] = {}
    for k, col in enumerate(columns):
        ax = fig.add_subplot(nrow, ncol, k + 1)
        positive = True
        for label, seed, curve in series:
            if col not in curve["values"]:
                continue
            y = np.asarray(curve["values"][col], dtype=np.float64)
            x = np.asarray(curve["step"], dtype=np.float64)
            ok = np.isfinite(y)
            if not ok.any():
                continue
            positive &= bool((y[ok] > 0).all())
            n_before = sum(1 for key in seed_idx if key.startswith(f"{label}/"))
            i = seed_idx.setdefault(f"{label}/{seed}", n_before)  # line style = seed's rank in its variant
            ax.plot(x[ok], y[ok], styles[i % len(styles)], color=color[label], linewidth=1.0,
                    label=f"{label} (seed {seed})" if k == 0 else None)
        if positive and ax.lines:
            ys = np.concatenate([ln.get_ydata() for ln in ax.lines])
            if ys.size and ys.max() / max(ys.min(), 1e-12) > 100:
                ax.set_yscale("log")
        ax.set_title(col, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    handles, names = fig.axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="lower center", ncol=min(4, len(names)), fontsize=8,
                   bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(names) / 4)))
    fig.suptitle(f"training losses, stage {stage} (x: step)", fontsize=11)
    fig.tight_layout()
    return fig_to_png(fig)

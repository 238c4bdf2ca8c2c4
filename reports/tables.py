"""Comparison tables: one per protocol (and setting), variants (aggregated over seeds) × metrics.

Where a protocol's runs were scored in the audio setting (the sweep's EDTalk-A, results-audio.json), those form
their own table, first ("EDTalk-A (audio-driven), the paper's setting"), and the video-driven runs the next;
a run with no setting of its own (the ground truth) is a row of both.

Each cell holds the mean of the per-seed means, a 95% bootstrap CI (clips resampled within each
seed, `stats.seed_pooled_ci`), the spread over seeds, whether it is the best of its column (by the
metric's direction) and, against the `full` variant, the paired difference over shared test cases
with a † when its 95% paired-bootstrap CI excludes 0. The paper's numbers (ablations.variants) are
extra rows of their own, labelled with the dataset they come from.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.protocols.ground_truth import GroundTruthMethod
from reports import stats
from reports.collect import SETTING_TITLES

GROUND_TRUTH_KIND = GroundTruthMethod.describe["kind"]  # the ceiling row: driven by nothing, in every setting

__all__ = ["Cell", "Row", "Table", "build_tables", "REFERENCE", "FOOTNOTE", "paper_label", "variant_order"]

REFERENCE = "full"
SIG = "†"
FOOTNOTE = (
    "Each row aggregates a variant's seeds: the value is the mean of the per-seed means over test clips; "
    f"± is half the width of a 95% percentile bootstrap CI ({stats.N_RESAMPLES} resamples, "
    f"seed {stats.BOOTSTRAP_SEED}) that resamples test clips within each seed and averages the resampled "
    "per-seed means, so it describes test-clip sampling; "
    "the spread between seeds is given separately as sd(seeds). We chose this over a bootstrap of seed "
    "means because 2–3 seeds are too few to resample. Δ = mean over the test cases both rows share of "
    f"(variant − full), each case first averaged over seeds; {SIG} marks a Δ whose 95% paired bootstrap CI "
    "(cases resampled together) excludes 0. Bold = best of its column among this run's rows (↑ higher is "
    "better, ↓ lower is better); Δ is green where it is better than full, red where worse."
)


@dataclass
class Cell:
    mean: float
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0                                   # clips (pooled over seeds)
    seed_means: list[float] = field(default_factory=list)
    best: bool = False
    delta: float | None = None                   # paired mean difference vs the reference row
    delta_lo: float | None = None
    delta_hi: float | None = None
    n_pairs: int = 0
    significant: bool = False
    better: bool | None = None                   # delta points the better way for this metric
    decimals: int = 3

    @property
    def half(self) -> float:
        return (self.hi - self.lo) / 2.0 if np.isfinite(self.lo) and np.isfinite(self.hi) else math.nan

    @property
    def seed_sd(self) -> float:
        v = [x for x in self.seed_means if x is not None and np.isfinite(x)]
        return float(np.std(v, ddof=1)) if len(v) > 1 else math.nan

    def fmt(self, x: float | None, sign: bool = False) -> str:
        if x is None or not np.isfinite(x):
            return "–"
        return f"{x:+.{self.decimals}f}" if sign else f"{x:.{self.decimals}f}"

    @property
    def text(self) -> str:
        if not np.isfinite(self.mean):
            return "–"
        return self.fmt(self.mean) + (f" ± {self.fmt(self.half)}" if np.isfinite(self.half) else "")

    @property
    def interval(self) -> str:
        return f"[{self.fmt(self.lo)}, {self.fmt(self.hi)}]" if np.isfinite(self.half) else ""

    @property
    def delta_text(self) -> str:
        if self.delta is None or not np.isfinite(self.delta):
            return ""
        return f"Δ {self.fmt(self.delta, sign=True)}{SIG if self.significant else ''}"


@dataclass
class Row:
    label: str
    kind: str                                    # "ours" | "paper"
    source: str
    cells: dict[str, Cell | None]
    seeds: list[Any] = field(default_factory=list)
    n_runs: int = 0
    is_reference: bool = False


@dataclass
class Table:
    key: str
    title: str
    protocol: dict
    metrics: list[dict]                          # {"name", "higher_is_better"}
    rows: list[Row]
    paper_rows: list[Row]
    paper_label: str
    reference: str | None
    notes: list[str] = field(default_factory=list)
    runs: list[dict] = field(default_factory=list)
    setting: str | None = None                   # "audio" | "video" where the protocol's runs were split by it
    protocol_key: str = ""                       # the same for the tables of one protocol's settings
    protocol_title: str = ""                     # the title without the setting's

    def row(self, label: str, kind: str = "ours") -> Row:
        for r in self.rows if kind == "ours" else self.paper_rows:
            if r.label == label:
                return r
        raise KeyError(label)


def paper_label(protocol: dict) -> str:
    """How paper numbers are labelled in a table of this protocol (they come from MEAD)."""
    data = str(protocol.get("data", "")).lower()
    if data == "mead":
        return "paper (MEAD)"
    if data == "synthetic":
        return "paper (MEAD), not comparable in scale"
    return f"paper (MEAD), not comparable: this table is on {data.upper() or 'other data'}"


def variant_order(labels) -> list[str]:
    """full first, then the variant catalogue's order, then any other method alphabetically."""
    try:
        from ablations.variants import VARIANTS

        catalogue = list(VARIANTS)
    except ImportError:  # pragma: no cover - ablations is part of this package
        catalogue = [REFERENCE]
    labels = list(dict.fromkeys(labels))
    known = [v for v in catalogue if v in labels]
    return known + sorted(v for v in labels if v not in catalogue)


def _paper_numbers(label: str) -> dict[str, float | None]:
    try:
        from ablations.variants import get_variant

        return dict(get_variant(label).paper)
    except Exception:  # an unknown name (a baseline) has no paper row
        return {}


def _decimals(values) -> int:
    v = [abs(x) for x in values if x is not None and np.isfinite(x)]
    m = max(v) if v else 1.0
    return 1 if m >= 100 else 2 if m >= 10 else 3 if m >= 1 else 4


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _metric_list(protocol: dict, runs: list[dict]) -> list[dict]:
    """Metrics in the protocol's order, restricted to those some run aggregated, with direction."""
    spec = {m["name"]: m for m in protocol.get("metrics", []) if isinstance(m, dict) and "name" in m}
    present: dict[str, bool | None] = {}
    for run in runs:
        for name, agg in (run["results"].get("aggregates") or {}).items():
            hib = agg.get("higher_is_better") if isinstance(agg, dict) else None
            present.setdefault(name, hib if hib is not None else spec.get(name, {}).get("higher_is_better"))
    order = [m for m in spec if m in present] + [m for m in present if m not in spec]
    return [{"name": m, "higher_is_better": True if present[m] is None else bool(present[m])} for m in order]


def _per_seed_values(runs: list[dict], metric: str) -> tuple[list[list[float]], list[float]]:
    """Per run: the finite per-clip values; and per run its aggregate mean (for set-level metrics)."""
    vals, agg_means = [], []
    for run in runs:
        rows = run["results"].get("per_sample") or []
        v = [(r.get("scores") or {}).get(metric) for r in rows]
        vals.append([float(x) for x in v if x is not None and np.isfinite(float(x))])
        a = (run["results"].get("aggregates") or {}).get(metric) or {}
        agg_means.append(float(a["mean"]) if a.get("mean") is not None else math.nan)
    return vals, agg_means


def _per_case(runs: list[dict], metric: str) -> dict[str, float]:
    """case -> mean over the runs (seeds) that scored it."""
    acc: dict[str, list[float]] = {}
    for run in runs:
        for r in run["results"].get("per_sample") or []:
            x = (r.get("scores") or {}).get(metric)
            if x is not None and np.isfinite(float(x)):
                acc.setdefault(str(r["case"]), []).append(float(x))
    return {c: float(np.mean(v)) for c, v in acc.items()}


def _cell(runs: list[dict], metric: str) -> Cell | None:
    vals, agg_means = _per_seed_values(runs, metric)
    if any(vals):
        mean, lo, hi = stats.seed_pooled_ci(vals)
        seed_means = [float(np.mean(v)) if v else math.nan for v in vals]
        return Cell(mean, lo, hi, n=sum(len(v) for v in vals), seed_means=seed_means)
    finite = [m for m in agg_means if np.isfinite(m)]
    if not finite:
        return None
    # A set-level metric (one number per run, e.g. FID): no per-clip rows to resample.
    cell = Cell(float(np.mean(finite)), seed_means=agg_means)
    if len(runs) == 1:
        a = runs[0]["results"]["aggregates"][metric]
        cell.lo = float(a["ci_low"]) if a.get("ci_low") is not None else math.nan
        cell.hi = float(a["ci_high"]) if a.get("ci_high") is not None else math.nan
        cell.n = int(a.get("n") or 0)
    return cell


def _mark_best(rows: list[Row], metric: str, hib: bool) -> None:
    cells = [r.cells.get(metric) for r in rows]
    means = [c.mean for c in cells if c is not None and np.isfinite(c.mean)]
    if not means:
        return
    target = max(means) if hib else min(means)
    for c in cells:
        if c is not None and np.isfinite(c.mean) and c.mean == target:
            c.best = True


def _setting_groups(runs: list[dict]) -> list[tuple[str | None, list[dict]]]:
    """[(setting, runs)]: one group unless some run is audio-driven; then the audio runs, then the others, each
    with the runs that have no setting (the ground truth)."""
    if not any(r.get("setting") == "audio" for r in runs):
        return [(None, runs)]
    neutral = [r for r in runs if (r["results"].get("method") or {}).get("kind") == GROUND_TRUTH_KIND]
    audio = [r for r in runs if r.get("setting") == "audio"]
    video = [r for r in runs if r.get("setting") != "audio" and r not in neutral]
    return [(s, g + neutral) for s, g in (("audio", audio), ("video", video)) if g and s in SETTING_TITLES]


def _protocol_groups(runs: list[dict]) -> list[tuple[str, str, dict, list[dict], str | None]]:
    """(key, title, protocol, runs, setting) per protocol and, where some runs are audio-driven, per setting
    (`_setting_groups`; key and title are the protocol's, build_tables adds the setting); the same id with other
    protocol settings is a separate table."""
    return [(key, title, proto, runs_of, setting) for key, title, proto, group in _protocol_id_groups(runs)
            for setting, runs_of in _setting_groups(group)]


def _protocol_id_groups(runs: list[dict]) -> list[tuple[str, str, dict, list[dict]]]:
    """(key, title, protocol, runs) per protocol; the same id with other settings is a separate table."""
    by_id: dict[str, dict[str, list[dict]]] = {}
    for run in runs:
        proto = run["results"].get("protocol") or {}
        # Which metrics a run scored is not a setting: a run scoring a subset (the ground truth has no PSNR)
        # shares the table and leaves the other cells empty.
        same = {k: v for k, v in proto.items() if k != "metrics_evaluated"}
        by_id.setdefault(run["protocol_id"], {}).setdefault(_fingerprint(same), []).append(run)
    out = []
    for pid in sorted(by_id):
        groups = by_id[pid]
        protos = {fp: g[0]["results"].get("protocol") or {} for fp, g in groups.items()}
        for fp, g in groups.items():
            title = pid
            if len(groups) > 1:
                mine = protos[fp]
                others = [p for f, p in protos.items() if f != fp]
                diff = sorted({k for o in others for k in set(mine) | set(o) if mine.get(k) != o.get(k)})
                title = f"{pid} ({', '.join(f'{k}={json.dumps(mine.get(k), default=str)}' for k in diff)})"
            out.append((f"{pid}-{fp}", title, protos[fp], g))
    return out


def build_tables(runs: list[dict]) -> list[Table]:
    """One Table per protocol from `collect_results` output."""
    tables = []
    for protocol_key, protocol_title, protocol, truns, setting in _protocol_groups(runs):
        key = f"{protocol_key}-{setting}" if setting else protocol_key
        title = f"{protocol_title}: {SETTING_TITLES[setting]}" if setting else protocol_title
        metrics = _metric_list(protocol, truns)
        by_label: dict[str, list[dict]] = {}
        for run in truns:
            by_label.setdefault(run["label"], []).append(run)
        labels = variant_order(by_label)
        reference = REFERENCE if REFERENCE in by_label else None
        rows: list[Row] = []
        for label in labels:
            group = sorted(by_label[label], key=lambda r: (str(r["seed"]), str(r["path"])))
            seeds = [r["seed"] for r in group]
            n = len(group)
            source = f"this run, {n} seed{'s' if n != 1 else ''}"
            rows.append(Row(label, "ours", source, {m["name"]: _cell(group, m["name"]) for m in metrics},
                            seeds=seeds, n_runs=n, is_reference=label == reference))
        notes = []
        if reference is not None:
            ref_runs = by_label[reference]
            for m in metrics:
                ref_case = _per_case(ref_runs, m["name"])
                for row in rows:
                    cell = row.cells.get(m["name"])
                    if row.label == reference or cell is None:
                        continue
                    mine = _per_case(by_label[row.label], m["name"])
                    shared = sorted(set(mine) & set(ref_case))
                    if not shared:
                        continue
                    d, lo, hi, n = stats.paired_diff_ci([mine[c] for c in shared],
                                                        [ref_case[c] for c in shared])
                    cell.delta, cell.delta_lo, cell.delta_hi, cell.n_pairs = d, lo, hi, n
                    cell.significant = bool(np.isfinite(lo) and np.isfinite(hi) and (lo > 0 or hi < 0))
                    cell.better = None if d == 0 else bool((d > 0) == m["higher_is_better"])
        else:
            notes.append(f"no '{REFERENCE}' variant under this protocol, so no Δ column")
        for m in metrics:
            _mark_best(rows, m["name"], m["higher_is_better"])
        plabel = paper_label(protocol)
        paper_rows = []
        for row in rows:
            nums = _paper_numbers(row.label)
            cells = {m["name"]: (Cell(float(nums[m["name"]])) if nums.get(m["name"]) is not None else None)
                     for m in metrics}
            if any(c is not None for c in cells.values()):
                paper_rows.append(Row(row.label, "paper", plabel, cells))
        for m in metrics:  # decimals per column, from the column's magnitude (paper rows: their own)
            for group in (rows, paper_rows):
                cells = [c for r in group for c in [r.cells.get(m["name"])] if c is not None]
                dec = _decimals([c.mean for c in cells])
                for c in cells:
                    c.decimals = dec
        unknown = sorted({r["label"] for r in truns if r["seed"] is None})
        if unknown:
            notes.append(f"seed not recorded for: {', '.join(unknown)}")
        commits = sorted({str((r["results"].get("provenance") or {}).get("git_hash")) for r in truns})
        if len(commits) > 1:
            notes.append(f"runs come from {len(commits)} different commits: {', '.join(commits)}")
        tables.append(Table(key, title, protocol, metrics, rows, paper_rows, plabel, reference, notes, truns,
                            setting, protocol_key, protocol_title))
    return tables

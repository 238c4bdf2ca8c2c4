"""The paper's ablation claims, fixed here before any number is seen, and their test on a sweep's results.

Each claim is a row of data (paper.md §5.4): which variant, which metric, and the sign of (variant − full)
the paper predicts. The test is the same for every row and is not tuned to the numbers: the measured
effect is the mean over test cases of (variant − full), each case first averaged over seeds, with the 95%
paired bootstrap CI of `reports.stats.paired_diff_ci` (cases resampled together). The verdict reads the
CI only: `reproduced` when it excludes 0 in the claimed direction, `opposite` when it excludes 0 the other
way, `not significant` when it contains 0. Leakage and responsiveness come from the cross-driving tuples
of disentanglement.json: with its per-tuple movement and reference, tuples are resampled together (the
same tuples drive every variant); without them there is one number per run and no CI (`no CI`). A
disentanglement claim is `not readable` while full itself does not follow every driver (responsiveness,
the leakage diagonal, below 0.5 for some factor): low leakage then only means the output ignores its drivers.
Protocols that read the truth through the readers (`cross_driving.reference` "reader") put 1 where the output
moves as much as the world's own render of the truth does, so the readers' gain does not count against full.

The paper's ablation table is audio-driven (EDTalk-A): where a protocol's runs were scored in the audio setting
too, the per-clip claims read that table, and leakage/responsiveness the video-driven one (the cross-driving
swaps take every factor from frames); each row names the setting its verdict comes from.

Beside each effect: the paper's own numbers (MEAD; their sign is the claim, their scale is not ours), the
spread of `full` over its seeds (max − min of the per-seed values: an effect smaller than that could be
a retraining's luck), and the ground-truth row's value, the metric's ceiling. A metric where `full` sits
at the ceiling (its mean inside the ground truth's CI, or beyond it) is flagged "saturated: cannot show a
drop": the protocol cannot register a loss there, whatever the variant does.

An emotion-accuracy claim tests the expression path only if full's output takes the emotion of its expression
driver. Where it does not (full's cross-driving emotion accuracy in disentanglement.json at or below chance), the
row says so: Acc_emo of a self-reenactment then rests on the emotion the source frame already shows. This is said
beside the verdict, which stays what the test gives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from benchmarks.protocols.ground_truth import GROUND_TRUTH_NAME
from reports import stats
from reports.collect import SETTING_NAMES
from reports.tables import REFERENCE, Table, _per_case

__all__ = ["Claim", "CLAIMS", "GROUND_TRUTH_LABEL", "ClaimResult", "verdict", "evaluate_claims", "claims_section",
           "saturated_metrics", "unresponsive_factors", "RESPONSIVE_MIN", "EMOTION_METRICS", "emotion_transfer"]

# The ground truth's row is found by the name its method gives itself.
GROUND_TRUTH_LABEL = GROUND_TRUTH_NAME
LEAKAGE_METRICS = {"leakage": "off-diagonal", "responsiveness": "diagonal"}
REPRODUCED, NOT_SIGNIFICANT, OPPOSITE, NO_CI, NOT_MEASURED, NOT_READABLE = (
    "reproduced", "not significant", "opposite", "no CI", "not measured", "not readable")
# Leakage of a model that follows nothing is low for the wrong reason: a disentanglement claim is read only
# when full's responsiveness (the leakage matrix's diagonal) reaches this for every factor (issue 19).
RESPONSIVE_MIN = 0.5
# Claims on these metrics are read through the expression path; `emotion_transfer` says whether full has one.
EMOTION_METRICS = ("acc_emo",)


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    variant: str
    metric: str      # a per-clip metric of the results, or "leakage" / "responsiveness" (disentanglement.json)
    expected: int    # the sign of (variant − full) the paper predicts: -1 lower, +1 higher


CLAIMS: tuple[Claim, ...] = (
    Claim("bank-quality", "w/o Bank lowers quality", "no-banks", "psnr", -1),
    Claim("bank-quality", "w/o Bank lowers quality", "no-banks", "ssim", -1),
    Claim("bank-quality", "w/o Bank lowers quality", "no-banks", "fid", +1),
    Claim("bank-disentanglement", "w/o Bank breaks disentanglement", "no-banks", "leakage", +1),
    Claim("bank-disentanglement", "w/o Bank breaks disentanglement", "no-banks", "responsiveness", -1),
    Claim("orthogonality-emotion", "w/o Orthogonal lowers emotion accuracy", "no-orthogonality", "acc_emo", -1),
    Claim("orthogonality-leakage", "w/o Orthogonal raises leakage", "no-orthogonality", "leakage", +1),
    Claim("eem-emotion", "w/o EEM lowers emotion accuracy", "no-eem", "acc_emo", -1),
)


def verdict(lo: float | None, hi: float | None, expected: int) -> str:
    """What a CI of (variant − full) says about a claim that (variant − full) has the sign `expected`."""
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return NO_CI
    if lo <= 0 <= hi:
        return NOT_SIGNIFICANT
    return REPRODUCED if (lo > 0) == (expected > 0) else OPPOSITE


@dataclass
class ClaimResult:
    claim: Claim
    verdict: str
    effect: float = math.nan
    lo: float = math.nan
    hi: float = math.nan
    n: int = 0
    full_value: float = math.nan
    variant_value: float = math.nan
    full_seed_spread: float = math.nan   # max − min of full's per-seed values (nan with one seed)
    full_seeds: int = 0
    paper_full: float | None = None
    paper_variant: float | None = None
    ceiling: float | None = None          # the ground-truth row's mean
    saturated: bool = False
    why: str = ""

    @property
    def paper_effect(self) -> float | None:
        if self.paper_full is None or self.paper_variant is None:
            return None
        return self.paper_variant - self.paper_full


def _paper(variant: str, metric: str) -> float | None:
    from ablations.variants import VARIANTS

    v = VARIANTS.get(variant)
    return None if v is None else v.paper.get(metric)


def _spread(values: list[float]) -> float:
    v = [x for x in values if np.isfinite(x)]
    return float(max(v) - min(v)) if len(v) > 1 else math.nan


# ---------------------------------------------------------------- leakage (disentanglement.json)
def _leakage_doc(run: dict) -> dict | None:
    doc = (run.get("extras") or {}).get("disentanglement") or {}
    leak = doc.get("leakage")
    return leak if isinstance(leak, dict) and "matrix" in leak else None


def _summary(matrix: np.ndarray, part: str) -> float:
    k = len(matrix)
    vals = np.diagonal(matrix) if part == "diagonal" else matrix[~np.eye(k, dtype=bool)]
    vals = vals[np.isfinite(vals)]
    return float(vals.mean()) if vals.size else math.nan


def _ratio(move: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Σ movement / Σ reference over tuples (axis -3), as metrics.disentanglement.leakage_matrix defines it."""
    num, den = move.sum(-3), ref.sum(-3)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def _per_tuple(leak: dict) -> tuple[np.ndarray, np.ndarray] | None:
    pt = leak.get("per_tuple")
    if not isinstance(pt, dict):
        return None
    try:
        move, ref = (np.array(pt[k], dtype=np.float64) for k in ("movement", "reference"))
    except (KeyError, TypeError, ValueError):
        return None
    return (move, ref) if move.ndim == 3 and move.shape == ref.shape else None


def _seed_averaged_tuples(runs: list[dict]) -> tuple[np.ndarray, np.ndarray] | None:
    """Per-tuple movement and reference averaged over the runs (seeds), if every run has them alike."""
    got = [_per_tuple(leak) for leak in map(_leakage_doc, runs) if leak is not None]
    if not got or any(g is None for g in got) or len({g[0].shape for g in got}) != 1:
        return None
    return np.mean([g[0] for g in got], 0), np.mean([g[1] for g in got], 0)


def unresponsive_factors(full_runs: list[dict]) -> dict[str, float]:
    """factor -> full's responsiveness (seed-averaged diagonal) where it is below RESPONSIVE_MIN."""
    docs = [leak for leak in map(_leakage_doc, full_runs) if leak is not None]
    if not docs:
        return {}
    with np.errstate(all="ignore"):
        diag = np.nanmean([np.diagonal(np.array(d["matrix"], dtype=np.float64)) for d in docs], axis=0)
    labels = docs[0].get("labels") or [str(i) for i in range(len(diag))]
    return {str(f): float(v) for f, v in zip(labels, diag, strict=False) if not v >= RESPONSIVE_MIN}


def emotion_transfer(full_runs: list[dict]) -> dict | None:
    """full's cross-driving emotion accuracy (disentanglement.json: the output's emotion vs its expression driver's),
    averaged over seeds, with its tuples and chance (1 / the emotion classes of the runs' confusion.json); None
    where the runs lack either."""
    accs, tuples, classes = [], 0, 0
    for run in full_runs:
        extras = run.get("extras") or {}
        got = (((extras.get("disentanglement") or {}).get("transfer") or {}).get("expression") or {})
        labels = (extras.get("confusion") or {}).get("labels") or []
        if isinstance(got.get("accuracy"), (int, float)) and np.isfinite(got["accuracy"]) and labels:
            accs.append(float(got["accuracy"]))
            tuples, classes = int(got.get("n_clips") or 0), len(labels)
    if not accs:
        return None
    return {"accuracy": float(np.mean(accs)), "tuples": tuples, "chance": 1.0 / classes, "seeds": len(accs)}


def _no_expression_path(transfer: dict | None) -> str:
    """The note for an emotion claim when full's output does not take its expression driver's emotion."""
    if transfer is None or transfer["accuracy"] > transfer["chance"]:
        return ""
    return (f"full's output does not take its expression driver's emotion (cross-driving accuracy "
            f"{transfer['accuracy']:.2f} over {transfer['tuples']} tuples, chance {transfer['chance']:.2f}): Acc_emo "
            "here rests on the source frame's emotion")


def _leakage_effect(var_runs: list[dict], full_runs: list[dict], part: str) -> dict:
    """(variant − full) of the leakage summary `part`, with a paired bootstrap over tuples when possible."""
    def values(runs):
        return [_summary(np.array(leak["matrix"], dtype=np.float64), part)
                for leak in map(_leakage_doc, runs) if leak is not None]

    var_vals, full_vals = values(var_runs), values(full_runs)
    out = {"full_seed_values": full_vals, "lo": math.nan, "hi": math.nan, "n": 0}
    if not var_vals or not full_vals:
        return {**out, "effect": math.nan}
    out.update(variant=float(np.nanmean(var_vals)), full=float(np.nanmean(full_vals)))
    out["effect"] = out["variant"] - out["full"]
    a, b = _seed_averaged_tuples(var_runs), _seed_averaged_tuples(full_runs)
    if a is None or b is None or a[0].shape != b[0].shape or len(a[0]) < 2:
        return out
    # Tuples resampled together for both rows, the statistic recomputed per resample as the matrix is.
    rng = np.random.default_rng(stats.BOOTSTRAP_SEED)
    n = len(a[0])
    idx = rng.integers(0, n, size=(stats.N_RESAMPLES, n))
    diffs = np.array([_summary(_ratio(a[0][i], a[1][i]), part) - _summary(_ratio(b[0][i], b[1][i]), part)
                      for i in idx])
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size:
        q = (1.0 - stats.LEVEL) / 2.0
        out.update(lo=float(np.quantile(diffs, q)), hi=float(np.quantile(diffs, 1.0 - q)), n=n)
        out["effect"] = _summary(_ratio(*a), part) - _summary(_ratio(*b), part)
    return out


# ---------------------------------------------------------------- per-clip metrics
def _clip_effect(var_runs: list[dict], full_runs: list[dict], metric: str) -> dict:
    mine, ref = _per_case(var_runs, metric), _per_case(full_runs, metric)
    shared = sorted(set(mine) & set(ref))
    full_seed_values = [float(np.mean(v)) for v in (list(_per_case([r], metric).values()) for r in full_runs) if v]
    if not shared:
        return {"effect": math.nan, "lo": math.nan, "hi": math.nan, "n": 0, "full_seed_values": full_seed_values}
    d, lo, hi, n = stats.paired_diff_ci([mine[c] for c in shared], [ref[c] for c in shared])
    return {"effect": d, "lo": lo, "hi": hi, "n": n, "full_seed_values": full_seed_values,
            "variant": float(np.mean([mine[c] for c in shared])), "full": float(np.mean([ref[c] for c in shared]))}


def saturated_metrics(table: Table) -> dict[str, float]:
    """metric -> the ceiling, for every metric where `full`'s mean lies inside the ground-truth row's CI or
    beyond it in the better direction (the protocol cannot show a drop there)."""
    try:
        full, gt = table.row(REFERENCE), table.row(GROUND_TRUTH_LABEL)
    except KeyError:
        return {}
    out = {}
    for m in table.metrics:
        f, g = full.cells.get(m["name"]), gt.cells.get(m["name"])
        if f is None or g is None or not (np.isfinite(f.mean) and np.isfinite(g.mean)):
            continue
        lo, hi = (g.lo, g.hi) if np.isfinite(g.lo) and np.isfinite(g.hi) else (g.mean, g.mean)
        if (f.mean >= lo) if m["higher_is_better"] else (f.mean <= hi):
            out[m["name"]] = g.mean
    return out


def evaluate_claims(table: Table, claims: tuple[Claim, ...] = CLAIMS) -> list[ClaimResult]:
    """Every claim tested on one table's runs (a claim on a metric the protocol lacks is left out)."""
    by_label: dict[str, list[dict]] = {}
    for run in table.runs:
        by_label.setdefault(run["label"], []).append(run)
    metric_names = {m["name"] for m in table.metrics}
    saturated = saturated_metrics(table)
    try:
        gt_row = table.row(GROUND_TRUTH_LABEL)
    except KeyError:
        gt_row = None
    results = []
    for claim in claims:
        leak_part = LEAKAGE_METRICS.get(claim.metric)
        if leak_part is None and claim.metric not in metric_names:
            continue
        res = ClaimResult(claim, NOT_MEASURED, paper_full=_paper(REFERENCE, claim.metric),
                          paper_variant=_paper(claim.variant, claim.metric))
        results.append(res)
        full_runs, var_runs = by_label.get(REFERENCE, []), by_label.get(claim.variant, [])
        if not full_runs or not var_runs:
            missing = [n for n, r in ((REFERENCE, full_runs), (claim.variant, var_runs)) if not r]
            res.why = f"no run of {', '.join(missing)} under this protocol"
            continue
        got = (_leakage_effect(var_runs, full_runs, leak_part) if leak_part
               else _clip_effect(var_runs, full_runs, claim.metric))
        res.effect, res.lo, res.hi, res.n = got["effect"], got["lo"], got["hi"], got["n"]
        res.full_value, res.variant_value = got.get("full", math.nan), got.get("variant", math.nan)
        res.full_seed_spread, res.full_seeds = _spread(got["full_seed_values"]), len(got["full_seed_values"])
        if gt_row is not None and gt_row.cells.get(claim.metric) is not None:
            res.ceiling = gt_row.cells[claim.metric].mean
        res.saturated = claim.metric in saturated
        if not np.isfinite(res.effect):
            res.why = (f"no {claim.metric} in the runs' disentanglement.json" if leak_part
                       else f"no test case scored {claim.metric} for both")
            continue
        res.verdict = verdict(res.lo, res.hi, claim.expected)
        weak = unresponsive_factors(full_runs) if leak_part else {}
        if weak:
            res.verdict = NOT_READABLE
            res.why = ("full does not follow every driver (responsiveness "
                       + ", ".join(f"{f} {v:.2f}" for f, v in weak.items()) + f" < {RESPONSIVE_MIN})")
        elif res.verdict == NO_CI:
            res.why = "one value per run (no per-tuple data to resample)" if leak_part else "fewer than 2 paired cases"
        elif res.saturated and res.verdict != REPRODUCED:
            res.why = "saturated: cannot show a drop"
    return results


def _fmt(x: float | None, digits: int = 3, sign: bool = False) -> str:
    if x is None or not np.isfinite(x):
        return "–"
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _row_view(r: ClaimResult) -> dict[str, Any]:
    c = r.claim
    return {"id": c.id, "statement": c.statement, "variant": c.variant, "metric": c.metric,
            "expected": "lower" if c.expected < 0 else "higher", "verdict": r.verdict,
            "verdict_class": r.verdict.replace(" ", "-"), "effect": _fmt(r.effect, sign=True),
            "ci": f"[{_fmt(r.lo, sign=True)}, {_fmt(r.hi, sign=True)}]" if np.isfinite(r.lo) else "–",
            "effect_value": r.effect, "lo": r.lo, "hi": r.hi, "n": r.n,
            "change": f"{_fmt(r.full_value)} → {_fmt(r.variant_value)}",
            "spread": _fmt(r.full_seed_spread) if r.full_seeds > 1 else f"– ({r.full_seeds} seed)",
            "paper": (f"{_fmt(r.paper_full)} → {_fmt(r.paper_variant)} ({_fmt(r.paper_effect, sign=True)})"
                      if r.paper_effect is not None else "–"),
            "ceiling": _fmt(r.ceiling), "saturated": r.saturated, "why": r.why}


@dataclass
class ClaimsView:
    title: str
    rows: list[dict] = field(default_factory=list)
    saturated: dict[str, float] = field(default_factory=dict)
    has_ground_truth: bool = False


def _claim_tables(tables: list[Table]) -> dict[bool, Table | None]:
    """Of one protocol's tables (one per setting): {leakage claim?: the table its verdict reads}. Per-clip claims
    read the audio setting's where there is one (the paper's), leakage the video-driven one (disentanglement.json)."""
    audio = next((t for t in tables if t.setting == "audio" and t.reference is not None), None)
    other = next((t for t in tables if t.setting != "audio" and t.reference is not None), None)
    return {False: audio or other, True: other or audio}


def claims_section(tables: list[Table]) -> list[ClaimsView]:
    """One claims table per protocol whose results hold `full` (the report's first section); each row says which
    setting's table it was read from."""
    by_protocol: dict[str, list[Table]] = {}
    for t in tables:
        by_protocol.setdefault(t.protocol_key or t.key, []).append(t)
    out = []
    for group in by_protocol.values():
        source = _claim_tables(group)
        if source[False] is None:
            continue
        per_table = {id(t): evaluate_claims(t) for t in {id(t): t for t in source.values() if t}.values()}
        rows = []
        for claim in CLAIMS:
            t = source[claim.metric in LEAKAGE_METRICS]
            got = next((r for r in per_table[id(t)] if r.claim is claim), None) if t is not None else None
            if got is not None:
                rows.append({**_row_view(got), "setting": SETTING_NAMES[t.setting]})
        # Cross-driving (and so the expression path's test) is in the video-driven table, whichever table a row reads.
        leak_table = source[True]
        transfer = emotion_transfer([r for r in leak_table.runs if r["label"] == REFERENCE]) if leak_table else None
        note = _no_expression_path(transfer)
        for row in rows:
            if note and row["metric"] in EMOTION_METRICS:
                row["why"] = f"{row['why']}; {note}" if row["why"] else note
        clip_table = source[False]
        has_gt = any(r.label == GROUND_TRUTH_LABEL for r in clip_table.rows)
        title = clip_table.protocol_title or clip_table.title
        out.append(ClaimsView(title, rows, saturated_metrics(clip_table), has_gt))
    return out

"""Per-sample results as a pandas DataFrame, for analysis outside the report (and `edtalk report --csv`).

    from reports.results_table import load_results
    df = load_results("results/")                       # every results.json below the folder
    df = load_results(["a/results.json", "b/results.json"])
    df.groupby("run")["psnr"].mean()                    # per-run means
    df.melt(id_vars=ID_COLUMNS, value_vars=df.attrs["metrics"], var_name="metric")   # long form

The table is *wide*: one row per (results file, case), one float column per metric (NaN where the
metric had no value for that case, e.g. no face found), because that is the shape `per_sample` has in
results.json and what `groupby`/paired comparisons between runs need; `melt` gives the long form.
Columns, in order: `ID_COLUMNS` (run, seed, protocol, case, n_frames, path), the metrics (in the
protocol's order; listed in `df.attrs["metrics"]`), then `info.<key>` for each scalar in a case's info.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from benchmarks.protocols.engine import load_results as read_results_file
from metrics.errors import InputError
from reports.collect import collect_results, run_label, run_seed

__all__ = ["ID_COLUMNS", "load_results", "write_table"]

ID_COLUMNS = ["run", "seed", "protocol", "case", "n_frames", "path"]
_TABLE_SUFFIXES = {".csv": "CSV", ".parquet": "Parquet"}


def _runs(source: str | os.PathLike) -> list[dict]:
    """The runs a path stands for: a folder's results files (as the report finds them) or one file."""
    path = Path(source)
    if path.is_dir():
        return collect_results(path)
    data = read_results_file(path)
    method, provenance = data.get("method") or {}, data.get("provenance") or {}
    proto = data.get("protocol") or {}
    return [{"path": path, "label": run_label(method, path, path.parent), "seed": run_seed(method, provenance),
             "protocol_id": str(proto.get("id") or f"{proto.get('name')}@{proto.get('version')}"),
             "results": data}]


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)


def load_results(sources: str | os.PathLike | Iterable[str | os.PathLike]):
    """The per-sample rows of results files as a pandas DataFrame (see the module docstring for its shape).

    `sources`: a results.json, a folder searched like `edtalk report` does, or a list of either.
    Raises InputError for a missing file, a file that is not a results file, or a folder without any.
    """
    import pandas as pd

    paths = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    if not paths:
        raise InputError("load_results needs at least one results.json or folder")
    rows, metrics, info_keys = [], [], []
    for run in (r for p in paths for r in _runs(p)):
        names = (run["results"].get("protocol") or {}).get("metrics_evaluated") or []
        for sample in run["results"].get("per_sample") or []:
            scores = sample.get("scores") or {}
            info = {f"info.{k}": v for k, v in (sample.get("info") or {}).items()
                    if isinstance(v, (str, int, float, bool)) or v is None}
            rows.append({"run": run["label"], "seed": run["seed"], "protocol": run["protocol_id"],
                         "case": str(sample["case"]), "n_frames": sample.get("n_frames"), "path": str(run["path"]),
                         **{m: _number(v) for m, v in scores.items()}, **info})
            metrics += [m for m in dict.fromkeys([*names, *scores]) if m not in metrics and m in scores]
            info_keys += [k for k in info if k not in info_keys]
    df = pd.DataFrame(rows, columns=ID_COLUMNS + metrics + info_keys)
    df[metrics] = df[metrics].astype("float64")
    df.attrs["metrics"] = metrics
    return df


def write_table(df, out: str | os.PathLike) -> Path:
    """Write `df` as CSV (`.csv`) or Parquet (`.parquet`, needs pyarrow or fastparquet); returns the path."""
    out = Path(out)
    kind = _TABLE_SUFFIXES.get(out.suffix.lower())
    if kind is None:
        raise InputError(f"{out}: the per-sample table is written as .csv or .parquet, "
                         f"not {out.suffix or 'a name without a suffix'!r}")
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "CSV":
        df.to_csv(out, index=False)
        return out
    try:
        df.to_parquet(out, index=False)
    except ImportError:
        raise InputError(f"{out}: writing Parquet needs pyarrow (pip install pyarrow); or write a .csv") from None
    return out

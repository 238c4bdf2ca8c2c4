"""Find results files under a directory and the optional material that sits beside them.

A report reads files only (docs/DESIGN.md, layer 6). Under `results_dir` every `results.json`,
`results-audio.json` (a sweep run's EDTalk-A scores, edtalk.method) or `*.results.json` in the
`edtalk-bench/results@1` schema is one *run*: one method (for our runs, one variant, seed and setting) scored
under one protocol. Beside a results file, and only if present (for results-audio.json: `confusion-audio.json`
etc., benchmarks.protocols.api.sibling_file):

* `disentanglement.json`  cross-driving leakage matrix, transfer errors, bank geometry;
* `confusion.json`        {"labels": [8 emotions], "matrix": 8x8} emotion confusion;
* `samples/*.png`         frame strips (else the run directory's `samples/`);
* `videos/*.mp4`          generated videos (else the run directory's `videos/`);
* training curves         `<run_dir>/logs/<stage>.csv`, the run directory named by `method["run_dir"]`.

`evaluators.json` at the top of `results_dir` holds the evaluator nets' validation numbers.
Files in another schema (e.g. a training stage's own results.json) are listed as skipped, not read.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from benchmarks.protocols.api import sibling_file
from benchmarks.protocols.engine import SCHEMA
from metrics.errors import InputError

__all__ = ["collect_results", "load_evaluators", "run_label", "run_seed", "SETTING_TITLES", "SETTING_NAMES"]

RESULTS_NAMES = ("results.json", "results-audio.json")
# A run's `setting` (its method's, edtalk.method) as the report names it; a method without one is video-driven
# (EDTalk-V) or not a model at all (the ground truth, a folder of videos).
SETTING_TITLES = {"audio": "EDTalk-A (audio-driven), the paper's setting", "video": "EDTalk-V (video-driven)"}
SETTING_NAMES = {"audio": "EDTalk-A (audio)", "video": "EDTalk-V (video)", None: "as scored"}  # in a table's cell
RESULTS_SUFFIX = ".results.json"
VIDEO_EXTS = (".mp4", ".webm", ".mov")


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_label(method: dict, path: Path, root: Path) -> str:
    """The row name of a run: its variant, else the method's name, else where its results lie."""
    for key in ("variant", "name"):
        if method.get(key):
            return str(method[key])
    if method.get("path"):
        return Path(str(method["path"])).name or str(method["path"])
    rel = path.parent.relative_to(root) if path.parent != root else Path(path.stem)
    return str(rel)


def run_seed(method: dict, provenance: dict) -> Any:
    """The seed of a run: the method's, else the first of the provenance's seeds."""
    if method.get("seed") is not None:
        return method["seed"]
    seeds = provenance.get("seeds") or {}
    if isinstance(seeds, dict):
        for key in ("seed", "train", "model", "run"):
            if seeds.get(key) is not None:
                return seeds[key]
    return None


def _resolve_run_dir(value: Any, results_path: Path, root: Path) -> Path | None:
    if not value:
        return None
    p = Path(str(value))
    candidates = [p] if p.is_absolute() else [results_path.parent / p, root / p, Path.cwd() / p]
    for c in candidates:
        if c.is_dir():
            return c.resolve()
    return None


def _read_curve(path: Path) -> dict | None:
    """A training log CSV (step, loss terms…) as {"columns": [...], "step": [...], "values": {col: [...]}}."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.reader(f))
    except OSError:
        return None
    if len(rows) < 2 or not rows[0] or rows[0][0] != "step":
        return None
    header = rows[0]
    steps: list[float] = []
    values: dict[str, list[float]] = {c: [] for c in header[1:]}
    for r in rows[1:]:
        if len(r) != len(header):
            continue  # a torn last line of a killed run
        try:
            nums = [float(x) if x not in ("", "nan") else math.nan for x in r]
        except ValueError:
            continue
        steps.append(nums[0])
        for c, v in zip(header[1:], nums[1:], strict=True):
            values[c].append(v)
    if not steps:
        return None
    return {"columns": header[1:], "step": steps, "values": values}


def _files(folder: Path, exts: tuple[str, ...]) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)


def _extras(path: Path, method: dict, root: Path) -> dict:
    here = path.parent
    run_dir = _resolve_run_dir(method.get("run_dir"), path, root)
    extras: dict[str, Any] = {"run_dir": run_dir}
    for name in ("disentanglement", "confusion"):
        beside = sibling_file(path, name).name  # results-audio.json's are confusion-audio.json, ...
        data = _read_json(here / beside)
        if data is None and run_dir is not None:
            data = _read_json(run_dir / beside)
        extras[name] = data if isinstance(data, dict) else None
    curves: dict[str, dict] = {}
    if run_dir is not None:
        logs = [run_dir / "logs"]
        # A run that took its first stages from another run (the sweep's stage sharing) shows that run's
        # curves for them: they are this model's history too.
        shared = (_read_json(run_dir / "config.json") or {}).get("shared_stages")
        if isinstance(shared, dict) and shared.get("from"):
            parent_logs = Path(shared["from"]).parent.parent / "logs"
            logs = [parent_logs / f"{st}.csv" for st in shared.get("stages", [])] + logs
        for csv_path in [p for d in logs for p in (sorted(d.glob("*.csv")) if d.is_dir() else [d])]:
            curve = _read_curve(csv_path) if csv_path.is_file() else None
            if curve is not None:
                curves.setdefault(csv_path.stem, curve)
    extras["curves"] = curves
    samples = _files(here / "samples", (".png",))
    if not samples and run_dir is not None:
        samples = _files(run_dir / "samples", (".png",))
    extras["samples"] = samples
    videos = _files(here / "videos", VIDEO_EXTS)
    if not videos and run_dir is not None:
        videos = _files(run_dir / "videos", VIDEO_EXTS)
    extras["videos"] = videos
    return extras


def _is_results_name(name: str) -> bool:
    return name in RESULTS_NAMES or name.endswith(RESULTS_SUFFIX)


def collect_results(results_dir: str | os.PathLike) -> list[dict]:
    """Every results@1 file under `results_dir` (recursively), with what lies beside it.

    Returns a list sorted by path; each item is a dict:
        path (Path of the results file), label (variant / method name), seed, protocol_id,
        setting ("audio" | "video" | None: the method's, e.g. the sweep's EDTalk-A scores),
        results (the parsed file: protocol, method, per_sample, aggregates, provenance), and
        extras: run_dir (Path|None), disentanglement (dict|None), confusion (dict|None),
        curves ({stage: {"columns", "step", "values"}}), samples [Path], videos [Path].
    Raises InputError if the directory does not exist or holds no results file.
    """
    root = Path(results_dir)
    if not root.is_dir():
        raise InputError(f"{root}: not a directory; pass the folder that holds results.json files")
    root = root.resolve()
    found: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root):
        # A sweep keeps runs of an older config under superseded/ (ablations.sweep); not reported.
        dirnames[:] = sorted(d for d in dirnames if d != "superseded")
        for name in sorted(filenames):
            if not _is_results_name(name):
                continue
            path = Path(dirpath) / name
            data = _read_json(path)
            if not isinstance(data, dict) or data.get("schema") != SCHEMA:
                continue
            method = data.get("method") or {}
            prov = data.get("provenance") or {}
            proto = data.get("protocol") or {}
            found.append({
                "path": path,
                "label": run_label(method, path, root),
                "seed": run_seed(method, prov),
                "protocol_id": str(proto.get("id") or f"{proto.get('name')}@{proto.get('version')}"),
                "setting": method.get("setting") if method.get("setting") in SETTING_TITLES else None,
                "results": data,
                "extras": _extras(path, method, root),
            })
    if not found:
        raise InputError(f"{root}: no {SCHEMA} results.json found below it; run `edtalk evaluate` "
                         "(or the ablation sweep) first")
    return found


def load_evaluators(results_dir: str | os.PathLike) -> dict | None:
    """`evaluators.json` at the top of `results_dir` (the evaluator nets' validation), or None."""
    data = _read_json(Path(results_dir) / "evaluators.json")
    return data if isinstance(data, (dict, list)) and data else None

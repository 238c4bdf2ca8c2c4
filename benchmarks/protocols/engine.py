"""The evaluation engine: score a method's videos under a protocol, with resumable per-sample rows.

A *method* is anything that yields a video for each of the protocol's test cases: a callable
`method(case) -> uint8 (T,H,W,3)` (our model's animate, or a baseline's wrapper) or a folder holding
`<case.name>.mp4` files. This module never imports `edtalk`: our model is scored exactly like a
baseline, which is what makes its numbers comparable with other methods'.

Every finished case is appended (and fsync'ed) to `<out>.rows.jsonl` before the next starts, so a
killed evaluation resumes where it stopped; the final `results.json` is written atomically from the
rows, deduplicated by case, so a disk-full or a kill leaves the previous file intact.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.protocols.registry import Protocol, get_protocol, resolved
from metrics.errors import InputError, UserError, closest
from metrics.utils import atomic_write_json, provenance, to_jsonable

SCHEMA = "edtalk-bench/results@1"
ROWS_SCHEMA = "edtalk-bench/rows@1"


@dataclass(frozen=True)
class Case:
    """One test case: a name (unique), and whatever the scorer and method need to know about it."""

    name: str
    info: dict[str, Any] = field(default_factory=dict)


def bootstrap_ci(values, n_resamples: int = 2000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over samples; deterministic for a seed (so resumed runs match)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan")
    if x.size == 1:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_resamples, x.size))
    means = x[idx].mean(axis=1)
    a = (1.0 - level) / 2.0
    return float(np.quantile(means, a)), float(np.quantile(means, 1.0 - a))


def aggregate(rows: list[dict], protocol: Protocol, metrics: Iterable[str]) -> dict[str, dict]:
    """Mean and 95% bootstrap CI over clips for every clip-level metric, from per-sample rows."""
    agg = protocol.aggregation
    out: dict[str, dict] = {}
    # Rows are sorted by case name first so the bootstrap sees the same order however the run resumed.
    rows = sorted(rows, key=lambda r: r["case"])
    for name in metrics:
        vals = [r["scores"].get(name) for r in rows]
        vals = np.array([np.nan if v is None else float(v) for v in vals], dtype=np.float64)
        finite = vals[np.isfinite(vals)]
        lo, hi = bootstrap_ci(finite, int(agg.get("bootstrap_resamples", 2000)), int(agg.get("bootstrap_seed", 0)))
        out[name] = {"mean": float(finite.mean()) if finite.size else None, "ci_low": lo, "ci_high": hi,
                     "n": int(finite.size), "n_invalid": int(vals.size - finite.size),
                     "higher_is_better": protocol.metric(name).higher_is_better}
    return out


def folder_method(folder: str | os.PathLike, reader: Callable | None = None, *, fps: float | None = 25.0,
                  fps_policy: str = "refuse", size: int | None = None) -> Callable[[Case], np.ndarray]:
    """A method whose videos already exist: `<folder>/<case.name>.mp4` (any method, any baseline).

    The folder is checked up front: no videos, videos only in subfolders, and two files for one case
    name (`a.mp4` + `a.MP4`, or `a.mp4` + `sub/a.mkv`) are one-line `InputError`s. With the default
    reader every video is brought to `fps` under `fps_policy` ("refuse", the protocols' default, or
    "resample"; `fps=None` skips it) and, if `size` is given, checked to be size x size; what was
    converted (frame rate, grayscale/alpha to RGB) is kept per case in `method.conversions`.
    """
    from benchmarks.datasets.common import duplicates, preview

    exts = (".mp4", ".avi", ".mov", ".mkv")
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"--videos {root}: not a directory; pass the folder holding <case>.mp4 files")
    videos = sorted(p for p in root.rglob("*") if p.suffix.lower() in exts and p.is_file())
    if not videos:
        raise InputError(f"--videos {root}: no video files ({', '.join(exts)}) in it; pass the folder "
                         "holding <case>.mp4 files")
    top = {p.stem: p for p in videos if p.parent == root}
    if not top:
        nested = preview(str(p.relative_to(root)) for p in videos)
        raise InputError(f"--videos {root}: no videos at its top level but {len(videos)} in subfolders "
                         f"({nested}); pass the folder that holds them")
    dup = duplicates(p.stem for p in videos)
    if dup:
        clash = [" + ".join(str(p.relative_to(root)) for p in videos if p.stem == d) for d in dup]
        raise InputError(f"--videos {root}: {len(dup)} case names have more than one video "
                         f"({preview(clash)}); keep one file per case")
    conversions: dict[str, dict] = {}

    def method(case: Case) -> np.ndarray:
        key = case.name.replace("/", "_")
        p = top.get(key) or next((q for q in (root / f"{key}{e}" for e in exts) if q.is_file()), None)
        if p is None:
            close = closest(key, top)
            hint = f" (closest file: {top[close].name})" if close else ""
            raise InputError(f"{root}: no video for test case {case.name!r} (expected {key}.mp4){hint}; "
                             "generate every case of the protocol or pick a protocol your method supports")
        if reader is not None:
            return reader(p)
        from benchmarks.media import check_size, conform_fps, read_video

        clip = read_video(p)
        if fps is not None:
            clip, _ = conform_fps(clip, fps, fps_policy)
        if size is not None:
            check_size(clip, size)
        if clip.conversions:
            conversions[case.name] = clip.conversions
        return clip.frames

    method.describe = {"kind": "videos", "path": str(root.resolve())}  # type: ignore[attr-defined]
    method.conversions = conversions  # type: ignore[attr-defined]
    return method


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(to_jsonable(obj), sort_keys=True).encode()).hexdigest()[:16]


class RowStore:
    """Append-only per-sample rows with a header line naming what they belong to.

    A kill can leave a torn last line; it is dropped (and the file rewritten atomically) on open, so
    no row is lost or duplicated: every completed case is either fully on disk or re-run.
    """

    def __init__(self, path: Path, header: dict):
        self.path = Path(path)
        self.header = header
        self.rows: dict[str, dict] = {}
        if self.path.exists():
            self._load()
        else:
            self._rewrite()

    def _load(self) -> None:
        lines = self.path.read_text(errors="replace").splitlines()
        good: list[dict] = []
        torn = False
        for _i, line in enumerate(lines):
            try:
                obj = json.loads(line)
            except ValueError:
                torn = True
                continue
            good.append(obj)
        if not good or not isinstance(good[0], dict) or good[0].get("schema") != ROWS_SCHEMA:
            raise InputError(f"{self.path}: not an edtalk-bench rows file; move it away or choose another --out")
        head = good[0]
        if head.get("key") != self.header["key"]:
            raise InputError(f"{self.path}: holds rows of a different protocol/method/config "
                             f"({head.get('protocol')}); use another --out or delete it to start over")
        for obj in good[1:]:
            if not isinstance(obj, dict) or not isinstance(obj.get("case"), str) or "scores" not in obj:
                torn = True  # a line that parses but is not a whole row (corrupted bytes): re-run that case
                continue
            self.rows[obj["case"]] = obj  # a duplicate (never written twice, but be safe) keeps the last
        if torn or len(good) - 1 != len(self.rows):
            self._rewrite()

    def _rewrite(self) -> None:
        from metrics.utils import atomic_write_text

        text = "".join(json.dumps(to_jsonable(r)) + "\n" for r in [self.header, *self.rows.values()])
        _disk_guard(lambda: atomic_write_text(self.path, text), self.path)

    def append(self, row: dict) -> None:
        line = json.dumps(to_jsonable(row)) + "\n"

        def write():
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())

        try:
            _disk_guard(write, self.path)
        except UserError:
            # A partial append would be a torn line; drop it now so the file stays valid.
            self._rewrite_quiet()
            raise
        self.rows[row["case"]] = row

    def _rewrite_quiet(self) -> None:
        try:
            self._rewrite()
        except UserError:
            pass


def _disk_guard(fn: Callable[[], Any], path: Path) -> Any:
    try:
        return fn()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"disk full while writing {path}; previous results are intact — free space and "
                            "re-run the same command to resume") from exc
        raise


def _check_frames(case: Case, frames: Any, protocol: Protocol) -> np.ndarray:
    if frames is None:
        raise UserError(f"the method produced no video for case {case.name!r}: protocol {protocol.name!r} needs "
                        "every test case; pick a protocol this method supports")
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3 or arr.shape[0] == 0:
        raise InputError(f"case {case.name!r}: the method returned shape {arr.shape}; expected uint8 (T,H,W,3) "
                         "RGB frames")
    if arr.dtype != np.uint8:
        raise InputError(f"case {case.name!r}: the method returned {arr.dtype} frames; expected uint8 0..255")
    return arr


def evaluate(protocol: str | Protocol, method: Callable[[Case], Any] | str | os.PathLike,
             cases: list[Case], scorer: Callable[[Case, np.ndarray], Mapping[str, float]], out: str | os.PathLike,
             *, metrics: list[str] | None = None, method_info: dict | None = None, config: dict | None = None,
             seeds: dict | None = None, evaluator_weights: dict | None = None, progress: bool = True,
             protocol_changes: dict | None = None) -> dict:
    """Score `method` on `cases` under `protocol`; write `out` (results.json) and return it.

    `scorer(case, frames) -> {metric: value}` must return every clip-level metric in `metrics` (default:
    all of the protocol's); a metric it cannot compute must be removed *before* evaluating (the caller
    checks support), so a result never holds a partial table. Set-level metrics (`MetricSpec.level ==
    "set"`, e.g. FID) keep their per-clip state wherever the scorer puts it before returning and are
    aggregated over the finished rows by `scorer.aggregate_set(name, rows) -> {"mean", "ci_low", ...}`;
    a scorer with `reference_aggregates(rows)` / `provenance(rows)` adds those to the results.
    """
    proto = get_protocol(protocol)
    names = list(metrics or proto.metric_names)
    for n in names:
        proto.metric(n)
    set_names = [n for n in names if proto.metric(n).level == "set"]
    clip_names = [n for n in names if n not in set_names]
    if set_names and not hasattr(scorer, "aggregate_set"):
        raise UserError(f"set-level metric(s) {set_names} need a scorer with aggregate_set; evaluate with --metrics "
                        f"{','.join(clip_names)}")
    if not cases:
        raise InputError(f"protocol {proto.name!r}: no test cases found; check the data root")
    dup = {c.name for c in cases if sum(1 for d in cases if d.name == c.name) > 1}
    if dup:
        raise InputError(f"duplicate test-case names {sorted(dup)[:3]}: case names must be unique")
    if isinstance(method, (str, os.PathLike)):
        method = folder_method(method)
    info = dict(method_info or getattr(method, "describe", {}) or {"kind": "callable",
                                                                     "name": getattr(method, "__name__", "?")})
    out = Path(out)
    rproto = resolved(proto, metrics_evaluated=names, **(protocol_changes or {}))
    key = _fingerprint({"protocol": rproto, "method": info, "config": config or {}, "seeds": seeds or {},
                        "cases": [c.name for c in cases]})
    store = RowStore(out.with_name(out.name + ".rows.jsonl"),
                     {"schema": ROWS_SCHEMA, "key": key, "protocol": rproto["id"]})
    todo = [c for c in cases if c.name not in store.rows]
    bar = None
    if progress and todo:
        from tqdm import tqdm

        bar = tqdm(total=len(cases), initial=len(cases) - len(todo), desc=f"evaluate {proto.name}", unit="clip")
    try:
        for case in todo:
            frames = _check_frames(case, method(case), proto)
            scores = dict(scorer(case, frames))
            missing = [n for n in clip_names if n not in scores]
            if missing:
                raise UserError(f"protocol {proto.name!r} cannot score this method: metric(s) {missing} not "
                                f"computed for case {case.name!r}; evaluate with --metrics "
                                f"{','.join(n for n in names if n not in missing)} or supply the evaluators")
            row = {"case": case.name, "n_frames": int(frames.shape[0]),
                   "scores": {n: (None if scores[n] is None or not np.isfinite(float(scores[n])) else float(scores[n]))
                              for n in clip_names},
                   "info": case.info}
            extra = {k: v for k, v in scores.items() if k not in clip_names and k not in set_names}
            if extra:
                row["extra"] = extra
            store.append(row)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    order = {c.name: i for i, c in enumerate(cases)}
    rows = sorted((r for r in store.rows.values() if r["case"] in order), key=lambda r: order[r["case"]])
    result = {
        "schema": SCHEMA,
        "protocol": rproto,
        "method": info,
        "per_sample": rows,
        "aggregates": aggregate(rows, proto, clip_names),
        "provenance": provenance(config=config or {}, seeds=seeds or {},
                                 evaluator_weights=evaluator_weights or {}),
    }
    _scorer_aggregates(result, scorer, names, set_names, rows)
    _disk_guard(lambda: atomic_write_json(out, result), out)
    return result


def _scorer_aggregates(result: dict, scorer, names: list[str], set_names: list[str], rows: list[dict]) -> None:
    """Set-level metrics (from the scorer's own per-clip state), then what else the scorer aggregates:
    `reference_aggregates` (a reference implementation's way of pooling) and `metric_provenance`."""
    for n in set_names:
        result["aggregates"][n] = scorer.aggregate_set(n, rows)
    result["aggregates"] = {n: result["aggregates"][n] for n in names}  # the protocol's column order
    for part, key in (("reference_aggregates", "reference_aggregates"), ("provenance", "metric_provenance")):
        fn = getattr(scorer, part, None)
        if fn is not None:
            result[key] = fn(rows)


def load_results(path: str | os.PathLike) -> dict:
    """Read a results.json, refusing anything that is not one (with the file named)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text())
    except FileNotFoundError:
        raise InputError(f"{p}: results file not found; run `edtalk evaluate` first") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"{p}: not valid JSON ({exc}); re-run `edtalk evaluate` to regenerate it") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise InputError(f"{p}: not an {SCHEMA} results file")
    return data

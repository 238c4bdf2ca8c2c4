"""The report's sections, each built from the collected runs: tables, disentanglement, confusion matrices,
training curves, frame strips, videos, evaluator validation and provenance (what `build_context` assembles)."""
from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from reports.tables import Table

STAGE_ORDER = ("autoencoder", "mouth_pose", "expression", "joint")
MAX_VIDEOS_PER_VARIANT = 2
MAX_VIDEO_BYTES = 8 << 20
MAX_TOTAL_VIDEO_BYTES = 64 << 20  # over all variants: the HTML stays openable
MAX_STRIPS_PER_VARIANT = 4
MAX_IMAGE_WIDTH = 1400
VIDEO_MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime"}
EVALUATOR_HEADING = "A model's metric is only as good as its evaluator"


# ---------------------------------------------------------------- small helpers
def data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _figure(title: str, png: bytes | None, caption: str = "") -> dict | None:
    if png is None:
        return None
    return {"title": title, "png": png, "uri": data_uri(png, "image/png"), "caption": caption}


def _png_file(path: Path) -> bytes | None:
    """A PNG's bytes, downscaled to MAX_IMAGE_WIDTH if wider (keeps the report a sensible size)."""
    try:
        from PIL import Image

        with Image.open(path) as img:
            if img.width <= MAX_IMAGE_WIDTH and img.format == "PNG":
                return path.read_bytes()
            img = img.convert("RGB")
            if img.width > MAX_IMAGE_WIDTH:
                img = img.resize((MAX_IMAGE_WIDTH, max(1, round(img.height * MAX_IMAGE_WIDTH / img.width))))
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            return buf.getvalue()
    except (OSError, ValueError):
        return None


def _poster(path: Path) -> bytes | None:
    """The first frame of a video as PNG (what the PDF shows in place of the video)."""
    try:
        from PIL import Image

        from benchmarks.media import iter_video

        frames = iter_video(path, chunk=1)
        try:
            first = next(frames)[0]
        finally:
            frames.close()  # closes the container now, not at garbage collection
        buf = io.BytesIO()
        Image.fromarray(np.ascontiguousarray(first)).save(buf, format="PNG")
        return buf.getvalue()
    except Exception:  # an unreadable video still gets embedded, just without a poster
        return None


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested dicts → [(dotted key, scalar)]; short numeric lists are kept, long ones summarised."""
    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, list):
        if len(obj) <= 6 and all(isinstance(v, (int, float, str, bool)) or v is None for v in obj):
            out.append((prefix, obj))
        elif all(isinstance(v, dict) for v in obj) and len(obj) <= 20:
            for i, v in enumerate(obj):
                out += _flatten(v, f"{prefix}[{i}]")
        else:
            out.append((prefix, f"[{len(obj)} items]"))
    else:
        out.append((prefix, obj))
    return out


def fmt_value(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float):
        if not math.isfinite(v):
            return "–"
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.3e}"
    if isinstance(v, list):
        return "[" + ", ".join(fmt_value(x) for x in v) + "]"
    return str(v)


def _mean_of(values: list[Any]) -> Any:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None]
    if nums and len(nums) == len(values):
        finite = [float(v) for v in nums if math.isfinite(float(v))]
        return float(np.mean(finite)) if finite else None
    return values[0] if values else None


def _by_variant(runs: list[dict]) -> dict[str, list[dict]]:
    from reports.tables import variant_order

    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(run["label"], []).append(run)
    def key(r: dict) -> tuple[str, str]:
        return str(r["seed"]), str(r["path"])

    return {k: sorted(groups[k], key=key) for k in variant_order(groups)}


def _unique_dirs(runs: list[dict]) -> list[dict]:
    """One run per results folder: extras beside a results file are shared by its protocols. A run scored in both
    settings shows its video-driven file's (the disentanglement study is video-driven)."""
    seen, out = set(), []
    for run in sorted(runs, key=lambda r: r.get("setting") == "audio"):  # stable: otherwise the given order
        key = run["path"].parent
        if key not in seen:
            seen.add(key)
            out.append(run)
    return out


def _seeds_text(runs: list[dict]) -> str:
    seeds = [str(r["seed"]) for r in runs if r["seed"] is not None]
    return f"seed{'s' if len(seeds) != 1 else ''} {', '.join(seeds)}" if seeds else "seed unknown"


# ---------------------------------------------------------------- sections
def table_view(t: Table) -> dict:
    from reports import plots

    return {"t": t, "anchor": "proto-" + "".join(ch if ch.isalnum() else "-" for ch in t.key),
            "bars": _figure(f"{t.title}: per-metric means with 95% CI", plots.metric_bars(t))}


def _leakage_labels(leak: Any) -> tuple[list[str], list[list[Any]]] | None:
    if isinstance(leak, dict) and "matrix" in leak:
        mat = leak["matrix"]
        labels = leak.get("labels") or ["mouth", "pose", "expression"][: len(mat)]
    elif isinstance(leak, list):
        mat, labels = leak, ["mouth", "pose", "expression"][: len(leak)]
    else:
        return None
    try:
        a = np.array([[np.nan if v is None else float(v) for v in row] for row in mat], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] != len(labels):
        return None
    return list(map(str, labels)), a.tolist()


def disentanglement_section(runs: list[dict]) -> dict | None:
    from reports import plots

    heatmaps, transfer, geometry = [], {}, {}
    variants, floor = [], None
    for label, group in _by_variant(_unique_dirs(runs)).items():
        docs = [r["extras"]["disentanglement"] for r in group if r["extras"].get("disentanglement")]
        if not docs:
            continue
        variants.append(label)
        floor = floor or next((d["reader_floor"] for d in docs if _leakage_labels(d.get("reader_floor"))), None)
        mats, labels = [], None
        for d in docs:
            got = _leakage_labels(d.get("leakage"))
            if got is not None and (labels is None or got[0] == labels):
                labels = got[0]
                mats.append(np.array(got[1], dtype=np.float64))
        if mats:
            with np.errstate(all="ignore"):
                m = np.nanmean(np.stack(mats), axis=0) if len(mats) > 1 else mats[0]
            off = m[~np.eye(len(m), dtype=bool)]
            off_mean = float(np.nanmean(off)) if np.isfinite(off).any() else math.nan
            vmax = max(1.0, float(np.nanmax(m))) if np.isfinite(m).any() else 1.0
            seeds = _seeds_text([r for r in group if r["extras"].get("disentanglement")])
            png = plots.heatmap(m.tolist(), labels, labels, f"{label}: leakage ({seeds})",
                                xlabel="factor measured", ylabel="driver swapped", vmin=0.0, vmax=vmax,
                                cmap="magma")
            in_reader_units = all(d.get("reference") == "reader" for d in docs)
            caption = (f"mean off-diagonal leakage {fmt_value(off_mean)} (0 = independent); "
                       "diagonal = responsiveness (1 = follows its driver"
                       + (" as much as the world's own render of the truth, read by the same readers)"
                          if in_reader_units else ", measured against the drivers' ground truth)"))
            heatmaps.append(_figure(label, png, caption))
        for part, store in (("transfer", transfer), ("bank_geometry", geometry)):
            flat: dict[str, list[Any]] = {}
            for d in docs:
                for k, v in _flatten(d.get(part) or {}):
                    flat.setdefault(k, []).append(v)
            for k, vs in flat.items():
                store.setdefault(k, {})[label] = _mean_of(vs)
    if not variants:
        return None
    if floor is not None:  # the same tuples drawn by the world's renderer: what the readers leak by themselves
        labels, m = _leakage_labels(floor)
        png = plots.heatmap(m, labels, labels, "perfect render: the readers' floor", xlabel="factor measured",
                            ylabel="driver swapped", vmin=0.0, vmax=max(1.0, float(np.nanmax(m))), cmap="magma")
        heatmaps.append(_figure("readers' floor", png, "the world's render of each tuple's ground truth, read by "
                                "the same readers: its off-diagonal is leakage the readers add, which no model can "
                                "go below"))

    def table(store: dict) -> dict | None:
        if not store:
            return None
        cols = [v for v in variants if any(v in row for row in store.values())]
        return {"columns": cols, "rows": [(k, [fmt_value(store[k].get(v)) for v in cols]) for k in store]}

    return {"heatmaps": [h for h in heatmaps if h], "transfer": table(transfer), "geometry": table(geometry)}


def confusion_section(runs: list[dict]) -> list[dict]:
    from reports import plots

    out = []
    for label, group in _by_variant(_unique_dirs(runs)).items():
        docs = [(r, r["extras"]["confusion"]) for r in group if r["extras"].get("confusion")]
        total, labels, used = None, None, []
        for r, d in docs:
            try:
                m = np.array([[0.0 if v is None else float(v) for v in row] for row in d["matrix"]])
            except (KeyError, TypeError, ValueError):
                continue
            lab = [str(x) for x in d.get("labels") or range(len(m))]
            if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(lab):
                continue
            if total is None:
                total, labels = np.zeros_like(m), lab
            if lab != labels:
                continue
            total += m
            used.append(r)
        if total is None:
            continue
        rows = total.sum(axis=1, keepdims=True)
        norm = np.divide(total, rows, out=np.full_like(total, np.nan), where=rows > 0)
        recall = float(np.nanmean(np.diagonal(norm))) if np.isfinite(np.diagonal(norm)).any() else math.nan
        title = f"{label}: emotion confusion ({_seeds_text(used)})"
        png = plots.heatmap(norm.tolist(), labels, labels, title, xlabel="predicted", ylabel="true",
                            vmin=0.0, vmax=1.0, cmap="Blues")
        out.append(_figure(label, png, f"rows normalised (summed over seeds); mean per-class recall "
                                       f"{fmt_value(recall)}"))
    return out


def curves_section(runs: list[dict]) -> list[dict]:
    from reports import plots

    stages: dict[str, list] = {}
    seen_dirs = set()
    for label, group in _by_variant(runs).items():
        for r in group:
            rd = r["extras"].get("run_dir")
            if rd is None or rd in seen_dirs:
                continue
            seen_dirs.add(rd)
            for stage, curve in r["extras"].get("curves", {}).items():
                stages.setdefault(stage, []).append((label, r["seed"], curve))
    names = [s for s in STAGE_ORDER if s in stages] + sorted(s for s in stages if s not in STAGE_ORDER)
    return [f for f in (_figure(s, plots.training_curves(s, stages[s])) for s in names) if f]


def _strip_groups(paths: list[Path]) -> list[Path]:
    """The latest sample of each stage (`<stage>_<step>.png`), at most MAX_STRIPS_PER_VARIANT."""
    latest: dict[str, Path] = {}
    for p in sorted(paths):
        stem = p.stem
        prefix = stem.rsplit("_", 1)[0] if "_" in stem and stem.rsplit("_", 1)[1].isdigit() else stem
        latest[prefix] = p  # sorted, so the last one per prefix has the highest step
    return list(latest.values())[:MAX_STRIPS_PER_VARIANT]


def strips_section(runs: list[dict]) -> list[dict]:
    out = []
    for label, group in _by_variant(_unique_dirs(runs)).items():
        run = next((r for r in group if r["extras"].get("samples")), None)
        if run is None:
            continue
        images = [_figure(p.name, _png_file(p)) for p in _strip_groups(run["extras"]["samples"])]
        images = [i for i in images if i]
        if images:
            out.append({"variant": label, "seed": run["seed"], "images": images})
    return out


def videos_section(runs: list[dict]) -> list[dict]:
    out, total = [], 0
    for label, group in _by_variant(_unique_dirs(runs)).items():
        run = next((r for r in group if r["extras"].get("videos")), None)
        if run is None:
            continue
        items, skipped = [], []
        for p in run["extras"]["videos"]:
            if len(items) >= MAX_VIDEOS_PER_VARIANT:
                skipped.append(f"{p.name} (only {MAX_VIDEOS_PER_VARIANT} per variant are embedded)")
                continue
            size = p.stat().st_size
            if size > MAX_VIDEO_BYTES:
                skipped.append(f"{p.name} ({size / 2**20:.1f} MiB > {MAX_VIDEO_BYTES >> 20} MiB)")
                continue
            if total + size > MAX_TOTAL_VIDEO_BYTES:
                skipped.append(f"{p.name} (the report already embeds {total / 2**20:.0f} MiB of video)")
                continue
            total += size
            poster = _poster(p)
            items.append({"name": p.name, "uri": data_uri(p.read_bytes(), VIDEO_MIME.get(p.suffix.lower(),
                                                                                          "video/mp4")),
                          "poster": data_uri(poster, "image/png") if poster else None, "poster_png": poster,
                          "size_kib": size / 1024})
        if items or skipped:
            out.append({"variant": label, "seed": run["seed"], "clips": items, "skipped": skipped})
    return out


def evaluators_section(data: Any) -> list[dict] | None:
    if data is None:
        return None
    if isinstance(data, dict):  # evaluator -> numbers; plain values (split, clip count…) form an overview
        plain = {k: v for k, v in data.items() if not isinstance(v, dict)}
        nested = [(k, v) for k, v in data.items() if isinstance(v, dict)]
        blocks = ([("overview", plain)] if plain else []) + nested
    elif isinstance(data, list) and all(isinstance(v, dict) for v in data):
        blocks = [(str(v.get("name", i)), v) for i, v in enumerate(data)]
    else:
        blocks = [("evaluators", data)]
    return [{"name": name, "rows": [(k, fmt_value(v)) for k, v in _flatten(body) if k != "name"]}
            for name, body in blocks]


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=False, default=str)


_SHOWN_PROVENANCE = {"git_hash", "created_utc", "platform", "hostname", "device", "versions", "seeds",
                     "evaluator_weights", "config"}


def provenance_section(runs: list[dict], root: Path) -> dict:
    summary, details = [], []
    for r in sorted(runs, key=lambda r: (r["protocol_id"], r["label"], str(r["seed"]))):
        res = r["results"]
        prov = res.get("provenance") or {}
        weights = prov.get("evaluator_weights") or {}
        if isinstance(weights, dict):
            wtxt = ", ".join(f"{k}: {str(v)[:12]}" for k, v in weights.items())
        else:
            wtxt = str(weights)
        try:
            rel = str(r["path"].relative_to(root))
        except ValueError:
            rel = str(r["path"])
        summary.append({"label": r["label"], "seed": r["seed"], "protocol": r["protocol_id"], "path": rel,
                        "git": prov.get("git_hash") or "–", "created": prov.get("created_utc") or "–",
                        "n": len(res.get("per_sample") or []), "weights": wtxt or "–"})
        versions = prov.get("versions") or {}
        parts = [("git hash", str(prov.get("git_hash"))),
                 ("created (UTC)", str(prov.get("created_utc"))),
                 ("platform", f"{prov.get('platform')} on {prov.get('hostname')}"),
                 ("device", _json(prov.get("device"))),
                 ("versions", _json(versions) if not isinstance(versions, dict)
                  else ", ".join(f"{k} {v}" for k, v in versions.items() if v)),
                 ("seeds", _json(prov.get("seeds"))),
                 ("evaluator weights", _json(weights)),
                 ("config", _json(prov.get("config"))),
                 ("method", _json(res.get("method"))),
                 ("protocol", _json(res.get("protocol")))]
        other = {k: v for k, v in prov.items() if k not in _SHOWN_PROVENANCE}
        if other:
            parts.append(("other", _json(other)))
        title = f"{r['label']} · seed {r['seed']} · {r['protocol_id']} · {rel}"
        details.append({"title": title, "parts": parts})
    commits = sorted({s["git"] for s in summary})
    return {"summary": summary, "details": details, "commits": commits}

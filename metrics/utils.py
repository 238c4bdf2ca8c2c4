"""Small pieces every layer shares: device choice, atomic writes, hashing, provenance.

This lives in `metrics/` because it is the bottom layer (see docs/DESIGN.md): everything above may
import it, and it imports nothing of ours.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "resolve_device",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "sha256_file",
    "provenance",
    "git_hash",
    "library_versions",
    "to_jsonable",
]


def resolve_device(device: Any = None):
    """The one place a device is chosen: explicit argument, then $EDTALK_DEVICE, then CUDA if present."""
    import torch

    if device is None:
        device = os.environ.get("EDTALK_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write through `write(fileobj)` into a temporary file beside `path`, fsync, then rename.

    A reader never sees a half-written file, and a failure (disk full, kill) leaves the previous
    file untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), "wb")


def atomic_write_text(path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text), "w")


def to_jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars and arrays, paths and dataclasses into JSON-friendly values."""
    import dataclasses

    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    if hasattr(obj, "detach") and hasattr(obj, "tolist"):  # torch tensor
        return obj.detach().cpu().tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
    return obj


def atomic_write_json(path, obj: Any, indent: int = 2) -> Path:
    return atomic_write_text(path, json.dumps(to_jsonable(obj), indent=indent, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path) -> Path:
    import torch

    return atomic_write(path, lambda f: torch.save(obj, f), "wb")


def sha256_file(path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def git_hash(start: str | os.PathLike | None = None) -> str | None:
    """The commit of the checkout this code runs from ("…-dirty" if it has local changes), or None."""
    here = Path(start or Path(__file__).resolve().parent)
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                             timeout=10)
        if rev.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return rev.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


_TRACKED = ["edtalk-bench", "torch", "torchvision", "numpy", "scipy", "av", "librosa", "lpips",
            "torchmetrics", "insightface", "onnxruntime", "scikit-image"]


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": sys.version.split()[0]}
    for name in _TRACKED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance(**extra: Any) -> dict[str, Any]:
    """What every result and run directory records about where it came from."""
    import datetime

    info = {
        "git_hash": git_hash(),
        "versions": library_versions(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import torch

        info["device"] = {"cuda": torch.cuda.is_available(),
                          "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                          "threads": torch.get_num_threads()}
    except ImportError:
        pass
    info.update(to_jsonable(extra))
    return info


def load_matching_state(model, state: dict, path, what: str) -> None:
    """Load `state` into `model` after checking keys and shapes; one CheckpointMismatchError otherwise.

    BatchNorm `num_batches_tracked` buffers may be absent (files saved before PyTorch 0.4.1 lack them);
    the model's own values are kept for those.
    """
    from .errors import CheckpointMismatchError

    own = model.state_dict()
    missing = sorted(k for k in own if k not in state and not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        raise CheckpointMismatchError(
            f"{path} is not {what}: {len(missing)} missing (e.g. {missing[:2]}), {len(unexpected)} unexpected "
            f"(e.g. {unexpected[:2]}), {len(wrong)} of wrong shape (e.g. {wrong[:2]})")
    own.update(state)
    model.load_state_dict(own)

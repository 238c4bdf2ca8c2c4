"""Small pieces every layer shares: device choice, atomic writes, hashing, provenance.

This lives in `metrics/` because it is the bottom layer (see docs/DESIGN.md): everything above may
import it, and it imports nothing of ours but `metrics.errors`.
"""
from __future__ import annotations

import errno
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

from .errors import UserError

__all__ = [
    "resolve_device",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_json",
    "atomic_torch_save",
    "DiskFullError",
    "safe_torch_load",
    "load_matching_state",
    "state_dict_differences",
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


class DiskFullError(UserError, OSError):
    """The disk (or quota) filled up while writing `path`; the previous file there is untouched.

    Both a UserError (the CLI prints its one-line message) and an OSError with errno ENOSPC/EDQUOT
    (code that handles OSError keeps working).
    """

    def __str__(self) -> str:
        return str(self.strerror)


def _disk_full(exc: OSError, path: Path) -> DiskFullError:
    why = os.strerror(exc.errno)
    return DiskFullError(exc.errno, f"disk full while writing {path} ({why}); the previous {path.name} is "
                                    f"intact and no partial file was left: free space in {path.parent} and "
                                    "re-run the same command")


def _disk_full_cause(exc: BaseException | None) -> OSError | None:
    """The ENOSPC/EDQUOT OSError in `exc`'s chain: torch.save, for one, reports a full disk as a
    RuntimeError ("unexpected pos …") raised while the OSError is being handled."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "wb") -> Path:
    """Write through `write(fileobj)` into a temporary file beside `path`, fsync, then rename.

    A reader never sees a half-written file, and a failure (disk full, kill) leaves the previous
    file untouched; the temporary file is removed (except after SIGKILL, which runs no cleanup:
    stale `.<name>.*.tmp` files are then harmless leftovers). A full disk raises `DiskFullError`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise _disk_full(exc, path) from exc
        raise
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        full = _disk_full_cause(exc)
        if full is not None and not isinstance(exc, DiskFullError):
            raise _disk_full(full, path) from exc
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
        "created_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
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


def _numpy_safe_globals() -> list:
    """numpy scalars and dtypes, which training scripts often leave in checkpoints (e.g. a best
    accuracy as np.float64). Rebuilding them runs no user code, so they are allowed."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar  # type: ignore[no-redef]
    dtypes = [getattr(np.dtypes, n) for n in dir(getattr(np, "dtypes", None)) if n.endswith("DType")] \
        if hasattr(np, "dtypes") else []
    return [scalar, np.dtype, *dtypes]


def _refused_global(message: str) -> str | None:
    """The global (class or function) a weights-only unpickle refused, from torch's multi-line message."""
    import re

    m = re.search(r"GLOBAL ([\w.]+)", message)
    return m.group(1) if m else None


def safe_torch_load(path, what: str = "a torch checkpoint"):
    """`torch.load(path, map_location="cpu", weights_only=True)` with one-line errors.

    A pickle that needs arbitrary code (a custom class, `os.system` in `__reduce__`) is refused, never
    executed; a truncated or non-torch file is named as such. Both raise CheckpointMismatchError, a
    missing file MissingWeightsError. numpy scalars/dtypes are allowed (see `_numpy_safe_globals`).
    """
    import pickle
    import re

    import torch

    from .errors import CheckpointMismatchError, MissingWeightsError

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"{what}: {path} not found")
    try:
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        refused = _refused_global(str(exc))
        if refused is None:  # not a torch pickle at all (an HTML error page, another format, garbage)
            op = re.search(r"Unsupported operand (\d+)", str(exc))
            why = f"unsupported pickle opcode {op.group(1)}" if op else "not a torch pickle"
            raise CheckpointMismatchError(
                f"{path} is not a readable torch file (truncated or corrupt? {why}); delete it and download "
                f"or save {what} again") from None
        raise CheckpointMismatchError(
            f"{path} is not {what} that loads safely: it references {refused}, so unpickling it could run "
            "arbitrary code; refusing to (files are read with weights_only=True). If you trust its source, "
            "re-save it as a plain state dict: torch.save(model.state_dict(), path)") from None
    except (RuntimeError, EOFError, KeyError, ValueError, IndexError, OSError) as exc:
        first = (str(exc).splitlines() or [""])[0][:120]
        raise CheckpointMismatchError(
            f"{path} is not a readable torch file (truncated or corrupt? {type(exc).__name__}: "
            f"{first or 'empty'}); delete it and download or save {what} again") from None


def state_dict_differences(own: dict, state: dict, optional=lambda k: False) -> str:
    """'' when `state` matches `own` key for key and shape for shape, else one line listing what differs:
    missing keys, unexpected keys and `key: file (shape) vs model (shape)` (at most 6 of each)."""
    missing = sorted(k for k in own if k not in state and not optional(k))
    unexpected = sorted(set(state) - set(own))
    def shape(v):
        return tuple(getattr(v, "shape", ()))

    wrong = sorted(f"{k}: file {shape(state[k])} vs model {shape(own[k])}"
                   for k in own if k in state and shape(state[k]) != shape(own[k]))

    def show(items):
        return ", ".join(items[:6]) + (f" … (+{len(items) - 6})" if len(items) > 6 else "")

    parts = [f"{len(items)} {label} ({show(items)})" for label, items in
             (("missing", missing), ("unexpected", unexpected), ("of the wrong shape", wrong)) if items]
    return "; ".join(parts)


def load_matching_state(model, state: dict, path, what: str) -> None:
    """Load `state` into `model` after checking keys and shapes; one CheckpointMismatchError otherwise.

    BatchNorm `num_batches_tracked` buffers may be absent (files saved before PyTorch 0.4.1 lack them);
    the model's own values are kept for those.
    """
    from .errors import CheckpointMismatchError

    own = model.state_dict()
    diff = state_dict_differences(own, state, optional=lambda k: k.endswith("num_batches_tracked"))
    if diff:
        raise CheckpointMismatchError(f"{path} is not {what}: {diff}")
    own.update(state)
    model.load_state_dict(own)

"""A keyed on-disk cache of arrays computed from ground truth, so they are computed once per dataset.

Scoring a method compares its frames with features of the ground truth (an evaluator's landmarks of the
real clip, FID statistics of the real videos, ...). Those depend only on the data, the evaluator and its
options, not on the method, so every run of a sweep would recompute the same arrays. `FeatureCache`
stores them under a key that names everything they depend on:

    cache = FeatureCache(world_dir / "features")
    feats = cache.get_or_compute(
        {"world": world_digest, "clip": clip.name, "clip_sha256": sha256_file(clip.video),
         "evaluator": "landmarks", "weights_sha256": sha256_file(weights), "options": {"size": 64}},
        lambda: {"landmarks": ev.landmarks(frames)})

- The key parts are any JSON-able dict (numpy scalars, paths and dataclasses are converted); the file
  name is the sha256 of its canonical JSON, so a change of any part (other weights, another option, a
  re-encoded clip) is a different entry: nothing is ever invalidated in place, stale entries are
  simply no longer looked up.
- The key parts are stored in the file and compared on read, so a file is never trusted on its name
  alone; an unreadable, torn or foreign file is recomputed and replaced.
- Values are numeric numpy arrays (`dict[str, np.ndarray]`, no pickles), written atomically (a killed run
  leaves either the whole entry or none), read back exactly (bit-identical to what `compute` returned).
- Several processes may share a cache: two computing the same entry at once both write the same bytes
  and the last rename wins.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from metrics.errors import InputError
from metrics.utils import atomic_write, to_jsonable

_KEY_FIELD = "__key__"  # the canonical key JSON, stored beside the arrays


def canonical_key(key_parts: Mapping) -> str:
    """The key parts as canonical JSON (sorted keys, no spaces): equal dicts give equal strings."""
    if not isinstance(key_parts, Mapping) or not key_parts:
        raise InputError(f"feature-cache key must be a non-empty dict of what the features depend on, "
                         f"not {key_parts!r}")
    return json.dumps(to_jsonable(dict(key_parts)), sort_keys=True, separators=(",", ":"))


def key_digest(key_parts: Mapping) -> str:
    """sha256 (hex) of the canonical key: the entry's file name."""
    return hashlib.sha256(canonical_key(key_parts).encode()).hexdigest()


class FeatureCache:
    """Arrays keyed by what they were computed from, one `.npz` per entry under `root` (created on first write)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.hits = 0
        self.misses = 0

    def path(self, key_parts: Mapping) -> Path:
        digest = key_digest(key_parts)
        return self.root / digest[:2] / f"{digest}.npz"

    def get(self, key_parts: Mapping) -> dict[str, np.ndarray] | None:
        """The stored arrays for this key, or None when absent, unreadable or stored under another key."""
        path = self.path(key_parts)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                if _KEY_FIELD not in z.files or str(z[_KEY_FIELD]) != canonical_key(key_parts):
                    return None
                return {k: z[k] for k in z.files if k != _KEY_FIELD}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
            return None  # torn or corrupted: the caller recomputes and overwrites it

    def put(self, key_parts: Mapping, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Store `arrays` under the key (atomically) and return them as numpy arrays."""
        values = _checked_arrays(arrays)
        payload = {**values, _KEY_FIELD: np.array(canonical_key(key_parts))}
        atomic_write(self.path(key_parts), lambda f: np.savez(f, **payload), "wb")
        return values

    def get_or_compute(self, key_parts: Mapping,
                       compute: Callable[[], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
        """The cached arrays for `key_parts`; on a miss, `compute()`'s arrays, stored first.

        A hit returns exactly the arrays a miss returned (same dtype, shape and bits)."""
        found = self.get(key_parts)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        return self.put(key_parts, compute())


def _checked_arrays(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(arrays, Mapping) or not arrays:
        raise InputError(f"a feature-cache entry must be a non-empty dict of name -> array, "
                         f"not {type(arrays).__name__}")
    out = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not name.isidentifier() or name == _KEY_FIELD:
            raise InputError(f"feature-cache array name {name!r}: use a Python identifier other than {_KEY_FIELD}")
        arr = np.asarray(value)
        if arr.dtype.kind not in "biuf":
            raise InputError(f"feature-cache array {name!r} has dtype {arr.dtype}; store numeric arrays only")
        out[name] = arr
    return out

"""benchmarks.protocols.feature_cache: computed once per key, exact on reads, invalidated by any key change."""
from __future__ import annotations

import numpy as np
import pytest

from benchmarks.protocols.feature_cache import FeatureCache, canonical_key
from metrics.errors import InputError


def _key(**change):
    return {"world": "abc123", "clip": "id00_happy_1_000", "evaluator": "landmarks", "weights_sha256": "f" * 64,
            "options": {"size": 64, "batch": 256}, **change}


def _counting(values):
    calls = []

    def compute():
        calls.append(1)
        return values

    return compute, calls


def test_second_read_is_a_hit_with_identical_arrays(tmp_path):
    rng = np.random.default_rng(0)
    values = {"landmarks": rng.normal(size=(7, 68, 2)).astype(np.float32), "pose": rng.normal(size=(7, 3)),
              "label": np.array(3)}
    compute, calls = _counting(values)
    first = FeatureCache(tmp_path).get_or_compute(_key(), compute)
    cache = FeatureCache(tmp_path)  # a fresh process's view of the same folder
    second = cache.get_or_compute(_key(), compute)
    assert len(calls) == 1 and (cache.hits, cache.misses) == (1, 0)
    for name, arr in values.items():
        for got in (first[name], second[name]):
            assert got.dtype == arr.dtype and got.shape == arr.shape
            assert np.array_equal(got, arr)


@pytest.mark.parametrize("change", [{"world": "abc124"}, {"clip": "id00_happy_1_001"}, {"evaluator": "pose"},
                                    {"weights_sha256": "e" * 64}, {"options": {"size": 64, "batch": 128}},
                                    {"extra": 1}])
def test_any_key_change_recomputes(tmp_path, change):
    cache = FeatureCache(tmp_path)
    compute, calls = _counting({"x": np.arange(3.0)})
    cache.get_or_compute(_key(), compute)
    cache.get_or_compute(_key(**change), compute)
    assert len(calls) == 2


def test_key_order_and_numpy_scalars_do_not_matter():
    a = {"b": np.int64(2), "a": {"y": np.float32(0.5), "x": [1, 2]}}
    b = {"a": {"x": (1, 2), "y": 0.5}, "b": 2}
    assert canonical_key(a) == canonical_key(b)


def test_torn_or_foreign_file_is_recomputed_and_replaced(tmp_path):
    cache = FeatureCache(tmp_path)
    compute, calls = _counting({"x": np.arange(4)})
    path = cache.path(_key())
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 torn")
    assert np.array_equal(cache.get_or_compute(_key(), compute)["x"], np.arange(4)) and len(calls) == 1
    assert np.array_equal(FeatureCache(tmp_path).get_or_compute(_key(), compute)["x"], np.arange(4))
    assert len(calls) == 1
    # A file at this key's name holding another key's arrays is not trusted.
    other = FeatureCache(tmp_path)
    other.put(_key(clip="other"), {"x": np.zeros(4)})
    other.path(_key(clip="other")).replace(path)
    assert np.array_equal(cache.get_or_compute(_key(), compute)["x"], np.arange(4)) and len(calls) == 2


def test_failed_compute_leaves_no_entry(tmp_path):
    cache = FeatureCache(tmp_path)

    def boom():
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        cache.get_or_compute(_key(), boom)
    assert cache.get(_key()) is None and not list(tmp_path.rglob("*.npz"))


@pytest.mark.parametrize("bad", [{}, {"x": np.array(["a"])}, {"__key__": np.zeros(1)}, {"not a name": np.zeros(1)},
                                 {"x": np.array([object()])}])
def test_bad_values_are_one_line_errors(tmp_path, bad):
    with pytest.raises(InputError):
        FeatureCache(tmp_path).put(_key(), bad)


def test_empty_key_is_refused(tmp_path):
    with pytest.raises(InputError, match="non-empty dict"):
        FeatureCache(tmp_path).get_or_compute({}, lambda: {"x": np.zeros(1)})

"""Shared fixtures. Tests never touch the network; weights are built in tmp dirs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EDTALK_SHARED", ROOT.parent / "shared"))
PARITY = SHARED / "parity"

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    if not PARITY.is_dir():
        pytest.fail(f"parity fixtures not found at {PARITY}: put ../shared beside the checkout or set EDTALK_SHARED")
    return PARITY


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _isolated_torch_home(tmp_path_factory, monkeypatch):
    """Each test sees an empty weights cache unless it builds stand-in files itself."""
    home = tmp_path_factory.mktemp("torch_home")
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("EDTALK_WEIGHTS", str(home / "edtalk"))
    yield

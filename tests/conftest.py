"""Shared fixtures. Tests never touch the network; weights are built in tmp dirs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# Outputs of the reference implementations on seeded weights (tests/fixtures/parity/README.md says which).
PARITY = ROOT / "tests" / "fixtures" / "parity"

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def parity_dir() -> Path:
    return PARITY


@pytest.fixture(scope="session")
def official_standins(tmp_path_factory):
    """`official_standins(seed)` -> a folder with EDTalk.pt, Audio2Lip.pt, EDTalk_lip_pose.pt of that seed."""
    from edtalk.standin import write_official_standins

    made = {}

    def build(seed: int) -> Path:
        if seed not in made:
            made[seed] = tmp_path_factory.mktemp(f"official-seed{seed}")
            write_official_standins(seed, made[seed])
        return made[seed]

    return build


@pytest.fixture(scope="session")
def fid_inception_state():
    """State dict of pytorch-fid's Inception architecture, seeded and He-initialised so pool3 features are O(1)
    (a seeded-uniform stand-in gives features too small for a meaningful Frechet distance)."""
    import torch
    from torch import nn

    from metrics.inception import FIDInceptionV3

    torch.manual_seed(0)
    model = FIDInceptionV3()
    for mod in model.modules():
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.normal_(mod.bias, 0.0, 0.05)
    return model.state_dict()


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

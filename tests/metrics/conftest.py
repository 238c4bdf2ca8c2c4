"""Fixtures shared by the LSE tests: syncnet_python's own numbers for two clips and the weights it used."""
from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def syncnet_seed4(tmp_path_factory):
    """syncnet_v2.model with the seed-4 stand-in weights syncnet_python scored lse_seed4.npz with."""
    from metrics.standin import syncnet_state_dict

    path = tmp_path_factory.mktemp("syncnet") / "syncnet_v2.model"
    torch.save(syncnet_state_dict(4), path)
    return path


@pytest.fixture(scope="module")
def lse_seed4(parity_dir):
    """clip{k}_frames, clip{k}_audio and clip{k}_expected (LSE-C, LSE-D, offset) for k = 0, 1."""
    return dict(np.load(parity_dir / "lse_seed4.npz"))

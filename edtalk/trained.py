"""The model a run of `edtalk train` leaves behind: `RUN_DIR/model.pt` (its config and weights).

One loader for every reader of that file: `edtalk animate --checkpoint`, the protocol adapter
(`edtalk.method`) and the audio stage's frozen generator.
"""
from __future__ import annotations

from pathlib import Path

from edtalk import official
from edtalk.config import ModelConfig
from edtalk.model import EDTalk
from metrics.errors import InputError
from metrics.utils import resolve_device


def load_trained_model(path, device=None) -> tuple[EDTalk, dict]:
    """(the generator in eval mode on `device`, the checkpoint dict) from `model.pt` or its run directory."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise InputError(f"{path} not found; train a model first (`edtalk train --out RUN_DIR`)")
    ck = official.read_checkpoint(path)
    if "model_config" not in ck or "model" not in ck:
        raise InputError(f"{path} is not a model.pt from `edtalk train` (needs 'model_config' and 'model')")
    model = EDTalk(ModelConfig(**ck["model_config"]))
    official.check_state_dict(model, ck["model"], str(path))
    model.load_state_dict(ck["model"])
    return model.to(resolve_device(device)).eval(), ck

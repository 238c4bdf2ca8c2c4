"""Loaders for the released EDTalk checkpoints.

    load_generator("EDTalk.pt")                 # full model, 'gen' entry
    load_lip_pose_generator("EDTalk_lip_pose.pt")
    load_audio2lip("Audio2Lip.pt")              # 'audio2lip' entry: (T,1,80,16) mel -> (T,20)
    load_emotion_weights("ckpts/predefined_exp_weights")  # {emotion: (1,10)}

Files are read with `torch.load(weights_only=True)`: a checkpoint whose pickle needs arbitrary code
is refused rather than executed. Every key and shape is checked against our architecture, and a
mismatch names what is missing, unexpected or of the wrong shape.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edtalk.model import EDTalk
from edtalk.model.audio import Audio2Lip
from edtalk.presets import model_preset
from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError
from metrics.utils import safe_torch_load, state_dict_differences

OFFICIAL_FILES = {
    "generator": "EDTalk.pt",
    "lip_pose": "EDTalk_lip_pose.pt",
    "audio2lip": "Audio2Lip.pt",
}
RELEASE_URL = "https://github.com/tanshuai0219/EDTalk (README: 'Download the pre-trained models')"


def read_checkpoint(path: str | Path) -> dict:
    """torch.load with weights_only=True (`metrics.utils.safe_torch_load`) and errors that say what to do."""
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"checkpoint {path} not found; download it from {RELEASE_URL}")
    obj = safe_torch_load(path, "an EDTalk checkpoint")
    if not isinstance(obj, dict):
        raise CheckpointMismatchError(f"{path} holds a {type(obj).__name__}, expected a dict of state dicts")
    return obj


def check_state_dict(module: nn.Module, state: dict, source: str) -> None:
    """Raise CheckpointMismatchError listing missing/unexpected keys and shape mismatches."""
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{source} holds a {type(state).__name__}, not a state dict")
    diff = state_dict_differences(module.state_dict(), state)
    if diff:
        raise CheckpointMismatchError(f"{source} does not match the architecture: {diff}")


def _entry(ckpt: dict, key: str, path) -> dict:
    if key not in ckpt:
        raise CheckpointMismatchError(f"{path} has no '{key}' entry (has: {sorted(ckpt)[:8]}); is it the right file?")
    return ckpt[key]


def _load(module: nn.Module, path, key: str, device) -> nn.Module:
    state = _entry(read_checkpoint(path), key, path)
    check_state_dict(module, state, f"{path}['{key}']")
    module.load_state_dict(state)
    return module.to(device).eval()


def load_generator(path, device="cpu") -> EDTalk:
    """The full EDTalk generator (mouth, pose and expression; EEM) from EDTalk.pt."""
    return _load(EDTalk(model_preset("paper")), path, "gen", device)


def load_lip_pose_generator(path, device="cpu") -> EDTalk:
    """The lip/pose-only generator (no expression bank, no EEM) from EDTalk_lip_pose.pt."""
    cfg = dataclasses.replace(model_preset("paper"), expression=False)
    return _load(EDTalk(cfg), path, "gen", device)


def load_audio2lip(path, device="cpu") -> Audio2Lip:
    """Wav2Lip audio encoder + Linear(512, 20) from Audio2Lip.pt."""
    return _load(Audio2Lip(), path, "audio2lip", device)


def load_emotion_weights(directory) -> dict[str, torch.Tensor]:
    """Predefined expression coefficients shipped as `<emotion>.npy` files of shape (1, 10)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise MissingWeightsError(f"emotion weights directory {directory} not found; it ships with the release "
                                  f"as ckpts/predefined_exp_weights ({RELEASE_URL})")
    out = {}
    for f in sorted(directory.glob("*.npy")):
        arr = np.load(f, allow_pickle=False)
        if arr.shape != (1, 10):
            raise InputError(f"{f} has shape {arr.shape}; predefined expression weights are (1, 10)")
        out[f.stem] = torch.from_numpy(arr.astype(np.float32))
    if not out:
        raise MissingWeightsError(f"no <emotion>.npy files in {directory}")
    return out

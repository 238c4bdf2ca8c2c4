"""Stand-in weights: seeded tensors in the exact layout of a released weight file.

No pretrained file can be downloaded on a test machine, so tests (and users trying the loop before they
have the real files) write files with the real architecture's keys and shapes and deterministic values.
One rule fills every tensor, so the same seed always gives the same file, bit for bit, on any machine:

    n = numpy default_rng(crc32(key) + 7919 * seed).standard_normal(shape), as float32, then
      running_var -> 1 + 0.1 |n|        running_mean -> 0.1 n
      *.modulation.bias -> 1 + 0.1 n    *.noise.weight -> 0        other *.bias -> 0.1 n
      other 1-D *.weight (norm gains) -> 1 + 0.1 n                  anything else -> n
      kind "plain" (a plain torch Conv/Linear weight, no runtime scaling): divided by sqrt(fan_in)
      kind "buffer": the value given;  integer tensors (num_batches_tracked): 0

The parity fixtures under tests/fixtures/parity were produced by the reference implementations run on
weights made by this rule (the official EDTalk code for seed 1, syncnet_python for seed 4).
"""
from __future__ import annotations

import zlib
from collections.abc import Mapping

import numpy as np

__all__ = ["seeded_array", "seeded_state_dict", "syncnet_state_dict"]


def seeded_array(key: str, shape, seed: int, kind: str = "param") -> np.ndarray:
    """The float32 value of tensor `key` under the rule above (`kind`: "param" or "plain")."""
    shape = tuple(int(s) for s in shape)
    n = np.random.default_rng(zlib.crc32(key.encode()) + 7919 * int(seed)).standard_normal(shape).astype(np.float32)
    leaf = key.rsplit(".", 1)[-1]
    if key.endswith("modulation.bias"):
        w = 1.0 + 0.1 * n
    elif leaf == "running_var":
        w = 1.0 + 0.1 * np.abs(n)
    elif leaf == "running_mean":
        w = 0.1 * n
    elif key.endswith("noise.weight"):
        w = np.zeros(shape, np.float32)
    elif leaf == "bias":
        w = 0.1 * n
    elif leaf == "weight" and len(shape) == 1:
        w = 1.0 + 0.1 * n
    else:
        w = n
    if kind == "plain":
        w = w / np.sqrt(np.prod(shape[1:]))
    return np.ascontiguousarray(w, dtype=np.float32)


def seeded_state_dict(specs: Mapping[str, Mapping], seed: int) -> dict:
    """{key: tensor} for `specs` = {key: {"shape": [...], "kind": "param"|"plain"|"buffer", "dtype": ..., "value"}}.

    A spec without "kind" is "plain" for tensors of 2+ dimensions and "param" otherwise (plain torch modules).
    """
    import torch

    out = {}
    for key, spec in specs.items():
        dtype = str(spec.get("dtype", "float32"))
        kind = spec.get("kind") or ("plain" if len(spec["shape"]) >= 2 else "param")
        if kind == "buffer":
            out[key] = torch.tensor(spec["value"], dtype=getattr(torch, dtype))
        elif not dtype.startswith("float"):
            out[key] = torch.zeros(tuple(spec["shape"]), dtype=getattr(torch, dtype))
        else:
            out[key] = torch.from_numpy(seeded_array(key, spec["shape"], seed, kind))
    return out


def syncnet_state_dict(seed: int) -> dict:
    """A syncnet_python `syncnet_v2.model` stand-in: the plain state dict of its `S` model, seeded."""
    from metrics.sync import SyncNet

    specs = {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
             for k, v in SyncNet().state_dict().items()}
    return seeded_state_dict(specs, seed)

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


def _specs(module) -> dict:
    return {k: {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
            for k, v in module.state_dict().items()}


def _arcface_standin(path, seed: int) -> None:
    """An ONNX file with ArcFace's interface (input.1: N x 3 x 112 x 112 -> fc1: N x 512), a few seeded
    layers: insightface's loader routes it to ArcFaceONNX like w600k_r50.onnx. Not IResNet-50 (166 MB)."""
    import torch
    from torch import nn

    net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.PReLU(8), nn.Conv2d(8, 16, 3, 2, 1), nn.BatchNorm2d(16),
                        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(256, 512)).eval()
    net.load_state_dict(seeded_state_dict(_specs(net), seed))
    torch.onnx.export(net, torch.zeros(1, 3, 112, 112), str(path), input_names=["input.1"], output_names=["fc1"],
                      dynamic_axes={"input.1": {0: "None"}, "fc1": {0: "None"}}, opset_version=13, dynamo=False)


def evaluator_standin_state(key: str, seed: int) -> dict:
    """The seeded state dict of evaluator weight file `key`, over the exact architecture's own state_dict."""
    if key == "syncnet-v2":
        return syncnet_state_dict(seed)
    if key == "inception-fid":
        from metrics.inception import FIDInceptionV3

        module = FIDInceptionV3()
    elif key == "inception-v3-torchvision":
        from torchvision.models import inception_v3

        module = inception_v3(weights=None, aux_logits=True, transform_input=True, init_weights=False)
    elif key == "emotion-fan-mead":
        from metrics.emotion import EmotionFAN

        module = EmotionFAN()
    elif key == "hopenet":
        from metrics.pose import Hopenet

        module = Hopenet()
    elif key == "alexnet-lpips":
        from torchvision.models import alexnet

        module = alexnet(weights=None)
    else:
        raise KeyError(f"no stand-in rule for weight file {key!r}")
    return seeded_state_dict(_specs(module), seed)


STANDIN_KEYS = ("syncnet-v2", "inception-fid", "inception-v3-torchvision", "emotion-fan-mead", "hopenet",
                "alexnet-lpips", "arcface-r50")


def write_evaluator_standins(directory, seed: int = 0, keys=STANDIN_KEYS) -> dict:
    """Seeded stand-ins of the real-data evaluators' weight files, under their manifest file names in
    `directory` (use it as $EDTALK_WEIGHTS; their hashes do not match the manifest, so evaluate with
    --unverified-weights). Existing files are kept. Returns {key: path}."""
    from pathlib import Path

    import torch

    from metrics.weights import entry

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {}
    for key in keys:
        path = directory / entry(key).filename
        if not path.is_file():
            tmp = path.with_name(path.name + ".part")
            if key == "arcface-r50":
                _arcface_standin(tmp, seed)
            else:
                torch.save(evaluator_standin_state(key, seed), tmp)
            tmp.replace(path)
        out[key] = path
    return out

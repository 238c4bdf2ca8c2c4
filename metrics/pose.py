"""Streaming head-pose error (see metrics.functional.pose) and the Hopenet estimator backend.

A pose *estimator* is any callable `estimator(frames) -> (T, 3)` taking uint8 (T, H, W, 3) RGB frames
and returning yaw/pitch/roll in degrees (NaN rows where it found no face); the in-project synthetic
evaluator and `HopenetEstimator` both fit.

Hopenet (natanielruiz/deep-head-pose `code/hopenet.py`): torchvision ResNet-50 body (Bottleneck
[3, 4, 6, 3]), AvgPool2d(7) (so 224x224 input), three 66-bin heads `fc_yaw`, `fc_pitch`, `fc_roll`
(Linear(2048, 66)) and the vestigial `fc_finetune` (Linear(2051, 3), unused, but in the released state
dict). Angles are decoded as sum softmax * bin * 3 - 99. Preprocessing as `test_on_video_dlib.py`:
RGB crop -> Resize(224) (shorter side) -> CenterCrop(224) -> ToTensor -> ImageNet mean/std. The
reference crops a dlib CNN face box expanded by `expand_box`; `HopenetEstimator` takes face crops as
given (REFace-style: the whole aligned face), so crop first if your frames are not face crops.
Weights: `hopenet_robust_alpha1.pkl` (300W-LP, alpha 1, robust), key "hopenet".
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from metrics.base import Metric
from metrics.errors import CheckpointMismatchError, InputError
from metrics.functional.landmarks import check_frames, pair_indices
from metrics.functional.pose import AXES, hopenet_degrees, pose_error

__all__ = ["Hopenet", "load_hopenet", "HopenetEstimator", "expand_box", "PoseError"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Hopenet(nn.Module):
    """`Hopenet(Bottleneck, [3, 4, 6, 3], 66)`; `forward(x)` -> (yaw, pitch, roll) bin logits (N, 66) each."""

    def __init__(self, num_bins: int = 66):
        super().__init__()
        from torchvision.models.resnet import Bottleneck, ResNet

        body = ResNet(Bottleneck, [3, 4, 6, 3])
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(body, name))
        self.avgpool = nn.AvgPool2d(7)
        self.fc_yaw = nn.Linear(2048, num_bins)
        self.fc_pitch = nn.Linear(2048, num_bins)
        self.fc_roll = nn.Linear(2048, num_bins)
        self.fc_finetune = nn.Linear(2048 + 3, 3)  # vestigial in the release; kept so its state dict loads
        self.num_bins = num_bins

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.avgpool(x).flatten(1)
        return self.fc_yaw(x), self.fc_pitch(x), self.fc_roll(x)

    def degrees(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 3) yaw/pitch/roll in degrees for preprocessed (N, 3, 224, 224) input."""
        return torch.stack([hopenet_degrees(lg, self.num_bins) for lg in self(x)], dim=1)


def load_hopenet(path=None, device=None, verify: bool = True) -> Hopenet:
    """Hopenet from `locate("hopenet", path)` (a plain state dict, possibly 'module.'-prefixed), eval mode.

    Read with `weights_only=True`: a file that needs arbitrary code to unpickle is refused."""
    from metrics.utils import load_matching_state, resolve_device, safe_torch_load
    from metrics.weights import locate

    p = locate("hopenet", path, verify=verify)
    state = safe_torch_load(p, "a Hopenet state dict")
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointMismatchError(f"{p} holds a {type(state).__name__}, not a Hopenet state dict")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    model = Hopenet()
    load_matching_state(model, state, p, "a Hopenet (ResNet-50, 66 bins) state dict")
    return model.to(resolve_device(device)).eval()


def expand_box(box, frame_shape) -> tuple[int, int, int, int]:
    """deep-head-pose's crop around a face box (x_min, y_min, x_max, y_max): widen by w/2 on each side,
    raise the top by 3h/4 and lower the bottom by h/4, clip to the frame; integer pixel bounds."""
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = abs(x1 - x0), abs(y1 - y0)
    x0, x1, y0, y1 = x0 - w / 2, x1 + w / 2, y0 - 3 * h / 4, y1 + h / 4
    H, W = frame_shape[:2]
    return int(max(x0, 0)), int(max(y0, 0)), int(min(W, x1)), int(min(H, y1))


class HopenetEstimator:
    """uint8 (T, H, W, 3) RGB face crops -> (T, 3) yaw/pitch/roll degrees with Hopenet's preprocessing."""

    def __init__(
        self,
        model: nn.Module | None = None,
        path=None,
        device=None,
        verify: bool = True,
        batch_size: int = 32,
    ):
        from metrics.utils import resolve_device

        self.model = (model if model is not None else load_hopenet(path, device, verify)).eval()
        self.device = next(self.model.parameters()).device if device is None else resolve_device(device)
        self.model.to(self.device)
        self.batch_size = batch_size
        self.protocol = {
            "estimator": "Hopenet ResNet-50 robust alpha=1",
            "input": "face crops",
            "preprocess": "Resize(224) + CenterCrop(224) + ImageNet normalisation",
            "decoding": "sum softmax * bin * 3 - 99",
            "reference": "deep-head-pose test_on_video_dlib.py",
        }

    def preprocess(self, frames) -> torch.Tensor:
        import torchvision.transforms.functional as TF

        x = torch.from_numpy(check_frames(frames, "face crops")).permute(0, 3, 1, 2).float().div(255)
        if min(x.shape[-2:]) != 224:
            x = TF.resize(x, 224, antialias=True).clamp(0, 1)
        x = TF.center_crop(x, [224, 224])
        return TF.normalize(x, IMAGENET_MEAN, IMAGENET_STD)

    @torch.no_grad()
    def __call__(self, frames) -> np.ndarray:
        x = self.preprocess(frames)
        out = [
            self.model.degrees(x[i : i + self.batch_size].to(self.device)).float().cpu()
            for i in range(0, len(x), self.batch_size)
        ]
        return torch.cat(out).numpy().astype(np.float64)


class PoseError(Metric):
    """Head-pose error pooled over all frames: `update(pred_angles, target_angles)` with (T, 3) degrees,
    or `update_frames(frames_pred, frames_target, estimator)`; `compute()` -> {"yaw", "pitch", "roll",
    "mean", "l2", "frames", "skipped"} (degrees; "mean" = mean of the three per-axis MAEs)."""

    higher_is_better = False
    name = "pose_error"

    def __init__(self, estimator=None, **kwargs: Any):
        super().__init__(**kwargs)
        self.estimator = estimator
        self.protocol = {
            "error": "per-axis MAE (degrees), their mean, mean per-frame L2",
            "aggregation": "pooled over frames",
            "pairing": "EAT linspace",
        }
        self.add_state("abs_sum", torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("l2_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("frames", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("skipped", torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred_angles, target_angles) -> None:
        r = pose_error(pred_angles, target_angles)
        self.abs_sum += self.as_state([r[a] * r["frames"] for a in AXES])
        self.l2_sum += r["l2"] * r["frames"]
        self.frames += r["frames"]
        self.skipped += r["skipped"]

    def update_frames(self, frames_pred, frames_target, estimator=None) -> None:
        """One video from frames: pair (EAT linspace), estimate both sides, update."""
        estimator = estimator if estimator is not None else self.estimator
        if estimator is None:
            self.estimator = estimator = HopenetEstimator()
        fp, ft = (
            check_frames(frames_pred, "generated frames"),
            check_frames(frames_target, "ground-truth frames"),
        )
        ip, it = pair_indices(len(fp), len(ft))
        self.update(estimator(fp[ip]), estimator(ft[it]))

    def compute(self) -> dict:
        if not self.frames:
            raise InputError("PoseError.compute() has no frame with a pose on both sides yet")
        frames = int(self.frames)
        mae = self.abs_sum.cpu().numpy() / frames
        out = {a: float(v) for a, v in zip(AXES, mae, strict=True)}
        out.update(
            mean=float(mae.mean()),
            l2=float(self.l2_sum) / frames,
            frames=int(self.frames),
            skipped=int(self.skipped),
        )
        return out

"""Streaming Acc_emo (see metrics.functional.emotion) and EAT's Emotion-FAN classifier backend.

An emotion *classifier* is any callable `classifier(frames) -> logits` taking uint8 (T, H, W, 3) RGB
frames of one video and returning (8,) clip logits (or (T, 8) frame logits, averaged) in `EMOTIONS`
order; the in-project synthetic evaluator and `EmotionFANClassifier` both fit.

Emotion-FAN (Meng et al., ICIP 2019; Open-Debin/Emotion-FAN, the copy EAT uses in yuangan/evaluation_eat
`code/emotionfan_basiccode/networks.py`): ResNet-18 per frame -> f_i (512), self-attention
alpha_i = sigmoid(W_a f_i), relation-attention beta_i = sigmoid(W_b [f_i; v']) with
v' = sum alpha_i f_i / sum alpha_i, 8 classes. The eval path (`AT_level='second_level'`) is ported
as is, including its quirk: the video vector is sum_i alpha_i [f_i; v'] / sum_i alpha_i beta_i (alpha
only in the numerator; training uses alpha*beta). EAT's classifier is fine-tuned on MEAD and released
as `self_relation-attention_61_84.3655` (weights key "emotion-fan-mead").

EAT's preprocessing (`code/_acc_test.py`): every frame of the *generated* video -> dlib face chip
(`get_face_chip(size=224, padding=0.25)` after HOG/CNN detection and 5-point landmarks) ->
`Resize(224)` -> `ToTensor()`: RGB in [0, 1], **no mean/std normalisation**. `EmotionFANClassifier`
takes the face chips (it does not detect faces) and applies Resize(224) + ToTensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from metrics.base import Metric
from metrics.errors import CheckpointMismatchError, InputError
from metrics.functional.emotion import EMOTIONS, accuracy_from_confusion, confusion_matrix
from metrics.functional.landmarks import check_frames

__all__ = [
    "EMOTIONS",
    "FAN_LABELS",
    "FAN_TO_EMOTIONS",
    "EmotionFAN",
    "load_emotion_fan",
    "EmotionFANClassifier",
    "EmotionAccuracy",
]

#: Emotion-FAN/EAT's MEAD label order (`cate2label['MEAD']`: Happy 0, Angry 1, Disgust 2, Fear 3, Sad 4,
#: Neutral 5, Surprised 6, Contempt 7), spelled with this project's names.
FAN_LABELS = ("happy", "angry", "disgusted", "fear", "sad", "neutral", "surprised", "contempt")
#: logits_in_EMOTIONS_order = fan_logits[..., FAN_TO_EMOTIONS]
FAN_TO_EMOTIONS = tuple(FAN_LABELS.index(e) for e in EMOTIONS)


class EmotionFAN(nn.Module):
    """`resnet18_at(at_type='self_relation-attention')`, with the release's parameter names.

    `forward(x)`: x = (T, 3, H, W) float RGB in [0, 1], the frames of ONE video -> (8,) logits in
    Emotion-FAN's label order (`FAN_LABELS`). Dropouts are inactive in eval mode, as in EAT.
    """

    def __init__(self, num_classes: int = 8):
        super().__init__()
        from torchvision.models.resnet import BasicBlock

        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(BasicBlock, 64, 2)
        self.layer2 = self._make_layer(BasicBlock, 128, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 256, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 512, 2, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.5)
        self.dropout2 = nn.Dropout(0.6)
        self.alpha = nn.Sequential(nn.Linear(512, 1), nn.Sigmoid())
        self.beta = nn.Sequential(nn.Linear(1024, 1), nn.Sigmoid())
        self.pred_fc1 = nn.Linear(512, num_classes)  # self-attention-only head; unused by this variant
        self.pred_fc2 = nn.Linear(1024, num_classes)

    def _make_layer(self, block, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def frame_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """First level: per-frame features f (T, 512) and self-attention weights alpha (T, 1)."""
        f = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f = self.layer4(self.layer3(self.layer2(self.layer1(f))))
        f = self.avgpool(f).flatten(1)
        return f, self.alpha(self.dropout(f))

    def aggregate(self, f: torch.Tensor, alphas: torch.Tensor) -> torch.Tensor:
        """Second level (eval path) for one video: (T, 512), (T, 1) -> (8,) logits."""
        vm = (f * alphas).sum(0) / alphas.sum(0)
        cat = torch.cat([f, vm.expand_as(f)], dim=1)
        betas = self.beta(self.dropout(cat))
        video = (cat * alphas).sum(0) / (alphas * betas).sum(0)  # alpha-only numerator, as released
        return self.pred_fc2(self.dropout2(video))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.aggregate(*self.frame_features(x))


def _strip_checkpoint(obj, path) -> dict[str, torch.Tensor]:
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise CheckpointMismatchError(
            f"{path} holds a {type(obj).__name__}, not an Emotion-FAN checkpoint (a dict with 'state_dict')"
        )
    # Emotion-FAN's loader: drop DataParallel's 'module.' prefix and skip the ImageNet 'fc' head.
    return {
        k.removeprefix("module."): v
        for k, v in state.items()
        if k.removeprefix("module.") not in ("fc.weight", "fc.bias")
    }


def load_emotion_fan(path=None, device=None, verify: bool = True) -> EmotionFAN:
    """EAT's Emotion-FAN from `locate("emotion-fan-mead", path)`, in eval mode on `device`.

    The checkpoint may be the release's `{'state_dict': {'module.conv1.weight': ...}, ...}` or a bare
    state dict, with or without 'module.' prefixes. It is read with `weights_only=True` (numpy scalars
    such as a stored accuracy are allowed); a file that needs arbitrary code is refused.
    """
    from metrics.utils import load_matching_state, resolve_device, safe_torch_load
    from metrics.weights import locate

    p = locate("emotion-fan-mead", path, verify=verify)
    obj = safe_torch_load(p, "an Emotion-FAN checkpoint")
    state = _strip_checkpoint(obj, p)
    model = EmotionFAN()
    # Older files lack num_batches_tracked, as Emotion-FAN's load.model_parameters allows.
    load_matching_state(model, state, p, "an Emotion-FAN resnet18_at checkpoint")
    return model.to(resolve_device(device)).eval()


class EmotionFANClassifier:
    """uint8 (T, H, W, 3) RGB face chips of one video -> (8,) clip logits in `EMOTIONS` order.

    Preprocessing as EAT: Resize(224) (shorter side, bilinear with antialias ~ PIL) and ToTensor
    ([0, 1], no normalisation). Frames are run in batches of `batch_size`; eval mode throughout.
    """

    def __init__(
        self,
        model: nn.Module | None = None,
        path=None,
        device=None,
        verify: bool = True,
        batch_size: int = 64,
        size: int = 224,
    ):
        from metrics.utils import resolve_device

        self.model = (model if model is not None else load_emotion_fan(path, device, verify)).eval()
        self.device = next(self.model.parameters()).device if device is None else resolve_device(device)
        self.model.to(self.device)
        self.batch_size, self.size = batch_size, size
        self.protocol = {
            "classifier": "Emotion-FAN resnet18_at self_relation-attention",
            "input": "face chips",
            "resize": size,
            "normalisation": "none ([0, 1] RGB)",
            "aggregation": "second_level eval",
            "reference": "evaluation_eat code/_acc_test.py",
        }

    def preprocess(self, frames) -> torch.Tensor:
        import torchvision.transforms.functional as TF

        x = torch.from_numpy(check_frames(frames, "face chips")).permute(0, 3, 1, 2).float().div(255)
        if min(x.shape[-2:]) != self.size:
            x = TF.resize(x, self.size, antialias=True).clamp(0, 1)
        return x

    @torch.no_grad()
    def __call__(self, frames) -> np.ndarray:
        x = self.preprocess(frames)
        parts = [
            self.model.frame_features(x[i : i + self.batch_size].to(self.device))
            for i in range(0, len(x), self.batch_size)
        ]
        f, a = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        logits = self.model.aggregate(f, a).float().cpu().numpy()
        return logits[list(FAN_TO_EMOTIONS)]


class EmotionAccuracy(Metric):
    """Acc_emo over videos: `update(pred, labels)` with (N, 8) clip logits or (N,) predicted labels, or
    `update_video(frames, label, classifier)`; `compute()` -> {"accuracy", "per_class", "confusion",
    "videos"} (accuracy as a fraction). Labels are `EMOTIONS` indices or names."""

    higher_is_better = True
    name = "acc_emo"

    def __init__(self, classifier=None, num_classes: int = len(EMOTIONS), **kwargs: Any):
        super().__init__(**kwargs)
        self.classifier, self.num_classes = classifier, num_classes
        self.protocol = {
            "level": "video",
            "classes": list(EMOTIONS),
            "reference": "evaluation_eat code/_acc_test.py",
        }
        self.add_state("confusion", torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred, labels) -> None:
        self.confusion += self.as_state(confusion_matrix(pred, labels, self.num_classes), torch.int64)

    def update_video(self, frames, label, classifier=None) -> None:
        """Classify one video (`classifier`, else the metric's, else Emotion-FAN from the weights cache)."""
        classifier = classifier if classifier is not None else self.classifier
        if classifier is None:
            self.classifier = classifier = EmotionFANClassifier()
        out = classifier(check_frames(frames))
        logits = np.asarray(out.detach().cpu() if hasattr(out, "detach") else out, dtype=np.float64)
        if logits.ndim == 2:
            logits = logits.mean(0)
        if logits.shape != (self.num_classes,):
            raise InputError(
                f"classifier returned {logits.shape}; it must return ({self.num_classes},) clip logits "
                f"or (T, {self.num_classes}) frame logits"
            )
        self.update(logits[None], [label])

    def compute(self) -> dict:
        if not self.confusion.sum():
            raise InputError("EmotionAccuracy.compute() called before any update()")
        return accuracy_from_confusion(self.confusion.cpu().numpy())

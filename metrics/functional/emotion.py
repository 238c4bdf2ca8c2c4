"""Acc_emo: video-level top-1 emotion accuracy over the 8 MEAD classes, its confusion matrix and
per-class accuracies (EAT's `_acc_test.py` prints the overall `Acc@Video` and one accuracy per class).

Class indices are this project's order, `EMOTIONS` = (angry, contempt, disgusted, fear, happy, neutral,
sad, surprised) — the same tuple as `benchmarks.datasets.common.EMOTIONS`, repeated here because
metrics/ is the bottom layer. Emotion-FAN's own label order differs (see `metrics.emotion.FAN_LABELS`);
`metrics.emotion.EmotionFANClassifier` already returns logits in `EMOTIONS` order.
"""

from __future__ import annotations

import numpy as np

from metrics.errors import InputError

__all__ = [
    "EMOTIONS",
    "emotion_labels",
    "predicted_labels",
    "confusion_matrix",
    "accuracy_from_confusion",
    "emotion_accuracy",
]

EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")


def emotion_labels(labels, num_classes: int = len(EMOTIONS)) -> np.ndarray:
    """(N,) int64 class indices from ints or emotion names (`EMOTIONS`)."""
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    if isinstance(labels, (str, int, np.integer)):
        labels = [labels]
    arr = np.asarray(labels)
    if arr.dtype.kind in "US":
        unknown = sorted({str(x) for x in arr.ravel()} - set(EMOTIONS))
        if unknown:
            raise InputError(f"unknown emotion name(s) {unknown}; use one of {', '.join(EMOTIONS)}")
        arr = np.array([EMOTIONS.index(str(x)) for x in arr.ravel()])
    if arr.ndim != 1 or arr.dtype.kind not in "iu":
        raise InputError(
            f"emotion labels must be a 1-D sequence of ints or names, got {arr.dtype} {arr.shape}"
        )
    if len(arr) and (arr.min() < 0 or arr.max() >= num_classes):
        raise InputError(f"emotion labels must lie in [0, {num_classes}), got {sorted(set(arr.tolist()))}")
    return arr.astype(np.int64)


def predicted_labels(pred, num_classes: int = len(EMOTIONS)) -> np.ndarray:
    """Arg-max of (N, C) logits/probabilities, or (N,) labels (ints or names) passed through."""
    if hasattr(pred, "detach"):
        pred = pred.detach().cpu().numpy()
    arr = np.asarray(pred)
    if arr.ndim == 2 and arr.dtype.kind == "f":
        if arr.shape[1] != num_classes:
            raise InputError(f"emotion logits must be (N, {num_classes}), got {arr.shape}")
        return arr.argmax(1).astype(np.int64)
    if arr.dtype.kind == "f":
        raise InputError(
            f"pass logits as (N, {num_classes}) floats or predictions as (N,) ints, got {arr.shape}"
        )
    return emotion_labels(arr, num_classes)


def confusion_matrix(pred, labels, num_classes: int = len(EMOTIONS)) -> np.ndarray:
    """(C, C) counts; rows = true class, columns = predicted class (sklearn's convention)."""
    p, t = predicted_labels(pred, num_classes), emotion_labels(labels, num_classes)
    if len(p) != len(t):
        raise InputError(f"{len(p)} predictions but {len(t)} labels")
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(num_classes, num_classes)


def accuracy_from_confusion(conf: np.ndarray) -> dict:
    """The `emotion_accuracy` dictionary from a (C, C) confusion matrix (rows true, columns predicted)."""
    conf = np.asarray(conf, np.int64)
    total = int(conf.sum())
    if total == 0:
        raise InputError("emotion accuracy of zero videos is undefined")
    support = conf.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(conf) / np.maximum(support, 1), np.nan)
    names = EMOTIONS if len(conf) == len(EMOTIONS) else tuple(str(i) for i in range(len(conf)))
    return {
        "accuracy": float(np.trace(conf) / total),
        "per_class": {n: float(a) for n, a in zip(names, per_class, strict=True)},
        "confusion": conf.tolist(),
        "videos": total,
    }


def emotion_accuracy(pred, labels, num_classes: int = len(EMOTIONS)) -> dict:
    """Video-level Acc_emo.

    Args:
        pred: (N, C) clip logits/probabilities (arg-max taken) or (N,) predicted labels (ints or names).
        labels: (N,) true labels, ints in `EMOTIONS` order or emotion names.

    Returns:
        {"accuracy": fraction in [0, 1] (EAT prints it x100), "per_class": {emotion: accuracy or NaN when
        the class has no video}, "confusion": (C, C) list (rows true, columns predicted), "videos": N}.
    """
    return accuracy_from_confusion(confusion_matrix(pred, labels, num_classes))

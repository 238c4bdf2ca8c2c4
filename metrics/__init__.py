"""Talking-head metrics: each a `torchmetrics.Metric` class (update/compute) with a functional twin in
metrics.functional (`from metrics import functional as F; F.psnr(...)`).

The classes and network backends are exported lazily (PEP 562): the CLI imports metrics.errors at
start-up and must not pay for torch there.
"""

_LAZY = {name: f"metrics.{module}" for module, names in {
    "image": ("PeakSignalNoiseRatio", "StructuralSimilarity", "FrechetDistance"),
    "fid": ("FrechetInceptionDistance",),
    "inception": ("FIDInceptionV3", "load_fid_inception"),
    "lpips": ("LearnedPerceptualImagePatchSimilarity",),
    "sync": ("LipSyncError", "SyncNet", "load_syncnet"),
    "landmarks": ("MouthLandmarkDistance", "FaceLandmarkDistance", "Dlib68Detector"),
    "emotion": ("EmotionAccuracy", "EmotionFAN", "EmotionFANClassifier", "load_emotion_fan"),
    "pose": ("PoseError", "Hopenet", "HopenetEstimator", "load_hopenet"),
    "identity": ("IdentitySimilarity",),
    "arcface": ("ArcFaceEmbedder",),
}.items() for name in names}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])

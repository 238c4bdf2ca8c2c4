"""Talking-head metrics: each a class (update/compute) with a functional twin in metrics.functional."""

# Face metrics (landmarks, emotion, pose, identity), exported lazily (PEP 562): the CLI imports
# metrics.errors at start-up and must not pay for torch there.
_LAZY_FACE = {name: f"metrics.{module}" for module, names in {
    "landmarks": ("MouthLandmarkDistance", "FaceLandmarkDistance", "Dlib68Detector"),
    "emotion": ("EmotionAccuracy", "EmotionFAN", "EmotionFANClassifier", "load_emotion_fan"),
    "pose": ("PoseError", "Hopenet", "HopenetEstimator", "load_hopenet"),
    "identity": ("IdentitySimilarity", "ArcFaceEmbedder"),
}.items() for name in names}


def __getattr__(name):
    if name in _LAZY_FACE:
        import importlib

        return getattr(importlib.import_module(_LAZY_FACE[name]), name)
    raise AttributeError(f"module 'metrics' has no attribute {name!r}")

# LPIPS and Inception-FID (torch), lazily as well.
_LAZY_FACE.update({
    "LearnedPerceptualImagePatchSimilarity": "metrics.lpips",
    "FrechetInceptionDistance": "metrics.fid",
    "FIDInceptionV3": "metrics.inception",
    "load_fid_inception": "metrics.inception",
})

"""Evaluators for the synthetic world, trained on its TRAIN identities and validated on its TEST ones.

Pretrained face networks (dlib, HopeNet, Emotion-FAN, ArcFace, SyncNet, Inception) cannot be downloaded
here and do not know the synthetic faces, so the world gets its own small nets: landmarks, head pose,
emotion, identity embedding, FID features and a SyncNet of syncnet_python's design that the LSE code
scores with. `edtalk evaluators train --data DIR` trains and caches them; `load_evaluators(DIR)` loads.
See `benchmarks.evaluators.api` for the interface and the cache layout.
"""
from benchmarks.evaluators.api import FEATURES_NOTE, Evaluators, load_evaluators, train_evaluators
from benchmarks.evaluators.config import PRESETS, EvaluatorConfig, cache_key, get_config

__all__ = ["Evaluators", "EvaluatorConfig", "FEATURES_NOTE", "PRESETS", "cache_key", "get_config", "load_evaluators",
           "train_evaluators"]

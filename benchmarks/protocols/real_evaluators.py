"""The evaluator networks of the real-data protocols, found by `metrics.weights` and loaded on first use,
and the sample form of the Fréchet distance used for FID and its bootstrap."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from metrics.errors import InputError

__all__ = ["METRIC_WEIGHTS", "RealEvaluators", "sample_fid"]

# which weight files each metric needs (dlib-68 for the aligned crop and the LMD landmarks)
METRIC_WEIGHTS = {
    "psnr": ("dlib-68",), "ssim": ("dlib-68",), "m_lmd": ("dlib-68",), "f_lmd": ("dlib-68",),
    "lpips": ("dlib-68", "alexnet-lpips"), "fid": ("dlib-68", "inception-fid"),
    "fid_eat": ("dlib-68", "inception-v3-torchvision"), "sync_conf": ("syncnet-v2",), "lse_d": ("syncnet-v2",),
    "acc_emo": ("dlib-5", "emotion-fan-mead"), "csim": ("dlib-68", "arcface-r50"), "pose_err": ("dlib-68", "hopenet"),
}


class RealEvaluators:
    """The evaluator networks, loaded on first use from `metrics.weights`; records each file's sha256.

    `verify=False` accepts files whose hash does not match the manifest (seeded stand-ins); results say so.
    """

    def __init__(self, device=None, verify: bool = True):
        self.device, self.verify = device, verify
        self.files: dict[str, dict] = {}
        self._cache: dict[str, object] = {}

    def path(self, key: str) -> Path:
        from metrics.utils import sha256_file
        from metrics.weights import check_file, locate

        if key not in self.files:
            p = locate(key, verify=self.verify)
            self.files[key] = {"path": str(p), "sha256": sha256_file(p), "manifest_check": check_file(key, p)}
        return Path(self.files[key]["path"])

    def require(self, names) -> None:
        """Locate every weight file the metrics need, up front: a missing one fails before any clip is read."""
        for name in names:
            for key in METRIC_WEIGHTS.get(name, ()):
                self.path(key)

    def get(self, what: str):
        if what in self._cache:
            return self._cache[what]
        if what == "landmarks":
            from metrics.landmarks import Dlib68Detector

            obj = Dlib68Detector(self.path("dlib-68"), verify=False)  # EAT's LMD: upsample 0, BGR2GRAY of RGB
        elif what == "lpips":
            from metrics.functional.lpips import load_lpips

            obj = load_lpips(self.path("alexnet-lpips"), self.device, verify=False)
        elif what == "fid":
            from metrics.inception import load_fid_inception

            obj = load_fid_inception(self.path("inception-fid"), self.device, verify=False)
        elif what == "fid_eat":
            from metrics.fid_eat import load_torchvision_inception

            obj = load_torchvision_inception(self.path("inception-v3-torchvision"), self.device, verify=False)
        elif what == "syncnet":
            from metrics.sync import load_syncnet
            from metrics.utils import resolve_device

            obj = load_syncnet(self.path("syncnet-v2"), resolve_device(self.device))
        elif what == "emotion":
            from metrics.emotion import EmotionFANClassifier

            obj = EmotionFANClassifier(path=self.path("emotion-fan-mead"), device=self.device, verify=False)
        elif what == "arcface":
            from metrics.arcface import ArcFaceEmbedder

            obj = ArcFaceEmbedder(self.path("arcface-r50"), self.device, verify=False)
        elif what == "hopenet":
            from metrics.pose import HopenetEstimator

            obj = HopenetEstimator(path=self.path("hopenet"), device=self.device, verify=False)
        else:
            raise InputError(f"unknown evaluator {what!r}")
        self._cache[what] = obj
        return obj


def sample_fid(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance of two feature samples (N, D), statistics as pytorch-fid (mean, np.cov ddof 1).

    With C = (X - mean) / sqrt(n - 1) per side, Tr sqrt(S1 S2) is the sum of the singular values of
    C1 C2^T (the nonzero eigenvalues of C1^T C1 C2^T C2 are those of (C1 C2^T)(C1 C2^T)^T): an n1 x n2 SVD
    instead of a D x D matrix square root, exact, and fast while the sets are smaller than D (a test set
    of a few hundred clips x 5 frames, and every bootstrap resample). Larger sets use pytorch-fid's form.
    """
    from metrics.functional.image import fid_from_features

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if min(len(a), len(b)) > a.shape[1]:
        return fid_from_features(a, b)
    ca, cb = (a - a.mean(0)) / np.sqrt(len(a) - 1), (b - b.mean(0)) / np.sqrt(len(b) - 1)
    diff = a.mean(0) - b.mean(0)
    nuclear = np.linalg.svd(ca @ cb.T, compute_uv=False).sum()
    return float(diff @ diff + (ca * ca).sum() + (cb * cb).sum() - 2 * nuclear)

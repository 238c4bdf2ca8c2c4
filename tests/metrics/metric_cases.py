"""The tester's cases: every metric class with its batches, functional twin (`metrics.functional as F`) and
reference. The references are the ones tests/metrics/test_<metric>.py check against: scikit-image, numpy +
scipy, pytorch-fid, the lpips package, scikit-learn, evaluation_eat's LMD loop, syncnet_python's numbers
(tests/fixtures/parity/lse_seed4.npz). Networks are seeded stand-ins of the exact architecture.
"""
from __future__ import annotations

import contextlib
import io
import math
import warnings
from functools import cache
from pathlib import Path

import numpy as np
import torch
from tester import MetricCase

from metrics import functional as F

PARITY = Path(__file__).resolve().parents[1] / "fixtures" / "parity"


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# -- PSNR / SSIM: scikit-image -------------------------------------------------------------------------


def _video_pairs(_: Path) -> list:
    rng = _rng(0)
    out = []
    for n in (2, 3, 1, 2):
        a = rng.integers(0, 256, (n, 24, 32, 3), dtype=np.uint8)
        b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
        out.append(((a, b), {}))
    return out


def _frames(batches):
    return np.concatenate([b[0][0] for b in batches]), np.concatenate([b[0][1] for b in batches])


def _skimage(fn_name: str, batches, aggregation: str) -> float:
    import skimage.metrics as skm

    def score(a, b):
        if fn_name == "psnr":
            return skm.peak_signal_noise_ratio(b, a, data_range=255)
        return skm.structural_similarity(a, b, channel_axis=-1, data_range=255)

    per_video = [[score(a[i], b[i]) for i in range(len(a))] for (a, b), _ in batches]
    if aggregation == "frames":
        return float(np.mean([s for v in per_video for s in v]))
    return float(np.mean([np.mean(v) for v in per_video]))


def _image_case(name: str, cls_name: str, fn_name: str, aggregation: str) -> MetricCase:
    def build(_):
        import metrics

        return getattr(metrics, cls_name)(aggregation)

    def functional(_, batches):
        fn = getattr(F, fn_name)
        if aggregation == "frames":
            return fn(*_frames(batches))
        return float(np.mean([fn(*args) for args, _ in batches]))

    return MetricCase(name, build, _video_pairs, functional, lambda _, b: _skimage(fn_name, b, aggregation), cls_name,
                      per_sample=("video_means", lambda _, b: getattr(F, fn_name)(*b[0])))


# -- Fréchet distance on features: numpy + scipy ---------------------------------------------------------


def _feature_batches(_: Path) -> list:
    rng = _rng(1)
    real = [rng.normal(size=(n, 6)) for n in (9, 7, 8, 6)]
    fake = [rng.normal(0.3, 1.2, size=(n, 6)) for n in (8, 10, 5, 9)]
    # real, real, fake, fake, ...: each rank (every other batch) sees both sides, which FrechetDistance()
    # without num_features needs (its states take their size from the first update).
    batches = []
    for i in (0, 2):
        batches += [((f,), {"real": True}) for f in real[i:i + 2]] + [((f,), {"real": False}) for f in fake[i:i + 2]]
    return batches


def _split_sides(batches):
    real = np.concatenate([a[0] for a, kw in batches if kw["real"]])
    fake = np.concatenate([a[0] for a, kw in batches if not kw["real"]])
    return real, fake


def _scipy_fid(real, fake) -> float:
    from scipy import linalg

    m1, m2, s1, s2 = real.mean(0), fake.mean(0), np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    return float(((m1 - m2) ** 2).sum() + np.trace(s1 + s2 - 2 * linalg.sqrtm(s1 @ s2).real))


def _frechet_case() -> MetricCase:
    def build(_):
        from metrics import FrechetDistance

        return FrechetDistance()

    return MetricCase("frechet_distance", build, _feature_batches,
                      lambda _, b: F.fid_from_features(*_split_sides(b)),
                      lambda _, b: _scipy_fid(*_split_sides(b)), "FrechetDistance", rtol=1e-7, forward=False)


# -- FID Inception: pytorch-fid's network on the same stand-in weights ---------------------------------


def _inception_weights(workdir: Path) -> Path:
    return workdir / "pt_inception-2015-12-05-6726825d.pth"


def _write_inception(workdir: Path) -> None:
    from torch import nn

    from metrics.inception import FIDInceptionV3

    torch.manual_seed(0)
    m = FIDInceptionV3()
    for mod in m.modules():  # He-initialised convs so that pool3 features are O(1), as in test_fid.py
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.normal_(mod.bias, 0.0, 0.05)
    torch.save(m.state_dict(), _inception_weights(workdir))


@cache
def _inception(path: str):
    from metrics.inception import load_fid_inception

    return load_fid_inception(path, device="cpu", verify=False)


def _image_batches(_: Path) -> list:
    # One image per side: the Inception forward is the cost (~0.5 s an image on CPU); rank 0 gets the real
    # image, rank 1 the fake one, so the synced sums must carry both sides.
    g = torch.Generator().manual_seed(4)
    return [((torch.rand(1, 3, 40, 48, generator=g),), {"real": r}) for r in (True, False)]


def _running_sums(metric) -> dict:
    """The synced statistics FID is computed from (2048-d: the distance itself is the FrechetDistance case)."""
    with metric.sync_context():
        return {k: getattr(metric, k).clone() for k in ("real_sum", "real_outer", "real_n", "fake_sum",
                                                        "fake_outer", "fake_n")}


def _sums_of(features_by_side: dict) -> dict:
    out = {}
    for side, f in features_by_side.items():
        out.update({f"{side}_sum": f.sum(0), f"{side}_outer": f.T @ f, f"{side}_n": len(f)})
    return out


def _fid_functional(workdir: Path, batches) -> dict:
    model = _inception(str(_inception_weights(workdir)))
    feats = {side: np.concatenate([F.inception_features(a[0], model) for a, kw in batches if kw["real"] == is_real])
             for side, is_real in (("real", True), ("fake", False))}
    return _sums_of(feats)


def _fid_reference(workdir: Path, batches) -> dict:
    import pytorch_fid.inception as pfi

    weights = _inception_weights(workdir)
    state = torch.load(weights, weights_only=True)
    original = pfi.load_state_dict_from_url
    pfi.load_state_dict_from_url = lambda *a, **k: state  # pytorch-fid's own loader, fed the stand-in
    try:
        net = pfi.InceptionV3([pfi.InceptionV3.BLOCK_INDEX_BY_DIM[2048]]).eval()
    finally:
        pfi.load_state_dict_from_url = original
    with torch.no_grad():
        feats = {side: np.concatenate([net(a[0])[0].flatten(1).double().numpy() for a, kw in batches
                                       if kw["real"] == is_real])
                 for side, is_real in (("real", True), ("fake", False))}
    return _sums_of(feats)


def _fid_case() -> MetricCase:
    def build(workdir):
        from metrics import FrechetInceptionDistance

        return FrechetInceptionDistance(inception=_inception(str(_inception_weights(workdir))), batch_size=2)

    # pytorch-fid's float32 network agrees with ours to ~1e-5 per feature (test_fid.py); the outer sums add
    # up products of ~10 features, hence the reference's absolute tolerance.
    return MetricCase("fid_inception", build, _image_batches, _fid_functional, _fid_reference,
                      "FrechetInceptionDistance", rtol=1e-6,
                      atol=1e-6, reference_tol={"rtol": 1e-4, "atol": 1e-3}, read=_running_sums, forward=False,
                      prepare=_write_inception, slow=True)


# -- LPIPS: the lpips package's own forward --------------------------------------------------------------


@cache
def _lpips_net():
    import lpips as lpips_pkg

    torch.manual_seed(0)  # the stand-in AlexNet trunk; lin heads from the lpips wheel, as load_lpips does
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return lpips_pkg.LPIPS(pretrained=True, net="alex", version="0.1", pnet_rand=True, verbose=False).eval()


def _lpips_batches(_: Path) -> list:
    g = torch.Generator().manual_seed(3)
    out = []
    for n in (2, 1, 3):
        a = torch.rand(n, 3, 32, 40, generator=g) * 2 - 1
        out.append(((a, (a + 0.4 * torch.randn(a.shape, generator=g)).clamp(-1, 1)), {}))
    return out


def _lpips_case() -> MetricCase:
    def build(_):
        from metrics import LearnedPerceptualImagePatchSimilarity

        return LearnedPerceptualImagePatchSimilarity(net=_lpips_net())

    def reference(_, batches):
        with torch.no_grad():
            return float(torch.cat([_lpips_net()(a, b).flatten() for (a, b), _ in batches]).double().mean())

    def functional(_, batches):
        a, b = (torch.cat([args[i] for args, _ in batches]) for i in (0, 1))
        return F.lpips(a, b, net=_lpips_net())

    return MetricCase("lpips", build, _lpips_batches, functional, reference,
                      "LearnedPerceptualImagePatchSimilarity", rtol=1e-6, atol=1e-9,
                      reference_tol={"atol": 1e-6},
                      per_sample=("video_means", lambda _, b: F.lpips(*b[0], net=_lpips_net())))


# -- CSIM: scikit-learn's cosine similarity ----------------------------------------------------------


def quadrant_colours(faces: np.ndarray) -> np.ndarray:
    """A 12-d stand-in embedder: the mean colour of each quadrant of the face."""
    h, w = faces.shape[1] // 2, faces.shape[2] // 2
    quads = [faces[:, :h, :w], faces[:, :h, w:], faces[:, h:, :w], faces[:, h:, w:]]
    return np.stack([q.mean((1, 2)) for q in quads], 1).reshape(len(faces), -1)


def _face_batches(_: Path) -> list:
    rng = _rng(4)
    return [((rng.integers(0, 256, (1, 16, 16, 3), dtype=np.uint8),
              rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)), {}) for n in (3, 2, 4)]


def _csim_case() -> MetricCase:
    def build(_):
        from metrics import IdentitySimilarity

        return IdentitySimilarity(embedder=quadrant_colours)

    def reference(_, batches):
        from sklearn.metrics.pairwise import cosine_similarity

        return float(np.mean([cosine_similarity(quadrant_colours(s), quadrant_colours(g)).mean()
                              for (s, g), _ in batches]))

    def one(_, batch):
        return F.csim(*batch[0], quadrant_colours)

    return MetricCase("csim", build, _face_batches, lambda w, b: float(np.mean([one(w, x) for x in b])),
                      reference, "IdentitySimilarity", per_sample=("per_video", one))


# -- M-LMD / F-LMD: evaluation_eat's test_lmd.py loop --------------------------------------------------


def _landmark_batches(_: Path) -> list:
    rng = _rng(5)
    out = []
    for n in (4, 3, 5, 2):
        t = rng.uniform(0, 128, (n, 68, 2)).round()
        p = (t + rng.normal(0, 3, t.shape)).round()
        p[0] = np.nan  # a frame without a face: skipped
        out.append(((p, t), {}))
    return out


def _eat_lmd(pred, target, points) -> float:
    """EAT's LMD of one video: centre each point set, sum the point distances, divide by the valid frames
    and the points."""
    total, valid = 0.0, 0
    for p, t in zip(pred, target, strict=True):
        if np.isnan(p).any() or np.isnan(t).any():
            continue
        p, t = p[points] - p[points].mean(0), t[points] - t[points].mean(0)
        total += sum(math.dist(a, b) for a, b in zip(p, t, strict=True))
        valid += 1
    return total / (valid * len(points))


def _landmark_case(name: str, cls_name: str, subset: str) -> MetricCase:
    points = list(range(48, 68)) if subset == "mouth" else list(range(68))

    def build(_):
        import metrics

        return getattr(metrics, cls_name)()

    def one(_, batch):
        return F.landmark_distance(*batch[0], subset)

    return MetricCase(name, build, _landmark_batches, lambda w, b: float(np.mean([one(w, x) for x in b])),
                      lambda _, b: float(np.mean([_eat_lmd(*args, points) for args, _ in b])), cls_name,
                      per_sample=("per_video", one))


# -- Acc_emo: scikit-learn ----------------------------------------------------------------------------


def _emotion_batches(_: Path) -> list:
    rng = _rng(6)
    out = []
    for n in (12, 9, 15):
        labels = rng.integers(0, 8, n)
        logits = rng.normal(size=(n, 8))
        logits[np.arange(n), labels] += 1.0
        out.append(((logits, labels), {}))
    return out


def _emotion_case() -> MetricCase:
    def build(_):
        from metrics import EmotionAccuracy

        return EmotionAccuracy()

    def pooled(batches):
        return np.concatenate([a[0] for a, _ in batches]), np.concatenate([a[1] for a, _ in batches])

    def reference(_, batches):
        from sklearn.metrics import accuracy_score, confusion_matrix

        logits, labels = pooled(batches)
        pred = logits.argmax(1)
        return {"accuracy": accuracy_score(labels, pred), "confusion": confusion_matrix(labels, pred, labels=range(8)),
                "videos": len(labels)}

    return MetricCase("acc_emo", build, _emotion_batches, lambda _, b: F.emotion_accuracy(*pooled(b)), reference,
                      "EmotionAccuracy")


# -- head-pose error: numpy ------------------------------------------------------------------------------


def _pose_batches(_: Path) -> list:
    rng = _rng(7)
    out = []
    for n in (6, 4, 5):
        p, t = rng.uniform(-60, 60, (n, 3)), rng.uniform(-60, 60, (n, 3))
        p[1, 2] = np.nan  # no face in one frame: skipped
        out.append(((p, t), {}))
    return out


def _pose_case() -> MetricCase:
    def build(_):
        from metrics import PoseError

        return PoseError()

    def pooled(batches):
        return np.concatenate([a[0] for a, _ in batches]), np.concatenate([a[1] for a, _ in batches])

    def reference(_, batches):
        p, t = pooled(batches)
        keep = np.isfinite(p - t).all(1)
        d = (p - t)[keep]
        mae = np.abs(d).mean(0)
        return {"yaw": mae[0], "pitch": mae[1], "roll": mae[2], "mean": mae.mean(),
                "l2": np.sqrt((d ** 2).sum(1)).mean(), "frames": keep.sum(), "skipped": (~keep).sum()}

    return MetricCase("pose_error", build, _pose_batches, lambda _, b: F.pose_error(*pooled(b)), reference,
                      "PoseError")


# -- LSE: syncnet_python's numbers -------------------------------------------------------------------


def _syncnet_weights(workdir: Path) -> Path:
    return workdir / "syncnet_v2.model"


def _write_syncnet(workdir: Path) -> None:
    from metrics.standin import syncnet_state_dict

    torch.save(syncnet_state_dict(4), _syncnet_weights(workdir))  # the weights lse_seed4.npz was scored with


@cache
def _lse_clips() -> dict:
    return dict(np.load(PARITY / "lse_seed4.npz"))


def _lse_batches(_: Path) -> list:
    clips = _lse_clips()
    return [((clips[f"clip{k}_frames"], clips[f"clip{k}_audio"]), {}) for k in (0, 1)]


def _lse_case() -> MetricCase:
    def build(workdir):
        from metrics import LipSyncError

        return LipSyncError(weights=_syncnet_weights(workdir))

    def functional(workdir, batches):
        runs = [F.lse(*args, weights=_syncnet_weights(workdir)) for args, _ in batches]
        return {k: float(np.mean([r[k] for r in runs])) for k in ("lse_c", "lse_d")} | {"clips": len(runs)}

    def reference(_, batches):
        expected = [_lse_clips()[f"clip{k}_expected"] for k in range(len(batches))]  # [conf, dist, offset]
        return {"lse_c": float(np.mean([e[0] for e in expected])), "lse_d": float(np.mean([e[1] for e in expected]))}

    # syncnet_python runs float32 in another batch order: LSE-D agrees to 1e-5 relative, LSE-C to 0.01
    # (test_sync.py); merge_state and forward are the torchmetrics machinery the other cases check.
    return MetricCase("lse", build, _lse_batches, functional, reference, "LipSyncError", rtol=1e-6,
                      reference_tol={"rtol": 1e-5, "atol": 0.01}, forward=False, merge=False,
                      prepare=_write_syncnet, slow=True)


CASES: dict[str, MetricCase] = {c.name: c for c in (
    _image_case("psnr", "PeakSignalNoiseRatio", "psnr", "frames"),
    _image_case("psnr_videos", "PeakSignalNoiseRatio", "psnr", "videos"),
    _image_case("ssim", "StructuralSimilarity", "ssim", "frames"),
    _frechet_case(),
    _fid_case(),
    _lpips_case(),
    _csim_case(),
    _landmark_case("m_lmd", "MouthLandmarkDistance", "mouth"),
    _landmark_case("f_lmd", "FaceLandmarkDistance", "face"),
    _emotion_case(),
    _pose_case(),
    _lse_case(),
)}

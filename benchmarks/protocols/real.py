"""Scoring generated videos against MEAD / HDTF ground truth, each metric on its reference crop.

What `edtalk evaluate --protocol mead-edtalk|hdtf-edtalk --videos GEN --data ROOT` runs (through
`benchmarks.protocols.api.evaluate_protocol` and the engine's resumable rows):

* PSNR, SSIM, M-LMD, F-LMD, LPIPS on `eat-aligned` crops (128x128), paired as EAT pairs them: frames whose
  crop finds no face are dropped first, then L = min(#generated, #GT crops) and both sides are sampled at
  `linspace(0, n, L, endpoint=False)`. Per clip: the mean over its pairs (our per-clip bootstrap CI); the
  rows also keep the sums, so `reference_aggregates` gives EAT's own numbers: PSNR/SSIM pooled over every
  frame pair of every video, M-LMD/F-LMD the mean over videos of per-video means.
* `fid` (pytorch-fid's Inception on every paired aligned crop) and `fid_eat` (EAT's torchvision Inception
  on 5 paired crops per video): set-level. Each clip's features go to `<out>.features/<case>.npz` before
  its row is appended, so a resumed run loses nothing; the CI resamples clips.
* LSE-C / LSE-D on the `syncnet-track` crop of the generated video with its own audio (the GT speech when
  the video has none, recorded); Acc_emo (MEAD) on `emotion-chip` crops with Emotion-FAN; CSIM (ArcFace on
  insightface's 5-point alignment from the dlib landmarks of the aligned crop) against the GT clip's first
  face; head-pose error (Hopenet on deep-head-pose's expanded box around the dlib landmarks) over the pairs.

EAT writes its aligned crops through OpenCV's lossy `mp4v` before scoring; `eat_roundtrip=True` does the
same, the default keeps the crops lossless. Results say which ran. This module never imports `edtalk`.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from benchmarks.protocols.engine import Case
from benchmarks.protocols.real_data import GroundTruth, check_videos, find_ground_truth, real_cases, video_for
from benchmarks.protocols.real_evaluators import METRIC_WEIGHTS, RealEvaluators, sample_fid
from benchmarks.protocols.real_gt import GroundTruthClip, GroundTruthSide, aligned_crops, mp4v_roundtrip
from benchmarks.protocols.registry import Protocol
from metrics.errors import InputError, UserError

__all__ = ["RealScorer", "evaluate_real", "pair_crops", "mp4v_roundtrip",
           # re-exported: the scorer's inputs and evaluators live in their own modules
           "GroundTruth", "find_ground_truth", "real_cases", "check_videos", "video_for", "RealEvaluators",
           "METRIC_WEIGHTS", "sample_fid"]

ALIGNED = ("psnr", "ssim", "m_lmd", "f_lmd", "lpips", "fid", "fid_eat", "csim", "pose_err")
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.#-]")


def pair_crops(gen: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """EAT's pairing of two crop sequences (faceless frames already dropped): L = min of the lengths, both
    sampled at linspace(0, n, L, endpoint=False)."""
    from metrics.functional.landmarks import pair_indices

    ig, it = pair_indices(len(gen), len(gt))
    return gen[ig], gt[it]


def _five_points(landmarks: np.ndarray) -> np.ndarray:
    """insightface's 5 keypoints (eye centres, nose tip, mouth corners) from dlib-68 landmarks, (T, 5, 2)."""
    lm = np.asarray(landmarks, np.float64)
    return np.stack([lm[:, 36:42].mean(1), lm[:, 42:48].mean(1), lm[:, 30], lm[:, 48], lm[:, 54]], 1)


def _pose_crops(frames: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """deep-head-pose's crop (expand_box) around each frame's dlib landmark extent, resized to 224."""
    import cv2

    from metrics.pose import expand_box

    out = []
    for frame, lm in zip(frames, landmarks, strict=True):
        x0, y0, x1, y1 = expand_box((lm[:, 0].min(), lm[:, 1].min(), lm[:, 0].max(), lm[:, 1].max()), frame.shape)
        out.append(cv2.resize(np.ascontiguousarray(frame[y0:y1, x0:x1]), (224, 224), interpolation=cv2.INTER_LINEAR))
    return np.stack(out)


class RealScorer:
    """`scorer(case, frames) -> scores` for the engine, plus the set-level (`aggregate_set`) and EAT-style
    (`reference_aggregates`) aggregation over the rows. See the module docstring for what each metric sees."""

    def __init__(self, proto: Protocol, names: list[str], ground_truth: dict[str, GroundTruth], videos,
                 evaluators: RealEvaluators, features_dir, *, eat_roundtrip: bool = False,
                 fid_resamples: int = 20, gt_cache=None, data_root=None):
        self.proto, self.names, self.gt, self.videos = proto, list(names), ground_truth, Path(videos)
        self.ev, self.features_dir = evaluators, Path(features_dir)
        self.eat_roundtrip, self.fid_resamples = eat_roundtrip, int(fid_resamples)
        self.needs_aligned = any(n in ALIGNED for n in self.names)
        # the GT's crops and evaluator outputs, cached under `gt_cache` for the next method's evaluation
        self.gt_side = GroundTruthSide(proto, ground_truth, evaluators, data_root=data_root, cache_dir=gt_cache,
                                       eat_roundtrip=eat_roundtrip)

    # --- per clip ---------------------------------------------------------------------------------------

    def __call__(self, case: Case, frames: np.ndarray) -> dict:
        return self.score_frames(case, frames, self.gt_side.clip(case))

    def score_frames(self, case: Case, frames: np.ndarray, gt_frames, gt_audio=None) -> dict:
        """Every metric of one case from decoded frames (uint8 (T, H, W, 3) RGB) and the ground truth: its
        frames and speech, or a `GroundTruthClip` (what the engine passes: cached GT work is reused)."""
        gt = gt_frames if isinstance(gt_frames, GroundTruthClip) else GroundTruthClip(
            self.gt_side, case, frames=gt_frames, audio=gt_audio)  # no GroundTruth file: nothing to key a cache on
        scores: dict = {}
        crops_info: dict = {}
        if self.needs_aligned:
            gen = aligned_crops(frames, self.ev.path("dlib-68"), self.eat_roundtrip)
            gt_crops = gt.aligned
            crops_info["eat-aligned"] = {"generated": gen.provenance, "ground_truth": gt_crops.provenance}
            if len(gen.frames) and len(gt_crops.frames):
                self._score_aligned(frames, gen, gt, gt_crops, scores)
            else:
                for n in ALIGNED:
                    if n in self.names:
                        scores[n] = None  # a video without a face: counted as a dropped video
                scores["dropped_video"] = "generated" if not len(gen.frames) else "ground truth"
        if "sync_conf" in self.names or "lse_d" in self.names:
            crops_info["syncnet-track"] = self._score_sync(case, frames, gt, scores)
        if "acc_emo" in self.names:
            crops_info["emotion-chip"] = self._score_emotion(case, frames, scores)
        scores["crops"] = crops_info
        return scores

    def _score_aligned(self, frames, gen, gt: GroundTruthClip, gt_crops, scores) -> None:
        from metrics.functional.image import psnr_per_frame, ssim_per_frame
        from metrics.functional.landmarks import landmark_distance_per_frame, pair_indices

        ig, it = pair_indices(len(gen.frames), len(gt_crops.frames))
        a, b = gen.frames[ig], gt_crops.frames[it]
        scores["pairs"] = int(len(ig))
        if "psnr" in self.names:
            # skimage's compare_psnr(gt, fake) is symmetric; identical frames give inf (kept in the pooled sum)
            v = psnr_per_frame(a, b)
            scores["psnr"], scores["psnr_sum"] = float(v.mean()), float(v.sum())
        if "ssim" in self.names:
            v = ssim_per_frame(a, b)
            scores["ssim"], scores["ssim_sum"] = float(v.mean()), float(v.sum())
        if "m_lmd" in self.names or "f_lmd" in self.names:
            detector = self.ev.get("landmarks")
            la = detector(a)
            lb = gt.per_frame("landmarks", ("dlib-68",), it, lambda idx: detector(gt_crops.frames[idx]))
            for name, subset in (("m_lmd", "mouth"), ("f_lmd", "face")):
                if name in self.names:
                    d = landmark_distance_per_frame(la, lb, subset)
                    valid = np.isfinite(d)
                    scores[name] = float(d[valid].mean()) if valid.any() else None  # EAT skips such a video
                    scores[f"{name}_frames"] = int(valid.sum())
        if "lpips" in self.names:
            import torch

            from metrics.functional.lpips import lpips_per_pair

            to = lambda x: torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255  # noqa: E731
            v = lpips_per_pair(to(a), to(b), net=self.ev.get("lpips"), normalize=True).numpy()
            scores["lpips"], scores["lpips_sum"] = float(v.mean()), float(v.sum())
        self._score_fid(a, gt, gt_crops, it, scores)
        self._score_identity_pose(frames, gen, gt, gt_crops, ig, it, scores)

    def _score_fid(self, a, gt: GroundTruthClip, gt_crops, it, scores) -> None:
        features = {}
        if "fid" in self.names:
            import torch

            from metrics.functional.fid import inception_features

            model = self.ev.get("fid")
            nchw = lambda x: torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)  # noqa: E731
            # uint8 is read as x / 255: what pytorch-fid's ToTensor() does to PNGs of these crops
            features["fid_fake"] = inception_features(nchw(a), model).astype(np.float32)
            features["fid_real"] = gt.per_frame("fid", METRIC_WEIGHTS["fid"], it, lambda idx: inception_features(
                nchw(gt_crops.frames[idx]), model)).astype(np.float32)
        if "fid_eat" in self.names:
            from metrics.fid_eat import eat_fid_features, eat_fid_frames

            pick = eat_fid_frames(len(a))
            model = self.ev.get("fid_eat")
            features["fid_eat_fake"] = eat_fid_features(a[pick], model).astype(np.float32)
            features["fid_eat_real"] = gt.per_frame("fid_eat", METRIC_WEIGHTS["fid_eat"], it[pick], lambda idx: (
                eat_fid_features(gt_crops.frames[idx], model))).astype(np.float32)
        if features:
            self._save_features(gt.case.name, features)
            for n in ("fid", "fid_eat"):
                if n in self.names:
                    scores[n] = None  # set-level: no per-clip value; see aggregate_set

    def _score_identity_pose(self, frames, gen, gt: GroundTruthClip, gt_crops, ig, it, scores) -> None:
        if "csim" in self.names:
            from metrics.functional.identity import csim_per_frame, embed

            embedder = self.ev.get("arcface")
            # the GT clip's first face is the identity reference
            src = gt.per_frame("arcface-source", METRIC_WEIGHTS["csim"], [0], lambda idx: embed(
                embedder, gt.frames[gt_crops.kept[idx]], _five_points(gt_crops.boxes[idx])))
            generated = embed(embedder, frames[gen.kept], _five_points(gen.boxes))
            scores["csim"] = float(np.mean(csim_per_frame(src, generated)))
        if "pose_err" in self.names:
            from metrics.functional.pose import pose_error

            estimator = self.ev.get("hopenet")
            pa = estimator(_pose_crops(frames[gen.kept[ig]], gen.boxes[ig]))
            pb = gt.per_frame("hopenet", METRIC_WEIGHTS["pose_err"], it, lambda idx: estimator(
                _pose_crops(gt.frames[gt_crops.kept[idx]], gt_crops.boxes[idx])))
            scores["pose_err"] = float(pose_error(pa, pb)["mean"])

    def _score_sync(self, case, frames, gt: GroundTruthClip, scores) -> dict:
        from benchmarks.media import probe_video, read_audio
        from metrics.crops import crop
        from metrics.sync import lse_from_distances, sync_distances

        path = video_for(self.videos, case.name)
        own = path is not None and probe_video(path, timing=False)["has_audio"]
        audio = read_audio(path, 16000) if own else gt.audio()
        # syncnet_python keeps tracks of more than 100 frames (4 s); a shorter clip would yield none, so the
        # track length is capped at the clip's own and the change recorded
        min_track = min(100, len(frames) - 1)
        result = crop(frames, "syncnet-track", min_track=min_track, weights=None)
        info = result.provenance()
        info["audio"] = "generated video's own" if own else "ground-truth speech (the video has none)"
        if min_track < 100:
            info["deviations"] = [*info["deviations"], f"min_track {min_track} instead of 100 (clip of "
                                  f"{len(frames)} frames; the reference drops clips under 4 s)"]
        if len(result.frames) < 6 or audio is None:
            scores["sync_conf"] = scores["lse_d"] = None
            return info
        bgr = np.ascontiguousarray(result.frames[..., ::-1])  # syncnet_python reads frames with OpenCV
        a = audio[int(result.kept[0] * 640):]
        r = lse_from_distances(sync_distances(self.ev.get("syncnet"), bgr, a, 16000))
        scores["sync_conf"], scores["lse_d"], scores["av_offset"] = r["lse_c"], r["lse_d"], r["offset"]
        return info

    def _score_emotion(self, case, frames, scores) -> dict:
        from metrics.crops import crop
        from metrics.functional.emotion import EMOTIONS

        result = crop(frames, "emotion-chip", weights=self.ev.path("dlib-5"))
        if not len(result.frames):
            scores["acc_emo"] = None
            return result.provenance()
        logits = np.asarray(self.ev.get("emotion")(result.frames), np.float64)
        predicted = EMOTIONS[int(np.argmax(logits))]
        scores["acc_emo"] = float(predicted == case.info["emotion"])
        scores["emotion_predicted"] = predicted
        return result.provenance()

    # --- features (set-level state) ---------------------------------------------------------------------

    def _feature_path(self, name: str) -> Path:
        return self.features_dir / f"{SAFE_NAME.sub('_', name)}.npz"

    def _save_features(self, name: str, features: dict) -> None:
        from metrics.utils import atomic_write

        self.features_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(self._feature_path(name), lambda f: np.savez(f, **features))

    def _load_features(self, name: str, key: str) -> np.ndarray | None:
        p = self._feature_path(name)
        if not p.is_file():
            raise UserError(f"{p}: the features of case {name!r} are missing though its row is done; delete the "
                            "case's line from the .rows.jsonl (or the whole file) and re-run to recompute it")
        with np.load(p) as z:
            return z[key].astype(np.float64) if key in z.files else None

    # --- aggregation --------------------------------------------------------------------------------------

    def aggregate_set(self, name: str, rows: list[dict]) -> dict:
        """FID over every clip's features, with a percentile CI from resampling clips (`fid_resamples`)."""
        clips = []
        for r in sorted(rows, key=lambda r: r["case"]):
            fake = self._load_features(r["case"], f"{name}_fake") if r.get("extra", {}).get("pairs") else None
            if fake is not None:
                clips.append((fake, self._load_features(r["case"], f"{name}_real")))

        def fid_of(weights) -> float:
            sides = [np.concatenate([np.repeat(c[side], w, axis=0) for w, c in zip(weights, clips, strict=True) if w])
                     for side in (0, 1)]
            return sample_fid(sides[0], sides[1])

        n_images = sum(len(c[0]) for c in clips)
        out = {"mean": None, "ci_low": None, "ci_high": None, "n": len(clips), "n_images": n_images,
               "n_invalid": len(rows) - len(clips), "higher_is_better": False, "level": "set"}
        if len(clips) == 0 or n_images < 2:
            return out
        out["mean"] = fid_of(np.ones(len(clips), np.int64))
        seed = int(self.proto.aggregation.get("bootstrap_seed", 0))
        rng = np.random.default_rng(seed)
        boot = [fid_of(np.bincount(rng.integers(0, len(clips), len(clips)), minlength=len(clips)))
                for _ in range(self.fid_resamples if len(clips) > 1 else 0)]
        boot = np.array([b for b in boot if np.isfinite(b)])
        if len(boot):
            out["ci_low"], out["ci_high"] = float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))
        out["ci"] = f"95% percentile bootstrap over clips, {self.fid_resamples} resamples"
        if n_images < 2048:
            out["note"] = f"{n_images} images per side (< 2048): singular covariances, biased upwards"
        return out

    def reference_aggregates(self, rows: list[dict]) -> dict:
        """The numbers as EAT's scripts aggregate them: PSNR/SSIM (and LPIPS) pooled over all frame pairs of
        all videos; M-LMD/F-LMD the mean over videos of per-video means (videos without a valid frame skipped)."""
        out = {}
        paired = [r for r in rows if r.get("extra", {}).get("pairs")]
        pairs = sum(r["extra"]["pairs"] for r in paired)
        for n in ("psnr", "ssim", "lpips"):
            if n in self.names and pairs:
                total = sum(r["extra"][f"{n}_sum"] for r in paired)
                out[n] = {"value": float(total / pairs) if np.isfinite(total) else None, "frame_pairs": pairs,
                          "aggregation": "pooled over every frame pair of every video (EAT test_psnr_ssim.py)"}
                if not np.isfinite(total):
                    out[n]["note"] = "identical frames (infinite PSNR): the generated video equals the GT"
        for n in ("m_lmd", "f_lmd"):
            if n in self.names:
                vals = [r["scores"][n] for r in rows if r["scores"].get(n) is not None]
                out[n] = {"value": float(np.mean(vals)) if vals else None, "videos": len(vals),
                          "aggregation": "per-video mean, then mean over videos (EAT test_lmd.py)"}
        return out

    def provenance(self, rows: list[dict]) -> dict:
        """Per metric: crop style, detector, evaluator weights (sha256), deviations, dropped frames/videos."""
        crop_of = {n: "eat-aligned" for n in ALIGNED}
        crop_of.update({"sync_conf": "syncnet-track", "lse_d": "syncnet-track", "acc_emo": "emotion-chip"})
        out = {}
        for n in self.names:
            style = crop_of[n]
            records = [r["extra"]["crops"].get(style, {}) for r in rows if "crops" in r.get("extra", {})]
            sides = [side for rec in records for side in (rec.get("generated", rec), rec.get("ground_truth"))
                     if side]
            deviations = sorted({d for side in sides for d in side.get("deviations", [])})
            if self.eat_roundtrip and style == "eat-aligned":
                deviations = [d for d in deviations if "mp4v" not in d]
            out[n] = {"crop": style, "detector": sorted({s.get("detector", "") for s in sides}),
                      "weights": {k: self.ev.files.get(k, {}) for k in METRIC_WEIGHTS[n]},
                      "deviations": deviations,
                      "dropped_frames": int(sum(s.get("dropped", 0) for s in sides)),
                      "dropped_videos": int(sum(1 for r in rows if r["scores"].get(n) is None)) if n not in (
                          "fid", "fid_eat") else int(sum(1 for r in rows if not r.get("extra", {}).get("pairs"))),
                      "crop_encoding": ("mp4v round trip (EAT's shipped pipeline)" if self.eat_roundtrip
                                        else "lossless") if style == "eat-aligned" else None}
        return out


def evaluate_real(proto: Protocol, out, *, videos, data, metrics=None, device=None, progress: bool = True,
                  lists=None, eat_roundtrip: bool = False, verify_weights: bool = True,
                  fid_resamples: int = 20, gt_cache="auto") -> dict:
    """Score the folder `videos` (one `<case>.mp4` per test case) against the GT clips under `data`.

    Checked before any clip is read, each as one line: the data root and its missing clips, the cases
    missing from `videos`, and every evaluator weight file the metrics need (naming its key and
    `edtalk weights fetch KEY`). Resumable through the engine's `<out>.rows.jsonl`. `gt_cache`: where the
    ground truth's crops and evaluator outputs are kept for the next method's evaluation ("auto": `gt-cache`
    in the parent of the output's folder, so methods evaluated side by side share it; None: not cached).
    """
    from benchmarks.protocols.engine import evaluate, folder_method

    if data is None:
        raise InputError(f"protocol {proto.name!r} scores against {proto.data.upper()}: pass --data ROOT (the "
                         f"{proto.data.upper()} root, raw or cropped by `edtalk data crop`)")
    names = list(metrics or proto.metric_names)
    for n in names:
        proto.metric(n)
    cases, gt = real_cases(proto, data, lists)
    check_videos(videos, cases)
    ev = RealEvaluators(device=device, verify=verify_weights)
    ev.require(names)
    out = Path(out)
    if gt_cache == "auto":
        gt_cache = out.resolve().parent.parent / "gt-cache"
    scorer = RealScorer(proto, names, gt, videos, ev, out.with_name(out.name + ".features"),
                        eat_roundtrip=eat_roundtrip, fid_resamples=fid_resamples, gt_cache=gt_cache, data_root=data)
    method = folder_method(videos, fps=proto.fps, fps_policy=proto.fps_policy)
    info = {"kind": "videos", "name": Path(videos).name, "path": str(Path(videos).resolve())}
    config = {"data": str(Path(data).resolve()), "lists": str(Path(lists).resolve()) if lists else "bundled",
              "eat_crop_encoding": "mp4v round trip" if eat_roundtrip else "lossless",
              "weights_verified": verify_weights, "fid_resamples": fid_resamples}
    weights = {"verified_against_manifest": verify_weights, "files": ev.files}
    results = evaluate(proto, method, cases, scorer, out, metrics=names, method_info=info, config=config,
                       seeds={"bootstrap": proto.aggregation.get("bootstrap_seed", 0)},
                       evaluator_weights=weights, progress=progress)
    from metrics.utils import atomic_write_json

    # outside the rows' key: where the GT work came from changes no number
    results["ground_truth_cache"] = scorer.gt_side.stats()
    if method.conversions:  # type: ignore[attr-defined]
        results["input_conversions"] = dict(method.conversions)  # type: ignore[attr-defined]
    atomic_write_json(out, results)
    return results

"""Every metric as a function, at the top as in torchmetrics.functional: `from metrics import functional as F`.

    F.psnr(pred, target)              F.ssim(pred, target)          F.lpips(a, b)
    F.frechet_inception_distance      F.csim(source, generated)     F.landmark_distance(pred, target)
    F.emotion_accuracy(pred, labels)  F.pose_error(pred, target)    F.lse(frames, audio, weights=...)
    F.transfer_errors / F.leakage_matrix / F.bank_geometry          (disentanglement, from measured factors)

Importing this package loads numpy and scipy, not torch: the functions that run a network import it
when called, so the CLI's start-up stays cheap.
"""
from metrics.disentanglement import (
    bank_geometry,
    identity_across_outputs,
    identity_preservation,
    leakage_matrix,
    transfer_errors,
)
from metrics.functional.emotion import accuracy_from_confusion, confusion_matrix, emotion_accuracy
from metrics.functional.fid import frechet_inception_distance, inception_features
from metrics.functional.identity import align_faces, cosine_similarity, csim, csim_per_frame, embed
from metrics.functional.image import fid_from_features, frechet_distance, psnr, psnr_per_frame, ssim, ssim_per_frame
from metrics.functional.landmarks import landmark_distance, landmark_distance_per_frame, pair_indices
from metrics.functional.lpips import load_lpips, lpips, lpips_per_pair
from metrics.functional.pose import pose_error
from metrics.functional.sync import lse

__all__ = [
    "accuracy_from_confusion", "align_faces", "bank_geometry", "confusion_matrix", "cosine_similarity", "csim",
    "csim_per_frame", "embed", "emotion_accuracy", "fid_from_features", "frechet_distance",
    "frechet_inception_distance", "identity_across_outputs", "identity_preservation", "inception_features",
    "landmark_distance", "landmark_distance_per_frame", "leakage_matrix", "load_lpips", "lpips", "lpips_per_pair",
    "lse", "pair_indices", "pose_error", "psnr", "psnr_per_frame", "ssim", "ssim_per_frame", "transfer_errors",
]

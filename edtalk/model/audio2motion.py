"""EDTalk-A: speech → (mouth, pose, expression) coefficients, the three predictors in one object.

- mouth: the model package's `Audio2Lip` (Wav2Lip audio encoder on 80×16 mel windows →
  Linear(512, 20)), or the paper's "w/o Bank" variant (→ a 512-d mouth latent);
- pose: `PoseFlow`, the conditional normalizing flow (sampled with a seed and a temperature);
- expression: `ExpressionPredictor`, one 10-d vector per utterance from pluggable speech features.

Also here: the release's temporal smoothing of lip weights and the SyncNet-expert sync loss used
to train the mouth predictor (Wav2Lip's BCE on cosine similarity, paper.md §2.4).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError

from .audio import Audio2Lip
from .expression_predictor import ExpressionPredictor, SpeechFeatureExtractor, build_extractor
from .pose_flow import PoseFlow, PoseFlowConfig, mel_window_stats

__all__ = [
    "RELEASE_SMOOTHING",
    "smooth_coefficients",
    "AudioToCoefficients",
    "build_mouth_predictor",
    "SyncLoss",
    "Audio2MotionConfig",
    "Audio2Motion",
    "POSE_SAMPLING",
    "add_animate_arguments",
    "resolve_pose_sampling",
    "audio_windows",
    "drive_from_audio",
    "render_coefficients",
]

#: The release's lip-weight smoothing: Gaussian, kernel 3, σ=1 (paper.md §1.5a); the same numbers
#: `edtalk.animate` uses, written out here so this module does not import the inference package.
RELEASE_SMOOTHING = (0.274068619061197, 0.451862761877606, 0.274068619061197)
POSE_SAMPLING = ("flow", "source", "video")


def smooth_coefficients(x: torch.Tensor, kernel: tuple[float, ...] = RELEASE_SMOOTHING) -> torch.Tensor:
    """Temporal smoothing of per-frame coefficients (T,C) or (B,T,C); edges are replicate-padded so the
    first and last frames are not pulled towards zero."""
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(0)
    k = torch.as_tensor(kernel, dtype=x.dtype, device=x.device)
    pad = (len(kernel) - 1) // 2
    b, t, c = x.shape
    xc = x.permute(0, 2, 1).reshape(b * c, 1, t)
    xc = F.pad(xc, (pad, pad), mode="replicate")
    y = F.conv1d(xc, k.view(1, 1, -1)).reshape(b, c, t).permute(0, 2, 1)
    return y[0] if squeeze else y


# The mouth predictor is the model package's Audio2Lip (Wav2Lip encoder → Linear(512, n)): keys
# `audio_encoder.*` and `mapping.*` as in the release, so `Audio2Lip.pt` loads into it unchanged.
# n = 512 gives the "w/o Bank" ablation's predictor (release `Audio2Lip_nobank`).
AudioToCoefficients = Audio2Lip


def build_mouth_predictor(variant: str = "bank", n_mouth: int = 20) -> nn.Module:
    """The audio→mouth predictor with n_mouth outputs: variant "bank" predicts lip-bank weights;
    "no-bank" (the paper's w/o Bank) predicts the mouth motion latent itself, which is what the
    mouth head of a model trained without a mouth bank outputs (n_mouth = its latent size)."""
    if variant not in ("bank", "no-bank"):
        raise InputError(f"unknown mouth predictor variant {variant!r}; use 'bank' or 'no-bank'")
    return AudioToCoefficients(n_mouth)


class SyncLoss(nn.Module):
    """Wav2Lip's expert sync loss: BCE(cos(a, v), 1) with a frozen SyncNet.

    `expert` has the syncnet_python interface: `forward_aud(audio) -> (B, D)` and
    `forward_lip(video) -> (B, D)` (any input layout the expert defines; the caller prepares it, e.g.
    the lower half of 5 consecutive frames and the matching mel window). Cosine similarity is
    clamped into (0, 1) as Wav2Lip does (ReLU'd embeddings make it non-negative there).
    `agreement` is the mean similarity: high when audio and mouth are in sync.
    """

    def __init__(self, expert: nn.Module):
        super().__init__()
        for name in ("forward_aud", "forward_lip"):
            if not callable(getattr(expert, name, None)):
                raise InputError(
                    f"sync expert {type(expert).__name__} has no {name}(); a SyncNet with the "
                    "syncnet_python interface (forward_aud, forward_lip) is required"
                )
        self.expert = expert.eval()
        for p in self.expert.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True):  # the expert stays frozen in eval mode (BN statistics)
        super().train(mode)
        self.expert.eval()
        return self

    def similarity(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        a = F.normalize(self.expert.forward_aud(audio).flatten(1), dim=1)
        v = F.normalize(self.expert.forward_lip(video).flatten(1), dim=1)
        return (a * v).sum(1)

    def agreement(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        return self.similarity(audio, video).mean()

    def forward(self, audio: torch.Tensor, video: torch.Tensor) -> torch.Tensor:
        p = self.similarity(audio, video).clamp(1e-6, 1 - 1e-6)
        return F.binary_cross_entropy(p, torch.ones_like(p))


@dataclass
class Audio2MotionConfig:
    mouth_variant: str = "bank"  # "bank" | "no-bank" (then n_mouth = the model's latent size)
    n_mouth: int = 20
    pose: dict = field(default_factory=lambda: asdict(PoseFlowConfig()))
    expression: dict = field(
        default_factory=lambda: {
            "in_dim": 258,
            "n_exp": 10,
            "n_emotions": 8,
            "hidden": 256,
            "dropout": 0.2,
            "extractor": "offline-stats",
        }
    )
    smoothing: tuple = RELEASE_SMOOTHING


class Audio2Motion(nn.Module):
    """The three audio predictors; `predict` turns one utterance into per-frame coefficients."""

    FORMAT = "edtalk-bench/audio2motion@1"

    def __init__(self, cfg: Audio2MotionConfig | None = None, with_mouth: bool = True):
        super().__init__()
        self.cfg = cfg or Audio2MotionConfig()
        self.mouth = build_mouth_predictor(self.cfg.mouth_variant, self.cfg.n_mouth) if with_mouth else None
        self.pose_flow = PoseFlow(PoseFlowConfig(**self.cfg.pose))
        self.expression = ExpressionPredictor(**self.cfg.expression)
        # which predictors hold trained weights (a stage run with --parts may train only some)
        self.trained_parts: tuple[str, ...] = (
            ("mouth", "pose", "expression") if with_mouth else ("pose", "expression")
        )

    def _require(self, part: str, what: str) -> None:
        if part not in self.trained_parts:
            raise MissingWeightsError(
                f"this audio-to-motion checkpoint has no trained {what}; train it with "
                f"`edtalk train --stage audio --parts {part}`"
            )

    # -- persistence ------------------------------------------------------------------------------
    def checkpoint(self, **extra: Any) -> dict:
        return {"format": self.FORMAT, "config": asdict(self.cfg), "state_dict": self.state_dict(), **extra}

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: Any = "cpu") -> Audio2Motion:
        if not os.path.exists(path):
            raise MissingWeightsError(
                f"audio-to-motion checkpoint {path} not found; train it with "
                "`edtalk train --stage audio` or pass --audio2motion PATH"
            )
        try:
            # weights_only: a checkpoint is data; never run code from a downloaded or shared file
            ckpt = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:
            raise CheckpointMismatchError(
                f"{path}: not a readable torch checkpoint ({exc.__class__.__name__})"
            ) from None
        if not isinstance(ckpt, dict) or ckpt.get("format") != cls.FORMAT:
            raise CheckpointMismatchError(
                f"{path}: not an audio-to-motion checkpoint (format "
                f"{ckpt.get('format') if isinstance(ckpt, dict) else type(ckpt).__name__!r}, "
                f"expected {cls.FORMAT!r})"
            )
        cfg = dict(ckpt["config"])
        cfg["smoothing"] = tuple(cfg.get("smoothing", RELEASE_SMOOTHING))
        has_mouth = any(k.startswith("mouth.") for k in ckpt["state_dict"])
        model = cls(Audio2MotionConfig(**cfg), with_mouth=has_mouth)
        model.trained_parts = tuple(ckpt.get("trained_parts", ("mouth", "pose", "expression")))
        missing, unexpected = model.load_state_dict(ckpt["state_dict"], strict=False)
        if missing or unexpected:
            raise CheckpointMismatchError(
                f"{path}: weights do not match the saved config "
                f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
            )
        return model.eval()

    # -- inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def predict_mouth(self, mel_windows: torch.Tensor, smooth: bool = True, batch: int = 256) -> torch.Tensor:
        """(T,80,16) mel windows → (T, n_mouth) lip weights (or (T, 512) latents for no-bank)."""
        if self.mouth is None:
            raise MissingWeightsError(
                "this audio-to-motion checkpoint has no mouth predictor; "
                "train it with `edtalk train --stage audio --parts mouth`"
            )
        self._require("mouth", "mouth predictor")
        if mel_windows.dim() != 3 or tuple(mel_windows.shape[1:]) != (80, 16):
            raise InputError(f"mel windows: expected (T, 80, 16), got {tuple(mel_windows.shape)}")
        outs = [
            self.mouth(mel_windows[i : i + batch].unsqueeze(1)) for i in range(0, len(mel_windows), batch)
        ]
        out = torch.cat(outs).reshape(len(mel_windows), -1)
        return smooth_coefficients(out, self.cfg.smoothing) if smooth else out

    @torch.no_grad()
    def predict_pose(
        self,
        mel_windows: torch.Tensor,
        sampling: str = "flow",
        source_pose: torch.Tensor | None = None,
        video_pose: torch.Tensor | None = None,
        temperature: float = 0.7,
        seed: int | None = 0,
    ) -> torch.Tensor:
        """(T, n_pose) pose coefficients.

        flow: sampled from the flow, primed with the source pose when given; source: the source
        image's pose held still; video: a driving video's per-frame poses (trimmed / last frame held).
        """
        t = mel_windows.shape[0]
        if sampling == "flow":
            self._require("pose", "pose flow")
            feats = mel_window_stats(mel_windows).unsqueeze(0)
            init = source_pose.reshape(1, -1) if source_pose is not None else None
            return self.pose_flow.sample(feats, temperature=temperature, seed=seed, init=init)[0]
        if sampling == "source":
            if source_pose is None:
                raise InputError("--pose-sampling source needs the source image's pose coefficients")
            return source_pose.reshape(1, -1).expand(t, -1).clone()
        if sampling == "video":
            if video_pose is None:
                raise InputError("--pose-sampling video needs a pose driving video (--pose VIDEO)")
            return _fit_length(video_pose, t)
        raise InputError(f"--pose-sampling must be one of {', '.join(POSE_SAMPLING)}, not {sampling!r}")

    @torch.no_grad()
    def predict_expression(
        self,
        wav: np.ndarray | None = None,
        key: str | None = None,
        extractor: SpeechFeatureExtractor | None = None,
    ) -> torch.Tensor:
        """One (n_exp,) expression vector for the utterance."""
        self._require("expression", "expression predictor")
        extractor = extractor or build_extractor(self.expression.extractor)
        if extractor.dim != self.expression.in_dim:
            raise InputError(
                f"expression features have {extractor.dim} dims but the predictor was trained on "
                f"{self.expression.in_dim} ('{self.expression.extractor}')"
            )
        feats = torch.from_numpy(extractor(wav, 16000, key)).float().unsqueeze(0)
        return self.expression(feats.to(self.expression.feat_mean.device))[0]


# ----------------------------------------------------------------------------------------------------
# audio-driven animation (used by `edtalk animate --audio`)
# ----------------------------------------------------------------------------------------------------
def add_animate_arguments(parser) -> None:
    """The audio-to-motion options of `edtalk animate --audio WAV`."""
    g = parser.add_argument_group("audio-driven pose and expression (EDTalk-A)")
    g.add_argument(
        "--audio2motion",
        default=None,
        metavar="PATH",
        help="audio-to-motion checkpoint from `edtalk train --stage audio` (RUN/audio/audio2motion.pt)",
    )
    g.add_argument(
        "--pose-sampling",
        choices=POSE_SAMPLING,
        default=None,
        help="head pose with --audio: flow (sampled from speech), source (held still), video (from "
        "--pose). Default: video if --pose is given, flow if --audio2motion is given, else source",
    )
    g.add_argument(
        "--pose-temperature",
        type=float,
        default=0.7,
        help="flow sampling temperature: 0 = the most likely motion, 1 = full diversity (default 0.7)",
    )
    g.add_argument("--pose-seed", type=int, default=0, help="flow sampling seed (same seed, same motion)")


def resolve_pose_sampling(pose_sampling: str | None, has_pose_video: bool, has_audio2motion: bool) -> str:
    """The default rule of --pose-sampling, and its consistency checks."""
    if pose_sampling is None:
        return "video" if has_pose_video else ("flow" if has_audio2motion else "source")
    if pose_sampling == "flow" and not has_audio2motion:
        raise MissingWeightsError(
            "--pose-sampling flow needs --audio2motion PATH (train it with `edtalk train --stage audio`)"
        )
    if pose_sampling == "video" and not has_pose_video:
        raise InputError("--pose-sampling video needs a pose driving video (--pose VIDEO)")
    return pose_sampling


def audio_windows(wav: np.ndarray, fps: float = 25.0) -> torch.Tensor:
    """Wav2Lip mel windows (T,80,16) for a 16 kHz waveform, T = whole video frames it covers."""
    from edtalk.audio_features import mel_windows, melspectrogram

    wav = np.asarray(wav, dtype=np.float32).reshape(-1)
    n_frames = int(len(wav) / 16000 * fps)
    if n_frames < 1:
        raise InputError(
            f"the audio is {len(wav) / 16000:.3f} s long: shorter than one video frame at {fps} fps"
        )
    return torch.from_numpy(np.asarray(mel_windows(melspectrogram(wav), n_frames, fps=fps), dtype=np.float32))


@torch.no_grad()
def _frame_coefficients(model, frames: torch.Tensor, key: str, batch: int = 16) -> torch.Tensor:
    out = []
    for i in range(0, len(frames), batch):
        latent, _ = model.encode(frames[i : i + batch])
        out.append(model.coefficients(latent)[key])
    return torch.cat(out)


@torch.no_grad()
def drive_from_audio(
    model,
    source: torch.Tensor,
    wav: np.ndarray,
    a2m: Audio2Motion | None = None,
    pose_sampling: str | None = None,
    pose_frames: torch.Tensor | None = None,
    mouth_coeffs: torch.Tensor | None = None,
    expression_coeffs: torch.Tensor | None = None,
    temperature: float = 0.7,
    seed: int | None = 0,
    fps: float = 25.0,
    batch: int = 16,
    mel_windows: torch.Tensor | None = None,
    expression_extractor: SpeechFeatureExtractor | None = None,
    expression_key: str | None = None,
) -> dict[str, torch.Tensor | None]:
    """Per-frame coefficients for an audio-driven animation of `source` (1,3,H,W in [-1,1]).

    mouth: `mouth_coeffs` if given (e.g. the official Audio2Lip's output), else the audio-to-motion
    mouth predictor; pose: by `pose_sampling` (flow | source | video, see `resolve_pose_sampling`);
    expression: `expression_coeffs` if given (a driving video's or a predefined vector), else the
    utterance-level predictor, else None (rendering then keeps the source's own expression).
    Returns tensors on the model's device: mouth (T,n_m), pose (T,n_p), expression (T,n_e) or None.
    `mel_windows` (T,80,16) may be passed when already computed from `wav`. `expression_extractor`
    and `expression_key` select the speech features the expression predictor was trained on
    (default: its built-in kind).
    """
    sampling = resolve_pose_sampling(pose_sampling, pose_frames is not None, a2m is not None)
    dev = source.device
    mel = (mel_windows if mel_windows is not None else audio_windows(wav, fps)).to(dev)
    t = mel.shape[0]
    if mouth_coeffs is None:
        if a2m is None or a2m.mouth is None or "mouth" not in a2m.trained_parts:
            raise MissingWeightsError(
                "audio-driven mouth needs an audio-to-lip model: --audio2motion PATH "
                "(with a mouth part) or the official Audio2Lip checkpoint"
            )
        mouth_coeffs = a2m.predict_mouth(mel)
    mouth_coeffs = mouth_coeffs[:t].to(dev)
    t = min(t, len(mouth_coeffs))
    source_pose = _frame_coefficients(model, source, "pose")[0]
    video_pose = (
        _frame_coefficients(model, pose_frames.to(dev), "pose", batch) if pose_frames is not None else None
    )
    if a2m is not None:
        pose = a2m.predict_pose(
            mel[:t],
            sampling,
            source_pose=source_pose,
            video_pose=video_pose,
            temperature=temperature,
            seed=seed,
        )
    elif sampling == "source":
        pose = source_pose.reshape(1, -1).expand(t, -1).clone()
    else:  # video
        pose = _fit_length(video_pose, t)
    expression = None
    if expression_coeffs is not None:
        expression = _fit_length(expression_coeffs.to(dev).reshape(-1, expression_coeffs.shape[-1]), t)
    elif a2m is not None and "expression" in a2m.trained_parts:
        expression = (
            a2m.predict_expression(wav, key=expression_key, extractor=expression_extractor)
            .to(dev)
            .reshape(1, -1)
            .expand(t, -1)
        )
    return {"mouth": mouth_coeffs[:t], "pose": pose[:t].to(dev), "expression": expression}


def _fit_length(x: torch.Tensor, t: int) -> torch.Tensor:
    """First t rows; a shorter driver holds its last row (one row = a constant driver)."""
    if len(x) >= t:
        return x[:t]
    return torch.cat([x, x[-1:].expand(t - len(x), -1)])


@torch.no_grad()
def render_coefficients(
    model,
    source: torch.Tensor,
    coeffs: dict[str, torch.Tensor | None],
    batch: int = 16,
    progress: bool = True,
) -> torch.Tensor:
    """Decode `source` under per-frame coefficients → frames (T,3,H,W) in [-1,1], batched.

    A factor given as None (or absent) takes the source's own coefficients, as `edtalk.animate` does.
    """
    from tqdm import tqdm

    latent, feats = model.encode(source)
    own = model.coefficients(latent)
    t = len(coeffs["mouth"])
    out = []
    for i in tqdm(
        range(0, t, batch), desc="animate (audio)", unit="batch", disable=not progress, leave=False
    ):
        n = min(batch, t - i)
        chunk = {k: v[i : i + n] for k, v in coeffs.items() if v is not None}
        chunk.update({k: v.expand(n, -1) for k, v in own.items() if chunk.get(k) is None})
        d, e = model.compose(chunk)
        out.append(model.decode(latent.expand(n, -1), d, [f.expand(n, *f.shape[1:]) for f in feats], e))
    return torch.cat(out)

"""Named, versioned evaluation protocols, defined as data.

A protocol fixes everything that changes a number: which data and split, which crop each metric
sees, the frame rate and what happens to clips at another rate, how audio is handled, which
metrics run, and how per-sample scores are aggregated. Results record the resolved protocol, so a
table can always say exactly what it measured. `get_protocol` suggests the closest name on a typo.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field
from typing import Any

from metrics.errors import InputError, suggest


@dataclass(frozen=True)
class MetricSpec:
    """One metric as the protocol runs it: which crop it sees and which evaluator computes it."""

    name: str
    higher_is_better: bool
    crop: str = "full"            # full | face | mouth (synthetic world); real data: a metrics.crops style name
    evaluator: str = "reference"  # reference = formula on GT frames; otherwise the evaluator net it needs
    level: str = "clip"           # clip: one score per clip; set: one score for the whole test set (FID)


@dataclass(frozen=True)
class Protocol:
    name: str
    version: str
    description: str
    data: str                     # "synthetic" (built-in world) | "mead" | "hdtf" (user-supplied)
    split: str                    # which clips are test cases
    fps: float = 25.0
    fps_policy: str = "refuse"    # refuse | resample: what happens to a video at another rate
    size: int = 256
    audio: dict[str, Any] = field(default_factory=lambda: {"sample_rate": 16000, "channels": "downmix-mono",
                                                          "length_rule": "trim video to audio (Wav2Lip/EAT)"})
    setting: str = "self-reenactment"  # the source is the clip's first frame; drivers come from the same clip
    metrics: tuple[MetricSpec, ...] = ()
    aggregation: dict[str, Any] = field(default_factory=lambda: {
        "per_clip": "mean over frames", "over_clips": "mean", "ci": "95% percentile bootstrap over clips",
        "bootstrap_resamples": 2000, "bootstrap_seed": 0})
    max_clips: int | None = None  # a cap applied after the split's deterministic order
    requires: tuple[str, ...] = ()  # what a user must supply (data root, evaluator weights)
    reference: str = ""
    # The cross-driving study of a synthetic protocol (metrics.disentanglement.evaluate_disentanglement): how many
    # (source, mouth, pose, expression) tuples, each driver trimmed to at most `max_frames` (None: the clips' length),
    # and the leakage reference ("reader": the world's render of the truth, read by the same readers).
    cross_driving: dict[str, Any] = field(default_factory=lambda: {"tuples": 6, "max_frames": None,
                                                                   "reference": "reader"})

    @property
    def metric_names(self) -> list[str]:
        return [m.name for m in self.metrics]

    def metric(self, name: str) -> MetricSpec:
        for m in self.metrics:
            if m.name == name:
                return m
        raise InputError(f"protocol {self.name!r} has no metric {name!r}; it has {self.metric_names}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["id"] = f"{self.name}@{self.version}"
        return d


def _synthetic_metrics() -> tuple[MetricSpec, ...]:
    return (
        MetricSpec("psnr", True),
        MetricSpec("ssim", True),
        # The built-in world knows the true mouth/pose/expression of every frame; in-project evaluator
        # nets (benchmarks/evaluators) read them back from generated frames.
        MetricSpec("m_lmd", False, crop="full", evaluator="synthetic-landmarks"),
        MetricSpec("f_lmd", False, crop="full", evaluator="synthetic-landmarks"),
        MetricSpec("pose_err", False, evaluator="synthetic-pose"),
        MetricSpec("acc_emo", True, evaluator="synthetic-emotion"),
        MetricSpec("sync_conf", True, crop="mouth", evaluator="synthetic-syncnet"),
    )


def _real_metrics(with_emotion: bool) -> tuple[MetricSpec, ...]:
    # crop: the metrics.crops style each metric's reference implementation sees (benchmarks.protocols.real)
    m = [
        MetricSpec("psnr", True, crop="eat-aligned"),
        MetricSpec("ssim", True, crop="eat-aligned"),
        MetricSpec("m_lmd", False, crop="eat-aligned", evaluator="dlib-68"),
        MetricSpec("f_lmd", False, crop="eat-aligned", evaluator="dlib-68"),
        MetricSpec("fid", False, crop="eat-aligned", evaluator="inception-fid", level="set"),
        MetricSpec("fid_eat", False, crop="eat-aligned", evaluator="inception-v3-torchvision", level="set"),
        MetricSpec("sync_conf", True, crop="syncnet-track", evaluator="syncnet-v2"),
        MetricSpec("lse_d", False, crop="syncnet-track", evaluator="syncnet-v2"),
    ]
    if with_emotion:
        m.append(MetricSpec("acc_emo", True, crop="emotion-chip", evaluator="emotion-fan-mead"))
    m += [MetricSpec("lpips", False, crop="eat-aligned", evaluator="alexnet-lpips"),
          MetricSpec("csim", True, crop="eat-aligned", evaluator="arcface-r50"),
          MetricSpec("pose_err", False, crop="eat-aligned", evaluator="hopenet")]
    return tuple(m)


PROTOCOLS: dict[str, Protocol] = {p.name: p for p in [
    Protocol("synthetic-smoke", "1", "built-in synthetic world, smoke preset: a few test clips, quick CIs",
             data="synthetic", split="test", size=64, max_clips=8, metrics=_synthetic_metrics(),
             # 4 short tuples: each costs 4 model calls plus 16 renders of the truth, and the smoke loop has 15 minutes
             cross_driving={"tuples": 4, "max_frames": 25, "reference": "reader"},
             aggregation={"per_clip": "mean over frames", "over_clips": "mean",
                          "ci": "95% percentile bootstrap over clips", "bootstrap_resamples": 1000,
                          "bootstrap_seed": 0},
             reference="in-project evaluators trained on the synthetic world (benchmarks/evaluators)"),
    # 36 of the study world's 110 held-out clips (5 faces x 22: each emotion at each intensity). The cap keeps
    # every 3rd clip (synthetic_cases); 22 clips per face shift that stride by one clip per face, so the 36
    # cover all 22 emotion x intensity pairs across the 5 faces (a stride of 2 would never reach neutral).
    # @2: the leakage reference is read by the same readers from the world's render of the truth (was the drivers'
    # ground truth, which capped a perfect model's responsiveness at the readers' gain: mouth 0.40, expression
    # 0.57 on 4 tuples), over 8 whole-length tuples (was 4 of 25 frames: full's pose responsiveness read 0.39 on
    # 4 and 0.66 on 8).
    Protocol("synthetic-study", "2", "built-in synthetic world, study preset: 36 test clips of 5 held-out "
             "identities covering every emotion at every intensity", data="synthetic", split="test", size=64,
             max_clips=36, metrics=_synthetic_metrics(),
             cross_driving={"tuples": 8, "max_frames": None, "reference": "reader"},
             reference="in-project evaluators trained on the synthetic world (benchmarks/evaluators)"),
    Protocol("mead-edtalk", "1", "MEAD frontal test speakers M003/M030/W009/W015, EDTalk's official test list",
             data="mead", split="official test list, MEAD entries (bundled; --lists DIR overrides)",
             metrics=_real_metrics(True),
             requires=("MEAD root cropped with EDTalk's preprocessing (256x256, 25 fps)",
                       "evaluator weights: dlib-68, dlib-5, dlib-mmod, inception-fid, inception-v3-torchvision, "
                       "syncnet-v2, emotion-fan-mead, alexnet-lpips, arcface-r50, hopenet"),
             reference="EDTalk Table 1 (MEAD); LMD/Sync_conf/Acc_emo crops as in EAT's evaluation code"),
    Protocol("hdtf-edtalk", "1", "HDTF 77 test videos in 5-s segments, EDTalk's official test list",
             data="hdtf", split="official test list, HDTF entries (bundled; --lists DIR overrides)",
             metrics=_real_metrics(False),
             requires=("HDTF root cropped with EDTalk's preprocessing (256x256, 25 fps)",
                       "evaluator weights: dlib-68, inception-fid, inception-v3-torchvision, syncnet-v2, "
                       "alexnet-lpips, arcface-r50, hopenet"),
             reference="EDTalk Table 1 (HDTF); crops as in EAT's evaluation code"),
]}


def get_protocol(name: str | Protocol) -> Protocol:
    """The named protocol; an unknown name raises an InputError that suggests the closest one."""
    if isinstance(name, Protocol):
        return name
    if name in PROTOCOLS:
        return PROTOCOLS[name]
    base, _, version = str(name).partition("@")
    if base in PROTOCOLS:
        if version == PROTOCOLS[base].version:
            return PROTOCOLS[base]
        current = PROTOCOLS[base].version
        raise InputError(f"protocol {base!r} is at version {current}, not {version!r}: numbers from another "
                         f"version are not comparable; use {base!r} or {base}@{current}")
    raise InputError(f"unknown protocol {name!r}{suggest(base, PROTOCOLS, cutoff=0.3)}; "
                     f"known protocols: {', '.join(PROTOCOLS)}")


def list_protocols() -> list[Protocol]:
    return list(PROTOCOLS.values())


def resolved(protocol: Protocol, **changes: Any) -> dict[str, Any]:
    """The protocol as results record it (a deep copy, plus any caller-side changes such as a clip cap)."""
    d = copy.deepcopy(protocol.to_dict())
    d.update(changes)
    return d

"""Training configuration: losses, stages and the whole run (its presets: edtalk.presets).

One source of defaults for the CLI, nox and the sweep. The ablation switches are plain fields:
the model ones (orthogonal, mouth/pose/expression bank, eem) live on `TrainConfig.model`, a typed
`edtalk.config.ModelConfig`; the training ones (`cross_reconstruction`, `feature_loss`,
`joint_training`) live on `TrainConfig`. Overrides (a variant's row, a test's tweak) become a config
through `apply_overrides` alone, which checks them with `validate_overrides`: the one place the
switches are validated. paper.md §2 is the source for every number marked [C]/[S1].
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from edtalk.config import FACTORS, ModelConfig
from metrics.errors import InputError, suggest

STAGE_NAMES = ("autoencoder", "mouth_pose", "expression")  # stages 0, 1, 2


@dataclass
class LossConfig:
    """Loss weights. The released code weights every term 1 (paper.md §2.2); the paper's λ are unknown."""

    l1: float = 1.0
    perceptual: float = 1.0
    # "auto": VGG19 with ImageNet weights if they are in the cache, else the offline fallback
    # "random-vgg19" (a fixed, seeded, randomly initialised VGG19 trunk); "none" disables the term.
    perceptual_net: str = "auto"
    perceptual_scales: tuple[float, ...] = (1.0, 0.5, 0.25, 0.125)
    perceptual_layer_weight: float = 10.0  # FOMM/EDTalk VGGLoss weights each relu layer by 10
    perceptual_layers: int = 5  # relu1_1..relu5_1 as the paper; smoke uses 2 to fit 2 CPU cores
    gan: float = 1.0
    cross: float = 1.0  # weight of the cross-reconstruction L1+perceptual terms (stage 1)
    feature: float = 1.0  # L_fea, exp(-cos) on the mouth and pose directions (stage 1)
    # Extra L1 over the target's mouth box (its landmarks 48-67 ±margin, the box the stage-1 swap
    # pastes), as a mean over the box's pixels. 0 = the release (no such term). The mouth is a few
    # percent of the frame, so whole-frame losses barely see the jaw at low resolution; see the smoke
    # preset for the measured effect.
    mouth: float = 0.0


@dataclass
class StageConfig:
    """One stage of training: how long, how big, how fast, and which parameter groups train."""

    name: str
    iterations: int
    batch_size: int
    lr: float = 0.002  # base lr; G gets lr*4/5 and D lr*16/17 as in the released code (paper.md §2.1)
    trainable: tuple[str, ...] = ()
    use_gan: bool = True
    # Adam β1 of the generator. The release uses 0 (StyleGAN2's GAN setting); a reconstruction-only
    # stage converges much faster with momentum (smoke stage 0: 0.9, measured in its note).
    adam_beta1: float = 0.0
    # "constant" (the release) or "cosine": lr·½(1+cos(π·step/iterations)), annealed to 0 at the
    # stage's end. A short run stops far from a minimum with a constant rate; annealing the last
    # steps removes Adam's step noise from the weights (measured on the smoke world in its note).
    lr_schedule: str = "constant"


# Parameter groups (see edtalk.train.stages.parameter_groups).
ALL_GROUPS = ("encoder", "trunk", "mouth_head", "pose_head", "expression_head", "mouth_bank",
              "pose_bank", "expression_bank", "decoder", "eem")
# Stage 1 trains the whole lip/pose generator, as the released code does (its freezing lines are
# commented out; paper.md §2.6 item 2). Stage 2 trains only ELN (head + bank) and EEM, as the paper says.
STAGE_TRAINABLE = {
    "autoencoder": ("encoder", "trunk", "mouth_head", "pose_head", "mouth_bank", "pose_bank", "decoder"),
    "mouth_pose": ("encoder", "trunk", "mouth_head", "pose_head", "mouth_bank", "pose_bank", "decoder"),
    "expression": ("expression_head", "expression_bank", "eem"),
    "joint": ALL_GROUPS,
}


@dataclass
class TrainConfig:
    preset: str = "smoke"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)  # a preset (edtalk.presets) sets its size
    losses: LossConfig = field(default_factory=LossConfig)
    stages: list[StageConfig] = field(default_factory=list)
    # Ablation switches handled by the trainer (model switches are in `model`).
    cross_reconstruction: bool = True
    feature_loss: bool = True
    joint_training: bool = False
    # From-scratch initialisation of the decoder's flow heads: "identity" zeroes their modulated
    # conv weights so every flow starts as the identity warp (the image is first copied, then moved);
    # "release" keeps LIA's random init, whose random warps tear the face for hundreds of steps.
    flow_init: str = "identity"
    # "copy": the finest image path starts as a copy of the source (engine.copy_source_init), so the
    # untrained model outputs the source and learns motion as warps of a sharp image; "release":
    # LIA's random init (a from-scratch model is a blur for thousands of steps).
    image_path_init: str = "copy"
    # Data: a synthetic world directory, or None to generate one in memory (smoke-sized).
    data_identities: int = 6
    data_clips_per_identity: int = 3
    data_frames: int = 24
    # The end-of-training check (eval.json) drives at most this many held-out clips, spread over the held-out
    # identities (None: every one). The sweep's protocol scores the test clips anyway; the check is the run's
    # own sanity line, and on the study world's 110 held-out clips it took 3 of a run's 27 minutes.
    held_out_clips: int | None = None
    # Logging / checkpoints.
    log_every: int = 10
    checkpoint_every: int = 50
    sample_every: int = 100
    num_workers: int = 0
    variant: str = "full"

    def stage(self, name: str) -> StageConfig:
        for s in self.stages:
            if s.name == name:
                return s
        raise InputError(f"stage {name!r} is not in this config; stages: {[s.name for s in self.stages]}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        if "model" in d:
            d["model"] = ModelConfig(**d["model"])
        d["losses"] = LossConfig(**{**d.get("losses", {}),
                                    "perceptual_scales": tuple(d.get("losses", {}).get("perceptual_scales",
                                                                                       LossConfig.perceptual_scales))})
        d["stages"] = [StageConfig(**{**s, "trainable": tuple(s.get("trainable", ()))}) for s in d.get("stages", [])]
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"unknown training config fields {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], where: str = "overrides") -> TrainConfig:
    """Return a copy of `cfg` with `{"model": {...}, "losses": {...}, field: value}` applied, after
    `validate_overrides` has accepted them against `cfg`."""
    validate_overrides(overrides, where, cfg)
    d = cfg.to_dict()
    for key, value in overrides.items():
        d[key] = {**d[key], **value} if key in ("model", "losses") else value
    return TrainConfig.from_dict(d)


_MODEL_SWITCHES = ("orthogonal", "eem", "expression")
_TRAIN_SWITCHES = ("cross_reconstruction", "feature_loss", "joint_training")


def validate_overrides(overrides: dict[str, Any], where: str = "overrides", base: TrainConfig | None = None) -> None:
    """Refuse overrides the trainer would reject late or, worse, silently ignore; one InputError line.

    Checked against `base` (default: TrainConfig(); every preset has the same switches): field
    names (with a suggestion), boolean switches given as booleans, model values (ModelConfig's own
    checks, e.g. bank modes), and the combinations that make a switch meaningless:
    - `eem` on while `expression_bank` is "off" (or set on explicitly with `expression: false`): the
      EEM is driven by the expression direction, which is then zero;
    - `orthogonal` set while no bank is "bases": only "bases" banks are orthonormalised;
    - `cross_reconstruction` or `feature_loss` on while the mouth and pose banks are both "off": both
      work on mouth/pose motion swapped between frames, and there is none;
    - a loss switch turned on while its weight (`losses.cross` / `losses.feature`) is 0.
    `feature_loss` without `cross_reconstruction` is valid (L_fea only needs the swapped frames'
    coefficients) and is the `no-cross-reconstruction` variant.
    """
    base = base or TrainConfig()
    if not isinstance(overrides, dict):
        raise InputError(f"{where}: overrides must be a dict, got {type(overrides).__name__}")
    model, losses = overrides.get("model", {}) or {}, overrides.get("losses", {}) or {}
    for names, given, what in ((TrainConfig, overrides, "training config"), (ModelConfig, model, "model"),
                               (LossConfig, losses, "loss")):
        known = [f.name for f in dataclasses.fields(names)]
        for key in given:
            if key not in known:
                raise InputError(f"{where}: unknown {what} field {key!r}{suggest(key, known, cutoff=0.4)}")
    for key, value in [*((k, model[k]) for k in _MODEL_SWITCHES if k in model),
                       *((k, overrides[k]) for k in _TRAIN_SWITCHES if k in overrides)]:
        if not isinstance(value, bool):
            raise InputError(f"{where}: {key} must be true or false, not {value!r} ({type(value).__name__}); "
                             "a string such as 'false' would count as on")
    try:
        eff_model = dataclasses.replace(base.model, **model)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    _refuse_meaningless_switches(overrides, model, losses, eff_model, base, where)


def _refuse_meaningless_switches(overrides, model, losses, eff_model: ModelConfig, base: TrainConfig, where) -> None:
    eff = {k: overrides.get(k, getattr(base, k)) for k in _TRAIN_SWITCHES}
    modes = {f: eff_model.bank_mode(f) for f in FACTORS}
    touched = set(model) | set(overrides)
    # expression=false (the lip/pose-only generator) switches EEM off by itself (ModelConfig.uses_eem);
    # expression_bank='off' does not: EEM would then run on a zero direction.
    if eff_model.eem and (eff_model.expression_bank == "off" and touched & {"eem", "expression_bank"}
                          or not eff_model.expression and model.get("eem") is True):
        off = "expression_bank='off'" if eff_model.expression_bank == "off" else "expression=false"
        raise InputError(f"{where}: eem=true conflicts with {off}: the EEM is driven by the expression "
                         "direction, which is zero without an expression bank; set eem=false as well")
    if "orthogonal" in model and not any(m == "bases" for m in modes.values()):
        banks = ", ".join(f"{f}_bank={modes[f]!r}" for f in FACTORS)
        value = str(model["orthogonal"]).lower()
        raise InputError(f"{where}: orthogonal={value} has no effect with {banks}: only 'bases' banks are "
                         "orthonormalised; drop orthogonal or keep one bank as 'bases'")
    on = [k for k in ("cross_reconstruction", "feature_loss") if eff[k]]
    if modes["mouth"] == modes["pose"] == "off" and on:
        verb = "conflict" if len(on) > 1 else "conflicts"
        set_on, set_off = " and ".join(f"{k}=true" for k in on), " and ".join(f"{k}=false" for k in on)
        raise InputError(f"{where}: {set_on} {verb} with mouth_bank='off' and pose_bank='off': these losses "
                         "swap mouth and pose motion between frames and there is none; "
                         f"set {set_off} or keep a mouth or pose bank")
    for switch, weight in (("cross_reconstruction", "cross"), ("feature_loss", "feature")):
        if overrides.get(switch) is True and weight in losses and not losses[weight]:
            raise InputError(f"{where}: {switch}=true conflicts with losses.{weight}=0: the term would be "
                             f"computed with weight 0; set {switch}=false or give losses.{weight} a weight")

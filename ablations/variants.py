"""The ablation variants: name → configuration overrides, each honoured by the training engine,
plus the paper's reported numbers for the variants the paper has (paper.md §5.4).

A variant is a row of overrides applied to a training preset with
`edtalk.train.config.apply_overrides`: `model` fields go to `edtalk.config.ModelConfig`
(orthogonal, mouth_bank/pose_bank/expression_bank ∈ bases|direct|off, eem), the rest to TrainConfig
(cross_reconstruction, feature_loss, joint_training).

"Removing a bank" means what the paper's "w/o Bank" means (the release's `Generator_nobank`): the
navigation head maps straight to a 512-d motion latent instead of to weights of learnable bases
("direct"). Switching a component off entirely ("off") is also a model option, but a variant without
mouth motion at all would be a trivial ablation, so none of the named rows uses it.

Every variant's overrides are checked when it is defined (`validate_overrides`): unknown fields,
switches that are not booleans, and combinations the model or trainer would silently ignore are
refused with one line naming the conflicting fields.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from metrics.errors import InputError

# Synonyms used in the paper and the release, mapped to our names, so a typo suggestion lands on the
# variant meant ("lip bank" is the paper's mouth bank; the release calls the expression bank "exp").
_SYNONYMS = (("lip", "mouth"), ("exp-", "expression-"), ("ortho-", "orthogonality-"), ("w/o", "no"),
             ("wo-", "no-"), ("without-", "no-"), ("edtalk-", ""), ("_", "-"))
_MODEL_SWITCHES = ("orthogonal", "eem", "expression")
_TRAIN_SWITCHES = ("cross_reconstruction", "feature_loss", "joint_training")


def _closest(name: str, names, synonyms: bool = False) -> str:
    names = list(names)
    norm = str(name)
    if synonyms:
        norm = norm.lower()
        for a, b in _SYNONYMS:
            norm = norm.replace(a, b)
    if norm in names:
        return norm
    close = difflib.get_close_matches(norm, names, n=1, cutoff=0.4)
    return close[0] if close else ""


def _hint(name: str, names, synonyms: bool = False) -> str:
    close = _closest(name, names, synonyms)
    return f" (did you mean {close!r}?)" if close else ""


def validate_overrides(overrides: dict[str, Any], where: str = "overrides") -> None:
    """Refuse overrides the trainer would reject late or, worse, silently ignore; one InputError line.

    Checked: field names (with a suggestion), boolean switches given as booleans, bank modes, and the
    combinations that make a switch meaningless:
    - `eem` on while `expression_bank` is "off" (or set on explicitly with `expression: false`): the
      EEM is driven by the expression direction, which is then zero;
    - `orthogonal` set while no bank is "bases": only "bases" banks are orthonormalised;
    - `cross_reconstruction` or `feature_loss` on while the mouth and pose banks are both "off": both
      work on mouth/pose motion swapped between frames, and there is none;
    - a loss switch turned on while its weight (`losses.cross` / `losses.feature`) is 0.
    `feature_loss` without `cross_reconstruction` is valid (L_fea only needs the swapped frames'
    coefficients) and is the `no-cross-reconstruction` variant.
    """
    import dataclasses

    from edtalk.config import BANK_MODES, FACTORS, ModelConfig
    from edtalk.train.config import LossConfig, TrainConfig

    if not isinstance(overrides, dict):
        raise InputError(f"{where}: overrides must be a dict, got {type(overrides).__name__}")
    train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for key in overrides:
        if key not in train_fields:
            raise InputError(f"{where}: unknown training config field {key!r}{_hint(key, train_fields)}")
    model = overrides.get("model", {}) or {}
    model_fields = {f.name: f.default for f in dataclasses.fields(ModelConfig)}
    for key in model:
        if key not in model_fields:
            raise InputError(f"{where}: unknown model field {key!r}{_hint(key, model_fields)}")
    losses = overrides.get("losses", {}) or {}
    loss_fields = {f.name for f in dataclasses.fields(LossConfig)}
    for key in losses:
        if key not in loss_fields:
            raise InputError(f"{where}: unknown loss field {key!r}{_hint(key, loss_fields)}")
    for key, value in [*((k, model[k]) for k in _MODEL_SWITCHES if k in model),
                       *((k, overrides[k]) for k in _TRAIN_SWITCHES if k in overrides)]:
        if not isinstance(value, bool):
            raise InputError(f"{where}: {key} must be true or false, not {value!r} ({type(value).__name__}); "
                             "a string such as 'false' would count as on")
    for f in FACTORS:
        mode = model.get(f"{f}_bank", "bases")
        if mode not in BANK_MODES:
            raise InputError(f"{where}: {f}_bank must be one of {', '.join(BANK_MODES)}, not {mode!r}"
                             f"{_hint(str(mode), BANK_MODES)}")

    eff = {k: model.get(k, model_fields[k]) for k in (*_MODEL_SWITCHES, *(f"{f}_bank" for f in FACTORS))}
    train_defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in _TRAIN_SWITCHES}
    eff.update({k: overrides.get(k, train_defaults[k]) for k in _TRAIN_SWITCHES})
    modes = {f: ("off" if f == "expression" and not eff["expression"] else eff[f"{f}_bank"]) for f in FACTORS}
    touched = set(model) | set(overrides)

    # expression=false (the lip/pose-only generator) switches EEM off by itself (ModelConfig.uses_eem);
    # expression_bank='off' does not: EEM would then run on a zero direction.
    if eff["eem"] and (eff["expression_bank"] == "off" and touched & {"eem", "expression_bank"}
                       or not eff["expression"] and model.get("eem") is True):
        off = "expression_bank='off'" if eff["expression_bank"] == "off" else "expression=false"
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


@dataclass(frozen=True)
class Variant:
    name: str
    description: str
    overrides: dict[str, Any] = field(default_factory=dict)
    # The paper's numbers (MEAD, audio-driven, paper.md §5.4); None = not reported / not readable.
    paper: dict[str, float | None] = field(default_factory=dict)
    # Stages (in order from stage 0) whose computation is identical to `full`'s under staged training:
    # the variant's switches act only later. A sweep that also trains `full` with the same seed starts
    # this variant from full's checkpoint after them (paired comparison, and those stages run once);
    # tests/ablations/test_shared_stages.py checks each claim against the computation.
    shares_with_full: tuple[str, ...] = ()

    def __post_init__(self):
        validate_overrides(self.overrides, where=f"variant {self.name!r}")


_METRICS = ("psnr", "ssim", "m_lmd", "f_lmd", "fid", "sync_conf", "acc_emo")


def _paper(**known: float) -> dict[str, float | None]:
    return {m: known.get(m) for m in _METRICS}


VARIANTS: dict[str, Variant] = {v.name: v for v in [
    Variant("full",
            "EDTalk as released: QR-orthonormal banks, EEM, staged training with cross-reconstruction and L_fea",
            {}, _paper(psnr=21.628, ssim=0.722, m_lmd=1.537, f_lmd=1.290, fid=17.698, sync_conf=8.115, acc_emo=67.32)),
    Variant("no-orthogonality", "bases used raw (no QR): mouth, pose and expression directions may overlap",
            {"model": {"orthogonal": False}}, _paper(acc_emo=38.71)),
    Variant("no-mouth-bank", "mouth head maps directly to a 512-d motion latent (no mouth bases)",
            {"model": {"mouth_bank": "direct"}}, _paper()),
    Variant("no-pose-bank", "pose head maps directly to a 512-d motion latent (no pose bases)",
            {"model": {"pose_bank": "direct"}}, _paper()),
    Variant("no-expression-bank", "expression head maps directly to a 512-d latent (no expression bases)",
            {"model": {"expression_bank": "direct"}}, _paper(), shares_with_full=("autoencoder", "mouth_pose")),
    Variant("no-banks", "the paper's 'w/o Bank': every head maps directly to a 512-d motion latent",
            {"model": {"mouth_bank": "direct", "pose_bank": "direct", "expression_bank": "direct"}},
            _paper(psnr=20.302)),
    Variant("no-eem", "no Emotion Enhancement Module: expression reaches the image only through the latent",
            {"model": {"eem": False}}, _paper(acc_emo=49.37), shares_with_full=("autoencoder", "mouth_pose")),
    Variant("no-cross-reconstruction",
            "stage 1 without the mouth-swap cross-reconstruction losses (self-reconstruction only)",
            {"cross_reconstruction": False}, _paper(), shares_with_full=("autoencoder",)),
    Variant("no-feature-loss", "stage 1 without the feature-level cosine constraint L_fea",
            {"feature_loss": False}, _paper(), shares_with_full=("autoencoder",)),
    Variant("joint-training", "no efficient staged strategy: one stage trains every module with all losses at once",
            {"joint_training": True}, _paper()),
]}


def get_variant(name: str) -> Variant:
    """The named variant; an unknown name suggests the closest one."""
    if isinstance(name, Variant):
        return name
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        hint = _hint(str(name), VARIANTS, synonyms=True)
        raise InputError(f"unknown variant {name!r}{hint}; run `edtalk variants` to list them") from None


def list_variants() -> list[Variant]:
    return list(VARIANTS.values())

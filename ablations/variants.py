"""The ablation variants: name → configuration overrides, each honoured by the training engine,
plus the paper's reported numbers for the variants the paper has (paper.md §5.4).

A variant is a row of overrides applied to a training preset with
`edtalk.train.config.apply_overrides`: `model` fields go to `edtalk.config.ModelConfig`
(orthogonal, mouth_bank/pose_bank/expression_bank ∈ bases|direct|off, eem), the rest to TrainConfig
(cross_reconstruction, feature_loss, joint_training). `resolve_config` is where a variant's name
becomes the typed TrainConfig that training receives: the CLI, nox and the sweep call it once, at
the top, and pass the config down.

"Removing a bank" means what the paper's "w/o Bank" means (the release's `Generator_nobank`): the
navigation head maps straight to a 512-d motion latent instead of to weights of learnable bases
("direct"). Switching a component off entirely ("off") is also a model option, but a variant without
mouth motion at all would be a trivial ablation, so none of the named rows uses it.

Every variant's overrides are checked when it is defined, by `edtalk.train.config.validate_overrides`
(the one check of the switches): unknown fields, switches that are not booleans, and combinations the
model or trainer would silently ignore are refused with one line naming the conflicting fields.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edtalk.presets import get_preset, train_preset
from edtalk.train.config import TrainConfig, apply_overrides, validate_overrides
from metrics.errors import InputError, suggest

# Synonyms used in the paper and the release, mapped to our names, so a typo suggestion lands on the
# variant meant ("lip bank" is the paper's mouth bank; the release calls the expression bank "exp").
_SYNONYMS = (("lip", "mouth"), ("exp-", "expression-"), ("ortho-", "orthogonality-"), ("w/o", "no"),
             ("wo-", "no-"), ("without-", "no-"), ("edtalk-", ""), ("_", "-"))


def _with_synonyms(name: str) -> str:
    norm = str(name).lower()
    for a, b in _SYNONYMS:
        norm = norm.replace(a, b)
    return norm


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
    # Whether the audio stage (mouth and pose predictors only: ablations.sweep.AUDIO_PARTS_FIXED_BY_STAGE_1) is
    # full's too: its targets come from the mouth/pose heads the shared stages 0-1 fixed, and its reconstruction
    # renders without expression, through weights stage 2 does not train, with the same banks (same shapes, so
    # the same QR). Not for no-expression-bank: its QR runs over a narrower matrix (equal only to ~1e-7).
    # tests/ablations/test_sweep_audio.py checks it against the computation.
    shares_audio_with_full: bool = False

    def __post_init__(self):
        validate_overrides(self.overrides, where=f"variant {self.name!r}")
        if self.shares_audio_with_full and self.shares_with_full[:2] != ("autoencoder", "mouth_pose"):
            raise InputError(f"variant {self.name!r} can share full's audio stage only if it shares the stages "
                             "that train the mouth and pose heads (autoencoder, mouth_pose)")


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
            {"model": {"eem": False}}, _paper(acc_emo=49.37), shares_with_full=("autoencoder", "mouth_pose"),
            shares_audio_with_full=True),
    Variant("no-cross-reconstruction",
            "stage 1 without the mouth-swap cross-reconstruction losses (self-reconstruction only)",
            {"cross_reconstruction": False}, _paper(), shares_with_full=("autoencoder",)),
    Variant("no-feature-loss", "stage 1 without the feature-level cosine constraint L_fea",
            {"feature_loss": False}, _paper(), shares_with_full=("autoencoder",)),
    Variant("joint-training", "no efficient staged strategy: one stage trains every module with all losses at once",
            {"joint_training": True}, _paper()),
]}


# Named sets of variants. `paper`: the rows of the paper's ablation table (paper.md §5.4: w/o Bank,
# w/o Orthogonal, w/o EEM) beside full. `extended`: the switches the paper describes but reports no number
# for (one bank at a time, the stage-1 losses, the staged strategy), beside full too: every effect is a
# difference from full.
VARIANT_SETS: dict[str, tuple[str, ...]] = {
    "paper": ("full", "no-banks", "no-orthogonality", "no-eem"),
    "extended": ("full", "no-mouth-bank", "no-pose-bank", "no-expression-bank", "no-cross-reconstruction",
                 "no-feature-loss", "joint-training"),
}
PAPER_ABLATIONS = VARIANT_SETS["paper"]


def get_variant(name: str) -> Variant:
    """The named variant; an unknown name suggests the closest one."""
    if isinstance(name, Variant):
        return name
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        hint = suggest(_with_synonyms(name), VARIANTS, cutoff=0.4)
        raise InputError(f"unknown variant {name!r}{hint}; run `edtalk variants` to list them") from None


def list_variants() -> list[Variant]:
    return list(VARIANTS.values())


def resolve_config(preset: str, variant: str = "full", seed: int = 0, overrides: dict | None = None,
                   max_steps: int | None = None) -> TrainConfig:
    """Preset + the variant's overrides (+ extra overrides) → the run's typed TrainConfig; `max_steps` (a dry
    run's --max-steps) cuts every stage to at most that many iterations (its lr schedule follows the cut)."""
    import dataclasses

    v = get_variant(variant)
    cfg = apply_overrides(train_preset(preset), {**v.overrides, "seed": int(seed), "variant": v.name},
                          where=f"variant {v.name!r}")
    cfg = apply_overrides(cfg, overrides) if overrides else cfg
    if max_steps is None:
        return cfg
    if int(max_steps) < 1:
        raise InputError(f"--max-steps must be at least 1, not {max_steps}")
    return dataclasses.replace(cfg, stages=[dataclasses.replace(s, iterations=min(s.iterations, int(max_steps)))
                                            for s in cfg.stages])


def expand_variants(spec) -> list[str]:
    """Variant names from `spec`: a set name (paper, extended, all), comma-separated names and set names,
    or a list of them; each checked (a typo suggests the closest name), duplicates dropped, order kept."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    names: list[str] = []
    for item in (str(i).strip() for i in items):
        if not item:
            continue
        if item == "all":
            names += list(VARIANTS)
        elif item in VARIANT_SETS:
            names += VARIANT_SETS[item]
        else:
            names.append(get_variant(item).name)
    if not names:
        raise InputError(f"no variant named in {spec!r}; give names, {', '.join(VARIANT_SETS)} or all")
    return list(dict.fromkeys(names))


def seed_plan(variants, seeds: int, extra_seeds: dict[str, int] | None = None) -> list[tuple[str, int]]:
    """(variant, seed) pairs to run: `seeds` seeds of each variant, and at least `extra_seeds[v]` of v.

    The study trains `full` twice and every ablation once ({"full": 2}): the second seed of full measures
    how far two trainings of the same model differ, the yardstick each ablation's effect is read against.
    """
    names = expand_variants(variants)
    if int(seeds) < 1:
        raise InputError(f"--seeds must be at least 1, got {seeds}")
    extra = dict(extra_seeds or {})
    for name, n in extra.items():
        get_variant(name)
        if int(n) < 1:
            raise InputError(f"extra seeds of {name!r} must be at least 1, got {n}")
    return [(v, s) for v in names for s in range(max(int(seeds), int(extra.get(v, 0))))]


def sweep_plan(variants, seeds: int, preset: str) -> list[tuple[str, int]]:
    """`seed_plan` with the preset's extra seeds (its sweep row's "extra_seeds", e.g. the study's {"full": 2})."""
    return seed_plan(variants, seeds, (get_preset(preset).sweep or {}).get("extra_seeds"))

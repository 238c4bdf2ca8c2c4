"""The training stages as small objects: which parameter groups train, what a batch is, which losses apply.

- stage 0 `autoencoder` (LIA-style, paper.md §2.1): source and driving frame of one identity;
  reconstruct the driving frame from the source's latent + the driving frame's mouth/pose motion.
- stage 1 `mouth_pose` (§2.2): self-reconstruction of A and B, cross-reconstruction from the
  mouth-swapped frames (mouth from the frame carrying A's mouth, pose from the frame carrying A's
  pose), L_fea = exp(−cos) between the swapped-frame and real-frame mouth/pose directions.
- stage 2 `expression` (§2.3): neutral source, emotional target; all stage-1 modules frozen, only
  the expression head, expression bank and EEM train (self-reconstruction complementary learning).
- `joint` (the `joint-training` ablation): one stage, every group trainable, the stage-1 losses with
  the expression path switched on.
Switches honoured here: `cross_reconstruction`, `feature_loss` (TrainConfig) and, through the
model, orthogonality / banks / EEM.
"""
from __future__ import annotations

import re

import torch
from torch import nn

from edtalk.train import losses as L

# Attribute-name patterns used when the model has no `parameter_groups()` (first match wins).
_GROUP_PATTERNS = [
    ("eem", r"(^|\.)(eem|eems)\b|emotion_enh"),
    ("expression_bank", r"(expression_bank|exp_bank|direction_exp|banks\.expression)"),
    ("mouth_bank", r"(mouth_bank|lip_bank|banks\.mouth)"),
    ("pose_bank", r"(pose_bank|banks\.pose)"),
    ("expression_head", r"(exp_fc|expression_head|heads\.expression|eln)"),
    ("mouth_head", r"(lip_fc|mouth_head|heads\.mouth|mln)"),
    ("pose_head", r"(pose_fc|pose_head|heads\.pose|pln)"),
    ("trunk", r"(^|\.)(fc|trunk)\b"),
    ("encoder", r"(^|\.)(enc|encoder)\b"),
    ("decoder", r"(^|\.)(dec|decoder|generator|synthesis)\b"),
]


def parameter_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Named parameter groups (see config.ALL_GROUPS); every parameter lands in exactly one group."""
    if hasattr(model, "parameter_groups"):
        groups = {k: list(v) for k, v in model.parameter_groups().items()}
    else:
        groups = {name: [] for name, _ in _GROUP_PATTERNS}
        for pname, p in model.named_parameters():
            for gname, pat in _GROUP_PATTERNS:
                if re.search(pat, pname):
                    groups[gname].append(p)
                    break
            else:
                groups["decoder"].append(p)  # anything unnamed belongs to the image generator
    seen = {id(p) for v in groups.values() for p in v}
    missing = [n for n, p in model.named_parameters() if id(p) not in seen]
    if missing:
        groups.setdefault("decoder", []).extend(p for n, p in model.named_parameters() if n in missing)
    return groups


def set_trainable(model: nn.Module, trainable: tuple[str, ...]) -> list[nn.Parameter]:
    groups = parameter_groups(model)
    for p in model.parameters():
        p.requires_grad_(False)
    params, seen = [], set()
    for g in trainable:
        for p in groups.get(g, []):
            if id(p) not in seen:
                p.requires_grad_(True)
                params.append(p)
                seen.add(id(p))
    return params


def _without_expression(coeffs: dict) -> dict:
    # A missing key means "no expression" (the model composes only the factors it is given).
    return {k: v for k, v in coeffs.items() if k != "expression"}


def drive(model, latent_src, feats, coeffs: dict, use_expression: bool):
    """Decode the source with the given motion coefficients (expression dropped unless asked for)."""
    c = {k: v for k, v in coeffs.items() if v is not None}
    c = c if use_expression else _without_expression(c)
    d, e = model.compose(c)
    return model.decode(latent_src, d, feats, e if use_expression else None)


def directions(model, coeffs: dict) -> dict[str, torch.Tensor]:
    """Per-component motion directions (what `compose` sums), for L_fea."""
    if hasattr(model, "directions"):
        return model.directions(coeffs)
    return {k: model.compose({k: coeffs[k]})[0] for k in ("mouth", "pose")}


class Stage:
    """A stage: `kind` (sample kind), `trainable` groups, and `generator_terms(...)`."""

    kind = "autoencoder"
    use_expression = False

    def __init__(self, name: str, trainable: tuple[str, ...], losses, perceptual: nn.Module | None,
                 cross_reconstruction: bool = True, feature_loss: bool = True, use_gan: bool = True,
                 share: L.BatchShare = L.ONE_PROCESS):
        self.name, self.trainable, self.w = name, tuple(trainable), losses
        self.perceptual = perceptual
        self.share = share  # this rank's part of the global batch (DDP), for the terms that are not sample means
        self.cross_reconstruction, self.feature_loss, self.use_gan = cross_reconstruction, feature_loss, use_gan

    def _rec(self, prefix: str, pred, target, scale: float = 1.0, mouth=None) -> dict[str, torch.Tensor]:
        terms = {}
        if self.w.l1:
            terms[prefix + "l1"] = scale * self.w.l1 * L.l1(pred, target)
        if self.w.mouth and mouth is not None:
            terms[prefix + "mouth"] = scale * self.w.mouth * L.masked_l1(pred, target, mouth, self.share)
        if self.w.perceptual and self.perceptual is not None:
            terms[prefix + "perceptual"] = scale * self.w.perceptual * self.perceptual(pred, target)
        return terms

    def generator_terms(self, model, disc, batch):
        """→ (weighted loss terms, D real batch, D fake batch, images for the sample grid)."""
        lat_s, feats = model.encode(batch["source"])
        lat_d, _ = model.encode(batch["target"])
        out = drive(model, lat_s, feats, model.coefficients(lat_d), self.use_expression)
        terms = self._rec("rec_", out, batch["target"], mouth=batch.get("target_mouth"))
        if self.use_gan and self.w.gan and disc is not None:
            terms["gan_g"] = self.w.gan * L.g_nonsaturating(disc(out))
        return terms, batch["target"], out, [batch["source"], batch["target"], out]


class AutoencoderStage(Stage):
    kind = "autoencoder"


class ExpressionStage(Stage):
    kind = "expression"
    use_expression = True


class MouthPoseStage(Stage):
    kind = "mouth_pose"

    def generator_terms(self, model, disc, batch):
        lat_aid, feats_a = model.encode(batch["a_id"])
        lat_bid, feats_b = model.encode(batch["b_id"])
        ca = model.coefficients(model.encode(batch["a"])[0])
        cb = model.coefficients(model.encode(batch["b"])[0])
        rec_a = drive(model, lat_aid, feats_a, ca, self.use_expression)
        rec_b = drive(model, lat_bid, feats_b, cb, self.use_expression)
        ma, mb = batch.get("a_mouth"), batch.get("b_mouth")
        terms = {}
        tb = self._rec("rec_", rec_b, batch["b"], mouth=mb)
        for k, v in self._rec("rec_", rec_a, batch["a"], mouth=ma).items():
            terms[k] = v + tb[k]
        fakes_g, fakes_d = [rec_a, rec_b], [rec_a, rec_b]
        grid = [batch["a_id"], batch["a"], rec_a, batch["b_a"], batch["a_b"]]
        if self.cross_reconstruction or self.feature_loss:
            c_ab = model.coefficients(model.encode(batch["a_b"])[0])  # pose of A, mouth of B
            c_ba = model.coefficients(model.encode(batch["b_a"])[0])  # pose of B, mouth of A
        if self.cross_reconstruction:
            # A's mouth is in b_a, A's pose in a_b (the release's recon_a_cross), symmetric for B.
            cross_a = {"mouth": c_ba["mouth"], "pose": c_ab["pose"], "expression": c_ab.get("expression")}
            cross_b = {"mouth": c_ab["mouth"], "pose": c_ba["pose"], "expression": c_ba.get("expression")}
            xa = drive(model, lat_aid, feats_a, cross_a, self.use_expression)
            xb = drive(model, lat_bid, feats_b, cross_b, self.use_expression)
            ta = self._rec("cross_", xa, batch["a"], self.w.cross, mouth=ma)
            tb = self._rec("cross_", xb, batch["b"], self.w.cross, mouth=mb)
            terms.update({k: ta[k] + tb[k] for k in ta})
            fakes_g += [xa, xb]
            fakes_d = [xa, xb]  # the release trains D on the cross reconstructions only
            grid.append(xa)
        if self.feature_loss and self.w.feature:
            da, db = directions(model, ca), directions(model, cb)
            dab, dba = directions(model, c_ab), directions(model, c_ba)
            fea = L.feature_cosine
            terms["fea_mouth"] = self.w.feature * (fea(dba["mouth"], da["mouth"], self.share)
                                                   + fea(dab["mouth"], db["mouth"], self.share))
            terms["fea_pose"] = self.w.feature * (fea(dab["pose"], da["pose"], self.share)
                                                  + fea(dba["pose"], db["pose"], self.share))
        if self.use_gan and self.w.gan and disc is not None:
            terms["gan_g"] = self.w.gan * L.g_nonsaturating(disc(torch.cat(fakes_g)))
        real = torch.cat([batch["a"], batch["b"]])
        return terms, real, torch.cat(fakes_d), grid


class JointStage(MouthPoseStage):
    """Everything at once (the joint-training ablation): stage-1 losses with expression switched on."""

    use_expression = True


STAGE_CLASSES = {"autoencoder": AutoencoderStage, "mouth_pose": MouthPoseStage, "expression": ExpressionStage,
                 "joint": JointStage}


def build_stage(stage_cfg, train_cfg, perceptual, share: L.BatchShare = L.ONE_PROCESS) -> Stage:
    cls = STAGE_CLASSES[stage_cfg.name]
    return cls(stage_cfg.name, stage_cfg.trainable, train_cfg.losses, perceptual,
               cross_reconstruction=train_cfg.cross_reconstruction, feature_loss=train_cfg.feature_loss,
               use_gan=stage_cfg.use_gan, share=share)

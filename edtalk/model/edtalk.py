"""The EDTalk generator: encoder + latent navigation (banks) + flow-warping decoder with EEM.

One class for every variant: the switches in `ModelConfig` (orthogonality, each bank's mode, EEM,
lip/pose-only) change the computation; nothing is copied per variant.
"""
from __future__ import annotations

import torch
from torch import nn

from edtalk.config import FACTORS, ModelConfig
from edtalk.model.encoder import Encoder
from edtalk.model.generator import Synthesis
from edtalk.model.navigation import Navigation

Coefficients = dict[str, torch.Tensor]


class EDTalk(Navigation):
    """`EDTalk(cfg)`; state-dict keys equal the release's `gen` entry for the `paper` preset."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.enc = Encoder(cfg)
        self.dec = Synthesis(cfg)

    # -- the four steps of the release's forward ------------------------------------------------
    def encode(self, img: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """img (B,3,H,W) in [-1,1] -> latent (B,D), source features (coarse to fine)."""
        return self.enc(img)

    def encode_latents(self, img: torch.Tensor) -> torch.Tensor:
        """img (B,3,H,W) -> latents (B,D): `encode` without keeping the skip features (drivers need none)."""
        return self.enc.net_app.latent(img)

    def compose(self, coeffs: Coefficients, bases: dict[str, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Coefficients -> (motion d = sum of all factors' directions, expression direction e or None)."""
        d, dirs = self.motion(coeffs, bases)
        e = dirs.get("expression") if self.cfg.uses_eem else None
        return d, e

    def decode(self, latent_src: torch.Tensor, d: torch.Tensor, feats: list[torch.Tensor],
               e: torch.Tensor | None = None, source_parts: list[torch.Tensor] | None = None,
               noise: bool = True) -> torch.Tensor:
        """`source_parts`: `self.dec.source_parts(feats)`, computed once per source and reused every frame;
        `noise=False` decodes without noise inputs, as the release's generator always does."""
        return self.dec(latent_src + d, feats, e, source_parts, noise)

    def bases_matrix(self) -> torch.Tensor:
        """All active bases side by side (D x n_active), in mouth, pose, expression order."""
        b = self.bases()
        return torch.cat([b[f] for f in FACTORS if f in b], dim=1)

    def forward(self, source: torch.Tensor, driver: torch.Tensor) -> torch.Tensor:
        """Reconstruct `driver` from `source` (all factors from one driving frame)."""
        lat_s, feats = self.encode(source)
        d, e = self.compose(self.coefficients(self.encode(driver)[0]))
        return self.decode(lat_s, d, feats, e)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups the training stages freeze and unfreeze.

        The release stores the mouth and pose bases in one tensor (`direction_lipnonlip`), so it is
        listed under `mouth_bank`; `pose_bank` is empty by construction.
        """
        dec_params = {id(p) for p in self.dec.parameters()}
        eem = list(self.dec.fineadainresblock.parameters()) if self.dec.fineadainresblock is not None else []
        eem_ids = {id(p) for p in eem}
        groups = {
            "encoder": list(self.enc.parameters()),
            "trunk": list(self.fc.parameters()),
            "mouth_head": list(self.lip_fc.parameters()),
            "pose_head": list(self.pose_fc.parameters()),
            "expression_head": list(self.exp_fc.parameters()) if self.cfg.expression else [],
            "mouth_bank": [self.direction_lipnonlip.weight],
            "pose_bank": [],
            "expression_bank": [self.direction_exp.weight] if self.cfg.expression else [],
            "decoder": [p for p in self.dec.parameters() if id(p) in dec_params and id(p) not in eem_ids],
            "eem": eem,
        }
        return groups

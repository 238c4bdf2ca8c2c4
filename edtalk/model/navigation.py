"""Component-aware latent navigation: shared linear trunk, per-factor heads, and the bases banks.

Parameter names follow the release (`fc`, `lip_fc`, `pose_fc`, `exp_fc`, `direction_lipnonlip`,
`direction_exp`) so official checkpoints load as they are.
"""
from __future__ import annotations

import torch
from torch import nn

from edtalk.config import FACTORS, ModelConfig
from edtalk.model.ops import EqualLinear


def linear_stack(dim: int, out_dim: int, depth: int) -> nn.Sequential:
    """`depth` EqualLinear layers without activations (the release's "MLPs" are linear, as LIA's)."""
    return nn.Sequential(*[EqualLinear(dim, dim) for _ in range(depth - 1)], EqualLinear(dim, out_dim))


class Direction(nn.Module):
    """A bank of learnable bases stored as columns of `weight` (latent_dim x n)."""

    def __init__(self, latent_dim: int, n: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(latent_dim, n))


class Navigation(nn.Module):
    """Maps a driving latent to per-factor coefficients, and coefficients to motion directions."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.latent_dim
        self.sizes = {"mouth": cfg.n_mouth, "pose": cfg.n_pose, "expression": cfg.n_exp}
        self.fc = linear_stack(d, d, 4)

        def head_dim(f):  # a "direct" bank predicts the latent direction itself (paper's w/o bank)
            return d if cfg.bank_mode(f) == "direct" else self.sizes[f]

        self.lip_fc = linear_stack(d, head_dim("mouth"), 3)
        self.pose_fc = linear_stack(d, head_dim("pose"), 3)
        self.direction_lipnonlip = Direction(d, cfg.n_mouth + cfg.n_pose)
        if cfg.expression:
            self.exp_fc = linear_stack(d, head_dim("expression"), 3)
            self.direction_exp = Direction(d, cfg.n_exp)

    def heads(self) -> dict[str, nn.Module]:
        out = {"mouth": self.lip_fc, "pose": self.pose_fc}
        if self.cfg.expression:
            out["expression"] = self.exp_fc
        return out

    def coefficients(self, latent: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.fc(latent)
        return {f: head(h) for f, head in self.heads().items()}

    def raw_bases(self) -> dict[str, torch.Tensor]:
        w = self.direction_lipnonlip.weight
        out = {"mouth": w[:, : self.cfg.n_mouth], "pose": w[:, self.cfg.n_mouth:]}
        if self.cfg.expression:
            out["expression"] = self.direction_exp.weight
        return out

    def bases(self) -> dict[str, torch.Tensor]:
        """Per-factor bases (latent_dim x n) of the banks in "bases" mode.

        Orthogonal: the reduced QR of all active banks side by side (+1e-8, as the release), so
        bases are orthonormal within and across banks; QR's prefix property keeps the mouth/pose
        columns unchanged when the expression bank is appended.
        """
        raw = {f: b for f, b in self.raw_bases().items() if self.cfg.bank_mode(f) == "bases"}
        if not raw or not self.cfg.orthogonal:
            return raw
        names = [f for f in FACTORS if f in raw]
        q, _ = torch.linalg.qr(torch.cat([raw[f] for f in names], dim=1) + 1e-8)
        out, start = {}, 0
        for f in names:
            n = raw[f].shape[1]
            out[f] = q[:, start:start + n]
            start += n
        return out

    def motion(self, coeffs: dict[str, torch.Tensor], bases: dict[str, torch.Tensor] | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(total motion direction, per-factor directions), each (B, latent_dim).

        Bank factors are combined as the release does, in one product `diag(alpha) @ Q^T` over all
        active bases summed over the basis axis; the decoder amplifies rounding differences, so
        parity to 1e-4 needs this exact order. "direct" factors add their own 512-d vector; "off"
        factors contribute nothing.
        """
        bases = self.bases() if bases is None else bases
        coeffs = {f: c for f, c in coeffs.items() if c is not None}  # None: that factor not driven
        if not coeffs:
            raise ValueError("motion() needs at least one factor's coefficients")
        ref = next(iter(coeffs.values()))
        per: dict[str, torch.Tensor] = {}
        total = None
        names = [f for f in FACTORS if f in coeffs and self.cfg.bank_mode(f) == "bases"]
        if names:
            alpha = torch.cat([coeffs[f] for f in names], dim=-1)
            q = torch.cat([bases[f] for f in names], dim=1)
            prod = torch.matmul(torch.diag_embed(alpha), q.T)  # (B, n, D)
            total = prod.sum(dim=1)
            start = 0
            for f in names:
                n = coeffs[f].shape[-1]
                per[f] = prod[:, start:start + n].sum(dim=1)
                start += n
        for f, c in coeffs.items():
            mode = self.cfg.bank_mode(f)
            if mode == "direct":
                per[f] = c
                total = c if total is None else total + c
            elif mode == "off":
                per[f] = c.new_zeros(c.shape[0], self.cfg.latent_dim)
        if total is None:
            total = ref.new_zeros(ref.shape[0], self.cfg.latent_dim)
        return total, per

    def directions(self, coeffs: dict[str, torch.Tensor], bases: dict[str, torch.Tensor] | None = None
                   ) -> dict[str, torch.Tensor]:
        """Each factor's motion direction (B, latent_dim); zero for a bank that is off."""
        return self.motion(coeffs, bases)[1]

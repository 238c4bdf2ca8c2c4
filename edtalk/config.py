"""Model configuration: sizes and the ablation switches, one dataclass feeding model, CLI and nox.

Its named sizes (`paper`: the official shapes, so the released checkpoints load; `smoke`, `study`:
a narrower model that trains on a CPU) are in the one preset table, `edtalk.presets`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from metrics.errors import InputError, suggest

BANK_MODES = ("bases", "direct", "off")
FLOW_GRIDS = ("lia", "pixel-centres")
FACTORS = ("mouth", "pose", "expression")
# LIA/StyleGAN2 channel widths per resolution at channel multiplier 1.
BASE_CHANNELS = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64, 512: 32, 1024: 16}


@dataclass(frozen=True)
class ModelConfig:
    size: int = 256
    latent_dim: int = 512
    channel_scale: float = 1.0      # multiplies every width in BASE_CHANNELS (paper: 1)
    min_channels: int = 8
    n_mouth: int = 20
    n_pose: int = 6
    n_exp: int = 10
    expression: bool = True         # False: the lip/pose-only generator (EDTalk_lip_pose.pt)
    orthogonal: bool = True         # QR of the stored bases (all banks jointly), as the release does
    mouth_bank: str = "bases"       # "bases" | "direct" (512-d direction, paper's w/o bank) | "off"
    pose_bank: str = "bases"
    expression_bank: str = "bases"
    eem: bool = True                # expression enhancement module (AdaIN on source features)
    eem_hidden: int = 128
    # Identity grid of the flow heads. "lia": linspace(-1, 1, n) sampled with align_corners=False,
    # as LIA/EDTalk do (needed for the official checkpoints), which is not the identity: it zooms by
    # n/(n-1) and blurs by half a pixel at the borders (a 64 px frame sent through it is 26.1 dB
    # from itself). "pixel-centres": the exact identity, for models trained from scratch at small
    # sizes (smoke, study), where that zoom costs more than the motion the model must learn.
    flow_grid: str = "lia"

    def __post_init__(self):
        if self.size not in BASE_CHANNELS or self.size < 16:
            raise InputError(f"model size must be a power of two in 16..1024, not {self.size}")
        for f in FACTORS:
            mode = getattr(self, f"{f}_bank")
            if mode not in BANK_MODES:
                raise InputError(f"{f}_bank must be one of {', '.join(BANK_MODES)}, not {mode!r}"
                                 f"{suggest(mode, BANK_MODES)}")
        if self.flow_grid not in FLOW_GRIDS:
            raise InputError(f"flow_grid must be one of {FLOW_GRIDS}, not {self.flow_grid!r}")

    def channels(self, res: int) -> int:
        return max(self.min_channels, int(round(BASE_CHANNELS[res] * self.channel_scale)))

    def bank_mode(self, factor: str) -> str:
        if factor == "expression" and not self.expression:
            return "off"
        return getattr(self, f"{factor}_bank")

    @property
    def uses_eem(self) -> bool:
        return self.expression and self.eem

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

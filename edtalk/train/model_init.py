"""The models a training run starts from: the generator and discriminator of a config, and the
from-scratch initialisations that make short runs learn (identity EEM and flows, source-copy image path)."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from edtalk.train.config import TrainConfig
from metrics.errors import InputError


def build_models(train_cfg: TrainConfig, size: int):
    """The generator (EDTalk) and the StyleGAN2 discriminator for this config and frame size."""
    from edtalk.model import EDTalk

    mcfg = dataclasses.replace(train_cfg.model, size=size)
    model = EDTalk(mcfg)
    identity_eem_init(model)
    if train_cfg.flow_init not in ("identity", "release"):
        raise InputError(f"flow_init must be 'identity' or 'release', not {train_cfg.flow_init!r}")
    if train_cfg.image_path_init not in ("copy", "release"):
        raise InputError(f"image_path_init must be 'copy' or 'release', not {train_cfg.image_path_init!r}")
    if train_cfg.flow_init == "identity":
        identity_flow_init(model)
    if train_cfg.image_path_init == "copy":
        copy_source_init(model)
    disc = build_discriminator(mcfg)
    return model, disc, mcfg


def identity_eem_init(model: nn.Module) -> None:
    """Start training from scratch with every EEM block an identity (output scale 1+γ = 0, shift β = 0).

    EEM adds `AdaIN(conv(x), e)` to the source features; with default initialisation that residual
    is unit-variance noise, which stages 0–1 never train (EEM joins in stage 2) and which ruins every
    expression-driven output until stage 2 has undone it (measured: held-out PSNR 13.5 dB with the
    random EEM vs 23.9 dB without it after 300 stage-0 steps). Zero-initialised residual branches
    are standard practice; gradients reach γ and β at once. Loaded checkpoints are unaffected.
    """
    from edtalk.model.generator import ExpressionEnhancement

    with torch.no_grad():
        for block in model.modules():
            if isinstance(block, ExpressionEnhancement):
                block.norm2.mlp_gamma.weight.zero_()
                block.norm2.mlp_gamma.bias.fill_(-1.0)
                block.norm2.mlp_beta.weight.zero_()
                block.norm2.mlp_beta.bias.zero_()


def identity_flow_init(model: nn.Module) -> None:
    """Zero the flow heads' modulated conv weights: flows start as the identity warp, masks at 0.5.

    With LIA's random init the warps are random for the first hundreds of steps and tear the face
    (seen in the smoke samples); starting from the identity the decoder first learns to copy the
    source, then to move it. Gradients still reach the weights (they are linear in them)."""
    from edtalk.model.generator import ToFlow

    with torch.no_grad():
        for head in model.modules():
            if isinstance(head, ToFlow):
                head.conv.weight.zero_()


def copy_source_init(model: nn.Module) -> None:
    """Start the finest image path as a copy of the source: output = source at step 0.

    The decoder's RGB is a sum over scales of to_rgb(warped source feature). From LIA's random init
    the coarse scales win the race and a from-scratch model stays blurred for thousands of steps
    (on the smoke world even a pure autoencoder was a blur after 300 steps). Here three channels of
    the encoder's full-resolution feature carry the image, √2·(x+1) (positive, so the leaky ReLU is
    linear on it), the finest to_rgb maps them back (mask 0.5 at init, bias −1), and the coarser
    to_rgb weights start at 0; all of it trains. With `flow_init="identity"` the untrained model
    therefore copies the source exactly (needs `flow_grid="pixel-centres"`), and training learns
    the motion as warps of a sharp image. Loaded checkpoints are unaffected."""
    enc_conv, enc_act = model.enc.net_app.convs[0][0], model.enc.net_app.convs[0][1]
    rgbs = model.dec.to_rgbs
    eye = torch.eye(3)
    with torch.no_grad():
        enc_conv.weight[:3].zero_()
        enc_conv.weight[:3, :, 0, 0] = eye / enc_conv.scale
        enc_act.bias[0, :3] = 1.0
        for rgb in rgbs[:-1]:
            rgb.conv[0].weight.zero_()
        fine = rgbs[-1]
        fine.conv[0].weight.zero_()
        fine.conv[0].weight[:, :3, 0, 0] = eye / fine.conv[0].scale
        fine.conv[1].bias.zero_()
        fine.bias.fill_(-1.0)


def build_discriminator(mcfg):
    from edtalk.model.discriminator import Discriminator

    return Discriminator(mcfg)

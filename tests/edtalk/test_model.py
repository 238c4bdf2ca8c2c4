"""The model's switches change exactly the computation they name; loading fails loudly."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from edtalk import official
from edtalk.animate import animate
from edtalk.model import EDTalk
from edtalk.presets import model_preset
from metrics.errors import CheckpointMismatchError, InputError, MissingWeightsError


def make(**kw) -> EDTalk:
    torch.manual_seed(0)
    return EDTalk(model_preset("smoke", **kw)).eval()


@pytest.fixture
def frames():
    g = torch.Generator().manual_seed(1)
    return torch.rand(1, 3, 64, 64, generator=g) * 2 - 1, torch.rand(3, 3, 64, 64, generator=g) * 2 - 1


def test_shapes_and_feature_pyramid(frames):
    m = make()
    src, drv = frames
    lat, feats = m.encode(drv)
    assert lat.shape == (3, 128)
    assert [f.shape[-1] for f in feats] == [8, 16, 32, 64]
    c = m.coefficients(lat)
    assert {k: v.shape[1] for k, v in c.items()} == {"mouth": 20, "pose": 6, "expression": 10}
    assert animate(m, src, mouth=drv).shape == (3, 3, 64, 64)


def test_orthogonality_switch():
    on, off = make(), make(orthogonal=False)
    q_on, q_off = on.bases_matrix(), off.bases_matrix()
    assert torch.allclose(q_on.T @ q_on, torch.eye(36), atol=1e-5)
    assert not torch.allclose(q_off.T @ q_off, torch.eye(36), atol=1e-2)
    assert torch.equal(q_off, torch.cat([off.direction_lipnonlip.weight, off.direction_exp.weight], 1))


@pytest.mark.parametrize("factor", ["mouth", "pose", "expression"])
def test_bank_off_means_its_coefficients_drive_nothing(factor, frames):
    m = make(**{f"{factor}_bank": "off"})
    src, _ = frames
    with torch.no_grad():
        lat, feats = m.encode(src)
        c = m.coefficients(lat)
        c2 = dict(c)
        c2[factor] = c[factor] + 5.0
        d1, e1 = m.compose(c)
        d2, e2 = m.compose(c2)
        assert torch.equal(m.decode(lat, d1, feats, e1), m.decode(lat, d2, feats, e2))
    # the remaining banks are orthonormalised among themselves
    q = m.bases_matrix()
    assert q.shape[1] == 36 - {"mouth": 20, "pose": 6, "expression": 10}[factor]


def test_direct_bank_predicts_the_latent_direction():
    m = make(mouth_bank="direct")
    lat = torch.randn(2, 128)
    c = m.coefficients(lat)
    assert c["mouth"].shape == (2, 128)
    assert torch.equal(m.directions(c)["mouth"], c["mouth"])


def test_eem_switch(frames):
    src, drv = frames
    with_eem, without = make(), make(eem=False)
    assert without.dec.fineadainresblock is None
    assert sum(p.numel() for p in with_eem.parameters()) > sum(p.numel() for p in without.parameters())
    with torch.no_grad():
        _, e = with_eem.compose(with_eem.coefficients(with_eem.encode(drv)[0]))
        _, e_off = without.compose(without.coefficients(without.encode(drv)[0]))
    assert e is not None and e_off is None


def test_left_out_driver_keeps_the_source_own(frames):
    m = make()
    src, drv = frames
    only_mouth = animate(m, src, mouth=drv)
    explicit = animate(m, src, mouth=drv, pose=src, expression=src)
    assert torch.equal(only_mouth, explicit)


def test_parameter_groups_cover_every_parameter_once():
    m = make()
    groups = m.parameter_groups()
    ids = [id(p) for ps in groups.values() for p in ps]
    assert len(ids) == len(set(ids)) == len(list(m.parameters()))
    assert groups["eem"] and groups["expression_bank"] and groups["decoder"]


def test_lip_pose_generator_has_no_expression_parts():
    cfg = dataclasses.replace(model_preset("smoke"), expression=False)
    m = EDTalk(cfg)
    keys = m.state_dict().keys()
    assert not any(k.startswith(("exp_fc", "direction_exp", "dec.fineadainresblock")) for k in keys)
    with pytest.raises(InputError, match="lip/pose-only"):
        animate(m, torch.zeros(1, 3, 64, 64), mouth=torch.zeros(2, 3, 64, 64), expression=torch.zeros(2, 3, 64, 64))


def test_animate_validates_inputs(frames):
    m = make()
    src, drv = frames
    with pytest.raises(InputError, match="64x64"):
        animate(m, src, mouth=torch.zeros(2, 3, 32, 32))
    with pytest.raises(InputError, match="disagree"):
        animate(m, src, mouth=drv, pose=drv[:2])
    with pytest.raises(InputError, match="NaN"):
        animate(m, src, mouth=torch.full_like(drv, float("nan")))
    with pytest.raises(InputError, match="nothing drives"):
        animate(m, src)


def test_checkpoint_errors(tmp_path):
    m = make()
    with pytest.raises(MissingWeightsError, match="not found"):
        official.read_checkpoint(tmp_path / "missing.pt")
    sd = m.state_dict()
    sd.pop("fc.0.weight")
    sd["extra.weight"] = torch.zeros(1)
    sd["lip_fc.2.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError) as exc:
        official.check_state_dict(m, sd, "x.pt")
    msg = str(exc.value)
    assert "fc.0.weight" in msg and "extra.weight" in msg and "lip_fc.2.bias" in msg
    trunc = tmp_path / "trunc.pt"
    torch.save({"gen": m.state_dict()}, trunc)
    trunc.write_bytes(trunc.read_bytes()[:1000])
    with pytest.raises(CheckpointMismatchError, match="truncated or corrupt"):
        official.read_checkpoint(trunc)


class _NeedsCode:  # a pickle that would run our code on load
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_needing_code_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"gen": _NeedsCode()}, path)
    with pytest.raises(CheckpointMismatchError, match="refusing"):
        official.read_checkpoint(path)

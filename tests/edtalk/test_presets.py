"""The one preset table: every row names parts that exist and fit together, and the CLI reads it."""
from __future__ import annotations

import pytest

from edtalk.presets import PRESETS, audio_stage_preset, get_preset, model_preset, train_preset
from metrics.errors import InputError


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_row_names_a_world_evaluators_and_protocol_of_the_models_size(name):
    from ablations.variants import get_variant
    from benchmarks.evaluators.config import PRESETS as EVALUATOR_PRESETS
    from benchmarks.protocols.registry import get_protocol
    from benchmarks.synthetic.writer import PRESETS as WORLD_PRESETS

    row = PRESETS[name]
    assert row.training.model == row.model and row.training.preset == name
    assert row.evaluators in EVALUATOR_PRESETS
    if row.world is not None:
        assert WORLD_PRESETS[row.world].size == row.model.size
    protocol = get_protocol(row.protocol)
    if protocol.data == "synthetic":
        assert protocol.size == row.model.size
    for variant in (row.sweep or {}).get("variants", "full").split(","):
        if variant not in ("paper", "all"):
            get_variant(variant)


def test_each_call_hands_out_its_own_copy():
    cfg = train_preset("smoke")
    cfg.stages[0].iterations = 1
    cfg.losses.mouth = 0.0
    assert train_preset("smoke").stages[0].iterations == 900 and train_preset("smoke").losses.mouth == 5.0
    audio = audio_stage_preset("smoke")
    audio.mouth_iters = 1
    assert audio_stage_preset("smoke").mouth_iters == 150
    assert model_preset("smoke", orthogonal=False).orthogonal is False and model_preset("smoke").orthogonal


def test_an_unknown_preset_suggests_the_closest():
    with pytest.raises(InputError, match="did you mean 'standard'"):
        get_preset("standrad")


def test_sweep_cli_takes_protocol_variants_and_seeds_from_the_preset(tmp_path, monkeypatch):
    from edtalk.cli import main

    seen = {}

    def run_sweep(protocol, variants, seeds, out, data, preset, **kw):
        seen.update(protocol=protocol, variants=variants, seeds=seeds, preset=preset)
        return {"runs": [], "failed": []}

    monkeypatch.setattr("ablations.sweep.run_sweep", run_sweep)
    assert main(["sweep", "--data", str(tmp_path), "--out", str(tmp_path / "s")]) == 0
    smoke = PRESETS["smoke"]
    assert seen == {"protocol": smoke.protocol, "variants": smoke.sweep["variants"], "seeds": smoke.sweep["seeds"],
                    "preset": "smoke"}
    assert main(["sweep", "--preset", "standard", "--seeds", "2", "--data", str(tmp_path), "--out",
                 str(tmp_path / "t")]) == 0
    assert seen["protocol"] == "synthetic-standard" and seen["seeds"] == 2 and "no-eem" in seen["variants"]

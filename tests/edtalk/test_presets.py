"""The one preset table: every row names parts that exist and fit together, and the CLI reads it."""
from __future__ import annotations

import pytest

from edtalk.presets import PRESETS, audio_stage_preset, get_preset, model_preset, train_preset
from metrics.errors import InputError


@pytest.mark.parametrize("name", list(PRESETS))
def test_a_row_names_a_world_evaluators_and_protocol_of_the_models_size(name):
    from ablations.variants import expand_variants
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
    expand_variants((row.sweep or {}).get("variants", "full"))


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
    with pytest.raises(InputError, match="did you mean 'study'"):
        get_preset("stduy")


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
    assert main(["sweep", "--preset", "study", "--seeds", "2", "--data", str(tmp_path), "--out",
                 str(tmp_path / "t")]) == 0
    assert seen["protocol"] == "synthetic-study" and seen["seeds"] == 2 and "no-eem" in seen["variants"]


def test_the_study_sweeps_the_papers_table_with_full_twice_on_a_world_with_power():
    """Issue 19: >= 4 held-out identities, >= 32 scored test clips covering every emotion and intensity,
    the paper's variant set, full with 2 seeds, and the ground-truth row."""
    from types import SimpleNamespace

    from ablations.variants import sweep_plan
    from benchmarks.protocols.registry import get_protocol
    from benchmarks.protocols.synthetic import synthetic_cases
    from benchmarks.synthetic.writer import PRESETS as WORLD_PRESETS
    from metrics.functional.emotion import EMOTIONS

    study = get_preset("study")
    world = WORLD_PRESETS[study.world]
    assert world.test_identities >= 4 and set(world.emotions) == set(EMOTIONS) and world.levels == (1, 2, 3)
    assert world.identities - world.test_identities == 18  # smoke's training faces (its recipe's data)
    # the world's held-out clips in the order its writer lists them (identity, emotion, level)
    clips = [SimpleNamespace(name=f"{i}_{e}_{lvl}", identity=i, emotion=e, level=lvl)
             for i in range(world.test_identities) for e in world.emotions
             for lvl in (world.levels if e != "neutral" else (1,))]
    fake = SimpleNamespace(clips=lambda split: clips)
    cases = synthetic_cases(fake, get_protocol(study.protocol))
    assert len(cases) >= 32
    assert {c.info["identity"] for c in cases} == set(range(world.test_identities))
    # every emotion at every intensity (neutral has one) is among the scored clips
    pairs = {(c.emotion, c.level) for c in clips}
    assert len(pairs) == 22 and {(c.info["emotion"], c.info["level"]) for c in cases} == pairs
    plan = sweep_plan(study.sweep["variants"], study.sweep["seeds"], "study")
    assert plan == [("full", 0), ("full", 1), ("no-banks", 0), ("no-orthogonality", 0), ("no-eem", 0)]
    assert study.sweep["ground_truth"] and study.audio.parts == ("mouth",) and study.audio.targets == "model"

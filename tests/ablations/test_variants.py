"""Variant sets and the seed plan: the paper's rows, the extended set, and full's extra seeds."""
from __future__ import annotations

import pytest

from ablations.variants import (
    PAPER_ABLATIONS,
    VARIANT_SETS,
    VARIANTS,
    expand_variants,
    seed_plan,
    sweep_plan,
)
from metrics.errors import InputError


def test_the_paper_set_is_the_papers_ablation_table():
    # paper.md §5.4: w/o Bank (PSNR 20.302), w/o Orthogonal (Acc_emo 38.71), w/o EEM (Acc_emo 49.37)
    assert PAPER_ABLATIONS == VARIANT_SETS["paper"] == ("full", "no-banks", "no-orthogonality", "no-eem")
    assert VARIANTS["no-banks"].paper["psnr"] == pytest.approx(20.302)
    assert VARIANTS["no-orthogonality"].paper["acc_emo"] == pytest.approx(38.71)
    assert VARIANTS["no-eem"].paper["acc_emo"] == pytest.approx(49.37)
    # every ablation of the paper's table has a number of the paper's; none of the extended set has
    for name in PAPER_ABLATIONS:
        assert any(v is not None for v in VARIANTS[name].paper.values()), name
    for name in VARIANT_SETS["extended"][1:]:
        assert all(v is None for v in VARIANTS[name].paper.values()), name


def test_the_sets_together_hold_every_variant_once_each_beside_full():
    paper, extended = VARIANT_SETS["paper"], VARIANT_SETS["extended"]
    assert paper[0] == extended[0] == "full"
    assert set(paper[1:]).isdisjoint(extended[1:])
    assert set(paper) | set(extended) == set(VARIANTS)


def test_expand_variants_reads_sets_names_and_all_in_order_without_duplicates():
    assert expand_variants("paper") == list(PAPER_ABLATIONS)
    assert expand_variants("no-eem,paper") == ["no-eem", "full", "no-banks", "no-orthogonality"]
    assert expand_variants(["extended", "no-eem"])[-1] == "no-eem"
    assert expand_variants("all") == list(VARIANTS)
    with pytest.raises(InputError, match="did you mean 'no-banks'"):
        expand_variants("full,no-bank")
    with pytest.raises(InputError, match="no variant named"):
        expand_variants(" , ")


def test_seed_plan_gives_full_its_extra_seeds_and_every_other_variant_the_common_count():
    assert seed_plan("paper", 1, {"full": 2}) == [("full", 0), ("full", 1), ("no-banks", 0),
                                                   ("no-orthogonality", 0), ("no-eem", 0)]
    # extra seeds are a minimum: asking for 3 seeds gives full 3, not 2
    assert [s for v, s in seed_plan("full,no-eem", 3, {"full": 2}) if v == "full"] == [0, 1, 2]
    # a variant not swept gets no runs from its extra seeds
    assert seed_plan("no-eem", 1, {"full": 2}) == [("no-eem", 0)]
    with pytest.raises(InputError, match="at least 1"):
        seed_plan("paper", 0)
    with pytest.raises(InputError, match="unknown variant"):
        seed_plan("paper", 1, {"fulll": 2})


def test_sweep_plan_takes_the_extra_seeds_from_the_presets_row():
    assert sweep_plan("paper", 1, "study").count(("full", 1)) == 1
    assert ("full", 1) not in sweep_plan("paper", 1, "smoke")

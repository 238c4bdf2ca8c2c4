"""load_results: results.json files written by the evaluation engine -> the per-sample DataFrame; and
`edtalk report DIR --csv PATH` writes that table."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from benchmarks.protocols.engine import Case, evaluate
from edtalk.cli import main
from metrics.errors import InputError
from reports.results_table import ID_COLUMNS, load_results, write_table

METRICS = ["psnr", "m_lmd"]
CASES = [Case(f"clip{i}", {"i": i, "identity": f"id{i % 2}", "boxes": [1, 2]}) for i in range(3)]


def _score(variant: str, seed: int, i: int) -> dict:
    # clip1 of the no-eem run has no M-LMD (no face found): NaN in the table, None in the file
    m_lmd = None if (variant, i) == ("no-eem", 1) else 1.0 + 0.1 * i + seed
    return {"psnr": 20.0 + i + 10 * (variant == "full") + 0.5 * seed, "m_lmd": m_lmd}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("table") / "results"
    for variant, seed in (("full", 0), ("full", 1), ("no-eem", 0)):
        evaluate("synthetic-smoke", lambda case: np.zeros((2, 8, 8, 3), np.uint8), CASES,
                 lambda case, frames, v=variant, s=seed: _score(v, s, case.info["i"]),
                 root / variant / f"seed{seed}" / "results.json", metrics=METRICS,
                 method_info={"variant": variant, "seed": seed}, seeds={"seed": seed}, progress=False)
    return root


def test_one_row_per_run_and_case_one_column_per_metric(results):
    df = load_results(results)
    assert list(df.columns[:len(ID_COLUMNS)]) == ID_COLUMNS and df.attrs["metrics"] == METRICS
    assert len(df) == 3 * len(CASES) and set(df["run"]) == {"full", "no-eem"}
    assert df[METRICS].dtypes.tolist() == [np.float64, np.float64]
    for variant, seed in (("full", 0), ("full", 1), ("no-eem", 0)):
        rows = df[(df["run"] == variant) & (df["seed"] == seed)].set_index("case")
        for i in range(len(CASES)):
            expected = _score(variant, seed, i)
            assert rows.loc[f"clip{i}", "psnr"] == pytest.approx(expected["psnr"])
            got = rows.loc[f"clip{i}", "m_lmd"]
            assert np.isnan(got) if expected["m_lmd"] is None else got == pytest.approx(expected["m_lmd"])
            assert rows.loc[f"clip{i}", "n_frames"] == 2
    # scalar case info becomes columns; lists are left out
    assert "info.identity" in df.columns and "info.boxes" not in df.columns
    assert df.groupby("run")["psnr"].mean()["full"] == pytest.approx(np.mean([20 + i + 10 + 0.25 for i in range(3)]))
    long = df.melt(id_vars=ID_COLUMNS, value_vars=df.attrs["metrics"], var_name="metric")
    assert len(long) == len(df) * len(METRICS)


def test_files_and_lists_of_sources(results):
    one = results / "full" / "seed0" / "results.json"
    df = load_results(one)
    assert len(df) == len(CASES) and set(df["run"]) == {"full"} and set(df["seed"]) == {0}
    both = load_results([one, results / "no-eem"])
    assert sorted(set(both["run"])) == ["full", "no-eem"] and len(both) == 2 * len(CASES)


def test_bad_sources_are_one_line_errors(results, tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_results(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"schema": "something-else"}))
    with pytest.raises(InputError):
        load_results(tmp_path / "other.json")
    with pytest.raises(InputError, match="no .*results.json"):
        load_results(tmp_path)
    with pytest.raises(InputError, match="csv or .parquet"):
        write_table(load_results(results), tmp_path / "table.xlsx")


def test_report_cli_writes_the_csv(results, tmp_path, capsys):
    out = tmp_path / "tables" / "per_sample.csv"
    assert main(["report", str(results), "--csv", str(out)]) == 0
    assert "9 rows" in capsys.readouterr().out
    assert not (results / "report.html").exists()  # --csv alone writes only the table
    written = pd.read_csv(out)
    expected = load_results(results)
    assert list(written.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(written[METRICS], expected[METRICS])
    assert written["case"].tolist() == expected["case"].tolist()


def test_parquet_when_pyarrow_is_installed(results, tmp_path):
    pytest.importorskip("pyarrow")
    out = write_table(load_results(results), tmp_path / "per_sample.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(out), load_results(results), check_like=True)

"""Resuming a real-data run (issue 18): killed with --lists/--limit-clips, it resumes exactly with the same
options; resumed with another --dataset, --lists or --limit-clips it is refused in one line, its data.json kept."""
from __future__ import annotations

import json

import pytest
from real_mead import TRAIN, build_mead
from train_fakes import fake_build

from edtalk.cli import main

TEST = ("W009#sad#level_2#003", "W009#neutral#level_1#001")


@pytest.fixture(scope="module")
def mead(tmp_path_factory):
    root = tmp_path_factory.mktemp("mini-mead-resume")
    return {**build_mead(root, n_frames=6, size=64, test=TEST), "cache": root / "cache"}


def _cfg():
    from ablations.variants import resolve_config
    from edtalk.train.config import apply_overrides

    cfg = resolve_config("smoke", "full", seed=2)
    return apply_overrides(cfg, {"stages": [dict(name=s.name, iterations=2, batch_size=2, trainable=s.trainable)
                                            for s in cfg.stages],
                                 "checkpoint_every": 1, "log_every": 1, "sample_every": 2,
                                 "losses": {"perceptual": 0.0}})


def _train(mead, out, limit, resume=False, lists=None, stages="all"):
    from edtalk.train.api import train_run

    real = {"dataset": "mead", "lists": str(lists or mead["lists"]), "limit_clips": limit, "cache": str(mead["cache"])}
    return train_run(_cfg(), out, data_dir=mead["root"], stages=stages, resume=resume, progress=False,
                     evaluate=False, build=fake_build, real=real)


@pytest.fixture(scope="module")
def started(mead, tmp_path_factory):
    """A run with --limit-clips 3 that trained stage 0 (a checkpoint to resume); the refusals leave it as it is."""
    run = tmp_path_factory.mktemp("started") / "run"
    _train(mead, run, limit=3, stages="0")
    return run


def test_a_killed_run_with_lists_and_limit_resumes_exactly(mead, tmp_path, monkeypatch):
    import edtalk.train.engine as engine

    _train(mead, tmp_path / "whole", limit=3)

    class Killed(engine.Trainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs, stop_after=3)  # in stage 1, after its first step's checkpoint

    with monkeypatch.context() as patch:
        patch.setattr(engine, "Trainer", Killed)
        with pytest.raises(KeyboardInterrupt):
            _train(mead, tmp_path / "killed", limit=3)
    _train(mead, tmp_path / "killed", limit=3, resume=True)
    whole, resumed = (json.loads((tmp_path / run / "summary.json").read_text()) for run in ("whole", "killed"))
    assert resumed["checksum"] == whole["checksum"] and resumed["global_step"] == 6
    for stage in ("autoencoder", "mouth_pose", "expression"):
        assert (tmp_path / "whole" / "logs" / f"{stage}.csv").read_text() == \
            (tmp_path / "killed" / "logs" / f"{stage}.csv").read_text()
    data = json.loads((tmp_path / "killed" / "data.json").read_text())
    assert data["train"]["clips"] == list(TRAIN[:3]) and data["train"]["limit_clips"] == 3
    assert (tmp_path / "killed" / "logs" / "data.log").read_text().count("limited to 3") == 4  # 2 starts, 2 splits


@pytest.mark.parametrize("change", ["limit-clips", "lists", "no-limit"])
def test_resuming_on_other_data_is_one_line_and_keeps_the_run(mead, started, tmp_path, capsys, change):
    run = started
    before = (run / "data.json").read_text()
    lists = mead["lists"]
    extra = ["--limit-clips", "3"]
    if change == "limit-clips":
        extra, what = ["--limit-clips", "2"], "other --limit-clips"
    elif change == "no-limit":
        extra, what = [], "other --limit-clips"
    else:  # the same --limit-clips over another train list: other clips
        lists = tmp_path / "lists"
        lists.mkdir()
        (lists / "train.json").write_text(json.dumps([TRAIN[0], TRAIN[3], TRAIN[2]]))
        (lists / "test.json").write_text(json.dumps(list(TEST)))
        what = "other training clips"
    code = main(["train", "--preset", "smoke", "--data", str(mead["root"]), "--dataset", "mead", "--lists", str(lists),
                 "--cache", str(mead["cache"]), "--out", str(run), "--resume", *extra])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"this start has {what}" in err and "was started on --dataset mead" in err, err
    assert "resume with the run's --dataset/--lists/--limit-clips or train on this data into a new --out" in err
    assert (run / "data.json").read_text() == before


def test_another_dataset_is_refused(started, tmp_path):
    import shutil

    from edtalk.train.real_data import check_same_data
    from metrics.errors import InputError

    run = tmp_path / "run"
    shutil.copytree(started, run)
    report = json.loads((run / "data.json").read_text())
    check_same_data(run, report)  # the same data resumes
    with pytest.raises(InputError, match="this start has other --dataset"):
        check_same_data(run, {**report, "dataset": "hdtf"})
    with pytest.raises(InputError, match="this start has other held-out clips"):
        check_same_data(run, {**report, "test": {**report["test"], "clips": report["test"]["clips"][:1]}})
    (run / "checkpoints" / "last.pt").unlink()  # not started yet: nothing to resume, any data goes
    check_same_data(run, {**report, "dataset": "hdtf"})

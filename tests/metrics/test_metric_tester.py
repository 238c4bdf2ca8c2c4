"""Every metric class against its functional twin and its reference, in one process and in two (gloo, CPU).

Replaces test_base_ddp.py: torchmetrics now does the states' reduction, so what is checked here is that each
class declares its states so that torchmetrics' sync gives the one-process numbers (tester.py, metric_cases.py).
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from metric_cases import CASES
from tester import check_one_process, check_two_processes, run_two_processes

PARAMS = [pytest.param(name, marks=pytest.mark.slow) if case.slow else name for name, case in sorted(CASES.items())]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("metric_tester")


@pytest.fixture(scope="module")
def one_process():
    """case -> the class's value over all batches, once its one-process checks passed."""
    return {}


@pytest.fixture(scope="module")
def two_processes(workdir):
    """Both ranks' results, per group (fast cases / slow cases): one spawn a group keeps the start-up cost."""
    cache: dict[bool, list] = {}

    def results(slow: bool) -> list:
        if slow not in cache:
            cache[slow] = run_two_processes({n: c for n, c in CASES.items() if c.slow == slow}, workdir / str(slow))
        return cache[slow]

    return results


@pytest.mark.parametrize("name", PARAMS)
def test_one_process(name, workdir, one_process):
    case = CASES[name]
    if case.prepare is not None:
        case.prepare(workdir)
    one_process[name] = check_one_process(case, workdir)


@pytest.mark.parametrize("name", PARAMS)
def test_two_processes(name, workdir, one_process, two_processes):
    if name not in one_process:
        pytest.fail(f"{name}: the one-process check did not pass, so there is no value to compare the ranks with")
    case = CASES[name]
    check_two_processes(case, workdir / str(case.slow), two_processes(case.slow), one_process[name])


def test_every_metric_class_is_covered():
    import torchmetrics

    import metrics

    classes = {n for n in metrics.__all__ if isinstance(getattr(metrics, n), type)
               and issubclass(getattr(metrics, n), torchmetrics.Metric)}
    assert len(classes) >= 11
    assert classes == {case.metric_class for case in CASES.values()}


def test_functional_exports_every_function_without_torch():
    code = ("import sys; from metrics import functional as F; import metrics.errors; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "missing = [n for n in F.__all__ if not callable(getattr(F, n))]; assert not missing, missing; "
            "print(sorted(F.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for name in ("lse", "psnr", "ssim", "lpips", "frechet_inception_distance", "csim", "landmark_distance",
                 "emotion_accuracy", "pose_error"):
        assert f"'{name}'" in out.stdout


def test_drop_in_torchmetrics_collection():
    """Real torchmetrics.Metric subclasses: a MetricCollection updates and computes them like its own."""
    import numpy as np
    from torchmetrics import MetricCollection

    from metrics import PeakSignalNoiseRatio, StructuralSimilarity
    from metrics import functional as F

    batches = [args for args, _ in CASES["psnr"].batches(None)]
    both = MetricCollection({"psnr": PeakSignalNoiseRatio(), "ssim": StructuralSimilarity()})
    for pred, target in batches:
        both.update(pred, target)
    pred, target = (np.concatenate([b[i] for b in batches]) for i in (0, 1))
    out = both.compute()
    assert out["psnr"] == pytest.approx(F.psnr(pred, target), rel=1e-12)
    assert out["ssim"] == pytest.approx(F.ssim(pred, target), rel=1e-12)
    both.reset()
    assert all(not len(m.video_means) for m in both.values())

"""A metric tester in the manner of torchmetrics' MetricTester: every metric class is checked against its
functional twin and its reference, in one process and in two (torch.distributed, gloo on CPU, spawn).

A `MetricCase` says how to build the class (stand-in weights where it has a network), the batches (one
`update` each; think "one video"), the functional twin and the reference over the same batches, and
optionally a per-sample state and its functional values. The checks:

* one process (`check_one_process`): the class over all batches equals the functional twin and the
  reference; `forward` (calling the metric) returns the batch's own value and keeps accumulating;
  `merge_state` of two metrics fed the even and the odd batches equals one metric fed all of them;
  the per-sample state equals the functional value of each batch.
* two processes (`run_two_processes`, then `check_two_processes`): rank r updates batches r, r+2, ...;
  `compute()` on each rank (torchmetrics gathers and reduces the states) must equal the one-process
  value, and the synced per-sample state holds rank 0's batches then rank 1's.

Everything a case needs is built by module-level functions from a work directory, so the spawned ranks
rebuild the same metrics (same seeds) without pickling networks. Inputs are small: a few seconds a metric.
"""
from __future__ import annotations

import os
import pickle
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

Batch = tuple[tuple, dict]  # the positional and keyword arguments of one update()


@dataclass(frozen=True)
class MetricCase:
    name: str
    build: Callable[[Path], Any]                       # work dir -> a fresh metric
    batches: Callable[[Path], list[Batch]]
    functional: Callable[[Path, list[Batch]], Any]     # the functional twin over all batches
    reference: Callable[[Path, list[Batch]], Any]      # the reference implementation over all batches
    metric_class: str = ""                             # the class build() makes (for the coverage check)
    rtol: float = 1e-9
    atol: float = 1e-9
    #: the reference's own tolerance where it is not the same arithmetic (e.g. another network library)
    reference_tol: dict[str, float] = field(default_factory=dict)
    #: (state name, work dir, one batch -> that batch's per-sample value) for the per-sample check
    per_sample: tuple[str, Callable[[Path, Batch], float]] | None = None
    #: how a computed value is read; default compute(). FID-Inception reads its synced running sums.
    read: Callable[[Any], Any] | None = None
    prepare: Callable[[Path], None] | None = None     # writes stand-in weights into the work dir once
    #: whether one batch alone has a value (FID needs both sides, so its forward() cannot score a batch)
    forward: bool = True
    #: whether to check merge_state (off only where recomputing the batches costs many seconds)
    merge: bool = True
    #: runs a full-size network on CPU for tens of seconds: checked by `nox -s slow`, not the fast suite
    slow: bool = False


def numbers(value: Any, prefix: str = "") -> dict[str, np.ndarray]:
    """A metric value (float, tensor, array, nested dict) as a flat {key: float64 array} for comparison."""
    if isinstance(value, dict):
        out: dict[str, np.ndarray] = {}
        for k, v in value.items():
            out.update(numbers(v, f"{prefix}{k}."))
        return out
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value
    return {prefix.rstrip("."): np.asarray(arr, dtype=np.float64)}


def assert_close(actual: Any, expected: Any, rtol: float, atol: float, what: str) -> None:
    """Every key of `expected` is in `actual`, of the same shape and within tolerance (NaN equals NaN)."""
    a, e = numbers(actual), numbers(expected)
    missing = sorted(set(e) - set(a))
    assert not missing, f"{what}: keys {missing} missing from {sorted(a)}"
    for k, ev in e.items():
        np.testing.assert_allclose(a[k], ev, rtol=rtol, atol=atol, err_msg=f"{what}: {k or 'value'}")


def _read(case: MetricCase, metric) -> Any:
    return case.read(metric) if case.read is not None else metric.compute()


def _fed(case: MetricCase, workdir: Path, batches: list[Batch]):
    metric = case.build(workdir)
    for args, kwargs in batches:
        metric.update(*args, **kwargs)
    return metric


def check_one_process(case: MetricCase, workdir: Path) -> Any:
    """The single-process checks; returns the class's value over all batches (the two-process target)."""
    import torchmetrics

    batches = case.batches(workdir)
    metric = _fed(case, workdir, batches)
    assert isinstance(metric, torchmetrics.Metric) and type(metric).__name__ == case.metric_class
    assert metric.is_differentiable is False and metric.full_state_update is False
    value = _read(case, metric)
    assert_close(value, case.functional(workdir, batches), case.rtol, case.atol, f"{case.name}: class vs functional")
    ref = case.reference(workdir, batches)
    assert_close(value, ref, case.reference_tol.get("rtol", case.rtol), case.reference_tol.get("atol", case.atol),
                 f"{case.name}: class vs reference")
    if case.per_sample is not None:
        state, one = case.per_sample
        expected = [one(workdir, b) for b in batches]
        np.testing.assert_allclose(metric.per_sample(state), expected, rtol=case.rtol, atol=case.atol,
                                   err_msg=f"{case.name}: per-sample state {state}")
    if case.forward:  # forward() gives the batch's own value and keeps the running total
        stepped = case.build(workdir)
        (args, kwargs), rest = batches[0], batches[1:]
        alone = _fed(case, workdir, [(args, kwargs)]).compute()
        assert_close(stepped(*args, **kwargs), alone, case.rtol, case.atol, f"{case.name}: forward")
        for args, kwargs in rest:
            stepped.update(*args, **kwargs)
        assert_close(stepped.compute(), value, case.rtol, case.atol, f"{case.name}: forward accumulates")
    if case.merge:
        even, odd = _fed(case, workdir, batches[0::2]), _fed(case, workdir, batches[1::2])
        even.merge_state(odd)
        assert_close(_read(case, even), value, case.rtol, case.atol, f"{case.name}: merge_state")
    return value


# -- two processes ----------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world_size: int, port: int, cases_module: str, names: list[str], workdir: str) -> None:
    import importlib

    import torch.distributed as dist

    cases = importlib.import_module(cases_module).CASES  # the spawned rank imports the cases by module name
    torch.set_num_threads(1)  # two ranks share the machine's cores
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    out: dict[str, Any] = {}
    try:
        # An exception ends the rank (and mp.spawn ends the other): a rank that went on alone would wait in
        # a collective the other never joins.
        for name in names:
            case = cases[name]
            metric = _fed(case, Path(workdir), case.batches(Path(workdir))[rank::world_size])
            out[name] = {"value": _read(case, metric)}
            if case.per_sample is not None:
                with metric.sync_context():
                    out[name]["per_sample"] = metric.per_sample(case.per_sample[0])
    finally:
        dist.destroy_process_group()
    with open(Path(workdir) / f"rank{rank}.pkl", "wb") as f:
        pickle.dump(out, f)
    # Leave without the interpreter's teardown: there gloo's background threads sometimes abort the process
    # ("terminate called without an active exception", SIGABRT) after all the work above has finished.
    os._exit(0)


def run_two_processes(cases: dict[str, MetricCase], workdir: Path) -> list[dict[str, Any]]:
    """Run every case on two gloo ranks (one spawn for all); per rank, {case name: result}.

    The ranks import the cases from the module that defines them (`cases` must be a module's dict)."""
    import torch.multiprocessing as mp

    workdir.mkdir(parents=True, exist_ok=True)
    for case in cases.values():
        if case.prepare is not None:
            case.prepare(workdir)
    module = next(iter(cases.values())).build.__module__
    for r in range(2):
        (workdir / f"rank{r}.pkl").unlink(missing_ok=True)
    mp.spawn(_rank_main, args=(2, _free_port(), module, sorted(cases), str(workdir)), nprocs=2, join=True)
    return [pickle.loads((workdir / f"rank{r}.pkl").read_bytes()) for r in range(2)]


def check_two_processes(case: MetricCase, workdir: Path, ranks: list[dict[str, Any]], expected: Any) -> None:
    batches = case.batches(workdir)
    for rank, results in enumerate(ranks):
        result = results[case.name]
        assert_close(result["value"], expected, case.rtol, case.atol, f"{case.name}: rank {rank} of 2 vs one process")
        if case.per_sample is not None:
            state, one = case.per_sample
            order = batches[0::2] + batches[1::2]  # rank 0's batches, then rank 1's
            np.testing.assert_allclose(result["per_sample"], [one(workdir, b) for b in order], rtol=case.rtol,
                                       atol=case.atol, err_msg=f"{case.name}: synced per-sample state on rank {rank}")

"""The streaming metric base class: `update()` many times, `compute()` once, reducible across ranks.

Modelled on torchmetrics: a metric declares its states with `add_state(name, default, reduce)` where
`reduce` is "sum" (tensors added across ranks), "cat" (lists of per-sample values gathered) or "max".
`compute()` sees states that are already reduced over all DistributedDataParallel ranks, so a
metric's arithmetic never needs to know about distribution.
"""
from __future__ import annotations

import copy
from typing import Any, ClassVar

import numpy as np
import torch

__all__ = ["Metric"]


class Metric:
    #: True if larger values mean better output; the report marks the best per column with it.
    higher_is_better: ClassVar[bool | None] = None
    #: Short name used in results tables.
    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self._defaults: dict[str, Any] = {}
        self._reductions: dict[str, str] = {}

    # -- state -----------------------------------------------------------------------------------
    def add_state(self, name: str, default: Any, reduce: str = "sum") -> None:
        if reduce not in ("sum", "cat", "max"):
            raise ValueError(f"reduce must be 'sum', 'cat' or 'max', not {reduce!r}")
        if reduce == "cat" and not isinstance(default, list):
            raise ValueError("a 'cat' state must default to an empty list")
        self._defaults[name] = default
        self._reductions[name] = reduce
        setattr(self, name, copy.deepcopy(default))

    def reset(self) -> None:
        for name, default in self._defaults.items():
            setattr(self, name, copy.deepcopy(default))

    def state_dict(self) -> dict[str, Any]:
        return {name: copy.deepcopy(getattr(self, name)) for name in self._defaults}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in self._defaults:
            setattr(self, name, copy.deepcopy(state[name]))

    # -- API -------------------------------------------------------------------------------------
    def update(self, *args: Any, **kwargs: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def compute(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Update with one batch and return the metric of that batch alone."""
        saved = self.state_dict()
        self.reset()
        self.update(*args, **kwargs)
        value = self.compute()
        self.load_state_dict(saved)
        self.update(*args, **kwargs)
        return value

    # -- distribution ----------------------------------------------------------------------------
    def sync(self) -> None:
        """Reduce every state over the default process group in place (no-op when not distributed)."""
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        for name, how in self._reductions.items():
            value = getattr(self, name)
            if how == "cat":
                gathered: list[Any] = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, value)
                setattr(self, name, [item for part in gathered for item in part])
                continue
            if value is None:
                raise RuntimeError(f"state {name!r} is empty on rank {dist.get_rank()}: every rank needs data")
            t = value if isinstance(value, torch.Tensor) else torch.as_tensor(value, dtype=torch.float64)
            t = t.clone()
            dist.all_reduce(t, op=dist.ReduceOp.SUM if how == "sum" else dist.ReduceOp.MAX)
            if isinstance(value, torch.Tensor):
                setattr(self, name, t)
            elif isinstance(value, np.ndarray):
                setattr(self, name, t.numpy())
            else:
                setattr(self, name, t.item())

    def __repr__(self) -> str:
        return f"{type(self).__name__}(higher_is_better={self.higher_is_better})"

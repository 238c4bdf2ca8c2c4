"""The base of every metric class: `torchmetrics.Metric` with this project's two conventions added.

State, reduction and distribution are torchmetrics' own: a metric declares its states with
`add_state(name, default, dist_reduce_fx)` ("sum" for running totals, "cat" for per-sample lists),
`update()` many times and `compute()` once; `compute()` sees states already reduced over all
DistributedDataParallel ranks, and `forward()` (calling the metric), `merge_state`, `reset` and
`MetricCollection` work as in torchmetrics. This class adds only:

* `name`: the metric's column in results tables;
* `protocol`: a dict that records how the number was made (network, crop, aggregation, reference);
* `as_state` / `append_sample` / `per_sample`: numpy values in and out of tensor states (the metrics take
  numpy frames).

Every metric here is computed without gradients and from running totals or per-sample lists, so
`is_differentiable` is False and `full_state_update` is False (a batch's update never reads the states).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
import torchmetrics
from torchmetrics.utilities import dim_zero_cat

__all__ = ["Metric"]


class Metric(torchmetrics.Metric):
    is_differentiable: ClassVar[bool] = False
    full_state_update: ClassVar[bool] = False
    #: Short name used in results tables.
    name: ClassVar[str] = ""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.protocol: dict[str, Any] = {}

    def as_state(self, value: Any, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """`value` (number, numpy array or tensor) as a tensor on the metric's device, for a state."""
        if isinstance(value, torch.Tensor):
            return value.detach().to(device=self.device, dtype=dtype)
        return torch.as_tensor(np.asarray(value), dtype=dtype, device=self.device)

    def append_sample(self, state: str, value: Any) -> None:
        """Append one sample's value to the "cat" state `state` as a row of shape (1, ...).

        Rows, not 0-d scalars: torchmetrics gathers a rank's list as one tensor, and a rank holding a single
        0-d entry would otherwise send a shape of another rank (dimension) than the others.
        """
        tensor = self.as_state(value)
        getattr(self, state).append(tensor.reshape(1, *tensor.shape))

    def per_sample(self, state: str) -> np.ndarray:
        """A "cat" state as one numpy array, one entry (row) per sample; empty before any update.

        After a distributed `compute()` torchmetrics restores each rank's own list; inside `compute()`
        the state is the gathered tensor of all ranks. Both read the same way here.
        """
        value = getattr(self, state)
        if isinstance(value, list) and not value:
            return np.zeros(0)
        return dim_zero_cat(value).detach().cpu().numpy()

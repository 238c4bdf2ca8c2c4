"""What the training loop runs on: the process group (torchrun), RNG states for an exact resume, and its
logs (CSV rows, sample grids)."""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import random
from pathlib import Path

import numpy as np
import torch

from metrics.utils import (
    atomic_write_bytes,
    atomic_write_text,
    resolve_device,
)


# ---------------------------------------------------------------- distributed
@dataclasses.dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device=None) -> tuple[Dist, torch.device]:
    """torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, nccl on CUDA."""
    ws = int(os.environ.get("WORLD_SIZE", "1"))
    if ws <= 1:
        return Dist(), resolve_device(device)
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    base = resolve_device(device)
    if base.type == "cuda":
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
        backend = "nccl"
    else:
        dev, backend = base, "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return Dist(rank, ws, local), dev


# ---------------------------------------------------------------- rng
def rng_state() -> dict:
    """All RNG states, as tensors/ints only so checkpoints load with torch.load(weights_only=True)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    st = {"python": random.getstate(), "numpy": [kind, torch.from_numpy(key.astype(np.int64)), pos, has_gauss, gauss],
          "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    random.setstate(tuple(st["python"][:1]) + (tuple(st["python"][1]),) + tuple(st["python"][2:]))
    kind, key, pos, has_gauss, gauss = st["numpy"]
    np.random.set_state((kind, key.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- logging
class CsvLog:
    """Plain CSV loss log per stage; on resume rows past the checkpoint are dropped so the log
    equals an uninterrupted run's."""

    def __init__(self, path: Path, keep_until: int | None):
        self.path = path
        self.header: list[str] | None = None
        if path.exists():
            with open(path, newline="") as f:
                rows = list(csv.reader(f))
            if rows:
                self.header = rows[0]
                kept = [r for r in rows[1:] if keep_until is not None and int(r[0]) <= keep_until]
                buf = io.StringIO()
                csv.writer(buf).writerows([self.header, *kept])
                atomic_write_text(path, buf.getvalue())

    def write(self, step: int, values: dict[str, float]) -> None:
        if self.header is None:
            self.header = ["step", *values]
            with open(self.path, "w", newline="") as f:
                csv.writer(f).writerow(self.header)
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([step, *(f"{values.get(k, float('nan')):.6g}" for k in self.header[1:])])


def save_grid(path: Path, images: list[torch.Tensor], max_rows: int = 4) -> None:
    from PIL import Image

    from benchmarks.media import tensor_to_frames

    cols = [img[:max_rows].detach().float().cpu().clamp(-1, 1) for img in images]
    rows = torch.cat(cols, dim=3)  # B,3,H,W*columns
    grid = torch.cat(list(rows), dim=1)  # 3,H*B,W*columns
    arr = tensor_to_frames(grid[None])[0]
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())

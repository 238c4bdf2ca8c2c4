"""Metric states reduce across ranks (two gloo processes on CPU)."""
import os
import socket

import numpy as np
import torch.multiprocessing as mp


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, out):
    import torch.distributed as dist

    from metrics.image import FrechetDistance, PeakSignalNoiseRatio

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    rng = np.random.default_rng(rank)
    a = (rng.random((2, 16, 16, 3)) * 255).astype(np.uint8)
    b = (rng.random((2, 16, 16, 3)) * 255).astype(np.uint8)
    p = PeakSignalNoiseRatio()
    p.update(a, b)
    f = FrechetDistance()
    f.update(rng.normal(size=(20, 3)), real=True)
    f.update(rng.normal(size=(20, 3)), real=False)
    # compute() reduces the states over both ranks (torchmetrics' sync_context), then restores the local ones
    with p.sync_context():
        pooled = int(p.count)
    out[rank] = (p.compute(), f.compute(), pooled)
    dist.destroy_process_group()


def test_two_ranks_agree_and_pool():
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(_free_port(), out), nprocs=2, join=True)
    assert out[0] == out[1]
    assert out[0][2] == 4  # frames of both ranks pooled

"""Training batches that cover every sample exactly once per epoch, in near-equal sizes.

Histories (METHODS.md section 5) count one prediction per sample per epoch, and small-loss ranking
wants no tiny last batch; splitting a seeded permutation into ceil(N / B) near-equal chunks gives
both (sizes differ by at most one). The order depends only on (seed, epoch), so a resumed run sees
the batches an uninterrupted run would have seen. With several workers every worker draws the same
global batches and keeps its own contiguous slice of each (distributed.World.local_slice), so the
gathered batch is the global batch in its original order.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import Sampler

from .distributed import World


class EvenBatches(Sampler[list[int]]):
    def __init__(self, num_samples: int, batch_size: int, seed: int, world: World | None = None):
        self.num_samples, self.batch_size, self.seed, self.world = num_samples, batch_size, seed, world or World()
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return max(1, math.ceil(self.num_samples / self.batch_size))

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=g)
        for chunk in torch.tensor_split(order, len(self)):
            yield self.world.local_slice(chunk).tolist()


def seed_worker(worker_id: int) -> None:
    """DataLoader workers: derive Python's and NumPy's seeds from the per-worker torch seed."""
    import random

    import numpy as np

    s = torch.initial_seed() % 2**32
    random.seed(s)
    np.random.seed(s)


def loader_options(num_workers: int, device: torch.device) -> dict:
    """The DataLoader settings every loader of a run shares (training and evaluation)."""
    return dict(num_workers=num_workers, pin_memory=device.type == "cuda", persistent_workers=num_workers > 0, worker_init_fn=seed_worker)

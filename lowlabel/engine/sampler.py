"""A seeded, shardable, resumable sampler: the data order is a pure function of (seed, epoch).

Resuming mid-epoch rebuilds the same permutation and skips the samples already consumed, so a
resumed run sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class ResumableSampler(Sampler[int]):
    """Per-epoch permutation of ``range(num_samples)``, sharded over ranks like ``DistributedSampler``.

    The permutation is padded (by wrapping around) to a multiple of ``world_size``; rank ``r``
    takes positions ``r, r + world_size, ...``. With ``world_size`` ranks and per-rank batch ``B``,
    the union of the ranks' first batches is the first ``world_size * B`` permuted indices, i.e.
    what a single process with batch ``world_size * B`` sees.

    Args:
        num_samples: dataset length.
        seed: base seed; epoch ``e`` uses ``seed * 1_000_003 + e``.
        rank: this process's rank.
        world_size: number of ranks.
        shuffle: permute (True) or keep dataset order.
    """

    def __init__(self, num_samples: int, *, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        if num_samples < 1:
            raise ValueError(f"the training set is empty (num_samples={num_samples})")
        self.num_samples = num_samples
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start = 0

    @property
    def shard_size(self) -> int:
        """Samples per rank per epoch."""
        return math.ceil(self.num_samples / self.world_size)

    def seek(self, epoch: int, start: int = 0) -> None:
        """Select ``epoch``'s permutation and skip this rank's first ``start`` samples.

        (Not named ``set_epoch``: Fabric's dataloader wrapper calls ``set_epoch(number of iter() calls)``
        on samplers that have it, which would undo a resume.)
        """
        self.epoch = epoch
        self.start = start

    def indices(self) -> list[int]:
        """This rank's full index list for the current epoch (before skipping)."""
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.num_samples, generator=gen).tolist()
        else:
            order = list(range(self.num_samples))
        total = self.shard_size * self.world_size
        order = (order * math.ceil(total / len(order)))[:total]  # wrap-around padding
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return self.shard_size - self.start

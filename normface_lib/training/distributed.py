"""Several processes (DDP): who this process is, the process group, and the deterministic stream of row indices each
process trains on (a :class:`torch.utils.data.DistributedSampler` epoch permutation, so one process and many share the
code path)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from ..core.errors import InputError


@dataclass
class Processes:
    """This process's place among the training processes (``world == 1`` without DDP)."""

    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self):
        if self.active:
            dist.barrier()

    def gather(self, obj) -> list:
        """``obj`` of every process, in rank order (``[obj]`` without DDP)."""
        if not self.active:
            return [obj]
        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """The mean of each value over the processes."""
        if not self.active:
            return values
        keys = sorted(values)
        v = torch.tensor([values[k] for k in keys], dtype=torch.float64)
        dist.all_reduce(v)
        return {k: float(x) / self.world for k, x in zip(keys, v)}

    def close(self):
        if self.owns_group:
            dist.destroy_process_group()


def setup_processes(device_type: str) -> Processes:
    """Join the process group torchrun (or the caller) set up; a single process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return Processes(dist.get_rank(), dist.get_world_size(), False)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        return Processes(dist.get_rank(), dist.get_world_size(), True)
    return Processes()


class IndexStream:
    """Deterministic stream of index blocks: step ``t`` → ``per_step`` indices of this process's share of the epoch
    permutation of :class:`DistributedSampler` (``drop_last``)."""

    def __init__(self, n: int, per_step: int, procs: Processes, seed: int):
        self.sampler = DistributedSampler(range(n), num_replicas=procs.world, rank=procs.rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.per_step = per_step
        self.steps_per_epoch = len(self.sampler) // per_step if per_step else 0
        if per_step and self.steps_per_epoch == 0:
            raise InputError(f"only {n} rows for {procs.world} process(es) × {per_step} rows per step; lower "
                             "batch_size.")
        self._epoch, self._order = -1, None

    def indices(self, step: int) -> torch.Tensor:
        """``[per_step]`` long: this process's row indices at training step ``step``."""
        if not self.per_step:
            return torch.zeros(0, dtype=torch.long)
        epoch, j = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._order, self._epoch = torch.tensor(list(self.sampler), dtype=torch.long), epoch
        return self._order[j * self.per_step:(j + 1) * self.per_step]

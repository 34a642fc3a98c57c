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
    permutation of :class:`DistributedSampler` (``drop_last``). When a process's share of the rows is smaller than a
    step (few training identities, as on the learning curve's first points), each step is made of whole consecutive
    epochs, concatenated and cut to ``per_step``: every row still appears once per epoch."""

    def __init__(self, n: int, per_step: int, procs: Processes, seed: int):
        self.sampler = DistributedSampler(range(n), num_replicas=procs.world, rank=procs.rank, shuffle=True, seed=seed,
                                          drop_last=True)
        self.per_step = per_step
        share = len(self.sampler)
        if per_step and share == 0:
            raise InputError(f"no rows for {procs.world} process(es); the table needs at least one row per process.")
        self.steps_per_epoch = share // per_step if per_step else 0
        self.epochs_per_step = -(-per_step // share) if per_step and not self.steps_per_epoch else 0
        self._epoch, self._order = -1, None

    def _epoch_order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            self.sampler.set_epoch(epoch)
            self._order, self._epoch = torch.tensor(list(self.sampler), dtype=torch.long), epoch
        return self._order

    def indices(self, step: int) -> torch.Tensor:
        """``[per_step]`` long: this process's row indices at training step ``step``."""
        if not self.per_step:
            return torch.zeros(0, dtype=torch.long)
        if self.epochs_per_step:  # fewer rows than a step: whole epochs, one after the other
            k = self.epochs_per_step
            return torch.cat([self._epoch_order(step * k + e) for e in range(k)])[:self.per_step]
        epoch, j = divmod(step, self.steps_per_epoch)
        return self._epoch_order(epoch)[j * self.per_step:(j + 1) * self.per_step]

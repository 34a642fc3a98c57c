"""The state of a run beyond the weights: learning-rate schedule, mixed precision, random number generators, and a
checksum of the weights (identical weights ⇔ same digest)."""
from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch

from ..core.resources import tensor_digest
from .config import TrainConfig


def autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    """The mixed-precision dtype of a run: bf16 (or fp16 where bf16 is unsupported) on CUDA, ``None`` on a CPU or
    with ``amp="off"``."""
    if device.type != "cuda" or config.amp == "off":
        return None
    if config.amp == "bf16" or (config.amp == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def make_scheduler(opt: torch.optim.Optimizer, config: TrainConfig):
    """The learning-rate schedule of ``config``: linear warm-up then cosine decay to 1 % (or one-cycle, or constant
    after warm-up), over ``config.steps``."""
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps,
                                                   pct_start=min(0.3, max(config.warmup_steps, 1) / config.steps))
    warm = min(config.warmup_steps, config.steps - 1)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(warm, 1)))
    scheds = [torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, config.steps - warm),
                                                         eta_min=config.lr * 0.01)]
    if warm > 0:
        scheds.insert(0, torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / warm, total_iters=warm))
        return torch.optim.lr_scheduler.SequentialLR(opt, scheds, milestones=[warm])
    return scheds[0]


def rng_state() -> dict[str, Any]:
    """The state of every random number generator a training step draws from (torch, Python, NumPy, CUDA)."""
    s = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": list(np.random.get_state())}
    if torch.cuda.is_available():
        s["cuda"] = torch.cuda.get_rng_state_all()
    return s


def set_rng_state(s: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (as stored in a checkpoint)."""
    torch.set_rng_state(s["torch"].to(torch.uint8))
    v, st, g = s["python"]
    random.setstate((v, tuple(st), g))
    n = s["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    if "cuda" in s and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([t.to(torch.uint8) for t in s["cuda"]])


def param_checksum(model: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of all parameters and buffers, in state_dict order (identical weights ⇔ same digest)."""
    h = hashlib.sha256()
    for k, v in getattr(model, "module", model).state_dict().items():
        h.update(k.encode())
        tensor_digest(h, v)
    return h.hexdigest()[:16]

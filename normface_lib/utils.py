"""Small shared helpers: seeding, input checks, device choice."""
from __future__ import annotations

import os
import random
from typing import Sequence

import numpy as np
import torch

from .errors import InputError


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA) with ``seed``; return a CPU ``torch.Generator`` seeded the same."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return torch.Generator().manual_seed(seed)


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else CUDA when available, else CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_images(images: torch.Tensor, name: str = "images", channels: Sequence[int] = (3,),
                 square: bool = False) -> torch.Tensor:
    """Validate an image batch: float tensor ``[B, C, H, W]`` with ``C`` in ``channels`` and values in ``[0, 1]``.

    Returns the tensor unchanged. Raises :class:`InputError` saying what is wrong and how to fix it.
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor [B,3,H,W] with values in [0,1], got {type(images).__name__}; "
                         "convert with torchvision.transforms.functional.to_tensor or normface_lib.preprocessing.load_image.")
    if images.dim() != 4 or images.shape[1] not in tuple(channels):
        raise InputError(f"{name} must have shape [B,{'|'.join(map(str, channels))},H,W], got {tuple(images.shape)}; "
                         "add a batch dimension with .unsqueeze(0) or repeat grey images to 3 channels.")
    if not images.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor in [0,1], got dtype {images.dtype}; "
                         "divide uint8 images by 255.")
    if square and images.shape[-1] != images.shape[-2]:
        raise InputError(f"{name} must be square canonical crops, got {images.shape[-2]}x{images.shape[-1]}; "
                         "align faces with normface_lib.preprocessing.align_faces first.")
    if images.numel():
        lo, hi = float(images.detach().min()), float(images.detach().max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise InputError(f"{name} values must lie in [0,1], got [{lo:.3g}, {hi:.3g}]; "
                             "if they are 0-255, divide by 255; if standardised, undo the standardisation.")
    return images


def num_threads_hint() -> int:
    """Number of CPU threads torch should use here (``NORMFACE_THREADS`` or the CPU count)."""
    return int(os.environ.get("NORMFACE_THREADS", os.cpu_count() or 1))


PROFILES = ("quick", "paper")


def run_banner(profile: str, **params) -> str:
    """One line naming the profile and parameters a notebook runs with, printed at the top of every notebook so that
    every number below it can be traced to its profile. Raises :class:`InputError` for an unknown profile."""
    if profile not in PROFILES:
        raise InputError(f"unknown profile {profile!r}; use one of {', '.join(PROFILES)}.")
    extra = " ".join(f"{k}={v}" for k, v in params.items())
    return (f"normface profile={profile} {extra} | torch {torch.__version__}, "
            f"{'CUDA ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU'}, "
            f"{torch.get_num_threads()} threads").replace("  ", " ")

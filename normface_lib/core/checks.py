"""Input checks shared by every room: one function per kind of input, each raising :class:`InputError` that says what
was wrong and what to do about it.

Shape and dtype checks cost nothing and always run. *Value* checks (range, NaN/inf) read every element and, on a GPU,
make the host wait for the device; they run at the library's public entry points and are skipped inside
:func:`skip_value_checks`, which the training loop wraps around its steps (its tensors were checked when they were
made, and the decoder's outputs are in range by construction).

    >>> import torch
    >>> check_images(torch.rand(2, 3, 8, 8), square=True).shape
    torch.Size([2, 3, 8, 8])
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Iterator, Sequence

import numpy as np
import torch

from .errors import InputError

#: Landmarks per face (dlib / iBUG 300-W order).
N_LANDMARKS = 68

_VALUE_CHECKS = [True]


@contextlib.contextmanager
def skip_value_checks() -> Iterator[None]:
    """Within this block, the checks below test shapes and dtypes only (no range or NaN scan, no device sync)."""
    _VALUE_CHECKS.append(False)
    try:
        yield
    finally:
        _VALUE_CHECKS.pop()


def value_checks_enabled() -> bool:
    """False inside :func:`skip_value_checks`."""
    return _VALUE_CHECKS[-1]


def _shape(x) -> str:
    return str(tuple(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_range(x: torch.Tensor, name: str, lo: float = 0.0, hi: float = 1.0, tol: float = 1e-3,
                hint: str = "") -> torch.Tensor:
    """Raise :class:`InputError` when ``x`` holds NaN/inf or values outside ``[lo - tol, hi + tol]`` (a value check)."""
    if not value_checks_enabled() or not x.numel():
        return x
    a, b = torch.aminmax(x.detach())
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        raise InputError(f"{name} contains NaN values; the file or the computation that made it is broken "
                         "(load photos with normface_lib.faces.load_image).")
    if a < lo - tol or b > hi + tol:
        raise InputError(f"{name} values must lie in [{lo:g},{hi:g}], got [{a:.3g}, {b:.3g}]" + (f"; {hint}" if hint
                                                                                               else "."))
    return x


def check_finite(x: torch.Tensor, name: str) -> torch.Tensor:
    """Raise :class:`InputError` when ``x`` holds NaN or inf (a value check)."""
    if value_checks_enabled() and x.numel() and not bool(torch.isfinite(x.detach()).all()):
        raise InputError(f"{name} contains NaN or inf values.")
    return x


def check_images(images, name: str = "images", channels: Sequence[int] = (3,), square: bool = False) -> torch.Tensor:
    """An image batch: float tensor ``[B, C, H, W]`` with ``C`` in ``channels`` and values in ``[0, 1]`` (no NaN).

    Returns the tensor unchanged. Raises :class:`InputError` saying what is wrong and how to fix it.
    """
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor [B,3,H,W] with values in [0,1], got {type(images).__name__}; "
                         "convert with torchvision.transforms.functional.to_tensor or normface_lib.faces.load_image.")
    if images.dim() != 4 or images.shape[1] not in tuple(channels):
        raise InputError(f"{name} must have shape [B,{'|'.join(map(str, channels))},H,W], got {tuple(images.shape)}; "
                         "add a batch dimension with .unsqueeze(0) or repeat grey images to 3 channels.")
    if not images.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor in [0,1], got dtype {images.dtype}; "
                         "divide uint8 images by 255.")
    if square and images.shape[-1] != images.shape[-2]:
        raise InputError(f"{name} must be square canonical crops, got {images.shape[-2]}x{images.shape[-1]}; "
                         "align faces with normface_lib.faces.align_faces first.")
    return check_range(images, name, hint="if they are 0-255, divide by 255; if standardised, undo the standardisation.")


def check_image(image, name: str = "image") -> torch.Tensor:
    """One image: float tensor ``[3, H, W]`` with values in ``[0, 1]`` (no NaN); returned unchanged."""
    if not isinstance(image, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor [3,H,W] in [0,1], got {type(image).__name__}; "
                         "load photos with normface_lib.faces.load_image.")
    if image.dim() != 3:
        raise InputError(f"{name} must be [3,H,W] RGB, got shape {tuple(image.shape)}.")
    check_images(image[None], name)
    return image


def check_landmarks(landmarks, name: str = "landmarks", batch: int | None = None, batched: bool | None = None,
                    finite: bool = False) -> torch.Tensor:
    """68-point landmarks: a float tensor ``[..., 68, 2]`` of ``(x, y)`` pixels in dlib order.

    Args:
        batch: when given, a batched ``[B, 68, 2]`` must have ``B == batch``.
        batched: ``True`` requires ``[B, 68, 2]``, ``False`` requires ``[68, 2]``; ``None`` accepts any leading dims.
        finite: also reject NaN/inf (a value check).

    Returns the tensor unchanged.
    """
    if not isinstance(landmarks, torch.Tensor):
        raise InputError(f"{name} must be a float tensor [...,68,2] (x, y pixels), got {type(landmarks).__name__}; "
                         "convert with torch.as_tensor(..., dtype=torch.float32).")
    want = {True: "[B,68,2]", False: "[68,2]", None: "[B,68,2] or [68,2]"}[batched]
    if landmarks.dim() < 2 or tuple(landmarks.shape[-2:]) != (N_LANDMARKS, 2) or \
            (batched is True and landmarks.dim() != 3) or (batched is False and landmarks.dim() != 2):
        raise InputError(f"{name} must have shape {want} (dlib order, x then y), got {tuple(landmarks.shape)}"
                         + ("; add a batch dimension with .unsqueeze(0)." if batched and landmarks.dim() == 2 else "."))
    if not landmarks.is_floating_point():
        raise InputError(f"{name} must be floating point, got {landmarks.dtype}; use .float().")
    if batch is not None and landmarks.dim() == 3 and landmarks.shape[0] != batch:
        raise InputError(f"{name} has {landmarks.shape[0]} landmark sets for {batch} images.")
    return check_finite(landmarks, name) if finite else landmarks


def as_landmarks(landmarks, name: str = "landmarks", batched: bool | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Landmarks from a tensor or an array (anything NumPy reads), checked as in :func:`check_landmarks` with
    ``finite=True``, as a detached CPU tensor of ``dtype``."""
    if not isinstance(landmarks, torch.Tensor):
        landmarks = torch.as_tensor(np.asarray(landmarks, dtype=np.float64 if dtype == torch.float64 else np.float32))
    return check_landmarks(landmarks, name, batched=batched, finite=True).detach().to(dtype).cpu()


def check_points(points, name: str = "points") -> torch.Tensor:
    """Points: a float tensor ``[..., 2]`` of ``(x, y)`` coordinates."""
    if not isinstance(points, torch.Tensor):
        raise InputError(f"{name} must be a float torch.Tensor [..., 2] of (x, y) pixel coordinates, got "
                         f"{type(points).__name__}; wrap it with torch.as_tensor(..., dtype=torch.float32).")
    if points.dim() < 1 or points.shape[-1] != 2:
        raise InputError(f"{name} must end in a dimension of size 2 (x, y), got shape {tuple(points.shape)}.")
    if not points.is_floating_point():
        raise InputError(f"{name} must be floating point (float32 or float64), got {points.dtype}; "
                         "convert with .float().")
    return points


def check_rows(x, name: str, rows: int | None = None) -> torch.Tensor:
    """A finite float matrix ``[N, E]`` (features, embeddings), optionally with ``rows`` rows."""
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise InputError(f"{name} must be a float tensor [N,E], got "
                         f"{type(x).__name__ if not isinstance(x, torch.Tensor) else (tuple(x.shape), x.dtype)}.")
    if rows is not None and x.shape[0] != rows:
        raise InputError(f"{name} has {x.shape[0]} rows, expected {rows} (one per photo).")
    return check_finite(x, name)


def check_labels(labels, name: str, n: int) -> torch.Tensor:
    """Integer labels ``[n]`` (one per row) as a long tensor."""
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != n or labels.is_floating_point():
        raise InputError(f"{name} must be an integer tensor [{n}] (one label per row), got "
                         f"{tuple(labels.shape)} {labels.dtype}.")
    return labels.long()


def check_size(size, name: str = "size", minimum: int = 8) -> int:
    """A crop side in pixels: an integer ``>= minimum`` (Python or NumPy int, not bool)."""
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < minimum:
        raise InputError(f"{name} must be an integer crop side of at least {minimum} pixels (e.g. 64, 112, 224), "
                         f"got {size!r}.")
    return int(size)

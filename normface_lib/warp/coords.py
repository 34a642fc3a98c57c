"""Pixel coordinates ↔ ``grid_sample``'s normalised coordinates (``align_corners=False``)."""
from __future__ import annotations

import torch

from ..core.checks import check_points
from ..core.errors import InputError


def size_hw(size, name: str = "size") -> tuple[int, int]:
    """``(H, W)`` from an int (square) or a pair of ints; raises :class:`InputError` otherwise."""
    if isinstance(size, int) and not isinstance(size, bool):
        size = (size, size)
    try:
        h, w = (int(s) for s in size)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be an int or a pair (H, W) of ints, got {size!r}.") from None
    if h < 1 or w < 1:
        raise InputError(f"{name} must be positive, got {(h, w)}.")
    return h, w


def pixels_to_normalized(points: torch.Tensor, size) -> torch.Tensor:
    """Pixel coordinates → ``grid_sample`` normalised coordinates (``align_corners=False``).

    Args:
        points: float tensor ``[..., 2]``, ``(x, y)`` in pixels, centre of the top-left pixel at ``(0, 0)``.
        size: ``(H, W)`` of the image the points belong to, or an int for a square image.

    Returns:
        Tensor like ``points`` with ``xn = (2x + 1) / W - 1``, ``yn = (2y + 1) / H - 1``: the image's outer edges
        map to ``±1`` (pixel centres lie strictly inside).
    """
    check_points(points)
    h, w = size_hw(size)
    scale = points.new_tensor([2.0 / w, 2.0 / h])
    offset = points.new_tensor([1.0 / w - 1.0, 1.0 / h - 1.0])
    return points * scale + offset


def normalized_to_pixels(points: torch.Tensor, size) -> torch.Tensor:
    """Inverse of :func:`pixels_to_normalized`: ``x = ((xn + 1) W - 1) / 2``; same shapes and arguments."""
    check_points(points)
    h, w = size_hw(size)
    return ((points + 1.0) * points.new_tensor([float(w), float(h)]) - 1.0) * 0.5

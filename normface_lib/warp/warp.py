"""The public warp: the dense backward map through a landmark spline (:func:`dense_flow`), the warped image
(:func:`warp_image`, what the decoder calls), the map at scattered points (:func:`warp_points`) and the fast mode's
accuracy (:func:`fast_mode_error`)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.checks import check_points
from ..core.errors import InputError
from .coords import pixels_to_normalized, size_hw
from .lattice import eval_lattice, lattice_nodes, upsample_matrix
from .spline import as_batched_points, check_reg, eval_spline, fit_spline

#: Default ridge on the kernel diagonal, in the unit frame (output pixels / max(H_out, W_out)); see module docstring.
DEFAULT_REG: float = 1e-5
#: Default number of lattice cells along the longer output side in fast mode (spacing max(H', W') / 40, i.e. about
#: 5.6 px at 224 px). A fixed fraction of the face keeps the error in pixels proportional to the image size.
DEFAULT_GRID_CELLS: int = 40
#: Warp modes: ``"fast"`` (coarse lattice + cubic upsampling of the flow) and ``"exact"`` (the spline at every pixel).
MODES = ("fast", "exact")


def _sampling_grid(src: torch.Tensor, dst: torch.Tensor, out_hw: tuple[int, int], in_hw: tuple[int, int] | None,
                   mode: str, reg: float, grid: float) -> torch.Tensor:
    """Shared core of :func:`dense_flow` and :func:`warp_image`. ``in_hw`` None: pixels, else normalised for that
    size."""
    H, W = out_hw
    S = float(max(H, W))
    dtype = dst.dtype if dst.is_floating_point() else torch.float32
    values = src if in_hw is None else pixels_to_normalized(src, in_hw)
    # unit frame for the centres: reg means the same at every size; lattice coordinates in the same frame
    spline = fit_spline(dst / S, values, reg=reg)
    dev = dst.device
    if mode == "exact":
        xs = torch.arange(W, device=dev, dtype=dtype) / S
        ys = torch.arange(H, device=dev, dtype=dtype) / S
        return eval_lattice(spline, xs, ys)
    nx, kx = lattice_nodes(W, grid, dev, dtype)
    ny, ky = lattice_nodes(H, grid, dev, dtype)
    coarse = eval_lattice(spline, nx / S, ny / S)  # [B, ny, nx, 2]
    B = coarse.shape[0]
    # the natural cubic spline reproduces affine functions exactly, so the positions themselves are upsampled (no
    # identity map to subtract and add back: one full-resolution pass fewer, forward and backward)
    Rx2 = upsample_matrix(W, kx, 2, dev, dtype)  # [nx*2, W*2] (x and y interleaved)
    Ry = upsample_matrix(H, ky, 1, dev, dtype, transpose=False)  # [H, ny]
    # columns first on the small lattice, then rows; the result is already laid out as [B, H, W, 2]
    t = coarse.reshape(B, ny.shape[0], -1) @ Rx2  # [B, ny, W*2]
    return torch.matmul(Ry, t).reshape(B, H, W, 2)


def _prepare_points(src_points, dst_points):
    src = as_batched_points(src_points, "src_points")
    dst = as_batched_points(dst_points, "dst_points")
    if src.shape[1] != dst.shape[1]:
        raise InputError(f"src_points and dst_points must have the same number of points L, got {src.shape[1]} and "
                         f"{dst.shape[1]}.")
    if src.shape[0] != dst.shape[0] and 1 not in (src.shape[0], dst.shape[0]):
        raise InputError(f"batch sizes of src_points ({src.shape[0]}) and dst_points ({dst.shape[0]}) must match or "
                         "one of them must be 1 (or the points unbatched [L, 2]).")
    if src.dtype != dst.dtype or src.device != dst.device:
        raise InputError(f"src_points ({src.dtype}, {src.device}) and dst_points ({dst.dtype}, {dst.device}) must "
                         "have the same dtype and device.")
    return src, dst


def check_mode(mode: str) -> str:
    """``mode`` if it is one of :data:`MODES`, else :class:`InputError`."""
    if mode not in MODES:
        raise InputError(f"mode must be 'fast' or 'exact', got {mode!r}.")
    return mode


def _lattice_spacing(mode, grid, out_hw):
    check_mode(mode)
    if grid is None:
        return max(out_hw) / DEFAULT_GRID_CELLS
    try:
        grid = float(grid)
    except (TypeError, ValueError):
        raise InputError(f"grid must be a positive number of output pixels, got {grid!r}.") from None
    if not grid > 0 or math.isinf(grid):
        raise InputError(f"grid must be a positive number of output pixels, got {grid!r}.")
    return grid


def dense_flow(src_points: torch.Tensor, dst_points: torch.Tensor, size, mode: str = "fast",
               reg: float = DEFAULT_REG, grid: float | None = None) -> torch.Tensor:
    """Dense backward map: for every output pixel, the input position it samples.

    Args:
        src_points: float ``[B, L, 2]`` or ``[L, 2]``, pixels of the input (source) image.
        dst_points: float ``[B, L, 2]`` or ``[L, 2]``, pixels of the output image (spline centres). Same dtype/device
            as ``src_points``; batch sizes equal or one of them 1.
        size: ``(H_out, W_out)`` or an int.
        mode: ``"exact"`` (spline at every pixel) or ``"fast"`` (coarse lattice + cubic upsampling).
        reg: ridge in the unit frame (see module docstring), default :data:`DEFAULT_REG`; ``0`` interpolates.
        grid: fast mode's lattice spacing in output pixels; ``None`` (default): ``max(H_out, W_out) / 40``
            (:data:`DEFAULT_GRID_CELLS`). Ignored by ``"exact"``.

    Returns:
        ``[B, H_out, W_out, 2]`` ``(x, y)`` input pixel positions (same dtype as the points; may lie outside the
        input). Differentiable in both point sets; ``flow[b, y, x]`` ≈ ``src[b, i]`` where ``(x, y) = dst[b, i]``.
    """
    grid = _lattice_spacing(mode, grid, size_hw(size))
    src, dst = _prepare_points(src_points, dst_points)
    return _sampling_grid(src, dst, size_hw(size), None, mode, check_reg(reg), grid)


def warp_points(points: torch.Tensor, src_points: torch.Tensor, dst_points: torch.Tensor,
                reg: float = DEFAULT_REG, size=None) -> torch.Tensor:
    """Apply the backward map of :func:`warp_image` to scattered output-frame points (exactly).

    Args:
        points: float ``[B, N, 2]`` or ``[N, 2]``, pixels of the output frame.
        src_points, dst_points: as in :func:`dense_flow`.
        size: ``(H_out, W_out)`` of the output frame (sets the unit frame of ``reg``); defaults to the
            bounding box of ``dst_points`` rounded up, which is only right when ``reg = 0``, so pass it.

    Returns:
        ``[B, N, 2]`` input-frame pixel positions sampled by those output pixels.
    """
    src, dst = _prepare_points(src_points, dst_points)
    if size is None:
        S = float(dst.detach().amax().ceil().clamp_min(1).item()) + 1.0
    else:
        S = float(max(size_hw(size)))
    spline = fit_spline(dst / S, src, reg=check_reg(reg))
    check_points(points)
    return eval_spline(spline, points / S)


def warp_image(image: torch.Tensor, src_points: torch.Tensor, dst_points: torch.Tensor, out_size=None,
               mode: str = "fast", reg: float = DEFAULT_REG, grid: float | None = None,
               padding_mode: str = "border") -> torch.Tensor:
    """Warp images so that the output pixel at ``dst_points[i]`` shows what the input had at ``src_points[i]``.

    Args:
        image: float ``[B, C, H, W]`` (any channels, any values; images in ``[0, 1]`` stay in ``[0, 1]``).
        src_points: float ``[B, L, 2]`` or ``[L, 2]``, pixels of ``image``.
        dst_points: float ``[B, L, 2]`` or ``[L, 2]``, pixels of the output. Batch sizes of the points must be ``B``
            or 1.
        out_size: ``(H', W')`` or int; default ``(H, W)``.
        mode: ``"fast"`` (default; coarse lattice every ``grid`` px + cubic-spline upsampling of the flow) or
            ``"exact"`` (spline evaluated at every output pixel).
        reg: spline ridge in the unit frame (see module docstring), default :data:`DEFAULT_REG`.
        grid: fast-mode lattice spacing in output pixels; ``None`` (default): ``max(H', W') / 40``.
        padding_mode: ``grid_sample`` padding outside the input: ``"border"`` (default), ``"zeros"``, ``"reflection"``.

    Returns:
        ``[B, C, H', W']`` warped images, dtype of ``image``. Differentiable in ``image`` and both point sets.

    Raises:
        InputError: wrong shapes/dtypes, mismatched ``L`` or batch sizes, unknown mode, bad ``reg``/``grid``.
    """
    if not isinstance(image, torch.Tensor):
        raise InputError(f"image must be a float torch.Tensor [B, C, H, W], got {type(image).__name__}.")
    if image.dim() != 4:
        raise InputError(f"image must be [B, C, H, W], got shape {tuple(image.shape)}; add a batch dimension with "
                         ".unsqueeze(0).")
    if not image.is_floating_point():
        raise InputError(f"image must be floating point, got {image.dtype}; divide uint8 images by 255.")
    if padding_mode not in ("border", "zeros", "reflection"):
        raise InputError(f"padding_mode must be 'border', 'zeros' or 'reflection', got {padding_mode!r}.")
    out_hw = size_hw(out_size if out_size is not None else tuple(image.shape[-2:]), "out_size")
    grid = _lattice_spacing(mode, grid, out_hw)
    src, dst = _prepare_points(src_points, dst_points)
    B = image.shape[0]
    for name, p in (("src_points", src), ("dst_points", dst)):
        if p.shape[0] not in (1, B):
            raise InputError(f"{name} has batch size {p.shape[0]} but image has {B}; pass [L, 2] or [B, L, 2].")
    if src.device != image.device:
        raise InputError(f"points are on {src.device} but image is on {image.device}; move them with "
                         ".to(image.device).")
    g = _sampling_grid(src, dst, out_hw, tuple(image.shape[-2:]), mode, check_reg(reg), grid)
    if g.shape[0] != B:
        g = g.expand(B, -1, -1, -1)
    return F.grid_sample(image, g.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)


def fast_mode_error(src_points: torch.Tensor, dst_points: torch.Tensor, size, reg: float = DEFAULT_REG,
                    grid: float | None = None) -> dict[str, float]:
    """Accuracy of the fast mode: distance (output pixels) between its sampling positions, computed in the points'
    own dtype as in training, and the exact spline's evaluated in float64, over every pixel of every image.

    Args: as :func:`dense_flow` (``src_points``/``dst_points`` ``[B,L,2]`` or ``[L,2]`` float pixels, ``size``).

    Returns:
        ``{"mean": ..., "p99": ..., "max": ...}`` in pixels.
    """
    fast = dense_flow(src_points, dst_points, size, mode="fast", reg=reg, grid=grid).double()
    exact = dense_flow(src_points.double(), dst_points.double(), size, mode="exact", reg=reg)
    err = (fast - exact).norm(dim=-1).flatten()
    p99 = torch.kthvalue(err, max(1, int(round(0.99 * err.numel())))).values
    return {"mean": float(err.mean()), "p99": float(p99), "max": float(err.max())}

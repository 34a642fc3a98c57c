"""Differentiable landmark-driven image warp: polyharmonic (thin-plate) spline + bilinear resampling.

This is the paper's warp (Cole et al. 2017, section 3): the displacement between two landmark sets is known at ``L``
control points; a polyharmonic spline interpolates it to a dense sampling grid, and the image is resampled bilinearly
with :func:`torch.nn.functional.grid_sample`. Everything is batched (no Python loop over the batch), device-agnostic
and differentiable in the image and in both point sets.

Conventions (see ``CONTRIBUTING.md``)
-------------------------------------
* Points are ``(x, y)`` in **pixels** of the image they belong to, with the centre of the top-left pixel at ``(0, 0)``.
  :func:`pixels_to_normalized` / :func:`normalized_to_pixels` convert to ``grid_sample``'s ``align_corners=False``
  frame (``xn = (2x + 1) / W - 1``).
* **Backward mapping**: in ``warp_image(image, src_points, dst_points)`` the output pixel at ``dst_points[i]`` shows
  what the input had at ``src_points[i]``. The spline's centres are the ``dst_points`` (output frame) and its values
  are the ``src_points`` (input frame); it is evaluated at every output pixel to give the sampling position.

The spline
----------
``f(x) = sum_j w_j phi(|x - c_j|) + a . p(x)`` with ``phi`` the polyharmonic kernel of order ``k``
(``k = 2``: thin plate, ``r^2 log r``; odd ``k``: ``±r^k``; even ``k``: ``±r^k log r``, signs as in
:class:`scipy.interpolate.RBFInterpolator`) and ``p`` the monomials of degree ``<= max(1, k // 2)`` (so affine maps
are reproduced exactly). The coefficients solve ``[[K + reg I, P], [P^T, 0]] [w; a] = [v; 0]``: ``reg = 0`` interpolates,
``reg > 0`` is a smoothing spline (scipy's ``smoothing``). The ``(L + m)`` system is solved in float64.

Regularisation (why ``reg`` defaults to :data:`DEFAULT_REG`)
-------------------------------------------------------------
dlib landmarks are integer pixels, and with a closed mouth the inner-lip points 61/67, 62/66, 63/65 coincide, while
the mean shape's do not: no interpolant exists and the exact system is singular. We *regularise* rather than merge
points, because merging is a data-dependent change of structure that breaks batching and gives wrong gradients with
respect to the points. With a ridge ``reg`` on the kernel diagonal, exactly coincident centres are handled in closed
form (the fit there is the mean of their values) and the system stays well conditioned. ``reg`` for
:func:`warp_image` / :func:`dense_flow` is expressed in the *unit frame*, output pixel coordinates divided by
``S = max(H_out, W_out)``, so it means the same at 64 and 224 px; for thin-plate splines this equals scipy's
``smoothing = reg * S**2`` in pixel coordinates (for odd orders ``reg * S**k``). The default trades a fit residual of
a few hundredths of a pixel at the landmarks for bounded weights (no float32 cancellation next to coincident points)
and smooth flows that the fast mode can represent; see :data:`DEFAULT_REG`.

Modes
-----
``"exact"`` evaluates the spline at every output pixel (row-chunked, custom backward that recomputes instead of
storing ``B*L*H*W`` intermediates). ``"fast"`` evaluates it exactly on a coarse lattice every ``grid`` output pixels
(plus one ghost node beyond each border) and upsamples with separable natural-cubic-spline interpolation (which
reproduces affine maps exactly) written as two small matrix products. The errors of the fast mode against the exact
flow are measured by ``benchmarks/warp.py`` and bounded in ``tests/test_warp.py``.

Speed (the warp is the hot path of training; ``benchmarks/warp.py`` compares it with kornia and bare ``grid_sample``)
comes from closed-form backwards rather than autograd chains: the ``(L + m)`` system's LU factorisation is reused
for its gradient (:class:`_SplineSolve`), and the thin-plate lattice gradient is a single product of ``log d2``
with four per-pixel fields (:class:`_RadialLattice`). Both are checked against finite differences for every order.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from .errors import InputError

__all__ = [
    "DEFAULT_REG", "DEFAULT_GRID", "DEFAULT_GRID_CELLS", "DEFAULT_ORDER", "Spline", "pixels_to_normalized", "normalized_to_pixels",
    "polyharmonic_kernel", "fit_spline", "eval_spline", "dense_flow", "warp_image", "warp_points",
]

#: Default ridge on the kernel diagonal, in the unit frame (output pixels / max(H_out, W_out)); see module docstring.
DEFAULT_REG: float = 1e-5
#: Default number of lattice cells along the longer output side in fast mode (spacing max(H', W') / 40, i.e. about
#: 5.6 px at 224 px). A fixed fraction of the face keeps the error in pixels proportional to the image size.
DEFAULT_GRID_CELLS: int = 40
#: ``grid=None`` means the spacing ``max(H', W') / DEFAULT_GRID_CELLS``; a number is the spacing in output pixels.
DEFAULT_GRID = None
#: Default polyharmonic order (2 = thin-plate spline).
DEFAULT_ORDER: int = 2

_MAX_ORDER = 5
_LOG_FLOOR = 1e-30  # squared distances below this are treated as 0 inside log/sqrt (finite gradients)
_CHUNK_ELEMS = 1 << 20  # elements of a [Bc, L, rows, W] block evaluated at once (few parallel regions)


# ------------------------------------------------------------------------------------------------ coordinates
def _size_hw(size, name: str = "size") -> tuple[int, int]:
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
    _check_points(points, "points")
    h, w = _size_hw(size)
    scale = points.new_tensor([2.0 / w, 2.0 / h])
    offset = points.new_tensor([1.0 / w - 1.0, 1.0 / h - 1.0])
    return points * scale + offset


def normalized_to_pixels(points: torch.Tensor, size) -> torch.Tensor:
    """Inverse of :func:`pixels_to_normalized`: ``x = ((xn + 1) W - 1) / 2``; same shapes and arguments."""
    _check_points(points, "points")
    h, w = _size_hw(size)
    return ((points + 1.0) * points.new_tensor([float(w), float(h)]) - 1.0) * 0.5


# ------------------------------------------------------------------------------------------------ validation
def _check_points(points, name: str, allow_batch: bool = True) -> None:
    if not isinstance(points, torch.Tensor):
        raise InputError(f"{name} must be a float torch.Tensor [..., 2] of (x, y) pixel coordinates, got "
                         f"{type(points).__name__}; wrap it with torch.as_tensor(..., dtype=torch.float32).")
    if points.dim() < 1 or points.shape[-1] != 2:
        raise InputError(f"{name} must end in a dimension of size 2 (x, y), got shape {tuple(points.shape)}.")
    if not points.is_floating_point():
        raise InputError(f"{name} must be floating point (float32 or float64), got {points.dtype}; "
                         "convert with .float().")


def _as_batched_points(points, name: str) -> torch.Tensor:
    _check_points(points, name)
    if points.dim() == 2:
        points = points[None]
    if points.dim() != 3:
        raise InputError(f"{name} must be [B, L, 2] or [L, 2], got shape {tuple(points.shape)}.")
    if points.shape[1] < 3:
        raise InputError(f"{name} needs at least 3 control points to fix an affine map, got {points.shape[1]}.")
    return points


def _check_order(order) -> int:
    if isinstance(order, bool) or not isinstance(order, int) or not 1 <= order <= _MAX_ORDER:
        raise InputError(f"order must be an int in 1..{_MAX_ORDER} (2 = thin-plate spline), got {order!r}.")
    return order


def _check_reg(reg) -> float:
    try:
        reg = float(reg)
    except (TypeError, ValueError):
        raise InputError(f"reg must be a non-negative float, got {reg!r}.") from None
    if not reg >= 0 or math.isinf(reg):
        raise InputError(f"reg must be a finite non-negative float, got {reg!r}; use 0 for exact interpolation.")
    return reg


# ------------------------------------------------------------------------------------------------ kernel
def _kernel_sign(order: int) -> float:
    # conditionally positive definite signs (as in scipy): k=1 -r, k=2 r^2 log r, k=3 r^3, k=4 -r^4 log r, k=5 -r^5
    return float((-1) ** ((order + 1) // 2)) if order % 2 else float((-1) ** (order // 2 + 1))


def _poly_degree(order: int) -> int:
    return max(1, order // 2)


def _kernel_and_slope(d2: torch.Tensor, order: int, need_slope: bool):
    """phi as a function of the squared distance, and optionally d phi / d(d2). Elementwise, out-of-place."""
    sign = _kernel_sign(order)
    safe = d2.clamp_min(_LOG_FLOOR)
    if order % 2 == 0:
        lg = torch.log(safe)
        if order == 2:
            phi = 0.5 * sign * d2 * lg
            slope = (lg + 1.0).mul_(0.5 * sign) if need_slope else None
        else:  # r^k log r = 0.5 d2^(k/2) log d2
            p = d2.pow(order // 2 - 1)
            phi = 0.5 * sign * p * d2 * lg
            slope = (0.5 * sign * p * ((order // 2) * lg + 1.0)) if need_slope else None
    else:
        r = torch.sqrt(safe)
        phi = sign * r.pow(order)
        slope = (0.5 * sign * order * r.pow(order - 2)) if need_slope else None
        phi = torch.where(d2 > _LOG_FLOOR, phi, torch.zeros_like(phi))
    return phi, slope


def polyharmonic_kernel(r2: torch.Tensor, order: int = DEFAULT_ORDER) -> torch.Tensor:
    """Polyharmonic radial kernel as a function of the squared distance.

    Args:
        r2: float tensor of squared distances ``r^2 >= 0`` (any shape).
        order: ``k`` in 1..5; 2 is the thin-plate kernel ``r^2 log r`` (0 at ``r = 0``).

    Returns:
        ``phi(r)`` with scipy's signs (``-r``, ``r^2 log r``, ``r^3``, ``-r^4 log r``, ``-r^5``), same shape/dtype.
        Finite gradients everywhere, including ``r = 0``.
    """
    _check_order(order)
    return _kernel_and_slope(r2, order, False)[0]


def _monomials(points: torch.Tensor, degree: int) -> torch.Tensor:
    """[..., 2] → [..., m] monomials x^a y^b with a + b <= degree, constant first."""
    x, y = points[..., 0], points[..., 1]
    cols = [torch.ones_like(x)]
    for total in range(1, degree + 1):
        for b in range(total + 1):
            cols.append(x.pow(total - b) * y.pow(b))
    return torch.stack(cols, -1)


# ------------------------------------------------------------------------------------------------ fit / evaluate
def _pairwise_d2(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """[B, N, 2], [B, M, 2] → [B, N, M] squared distances from differences (exact 0 for equal points).
    Without autograd (e.g. inside a custom Function's forward) it works in place: two [B, N, M] buffers, not four."""
    dx = p[..., :, None, 0] - q[..., None, :, 0]
    dy = p[..., :, None, 1] - q[..., None, :, 1]
    if torch.is_grad_enabled() and (p.requires_grad or q.requires_grad):
        return dx * dx + dy * dy
    return dx.square_().add_(dy.square_())


class Spline(NamedTuple):
    """A fitted polyharmonic spline ``f(x) = sum_j w_j phi(|x - c_j|) + a . p((x - shift) / scale)``.

    Attributes:
        centers: ``[Bc, L, 2]`` kernel centres (``Bc`` is 1 or ``B``).
        weights: ``[B, L, D]`` kernel weights.
        poly: ``[B, m, D]`` polynomial coefficients (monomials of the shifted and scaled position, constant first).
        shift: ``[Bc, 1, 2]`` and ``scale`` ``[Bc, 1, 1]``: normalisation of the polynomial's argument.
        order: polyharmonic order ``k``.
    """
    centers: torch.Tensor
    weights: torch.Tensor
    poly: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor
    order: int


def _solve_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def fit_spline(centers: torch.Tensor, values: torch.Tensor, order: int = DEFAULT_ORDER, reg: float = 0.0) -> Spline:
    """Fit a batched polyharmonic (smoothing) spline through ``values`` given at ``centers``.

    Args:
        centers: float ``[B, L, 2]`` or ``[L, 2]`` (shared by the batch) positions, any units.
        values: float ``[B, L, D]`` or ``[L, D]``: the function's values at the centres (e.g. positions, ``D = 2``).
        order: polyharmonic order ``k`` in 1..5 (2 = thin plate). Monomials up to degree ``max(1, k // 2)``.
        reg: ridge ``>= 0`` added to the kernel matrix's diagonal, in the units of ``phi`` at the given coordinates;
            identical to ``scipy.interpolate.RBFInterpolator(smoothing=reg)``. ``0`` interpolates exactly and fails
            on coincident centres.

    Returns:
        :class:`Spline` (dtype of ``centers``; the system itself is solved in float64, differentiably).

    Raises:
        InputError: wrong shapes/dtypes, mismatched ``L`` or batch sizes, or a singular system with ``reg = 0``.
    """
    order, reg = _check_order(order), _check_reg(reg)
    centers = _as_batched_points(centers, "centers")
    if not isinstance(values, torch.Tensor) or not values.is_floating_point() or values.dim() not in (2, 3):
        raise InputError(f"values must be a float tensor [B, L, D] or [L, D], got "
                         f"{getattr(values, 'shape', type(values).__name__)} "
                         f"({getattr(values, 'dtype', '')}).")
    if values.dim() == 2:
        values = values[None]
    if values.shape[1] != centers.shape[1]:
        raise InputError(f"centers and values must have the same number of points L, got {centers.shape[1]} and "
                         f"{values.shape[1]}.")
    bc, bv = centers.shape[0], values.shape[0]
    if bc != bv and bc != 1 and bv != 1:
        raise InputError(f"batch sizes of centers ({bc}) and values ({bv}) must match or one of them must be 1.")
    B, L, D = max(bc, bv), centers.shape[1], values.shape[2]
    dtype, sdt = centers.dtype, _solve_dtype(centers.device)
    c = centers.to(sdt)
    # the polynomial's argument is normalised by constants: the fitted function does not depend on them, so holding
    # them fixed leaves every derivative of the spline's values unchanged (and keeps the backward closed-form)
    cd = c.detach()
    shift = cd.mean(1, keepdim=True)
    scale = (cd - shift).abs().amax((1, 2), keepdim=True).clamp_min(1e-12)
    degree = _poly_degree(order)
    m = (degree + 1) * (degree + 2) // 2  # monomials x^a y^b, a + b <= degree
    if L < m:
        raise InputError(f"order {order} needs at least {m} control points, got {L}.")
    v = values.to(sdt)
    if bc == 1 and bv > 1:  # one factorisation, all right-hand sides at once
        rhs = v.permute(1, 0, 2).reshape(1, L, bv * D)
    else:
        rhs = v.expand(B, L, D) if bv == 1 and bc > 1 else v
    if reg == 0 and L > 1:
        # exact interpolation is impossible through coincident centres; say so instead of returning garbage
        d2c = _pairwise_d2(cd, cd) + torch.eye(L, dtype=sdt, device=c.device) * (scale.square() + 1)
        if bool((d2c <= (1e-9 * scale) ** 2).any()):
            raise InputError("control points (spline centres) coincide, so exact interpolation (reg=0) is impossible; "
                             "use reg > 0 (e.g. normface_lib.warp.DEFAULT_REG) or remove duplicate points.")
    sol = _SplineSolve.apply(c, rhs, shift, scale, order, reg)  # [Bc, L+m, columns]
    if bc == 1 and bv > 1:
        sol = sol.reshape(L + m, bv, D).permute(1, 0, 2)
    return Spline(centers, sol[:, :L].to(dtype), sol[:, L:].to(dtype), shift.to(dtype), scale.to(dtype), order)


class _SplineSolve(torch.autograd.Function):
    """Solve ``[[K(c) + reg I, P(c)], [P(c)^T, 0]] X = [rhs; 0]`` with a closed-form backward.

    centers ``[Bc, L, 2]``, rhs ``[Bc, L, N]`` (solve dtype), shift ``[Bc, 1, 2]`` / scale ``[Bc, 1, 1]`` constants of the
    monomials → ``X [Bc, L + m, N]``. One LU factorisation serves the forward and the backward (the matrix is
    symmetric): ``grad_rhs = A^-1 grad_X`` and ``grad_A = -grad_rhs X^T``, pushed to the centres through
    ``dK_ij / dc_i = 2 phi'(d2_ij) (c_i - c_j)`` and the monomials' derivatives. Replaces a chain of a dozen autograd
    nodes over ``[Bc, L, L]`` tensors.
    """

    @staticmethod
    def forward(ctx, c, rhs, shift, scale, order, reg):
        bc, L, _ = c.shape
        pmat = _monomials((c - shift) / scale, _poly_degree(order))  # [Bc, L, m]
        m = pmat.shape[-1]
        # few [Bc, L, L] temporaries: each one is a pass over memory that costs as much as the arithmetic
        d2 = _pairwise_d2(c, c)  # [Bc, L, L]
        lhs = c.new_empty(bc, L + m, L + m)
        lg = None
        if order == 2:  # phi = d2 log(d2) / 2, written straight into the matrix
            lg = d2.clamp_min(_LOG_FLOOR).log_()
            torch.mul(d2, lg, out=lhs[:, :L, :L]).mul_(0.5)
        else:
            lhs[:, :L, :L] = _kernel_and_slope(d2, order, False)[0]
        if reg:
            lhs[:, :L, :L].diagonal(dim1=1, dim2=2).add_(reg)
        lhs[:, :L, L:] = pmat
        lhs[:, L:, :L] = pmat.transpose(1, 2)
        lhs[:, L:, L:] = 0.0
        LU, piv, info = torch.linalg.lu_factor_ex(lhs)
        if bool((info > 0).any()):
            raise InputError("the spline system is singular; this happens when control points coincide or are "
                             "collinear. Use reg > 0 (e.g. normface_lib.warp.DEFAULT_REG) or remove duplicate points.")
        b = torch.cat([rhs, rhs.new_zeros(bc, m, rhs.shape[2])], 1)
        sol = torch.linalg.lu_solve(LU, piv, b)
        ctx.save_for_backward(c, shift, scale, LU, piv, sol, d2, lg)
        ctx.order = order
        return sol

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        c, shift, scale, LU, piv, sol, d2, lg = ctx.saved_tensors
        order = ctx.order
        L = c.shape[1]
        y = torch.linalg.lu_solve(LU, piv, grad.contiguous(), adjoint=True)  # [Bc, L+m, N]
        grad_rhs = y[:, :L] if ctx.needs_input_grad[1] else None
        grad_c = None
        if ctx.needs_input_grad[0]:
            # dLoss/dA = -y X^T; its kernel block enters symmetrised, its polynomial blocks twice
            left = torch.cat([y[:, :L], sol[:, :L]], 2)  # [Bc, L, 2N]
            t = torch.bmm(left, torch.cat([sol[:, :L], y[:, :L]], 2).transpose(1, 2))  # -(G + G^T), [Bc, L, L]
            if order == 2:  # 2 phi'(d2) = log(d2) + 1
                t = torch.addcmul(t, t, lg)
            else:
                t.mul_(_kernel_and_slope(d2, order, True)[1]).mul_(2.0)
                if order == 1:  # phi' ~ 1/r blows up where c_i = c_j (there c_i - c_j = 0): keep it out
                    t.masked_fill_(d2 == 0, 0.0)
            grad_c = torch.bmm(t, c).sub_(c * t.sum(2, keepdim=True))  # -sum_j t_ij (c_i - c_j)
            gp = torch.bmm(left, torch.cat([sol[:, L:], y[:, L:]], 2).transpose(1, 2)).neg_()  # [Bc, L, m]
            with torch.enable_grad():
                u = c.detach().requires_grad_()
                pm = _monomials((u - shift) / scale, _poly_degree(order))
                grad_c = grad_c + torch.autograd.grad(pm, u, gp)[0]
        return grad_c, grad_rhs, None, None, None, None


def eval_spline(spline: Spline, points: torch.Tensor) -> torch.Tensor:
    """Evaluate a :class:`Spline` at scattered points.

    Args:
        spline: from :func:`fit_spline`.
        points: float ``[B, N, 2]`` or ``[N, 2]`` (shared) positions, same units as the spline's centres.

    Returns:
        ``[B, N, D]`` values, dtype of the spline. Differentiable in the points and all spline parameters.
    """
    _check_points(points, "points")
    pts = points[None] if points.dim() == 2 else points
    if pts.dim() != 3:
        raise InputError(f"points must be [B, N, 2] or [N, 2], got shape {tuple(points.shape)}.")
    c, w = spline.centers, spline.weights
    phi = _kernel_and_slope(_pairwise_d2(pts, c), spline.order, False)[0]  # [B, N, L]
    poly = _monomials((pts - spline.shift) / spline.scale, _poly_degree(spline.order))
    return phi @ w + poly @ spline.poly


# ------------------------------------------------------------------------------------------------ lattice evaluation
def _row_chunks(bc: int, L: int, H: int, W: int) -> tuple[list[tuple[int, int]], int]:
    """Row ranges ``(r0, r1)`` covering ``0..H`` in near-equal chunks whose ``[bc, L, rows, W]`` block holds at most
    :data:`_CHUNK_ELEMS` elements, and the largest chunk's row count."""
    step = max(1, _CHUNK_ELEMS // max(1, bc * L * W))
    step = -(-H // -(-H // step))  # same number of chunks, sizes balanced
    return [(r0, min(H, r0 + step)) for r0 in range(0, H, step)], step


def _block(buf: torch.Tensor, bc: int, L: int, n: int, W: int) -> torch.Tensor:
    """A contiguous ``[bc, L, n, W]`` view at the start of the flat buffer ``buf`` (a slice of a 4-D buffer along its
    rows would be strided and take the slow elementwise paths)."""
    return buf[: bc * L * n * W].view(bc, L, n, W)


class _RadialLattice(torch.autograd.Function):
    """out[b, i, j, e] = sum_l w[b, l, e] phi((ys[i] - cy[b, l])^2 + (xs[j] - cx[b, l])^2).

    Row-chunked with reused buffers (the ``B*L*H*W`` kernel values never exist at once); the backward recomputes
    the kernel instead of storing it. centers ``[Bc, L, 2]``, weights ``[Bc, L, E]``, xs ``[W]``, ys ``[H]`` →
    ``[Bc, H, W, E]``.

    Thin-plate backward (the hot path of training): with ``lg = log d2`` and ``phi = d2 lg / 2``, both gradients are
    linear in ``lg`` once ``d2 = x^2 + y^2 - 2 x cx - 2 y cy + |c|^2`` is expanded, so a single batched product of
    ``lg`` with the four per-pixel fields ``G, G x, G y, G (x^2 + y^2)`` of the incoming gradient ``G`` gives them all
    (``grad_w = (A_r - 2 cx A_x - 2 cy A_y + |c|^2 A_1) / 2``,
    ``grad_cx = -sum_e w_e (A_x - cx A_1 + B_x - cx B_1)`` with ``A`` the ``lg``-weighted and ``B`` the plain pixel
    sums). One pass over the kernel instead of five; coordinates are centred on the lattice first so the expansion
    loses no float32 precision that matters.
    """

    @staticmethod
    def forward(ctx, centers, weights, xs, ys, order):
        bc, L, _ = centers.shape
        H, W, E = ys.shape[0], xs.shape[0], weights.shape[-1]
        tps = order == 2
        # thin plate: phi = 0.5 d2 log d2; the 0.5 is folded into the weights. Adding the floor to dx2 (not
        # clamping d2) keeps log finite at a centre that sits on a node, at no extra pass over the block.
        dx2 = (xs[None, None, :] - centers[..., 0:1]).square_()  # [Bc, L, W]
        if tps:
            dx2.add_(_LOG_FLOOR)
        dy2 = (ys[None, None, :] - centers[..., 1:2]).square_()  # [Bc, L, H]
        out = centers.new_empty(bc, H, W, E)
        wt = (weights * 0.5 if tps else weights).transpose(1, 2)  # [Bc, E, L]
        chunks, rows = _row_chunks(bc, L, H, W)
        buf_d2 = centers.new_empty(bc * L * rows * W)
        buf_lg = torch.empty_like(buf_d2)
        for r0, r1 in chunks:
            d2 = torch.add(dy2[:, :, r0:r1, None], dx2[:, :, None, :], out=_block(buf_d2, bc, L, r1 - r0, W))
            if tps:
                phi = torch.log(d2, out=_block(buf_lg, bc, L, r1 - r0, W)).mul_(d2)
            else:
                phi = _kernel_and_slope(d2, order, False)[0]
            # [Bc, E, L] @ [Bc, L, rows*W] -> [Bc, E, rows*W]
            out[:, r0:r1] = torch.bmm(wt, phi.reshape(bc, L, -1)).reshape(bc, E, r1 - r0, W).permute(0, 2, 3, 1)
        ctx.save_for_backward(centers, weights, xs, ys)
        ctx.order = order
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        centers, weights, xs, ys = ctx.saved_tensors
        if ctx.order == 2:
            gcent, gw = _tps_lattice_backward(centers, weights, xs, ys, grad)
        else:
            gcent, gw = _generic_lattice_backward(centers, weights, xs, ys, grad, ctx.order,
                                                  ctx.needs_input_grad[0], ctx.needs_input_grad[1])
        return (gcent if ctx.needs_input_grad[0] else None), (gw if ctx.needs_input_grad[1] else None), None, None, None


def _tps_lattice_backward(centers, weights, xs, ys, grad):
    """Gradients of :class:`_RadialLattice` for the thin plate (see its docstring): one product with ``log d2``."""
    bc, L, _ = centers.shape
    H, W, E = ys.shape[0], xs.shape[0], weights.shape[-1]
    ox, oy = xs.mean(), ys.mean()
    x, y = xs - ox, ys - oy
    cx, cy = centers[..., 0:1] - ox, centers[..., 1:2] - oy  # [Bc, L, 1]
    g = grad.permute(0, 3, 1, 2)  # [Bc, E, H, W]
    fields = grad.new_empty(bc, 4, E, H, W)  # G, G x, G y, G r^2 per channel, pixels last
    fields[:, 0] = g
    torch.mul(g, x, out=fields[:, 1])
    torch.mul(g, y[:, None], out=fields[:, 2])
    torch.mul(g, y[:, None].square() + x.square(), out=fields[:, 3])
    fields = fields.view(bc, 4 * E, H * W).transpose(1, 2)  # [Bc, pixels, 4E] (column-major, fine for bmm)
    plain = fields.sum(1).view(bc, 1, 4, E)
    dx2 = (x[None, None, :] - cx).square_().add_(_LOG_FLOOR)
    dy2 = (y[None, None, :] - cy).square_()
    chunks, rows = _row_chunks(bc, L, H, W)
    buf = centers.new_empty(bc * L * rows * W)
    acc = centers.new_zeros(bc, L, 4 * E)
    for r0, r1 in chunks:
        lg = torch.add(dy2[:, :, r0:r1, None], dx2[:, :, None, :], out=_block(buf, bc, L, r1 - r0, W)).log_()
        acc.baddbmm_(lg.reshape(bc, L, -1), fields[:, r0 * W:r1 * W])
    a1, ax, ay, ar = acc.view(bc, L, 4, E).unbind(2)  # [Bc, L, E]
    b1, bx, by, _ = plain.unbind(2)  # [Bc, 1, E]
    gw = 0.5 * (ar - 2.0 * cx * ax - 2.0 * cy * ay + (cx.square() + cy.square()) * a1)
    gcx = (weights * (ax - cx * a1 + bx - cx * b1)).sum(-1)
    gcy = (weights * (ay - cy * a1 + by - cy * b1)).sum(-1)
    return torch.stack([gcx, gcy], -1).neg_(), gw


def _generic_lattice_backward(centers, weights, xs, ys, grad, order, need_c, need_w):
    """Gradients of :class:`_RadialLattice` for any order, from the kernel's slope (row-chunked recompute)."""
    bc, L, _ = centers.shape
    H, W, E = ys.shape[0], xs.shape[0], weights.shape[-1]
    dx = xs[None, None, :] - centers[..., 0:1]  # [Bc, L, W]
    dy = ys[None, None, :] - centers[..., 1:2]  # [Bc, L, H]
    dx2, dy2 = dx.square(), dy.square()
    # d out / d cx = -2 (x - cx) w slope(d2): accumulate t = slope * <w, grad> summed over rows (per column)
    # and over columns (per row), then grad_cx = -2 sum_j t_x[j] (x_j - cx), grad_cy likewise.
    gw = torch.zeros_like(weights) if need_w else None
    t_x = centers.new_zeros(bc, L, W) if need_c else None
    t_y = centers.new_zeros(bc, L, H) if need_c else None
    g = grad.permute(0, 3, 1, 2)  # [Bc, E, H, W]
    chunks, rows = _row_chunks(bc, L, H, W)
    buf_d2 = centers.new_empty(bc * L * rows * W)
    buf_s = torch.empty_like(buf_d2)
    for r0, r1 in chunks:
        n = r1 - r0
        gc = g[:, :, r0:r1].reshape(bc, E, -1)  # [Bc, E, rows*W]
        d2 = torch.add(dy2[:, :, r0:r1, None], dx2[:, :, None, :], out=_block(buf_d2, bc, L, n, W))
        phi, slope = _kernel_and_slope(d2, order, need_c)
        if need_w:
            gw += torch.bmm(phi.reshape(bc, L, -1), gc.transpose(1, 2))
        if need_c:
            s = torch.bmm(weights, gc, out=_block(buf_s, bc, L, n, W).view(bc, L, n * W)).view(bc, L, n, W)
            t = s.mul_(slope)
            t_x += t.sum(2)
            torch.sum(t, 3, out=t_y[:, :, r0:r1])
    gcent = None
    if need_c:
        gcent = torch.stack([(t_x * dx).sum(-1), (t_y * dy).sum(-1)], -1).mul_(-2.0)
    return gcent, gw


def _radial_lattice(centers, weights, xs, ys, order):
    return _RadialLattice.apply(centers, weights, xs, ys, order)


def _eval_lattice(spline: Spline, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Evaluate a spline on the lattice ``xs [W] x ys [H]`` → ``[B, H, W, D]``."""
    c, w, a = spline.centers, spline.weights, spline.poly
    bc, L, _ = c.shape
    B, _, D = w.shape
    if bc == 1 and B > 1:
        wl = w.permute(1, 0, 2).reshape(1, L, B * D)
        rad = _radial_lattice(c, wl, xs, ys, spline.order)  # [1, H, W, B*D]
        rad = rad.reshape(ys.shape[0], xs.shape[0], B, D).permute(2, 0, 1, 3)
    else:
        rad = _radial_lattice(c.expand(B, L, 2), w, xs, ys, spline.order)
    deg = _poly_degree(spline.order)
    sx = (xs[None, :] - spline.shift[:, 0, 0:1]) / spline.scale[:, 0]  # [Bc, W]
    sy = (ys[None, :] - spline.shift[:, 0, 1:2]) / spline.scale[:, 0]  # [Bc, H]
    if deg == 1:
        # a0 + a1 x + a2 y without materialising a [B, H, W, 3] basis
        poly = (a[:, None, None, 0, :] + sx[:, None, :, None] * a[:, None, None, 1, :]
                + sy[:, :, None, None] * a[:, None, None, 2, :])
    else:
        grid = torch.stack(torch.broadcast_tensors(sx[:, None, :], sy[:, :, None]), -1)  # [Bc, H, W, 2]
        poly = _monomials(grid, deg) @ a[:, None]
    return rad + poly


# ------------------------------------------------------------------------------------------------ fast upsampling
@lru_cache(maxsize=64)
def _cubic_spline_matrix_cpu(n_fine: int, n_int: int) -> torch.Tensor:
    """[n_fine, n_int + 3] float64: natural cubic-spline interpolation from nodes t_k = (k - 1) h, k = 0..n_int+2
    (h = (n_fine - 1) / n_int, one ghost node beyond each end) to the fine positions 0..n_fine-1."""
    n = n_int + 3
    h = (n_fine - 1) / n_int if n_int else 1.0
    # second derivatives M solve the tridiagonal system  M_{k-1} + 4 M_k + M_{k+1} = 6/h^2 (y_{k-1} - 2 y_k + y_{k+1})
    # with natural ends M_0 = M_{n-1} = 0; M = S @ y.
    tri = torch.zeros(n, n, dtype=torch.float64)
    rhs = torch.zeros(n, n, dtype=torch.float64)
    tri[0, 0] = tri[-1, -1] = 1.0
    for k in range(1, n - 1):
        tri[k, k - 1], tri[k, k], tri[k, k + 1] = 1.0, 4.0, 1.0
        rhs[k, k - 1], rhs[k, k], rhs[k, k + 1] = 6 / h**2, -12 / h**2, 6 / h**2
    S = torch.linalg.solve(tri, rhs)
    x = torch.arange(n_fine, dtype=torch.float64)
    u = x / h + 1.0  # position in node units (node k at u = k)
    k = u.floor().clamp(0, n - 2).long()
    f = u - k
    R = torch.zeros(n_fine, n, dtype=torch.float64)
    rows = torch.arange(n_fine)
    R[rows, k] += 1 - f
    R[rows, k + 1] += f
    c0 = ((1 - f) ** 3 - (1 - f)) * h**2 / 6
    c1 = (f**3 - f) * h**2 / 6
    R += c0[:, None] * S[k] + c1[:, None] * S[k + 1]
    return R


def _upsample_matrix(n_fine: int, n_int: int, channels: int, device, dtype, transpose: bool = True) -> torch.Tensor:
    """Interpolation matrix for channel-interleaved rows, contiguous: ``[n_nodes*channels, n_fine*channels]``
    (``transpose``, to multiply from the right) or ``[n_fine*channels, n_nodes*channels]`` (from the left).
    Cached per device and dtype (read-only: never modify the result in place)."""
    return _upsample_matrix_cached(n_fine, n_int, channels, torch.device(device), dtype, transpose)


@lru_cache(maxsize=64)
def _upsample_matrix_cached(n_fine, n_int, channels, device, dtype, transpose):
    R = _cubic_spline_matrix_cpu(n_fine, n_int)
    if channels > 1:
        R = torch.kron(R, torch.eye(channels, dtype=R.dtype))
    return (R.t() if transpose else R).contiguous().to(device=device, dtype=dtype)


def _lattice_nodes(n_fine: int, spacing: float, device, dtype) -> tuple[torch.Tensor, int]:
    n_int = max(1, math.ceil((n_fine - 1) / spacing)) if n_fine > 1 else 1
    h = (n_fine - 1) / n_int if n_fine > 1 else 1.0
    return (torch.arange(n_int + 3, device=device, dtype=dtype) - 1.0) * h, n_int


# ------------------------------------------------------------------------------------------------ dense flow
def _sampling_grid(src: torch.Tensor, dst: torch.Tensor, out_hw: tuple[int, int], in_hw: tuple[int, int] | None,
                   mode: str, reg: float, order: int, grid: float) -> torch.Tensor:
    """Shared core of :func:`dense_flow` and :func:`warp_image`. ``in_hw`` None: pixels, else normalised for that size."""
    H, W = out_hw
    S = float(max(H, W))
    dtype = dst.dtype if dst.is_floating_point() else torch.float32
    values = src if in_hw is None else pixels_to_normalized(src, in_hw)
    # unit frame for the centres: reg means the same at every size; lattice coordinates in the same frame
    spline = fit_spline(dst / S, values, order=order, reg=reg)
    dev = dst.device
    if mode == "exact":
        xs = torch.arange(W, device=dev, dtype=dtype) / S
        ys = torch.arange(H, device=dev, dtype=dtype) / S
        return _eval_lattice(spline, xs, ys)
    nx, kx = _lattice_nodes(W, grid, dev, dtype)
    ny, ky = _lattice_nodes(H, grid, dev, dtype)
    coarse = _eval_lattice(spline, nx / S, ny / S)  # [B, ny, nx, 2]
    B = coarse.shape[0]
    # the natural cubic spline reproduces affine functions exactly, so the positions themselves are upsampled (no
    # identity map to subtract and add back: one full-resolution pass fewer, forward and backward)
    Rx2 = _upsample_matrix(W, kx, 2, dev, dtype)  # [nx*2, W*2] (x and y interleaved)
    Ry = _upsample_matrix(H, ky, 1, dev, dtype, transpose=False)  # [H, ny]
    # columns first on the small lattice, then rows; the result is already laid out as [B, H, W, 2]
    t = coarse.reshape(B, ny.shape[0], -1) @ Rx2  # [B, ny, W*2]
    return torch.matmul(Ry, t).reshape(B, H, W, 2)


def _prepare_points(src_points, dst_points):
    src = _as_batched_points(src_points, "src_points")
    dst = _as_batched_points(dst_points, "dst_points")
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


def _check_mode(mode, grid, out_hw):
    if mode not in ("fast", "exact"):
        raise InputError(f"mode must be 'fast' or 'exact', got {mode!r}.")
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
               reg: float = DEFAULT_REG, order: int = DEFAULT_ORDER, grid: float | None = DEFAULT_GRID) -> torch.Tensor:
    """Dense backward map: for every output pixel, the input position it samples.

    Args:
        src_points: float ``[B, L, 2]`` or ``[L, 2]``, pixels of the input (source) image.
        dst_points: float ``[B, L, 2]`` or ``[L, 2]``, pixels of the output image (spline centres). Same dtype/device
            as ``src_points``; batch sizes equal or one of them 1.
        size: ``(H_out, W_out)`` or an int.
        mode: ``"exact"`` (spline at every pixel) or ``"fast"`` (coarse lattice + cubic upsampling).
        reg: ridge in the unit frame (see module docstring), default :data:`DEFAULT_REG`; ``0`` interpolates.
        order: polyharmonic order 1..5 (2 = thin plate).
        grid: fast mode's lattice spacing in output pixels; ``None`` (default): ``max(H_out, W_out) / 40``
            (:data:`DEFAULT_GRID_CELLS`). Ignored by ``"exact"``.

    Returns:
        ``[B, H_out, W_out, 2]`` ``(x, y)`` input pixel positions (same dtype as the points; may lie outside the
        input). Differentiable in both point sets; ``flow[b, y, x]`` ≈ ``src[b, i]`` where ``(x, y) = dst[b, i]``.
    """
    grid = _check_mode(mode, grid, _size_hw(size))
    src, dst = _prepare_points(src_points, dst_points)
    return _sampling_grid(src, dst, _size_hw(size), None, mode, _check_reg(reg), _check_order(order), grid)


def warp_points(points: torch.Tensor, src_points: torch.Tensor, dst_points: torch.Tensor,
                reg: float = DEFAULT_REG, order: int = DEFAULT_ORDER, size=None) -> torch.Tensor:
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
        S = float(max(_size_hw(size)))
    spline = fit_spline(dst / S, src, order=_check_order(order), reg=_check_reg(reg))
    _check_points(points, "points")
    return eval_spline(spline, points / S)


def warp_image(image: torch.Tensor, src_points: torch.Tensor, dst_points: torch.Tensor, out_size=None,
               mode: str = "fast", reg: float = DEFAULT_REG, grid: float | None = DEFAULT_GRID, order: int = DEFAULT_ORDER,
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
        order: polyharmonic order (2 = thin plate).
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
    out_hw = _size_hw(out_size if out_size is not None else tuple(image.shape[-2:]), "out_size")
    grid = _check_mode(mode, grid, out_hw)
    src, dst = _prepare_points(src_points, dst_points)
    B = image.shape[0]
    for name, p in (("src_points", src), ("dst_points", dst)):
        if p.shape[0] not in (1, B):
            raise InputError(f"{name} has batch size {p.shape[0]} but image has {B}; pass [L, 2] or [B, L, 2].")
    if src.device != image.device:
        raise InputError(f"points are on {src.device} but image is on {image.device}; move them with .to(image.device).")
    g = _sampling_grid(src, dst, out_hw, tuple(image.shape[-2:]), mode, _check_reg(reg), _check_order(order), grid)
    if g.shape[0] != B:
        g = g.expand(B, -1, -1, -1)
    return F.grid_sample(image, g.to(image.dtype), mode="bilinear", padding_mode=padding_mode, align_corners=False)


def fast_mode_error(src_points: torch.Tensor, dst_points: torch.Tensor, size, reg: float = DEFAULT_REG,
                    order: int = DEFAULT_ORDER, grid: float | None = DEFAULT_GRID) -> dict[str, float]:
    """Accuracy of the fast mode: distance (output pixels) between its sampling positions, computed in the points'
    own dtype as in training, and the exact spline's evaluated in float64, over every pixel of every image.

    Args: as :func:`dense_flow` (``src_points``/``dst_points`` ``[B,L,2]`` or ``[L,2]`` float pixels, ``size``).

    Returns:
        ``{"mean": ..., "p99": ..., "max": ...}`` in pixels.
    """
    fast = dense_flow(src_points, dst_points, size, mode="fast", reg=reg, order=order, grid=grid).double()
    exact = dense_flow(src_points.double(), dst_points.double(), size, mode="exact", reg=reg, order=order)
    err = (fast - exact).norm(dim=-1).flatten()
    p99 = torch.kthvalue(err, max(1, int(round(0.99 * err.numel())))).values
    return {"mean": float(err.mean()), "p99": float(p99), "max": float(err.max())}

"""The thin-plate spline: fit (one float64 solve per image, with a closed-form backward) and evaluation at scattered
points. See the package docstring for the formula and why ``reg`` regularises."""
from __future__ import annotations

import math
from typing import NamedTuple

import torch

from ..core.checks import check_points
from ..core.errors import InputError

LOG_FLOOR = 1e-30  # squared distances below this are treated as 0 inside log (finite gradients)
N_POLY = 3  # the affine part: 1, x, y


def check_reg(reg) -> float:
    """``reg`` as a finite float ``>= 0`` (raises :class:`InputError` otherwise)."""
    try:
        reg = float(reg)
    except (TypeError, ValueError):
        raise InputError(f"reg must be a non-negative float, got {reg!r}.") from None
    if not reg >= 0 or math.isinf(reg):
        raise InputError(f"reg must be a finite non-negative float, got {reg!r}; use 0 for exact interpolation.")
    return reg


def as_batched_points(points, name: str) -> torch.Tensor:
    """``[L, 2]`` or ``[B, L, 2]`` float points (at least 3, to fix an affine map) as ``[B, L, 2]``."""
    check_points(points, name)
    if points.dim() == 2:
        points = points[None]
    if points.dim() != 3:
        raise InputError(f"{name} must be [B, L, 2] or [L, 2], got shape {tuple(points.shape)}.")
    if points.shape[1] < 3:
        raise InputError(f"{name} needs at least 3 control points to fix an affine map, got {points.shape[1]}.")
    return points


def kernel(d2: torch.Tensor) -> torch.Tensor:
    """The thin-plate kernel as a function of the squared distance: ``phi = r^2 log r = d2 log(d2) / 2`` (0 at 0,
    finite gradient everywhere). Elementwise, out of place."""
    return 0.5 * d2 * torch.log(d2.clamp_min(LOG_FLOOR))


def monomials(points: torch.Tensor) -> torch.Tensor:
    """``[..., 2]`` → ``[..., 3]``: the affine part's basis ``1, x, y``."""
    x, y = points[..., 0], points[..., 1]
    return torch.stack([torch.ones_like(x), x, y], -1)


def pairwise_d2(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """[B, N, 2], [B, M, 2] → [B, N, M] squared distances from differences (exact 0 for equal points).
    Without autograd (e.g. inside a custom Function's forward) it works in place: two [B, N, M] buffers, not four."""
    dx = p[..., :, None, 0] - q[..., None, :, 0]
    dy = p[..., :, None, 1] - q[..., None, :, 1]
    if torch.is_grad_enabled() and (p.requires_grad or q.requires_grad):
        return dx * dx + dy * dy
    return dx.square_().add_(dy.square_())


class Spline(NamedTuple):
    """A fitted thin-plate spline ``f(x) = sum_j w_j phi(|x - c_j|) + a . (1, (x - shift) / scale)``.

    Attributes:
        centers: ``[Bc, L, 2]`` kernel centres (``Bc`` is 1 or ``B``).
        weights: ``[B, L, D]`` kernel weights.
        poly: ``[B, 3, D]`` coefficients of the affine part (constant, x, y of the shifted and scaled position).
        shift: ``[Bc, 1, 2]`` and ``scale`` ``[Bc, 1, 1]``: normalisation of the affine part's argument.
    """
    centers: torch.Tensor
    weights: torch.Tensor
    poly: torch.Tensor
    shift: torch.Tensor
    scale: torch.Tensor


def solve_dtype(device: torch.device) -> torch.dtype:
    return torch.float32 if device.type == "mps" else torch.float64


def fit_spline(centers: torch.Tensor, values: torch.Tensor, reg: float = 0.0) -> Spline:
    """Fit a batched thin-plate (smoothing) spline through ``values`` given at ``centers``.

    Args:
        centers: float ``[B, L, 2]`` or ``[L, 2]`` (shared by the batch) positions, any units.
        values: float ``[B, L, D]`` or ``[L, D]``: the function's values at the centres (e.g. positions, ``D = 2``).
        reg: ridge ``>= 0`` added to the kernel matrix's diagonal, in the units of ``phi`` at the given coordinates;
            identical to ``scipy.interpolate.RBFInterpolator(kernel="thin_plate_spline", smoothing=reg)``. ``0``
            interpolates exactly and fails on coincident centres.

    Returns:
        :class:`Spline` (dtype of ``centers``; the system itself is solved in float64, differentiably).

    Raises:
        InputError: wrong shapes/dtypes, mismatched ``L`` or batch sizes, or a singular system with ``reg = 0``.
    """
    reg = check_reg(reg)
    centers = as_batched_points(centers, "centers")
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
    dtype, sdt = centers.dtype, solve_dtype(centers.device)
    c = centers.to(sdt)
    # the affine part's argument is normalised by constants: the fitted function does not depend on them, so holding
    # them fixed leaves every derivative of the spline's values unchanged (and keeps the backward closed-form)
    cd = c.detach()
    shift = cd.mean(1, keepdim=True)
    scale = (cd - shift).abs().amax((1, 2), keepdim=True).clamp_min(1e-12)
    m = N_POLY
    v = values.to(sdt)
    if bc == 1 and bv > 1:  # one factorisation, all right-hand sides at once
        rhs = v.permute(1, 0, 2).reshape(1, L, bv * D)
    else:
        rhs = v.expand(B, L, D) if bv == 1 and bc > 1 else v
    if reg == 0 and L > 1:
        # exact interpolation is impossible through coincident centres; say so instead of returning garbage
        d2c = pairwise_d2(cd, cd) + torch.eye(L, dtype=sdt, device=c.device) * (scale.square() + 1)
        if bool((d2c <= (1e-9 * scale) ** 2).any()):
            raise InputError("control points (spline centres) coincide, so exact interpolation (reg=0) is impossible; "
                             "use reg > 0 (e.g. normface_lib.warp.DEFAULT_REG) or remove duplicate points.")
    sol = _SplineSolve.apply(c, rhs, shift, scale, reg)  # [Bc, L+3, columns]
    if bc == 1 and bv > 1:
        sol = sol.reshape(L + m, bv, D).permute(1, 0, 2)
    return Spline(centers, sol[:, :L].to(dtype), sol[:, L:].to(dtype), shift.to(dtype), scale.to(dtype))


class _SplineSolve(torch.autograd.Function):
    """Solve ``[[K(c) + reg I, P(c)], [P(c)^T, 0]] X = [rhs; 0]`` with a closed-form backward.

    centers ``[Bc, L, 2]``, rhs ``[Bc, L, N]`` (solve dtype), shift ``[Bc, 1, 2]`` / scale ``[Bc, 1, 1]`` constants of
    the affine part → ``X [Bc, L + 3, N]``. One LU factorisation serves the forward and the backward (the matrix is
    symmetric): ``grad_rhs = A^-1 grad_X`` and ``grad_A = -grad_rhs X^T``, pushed to the centres through
    ``dK_ij / dc_i = 2 phi'(d2_ij) (c_i - c_j)`` (``2 phi'(d2) = log(d2) + 1``) and the affine part's derivative.
    Replaces a chain of a dozen autograd nodes over ``[Bc, L, L]`` tensors.
    """

    @staticmethod
    def forward(ctx, c, rhs, shift, scale, reg):
        bc, L, _ = c.shape
        pmat = monomials((c - shift) / scale)  # [Bc, L, 3]
        m = pmat.shape[-1]
        # few [Bc, L, L] temporaries: each one is a pass over memory that costs as much as the arithmetic
        d2 = pairwise_d2(c, c)  # [Bc, L, L]
        lhs = c.new_empty(bc, L + m, L + m)
        lg = d2.clamp_min(LOG_FLOOR).log_()  # phi = d2 log(d2) / 2, written straight into the matrix
        torch.mul(d2, lg, out=lhs[:, :L, :L]).mul_(0.5)
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
        ctx.save_for_backward(c, shift, scale, LU, piv, sol, lg)
        return sol

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        c, shift, scale, LU, piv, sol, lg = ctx.saved_tensors
        L = c.shape[1]
        y = torch.linalg.lu_solve(LU, piv, grad.contiguous(), adjoint=True)  # [Bc, L+3, N]
        grad_rhs = y[:, :L] if ctx.needs_input_grad[1] else None
        grad_c = None
        if ctx.needs_input_grad[0]:
            # dLoss/dA = -y X^T; its kernel block enters symmetrised, its polynomial blocks twice
            left = torch.cat([y[:, :L], sol[:, :L]], 2)  # [Bc, L, 2N]
            t = torch.bmm(left, torch.cat([sol[:, :L], y[:, :L]], 2).transpose(1, 2))  # -(G + G^T), [Bc, L, L]
            t = torch.addcmul(t, t, lg)  # times 2 phi'(d2) = log(d2) + 1
            grad_c = torch.bmm(t, c).sub_(c * t.sum(2, keepdim=True))  # -sum_j t_ij (c_i - c_j)
            gp = torch.bmm(left, torch.cat([sol[:, L:], y[:, L:]], 2).transpose(1, 2)).neg_()  # [Bc, L, 3]
            with torch.enable_grad():
                u = c.detach().requires_grad_()
                pm = monomials((u - shift) / scale)
                grad_c = grad_c + torch.autograd.grad(pm, u, gp)[0]
        return grad_c, grad_rhs, None, None, None


def eval_spline(spline: Spline, points: torch.Tensor) -> torch.Tensor:
    """Evaluate a :class:`Spline` at scattered points.

    Args:
        spline: from :func:`fit_spline`.
        points: float ``[B, N, 2]`` or ``[N, 2]`` (shared) positions, same units as the spline's centres.

    Returns:
        ``[B, N, D]`` values, dtype of the spline. Differentiable in the points and all spline parameters.
    """
    check_points(points)
    pts = points[None] if points.dim() == 2 else points
    if pts.dim() != 3:
        raise InputError(f"points must be [B, N, 2] or [N, 2], got shape {tuple(points.shape)}.")
    c, w = spline.centers, spline.weights
    phi = kernel(pairwise_d2(pts, c))  # [B, N, L]
    poly = monomials((pts - spline.shift) / spline.scale)
    return phi @ w + poly @ spline.poly

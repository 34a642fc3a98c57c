"""Evaluating a spline on a pixel lattice, fast: the row-chunked kernel sum with a closed-form backward (exact mode, and
the coarse lattice of fast mode), and the natural-cubic-spline upsampling of fast mode."""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from .spline import LOG_FLOOR, Spline

_CHUNK_ELEMS = 1 << 20  # elements of a [Bc, L, rows, W] block evaluated at once (few parallel regions)


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
    def forward(ctx, centers, weights, xs, ys):
        bc, L, _ = centers.shape
        H, W, E = ys.shape[0], xs.shape[0], weights.shape[-1]
        # phi = 0.5 d2 log d2; the 0.5 is folded into the weights. Adding the floor to dx2 (not clamping d2) keeps
        # log finite at a centre that sits on a node, at no extra pass over the block.
        dx2 = (xs[None, None, :] - centers[..., 0:1]).square_().add_(LOG_FLOOR)  # [Bc, L, W]
        dy2 = (ys[None, None, :] - centers[..., 1:2]).square_()  # [Bc, L, H]
        out = centers.new_empty(bc, H, W, E)
        wt = (weights * 0.5).transpose(1, 2)  # [Bc, E, L]
        chunks, rows = _row_chunks(bc, L, H, W)
        buf_d2 = centers.new_empty(bc * L * rows * W)
        buf_lg = torch.empty_like(buf_d2)
        for r0, r1 in chunks:
            d2 = torch.add(dy2[:, :, r0:r1, None], dx2[:, :, None, :], out=_block(buf_d2, bc, L, r1 - r0, W))
            phi = torch.log(d2, out=_block(buf_lg, bc, L, r1 - r0, W)).mul_(d2)
            # [Bc, E, L] @ [Bc, L, rows*W] -> [Bc, E, rows*W]
            out[:, r0:r1] = torch.bmm(wt, phi.reshape(bc, L, -1)).reshape(bc, E, r1 - r0, W).permute(0, 2, 3, 1)
        ctx.save_for_backward(centers, weights, xs, ys)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        gcent, gw = _lattice_backward(*ctx.saved_tensors, grad)
        return (gcent if ctx.needs_input_grad[0] else None), (gw if ctx.needs_input_grad[1] else None), None, None


def _lattice_backward(centers, weights, xs, ys, grad):
    """Gradients of :class:`_RadialLattice` (see its docstring): one product with ``log d2``."""
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
    dx2 = (x[None, None, :] - cx).square_().add_(LOG_FLOOR)
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


def eval_lattice(spline: Spline, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Evaluate a spline on the lattice ``xs [W] x ys [H]`` → ``[B, H, W, D]``."""
    c, w, a = spline.centers, spline.weights, spline.poly
    bc, L, _ = c.shape
    B, _, D = w.shape
    if bc == 1 and B > 1:
        wl = w.permute(1, 0, 2).reshape(1, L, B * D)
        rad = _RadialLattice.apply(c, wl, xs, ys)  # [1, H, W, B*D]
        rad = rad.reshape(ys.shape[0], xs.shape[0], B, D).permute(2, 0, 1, 3)
    else:
        rad = _RadialLattice.apply(c.expand(B, L, 2), w, xs, ys)
    sx = (xs[None, :] - spline.shift[:, 0, 0:1]) / spline.scale[:, 0]  # [Bc, W]
    sy = (ys[None, :] - spline.shift[:, 0, 1:2]) / spline.scale[:, 0]  # [Bc, H]
    # a0 + a1 x + a2 y without materialising a [B, H, W, 3] basis
    poly = (a[:, None, None, 0, :] + sx[:, None, :, None] * a[:, None, None, 1, :]
            + sy[:, :, None, None] * a[:, None, None, 2, :])
    return rad + poly


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


def upsample_matrix(n_fine: int, n_int: int, channels: int, device, dtype, transpose: bool = True) -> torch.Tensor:
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


def lattice_nodes(n_fine: int, spacing: float, device, dtype) -> tuple[torch.Tensor, int]:
    n_int = max(1, math.ceil((n_fine - 1) / spacing)) if n_fine > 1 else 1
    h = (n_fine - 1) / n_int if n_fine > 1 else 1.0
    return (torch.arange(n_int + 3, device=device, dtype=dtype) - 1.0) * h, n_int

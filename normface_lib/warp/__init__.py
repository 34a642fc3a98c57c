"""The paper's differentiable warp (Cole et al. 2017, section 3): a thin-plate spline through the landmarks moves an
image; :func:`warp_image` is what the decoder calls to put its texture onto its landmarks.

The displacement between two landmark sets is known at ``L`` control points; a thin-plate spline interpolates it to a
dense sampling grid, and the image is resampled bilinearly with :func:`torch.nn.functional.grid_sample`. Everything is
batched (no Python loop over the batch), device-agnostic and differentiable in the image and in both point sets.

Conventions (see ``CONTRIBUTING.md``)
-------------------------------------
* Points are ``(x, y)`` in **pixels** of the image they belong to, with the centre of the top-left pixel at ``(0, 0)``.
  :func:`pixels_to_normalized` / :func:`normalized_to_pixels` convert to ``grid_sample``'s ``align_corners=False``
  frame (``xn = (2x + 1) / W - 1``).
* **Backward mapping**: in ``warp_image(image, src_points, dst_points)`` the output pixel at ``dst_points[i]`` shows
  what the input had at ``src_points[i]``. The spline's centres are the ``dst_points`` (output frame) and its values
  are the ``src_points`` (input frame); it is evaluated at every output pixel to give the sampling position.

The spline (:mod:`.spline`)
---------------------------
``f(x) = sum_j w_j phi(|x - c_j|) + a0 + a1 x + a2 y`` with the thin-plate kernel ``phi(r) = r^2 log r`` (as in
:class:`scipy.interpolate.RBFInterpolator`, ``kernel="thin_plate_spline"``); the affine part makes affine maps
exact. The coefficients solve ``[[K + reg I, P], [P^T, 0]] [w; a] = [v; 0]``: ``reg = 0`` interpolates, ``reg > 0``
is a smoothing spline (scipy's ``smoothing``). The ``(L + 3)`` system is solved in float64.

Regularisation (why ``reg`` defaults to :data:`DEFAULT_REG`)
-------------------------------------------------------------
dlib landmarks are integer pixels, and with a closed mouth the inner-lip points 61/67, 62/66, 63/65 coincide, while
the mean shape's do not: no interpolant exists and the exact system is singular. We *regularise* rather than merge
points, because merging is a data-dependent change of structure that breaks batching and gives wrong gradients with
respect to the points. With a ridge ``reg`` on the kernel diagonal, exactly coincident centres are handled in closed
form (the fit there is the mean of their values) and the system stays well conditioned. ``reg`` for
:func:`warp_image` / :func:`dense_flow` is expressed in the *unit frame*, output pixel coordinates divided by
``S = max(H_out, W_out)``, so it means the same at 64 and 224 px; it equals scipy's ``smoothing = reg * S**2`` in
pixel coordinates. The default trades a fit residual of a few hundredths of a pixel at the landmarks for bounded
weights (no float32 cancellation next to coincident points) and smooth flows that the fast mode can represent.

Modes (:mod:`.lattice`)
-----------------------
``"exact"`` evaluates the spline at every output pixel (row-chunked, custom backward that recomputes instead of
storing ``B*L*H*W`` intermediates). ``"fast"`` evaluates it exactly on a coarse lattice every ``grid`` output pixels
(plus one ghost node beyond each border) and upsamples with separable natural-cubic-spline interpolation (which
reproduces affine maps exactly) written as two small matrix products. The errors of the fast mode against the exact
flow are measured by ``benchmarks/warp.py`` and bounded in ``tests/warp/``.

Speed (the warp is the hot path of training; ``benchmarks/warp.py`` compares it with kornia and bare ``grid_sample``)
comes from closed-form backwards rather than autograd chains: the ``(L + 3)`` system's LU factorisation is reused
for its gradient (:class:`.spline._SplineSolve`), and the lattice gradient is a single product of ``log d2`` with
four per-pixel fields (:class:`.lattice._RadialLattice`). Both are checked against finite differences.
"""
from .coords import normalized_to_pixels, pixels_to_normalized
from .spline import Spline, eval_spline, fit_spline
from .warp import (DEFAULT_GRID_CELLS, DEFAULT_REG, MODES, check_mode, dense_flow, fast_mode_error, warp_image,
                   warp_points)

__all__ = ["DEFAULT_REG", "DEFAULT_GRID_CELLS", "MODES", "check_mode", "Spline", "pixels_to_normalized",
           "normalized_to_pixels", "fit_spline", "eval_spline", "dense_flow", "warp_image", "warp_points",
           "fast_mode_error"]

"""Degraded face crops for robustness tests (the paper's occluders, strong light, grey photos, plus blur and in-plane
rotation): seeded, so the same arguments give the same pictures."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..core.checks import check_images
from ..core.errors import InputError

#: Perturbation kinds understood by :func:`perturb`.
PERTURBATIONS = ("occluder", "light", "blur", "grey", "rotation", "hard")
#: Default strength per kind (see :func:`perturb` for the units).
DEFAULT_STRENGTH = {"occluder": 0.15, "light": 0.8, "blur": 0.04, "grey": 1.0, "rotation": 30.0, "hard": 1.0}
#: The three parts of ``hard`` at strength 1: occluder area fraction, light-gradient amplitude, blur sigma / side.
HARD_PARTS = {"occluder": 0.15, "light": 0.8, "blur": 0.04}


def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    C = images.shape[1]
    r_h = min(r, images.shape[-1] - 1)
    r_v = min(r, images.shape[-2] - 1)
    out = F.pad(images, (r_h, r_h, 0, 0), mode="reflect") if r_h == r else F.pad(images, (r, r, 0, 0), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = F.pad(out, (0, 0, r_v, r_v), mode="reflect") if r_v == r else F.pad(out, (0, 0, r, r), mode="replicate")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def perturb(images: torch.Tensor, kind: str, strength: float | None = None, seed: int = 0) -> torch.Tensor:
    """Degrade face crops the way the paper's robustness figures do.

    Args:
        images: ``[B,3,H,W]`` float in ``[0,1]`` (canonical crops).
        kind: one of :data:`PERTURBATIONS`:

            * ``"occluder"``: a flat rectangle, grey (0.5) or black at random, covering a fraction ``strength`` of the
              image area (aspect ratio in [0.5, 2]; centre uniform in the central 40 % of the crop);
            * ``"light"``: a strong left-right light gradient: pixel values are multiplied by
              ``1 ± strength · (2x/W − 1)`` (direction at random), then clipped; ``strength`` ∈ [0, 1];
            * ``"blur"``: Gaussian blur with sigma = ``strength`` × image width;
            * ``"grey"``: blend with the luminance (0.299 R + 0.587 G + 0.114 B); ``strength`` 1 = fully grey;
            * ``"rotation"``: in-plane rotation about the centre by ``strength`` degrees, sign at random (border
              pixels repeated);
            * ``"hard"``: occluder (area 0.15·s), then light gradient (0.8·s, at most 1), then blur (0.04·s),
              with ``s = strength``.
        strength: see above; ``None`` = :data:`DEFAULT_STRENGTH` of the kind.
        seed: seeds every random choice (per image: position, size, colour, direction, sign).

    Returns:
        ``[B,3,H,W]`` float32 in ``[0,1]``; the input is not modified. Same arguments → same output.
    """
    images = check_images(images)
    if kind not in PERTURBATIONS:
        raise InputError(f"unknown perturbation {kind!r}; choose one of {', '.join(PERTURBATIONS)}.")
    s = float(DEFAULT_STRENGTH[kind] if strength is None else strength)
    if not math.isfinite(s) or s < 0:
        raise InputError(f"strength must be a finite number ≥ 0, got {strength!r}.")
    x = images.detach().float().clone()
    B, _, H, W = x.shape
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "hard":
        x = perturb(x, "occluder", HARD_PARTS["occluder"] * s, seed)
        x = perturb(x, "light", min(1.0, HARD_PARTS["light"] * s), seed + 1)
        return perturb(x, "blur", HARD_PARTS["blur"] * s, seed + 2)
    if kind == "occluder":
        if s > 0.8:
            raise InputError(f"occluder strength is the covered fraction of the image, at most 0.8; got {s}.")
        for b in range(B):
            aspect = float(torch.empty(1).uniform_(math.log(0.5), math.log(2.0), generator=gen).exp())
            w = min(W, max(1, int(round(math.sqrt(s * aspect) * W))))
            h = min(H, max(1, int(round(math.sqrt(s / aspect) * H))))
            cx = float(torch.empty(1).uniform_(0.3, 0.7, generator=gen)) * W
            cy = float(torch.empty(1).uniform_(0.3, 0.7, generator=gen)) * H
            colour = 0.5 if bool(torch.rand(1, generator=gen) < 0.5) else 0.0
            x0 = int(min(max(round(cx - w / 2), 0), W - w))
            y0 = int(min(max(round(cy - h / 2), 0), H - h))
            if s > 0:
                x[b, :, y0:y0 + h, x0:x0 + w] = colour
        return x
    if kind == "light":
        if s > 1:
            raise InputError(f"light strength is the gradient amplitude in [0, 1], got {s}.")
        direction = torch.where(torch.rand(B, generator=gen) < 0.5, -1.0, 1.0).view(B, 1, 1, 1)
        ramp = (2 * (torch.arange(W, dtype=torch.float32) + 0.5) / W - 1).view(1, 1, 1, W)
        return (x * (1 + s * direction * ramp)).clamp(0, 1)
    if kind == "blur":
        return _gaussian_blur(x, s * W).clamp(0, 1)
    if kind == "grey":
        if s > 1:
            raise InputError(f"grey strength is the blend weight in [0, 1], got {s}.")
        y = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand(-1, 3, -1, -1)
        return ((1 - s) * x + s * y).clamp(0, 1)
    # rotation
    sign = torch.where(torch.rand(B, generator=gen) < 0.5, -1.0, 1.0)
    a = sign * math.radians(s)
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([cos, -sin * H / W, torch.zeros(B)], 1),
                         torch.stack([sin * W / H, cos, torch.zeros(B)], 1)], 1)
    grid = F.affine_grid(theta, [B, 3, H, W], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)

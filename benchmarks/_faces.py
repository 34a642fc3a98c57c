"""Generated faces for the benchmarks that must also run where no photos or landmark detector are installed (a GPU
machine with only torch): smooth random colour images and the library's mean shape moved by a random similarity
and per-point noise. Timing does not depend on what a face looks like; every benchmark that uses them says so."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from normface_lib.faces.landmarks import load_mean_shape


def generated_faces(n: int, size: int, seed: int = 0, noise_px: float = 1.5) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` generated faces: images ``[n,3,size,size]`` float32 in ``[0,1]`` (bicubic upsampling of 8×8 noise) and
    landmarks ``[n,68,2]`` float32 in crop pixels (mean shape, rotated by up to ±0.1 rad, scaled by 0.95–1.05 about
    its centre, plus ``noise_px`` Gaussian noise per point)."""
    g = torch.Generator().manual_seed(seed)
    images = F.interpolate(torch.rand(n, 3, 8, 8, generator=g), size=(size, size), mode="bicubic",
                           align_corners=False).clamp(0, 1)
    mean = load_mean_shape(size)
    angle = (torch.rand(n, generator=g) - 0.5) * 0.2
    scale = 1 + (torch.rand(n, generator=g) - 0.5) * 0.1
    rot = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2)
    centre = mean.mean(0)
    landmarks = ((mean - centre) @ rot.transpose(1, 2)) * scale[:, None, None] + centre
    return images, landmarks + torch.randn(n, 68, 2, generator=g) * noise_px

"""The frozen face-encoder interface every network in :mod:`normface_lib.encoders` implements.

An encoder takes **canonical crops** (``normface_lib.faces``: similarity-aligned squares, eyes at
``(0.36, 0.40)`` / ``(0.64, 0.40)`` and mouth centre at ``(0.50, 0.70)`` of the side ``S``) as float32
``[B, 3, S, S]`` RGB in ``[0, 1]``, of any ``S``. :meth:`FaceEncoder.preprocess` cuts a fixed square region
(``crop_box``, fractions of ``S``) out of the crop, resamples it bilinearly to the network's ``input_size`` and
standardises it the way the network was trained; everything is differentiable, so gradients reach the images.
Parameters never change: they have ``requires_grad=False`` and the module stays in eval mode even if ``.train()``
is called.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..core.errors import InputError
from ..core.checks import check_images


def crop_resize(images: torch.Tensor, box: Sequence[float], size: int) -> torch.Tensor:
    """Differentiably cut the square ``box`` out of ``images`` and resample it to ``size`` x ``size``.

    Args:
        images: float ``[B, C, H, W]`` (any range).
        box: ``(cx, cy, side)``: centre and side of the square region as fractions of the image width / height
            (``(0.5, 0.5, 1.0)`` is the whole image). Parts outside the image repeat the border pixels.
        size: output side in pixels.

    Returns:
        float ``[B, C, size, size]``. When the region is more than twice ``size`` pixels wide, the images are first
        downscaled with an antialiased bilinear filter so the result does not alias.
    """
    cx, cy, side = (float(v) for v in box)
    b, _, h, w = images.shape
    region_px = side * max(h, w)
    if region_px > 2 * size:
        f = 2 * size / region_px  # pre-shrink so the sampling step is ~2 px
        images = F.interpolate(images, size=(max(1, round(h * f)), max(1, round(w * f))), mode="bilinear",
                               antialias=True, align_corners=False)
    # affine_grid maps output [-1,1] to input normalised coords (align_corners=False: -1/1 are the outer pixel edges)
    theta = images.new_tensor([[side, 0.0, 2 * cx - 1], [0.0, side, 2 * cy - 1]]).unsqueeze(0).expand(b, 2, 3)
    grid = F.affine_grid(theta, [b, images.shape[1], size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


class FaceEncoder(nn.Module):
    """Frozen face-recognition network behind a common interface (see module docstring).

    Attributes:
        name: registry name (``"facenet-casia"``, ``"dlib-resnet"`` ...).
        layer: which layer :meth:`features` returns.
        feature_dim: size ``D`` of :meth:`features`.
        embed_dim: size ``E`` of :meth:`embed`.
        input_size: side in pixels of the network input made by :meth:`preprocess`.
        crop_box: ``(cx, cy, side)`` fractions of the canonical crop that :meth:`preprocess` resamples.
        threshold: same-person threshold on the L2 distance between two :meth:`embed` outputs.
        threshold_source: how ``threshold`` was obtained.
    """

    name: str = "encoder"
    layer: str = ""
    feature_dim: int = 0
    embed_dim: int = 0
    input_size: int = 0
    crop_box: tuple[float, float, float] = (0.5, 0.5, 1.0)
    threshold: float = float("nan")
    threshold_source: str = ""
    #: feature layers this encoder offers, name → size ``D``; the first is the default
    LAYERS: dict[str, int] = {}

    def _choose_layer(self, name: str, layer: str | None) -> str:
        """``layer`` (or the default, the first of :attr:`LAYERS`), checked; sets ``name``, ``layer`` and
        ``feature_dim``. Raises :class:`InputError` naming the valid layers."""
        layer = layer or next(iter(self.LAYERS))
        if layer not in self.LAYERS:
            raise InputError(f"{name} has no layer {layer!r}; choose one of {sorted(self.LAYERS)}.")
        self.name, self.layer, self.feature_dim = name, layer, self.LAYERS[layer]
        return layer

    # --- to implement -------------------------------------------------------------------------------------------
    def standardize(self, x: torch.Tensor) -> torch.Tensor:
        """Map resampled crops ``[B, 3, n, n]`` in ``[0, 1]`` to the network's input scale."""
        raise NotImplementedError

    def network_outputs(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Run the network on standardised input ``[B, 3, n, n]``; return ``(features [B, D], embedding [B, E])``
        (the embedding before L2 normalisation)."""
        raise NotImplementedError

    # --- common machinery ---------------------------------------------------------------------------------------
    def freeze(self) -> "FaceEncoder":
        """Set ``requires_grad=False`` on every parameter and switch to eval mode (called by the loaders)."""
        for p in self.parameters():
            p.requires_grad_(False)
        super().train(False)
        return self

    def train(self, mode: bool = True) -> "FaceEncoder":
        """Encoders are frozen: this keeps eval mode whatever ``mode`` is (batch-norm statistics never move)."""
        return super().train(False)

    def check(self, images: torch.Tensor) -> torch.Tensor:
        """Validate canonical crops: float ``[B, 3, S, S]`` in ``[0, 1]`` (raises :class:`InputError`)."""
        check_images(images, name=f"{self.name} input", square=True)
        if images.shape[0] == 0:
            raise InputError(f"{self.name} input is an empty batch; pass at least one face crop [B>=1,3,S,S].")
        if images.shape[-1] < 16:
            raise InputError(f"{self.name} input crops are {images.shape[-1]} px; use canonical crops of at least "
                             "16 px (64-224 px recommended).")
        return images

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Canonical crops float ``[B, 3, S, S]`` in ``[0, 1]`` -> network input float
        ``[B, 3, input_size, input_size]`` (cropped to ``crop_box``, resized, standardised). Differentiable."""
        self.check(images)
        dev = next(self.parameters()).device
        x = crop_resize(images.to(dev, torch.float32), self.crop_box, self.input_size)
        return self.standardize(x)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Decoder input features of canonical crops.

        Args:
            images: float ``[B, 3, S, S]`` in ``[0, 1]``.
        Returns:
            float32 ``[B, feature_dim]`` from the layer named by ``self.layer``. Differentiable w.r.t. ``images``.
        """
        return self.network_outputs(self.preprocess(images))[0]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised identity embedding of canonical crops (for identity metrics and the identity loss).

        Args:
            images: float ``[B, 3, S, S]`` in ``[0, 1]``.
        Returns:
            float32 ``[B, embed_dim]`` of unit L2 norm. Two faces are judged the same person when the L2 distance
            of their embeddings is below ``self.threshold``. Differentiable w.r.t. ``images``.
        """
        return F.normalize(self.network_outputs(self.preprocess(images))[1], dim=1)

    def features_and_embed(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both :meth:`features` ``[B, D]`` and :meth:`embed` ``[B, E]`` from one forward pass."""
        f, e = self.network_outputs(self.preprocess(images))
        return f, F.normalize(e, dim=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Same as :meth:`features`."""
        return self.features(images)

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, layer={self.layer!r}, feature_dim={self.feature_dim}, "
                f"embed_dim={self.embed_dim}, input_size={self.input_size}, threshold={self.threshold:.3f}")

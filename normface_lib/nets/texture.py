"""The texture frame: a face's appearance registered onto the mean shape (:func:`register_textures`) and drawn back
onto any landmarks (:func:`render`), both through the spline warp. Registration makes the training targets of the
texture CNN; rendering is what the decoder's output and the morphs go through.

In the texture frame every face has the mean shape's landmarks (the mean of the training targets' canonical
landmarks, :func:`normface_lib.faces.mean_shape`), so eyes, nose and mouth sit at the same pixels in every texture.
"""
from __future__ import annotations

import torch

from ..core.checks import check_images, check_landmarks
from ..core.errors import InputError
from ..warp import warp_image


def check_mean_shape(mean_shape) -> torch.Tensor:
    """The mean shape: a float tensor ``[68,2]`` in crop pixels."""
    if not isinstance(mean_shape, torch.Tensor) or tuple(mean_shape.shape) != (68, 2):
        raise InputError(f"mean_shape must be a float tensor [68,2] in crop pixels, got "
                         f"{tuple(getattr(mean_shape, 'shape', ()))}; load it with "
                         "normface_lib.faces.load_mean_shape(S).")
    return mean_shape


def check_faces(textures: torch.Tensor, landmarks: torch.Tensor, tname: str = "textures",
                lname: str = "landmarks") -> None:
    """Faces as pairs: square images ``[B,3,S,S]`` in ``[0,1]`` and their landmarks ``[B,68,2]``."""
    check_images(textures, tname, square=True)
    check_landmarks(landmarks, lname, batch=textures.shape[0], batched=True)


def register_textures(crops: torch.Tensor, landmarks: torch.Tensor, mean_shape: torch.Tensor,
                      mode: str = "fast") -> torch.Tensor:
    """Warp canonical crops onto the mean shape (the decoder's texture frame).

    The output pixel at ``mean_shape[i]`` shows what the crop had at ``landmarks[i]`` (thin-plate spline through
    :func:`normface_lib.warp.warp_image`); outside the face the spline extrapolates smoothly. Differentiable.

    Args:
        crops: ``[B,3,S,S]`` float in ``[0,1]``, canonical crops.
        landmarks: ``[B,68,2]`` float, crop pixels.
        mean_shape: ``[68,2]`` (or ``[B,68,2]``) float, crop pixels of the same side ``S``.
        mode: ``"fast"`` or ``"exact"`` (see ``warp_image``).

    Returns:
        ``[B,3,S,S]`` float32 registered textures in ``[0,1]``.
    """
    check_faces(crops, landmarks, "crops")
    check_landmarks(mean_shape, "mean_shape")
    B = crops.shape[0]
    dst = mean_shape.to(crops) if mean_shape.dim() == 3 else mean_shape.to(crops)[None].expand(B, -1, -1)
    return warp_image(crops, landmarks.to(crops), dst, mode=mode).clamp(0, 1)


def render(textures: torch.Tensor, landmarks: torch.Tensor, mean_shape: torch.Tensor, out_size: int | None = None,
           mode: str = "fast") -> torch.Tensor:
    """Draw registered textures onto landmarks (the inverse of :func:`register_textures`).

    The output pixel at ``landmarks[i]`` shows the texture at ``mean_shape[i]``. Differentiable in both tensors.

    Args:
        textures: ``[B,3,S,S]`` float in ``[0,1]``, mean-shape frame.
        landmarks: ``[B,68,2]`` float, pixels of the output crop.
        mean_shape: ``[68,2]`` float, pixels of the texture (side ``S``).
        out_size: output side (default ``S``); ``landmarks`` must then be in pixels of that side.
        mode: ``"fast"`` or ``"exact"`` (see :func:`normface_lib.warp.warp_image`).

    Returns:
        ``[B,3,S',S']`` float32 images in ``[0,1]``.
    """
    check_faces(textures, landmarks)
    check_mean_shape(mean_shape)
    return render_unchecked(textures, landmarks, mean_shape, check_out_size(out_size), mode)


def check_out_size(out_size) -> int | None:
    """``None`` or an output side ``>= 8`` pixels."""
    if out_size is not None and (isinstance(out_size, bool) or not isinstance(out_size, int) or out_size < 8):
        raise InputError(f"out_size must be an integer of at least 8, got {out_size!r}.")
    return out_size


def render_unchecked(textures: torch.Tensor, landmarks: torch.Tensor, mean_shape: torch.Tensor,
                     out_size: int | None, mode: str) -> torch.Tensor:
    """:func:`render` for inputs the caller has checked already (no second pass over them)."""
    src = mean_shape.to(textures)[None].expand(textures.shape[0], -1, -1)
    kw = {} if out_size is None or out_size == textures.shape[-1] else {"out_size": out_size}
    return warp_image(textures, src, landmarks.to(textures), mode=mode, **kw).clamp(0, 1)

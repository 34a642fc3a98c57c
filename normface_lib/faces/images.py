"""Reading photos: any image a user has (file, bytes, PIL image, array, tensor) as one RGB float tensor."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.errors import InputError, UnreadableImageError


def load_image(source, name: str | None = None) -> torch.Tensor:
    """Read a photo as an RGB float tensor.

    Args:
        source: a path (str/Path), raw bytes, a ``PIL.Image``, a NumPy array ``[H,W]``/``[H,W,3|4]`` (uint8 0-255 or
            float 0-1), or a tensor ``[3,H,W]``/``[1,H,W]``/``[H,W]`` in ``[0,1]``. Grey, RGBA (alpha composited on
            white), palette and CMYK images become RGB; EXIF orientation is applied.
        name: how to call the source in error messages (defaults to the path).

    Returns:
        ``torch.float32`` tensor ``[3, H, W]`` with values in ``[0, 1]``.

    Raises:
        FileNotFoundError: the path does not exist.
        UnreadableImageError: the file is not an image PIL can read.
        InputError: an array/tensor of the wrong shape or range.
    """
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__)
    if isinstance(source, torch.Tensor):
        t = source.detach().float().cpu()
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise InputError(f"{label}: an image tensor must be [3,H,W], [1,H,W] or [H,W], got {tuple(source.shape)}.")
        if t.numel() and (t.min() < -1e-3 or t.max() > 1 + 1e-3):
            raise InputError(f"{label}: image tensor values must lie in [0,1]; divide 0-255 images by 255.")
        return t.expand(3, -1, -1).clamp(0, 1).contiguous()
    if isinstance(source, np.ndarray):
        arr = source
        if arr.dtype == np.uint8:
            arr = arr.astype(np.float32) / 255.0
        elif np.issubdtype(arr.dtype, np.floating):
            arr = arr.astype(np.float32)
        else:
            raise InputError(f"{label}: NumPy images must be uint8 (0-255) or float (0-1), got {arr.dtype}.")
        if arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[..., :3] * arr[..., 3:] + (1 - arr[..., 3:])
        if arr.ndim == 3 and arr.shape[2] == 3:
            arr = arr.transpose(2, 0, 1)
        elif arr.ndim != 2:
            raise InputError(f"{label}: NumPy images must be [H,W], [H,W,3] or [H,W,4], got {arr.shape}.")
        return load_image(torch.from_numpy(np.ascontiguousarray(arr)), name=label)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file; check the path.")
        if p.is_dir():
            raise UnreadableImageError(f"{p} is a folder, not an image file.")
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            img = Image.open(source)
            img.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise UnreadableImageError(f"{label}: not a readable image ({e}). Use a JPEG, PNG, PGM, BMP, TIFF or WebP "
                                       "file.") from e
    img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    if arr.shape[0] < 8 or arr.shape[1] < 8:
        raise InputError(f"{label}: image is {arr.shape[1]}x{arr.shape[0]} pixels, too small to hold a face "
                         "(at least 8x8, in practice 40x40 or more).")
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """``[3,H,W]`` float in ``[0,1]`` → ``[H,W,3]`` uint8 NumPy array (C-contiguous)."""
    return np.ascontiguousarray((image.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy())

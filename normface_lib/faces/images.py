"""Reading photos: any image a user has (file, bytes, PIL image, array, tensor) as one RGB float tensor."""
from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..core.checks import check_range
from ..core.errors import InputError, UnreadableImageError


#: PIL modes holding more than 8 bits a channel: read as numbers, not through ``convert("RGB")`` (which clips them).
_WIDE_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")


def load_image(source, name: str | None = None) -> torch.Tensor:
    """Read a photo as an RGB float tensor.

    Args:
        source: a path (str/Path), raw bytes, a ``PIL.Image``, a NumPy array ``[H,W]``/``[H,W,3|4]`` (uint8 0-255,
            uint16 0-65535 or float 0-1), or a tensor ``[3,H,W]``/``[1,H,W]``/``[H,W]`` in ``[0,1]``. Grey, RGBA
            (alpha composited on white), palette, CMYK, 16-bit and floating-point images become RGB; EXIF orientation
            is applied.
        name: how to call the source in error messages (defaults to the path).

    Returns:
        ``torch.float32`` tensor ``[3, H, W]`` with values in ``[0, 1]``, at least 8×8.

    Raises:
        FileNotFoundError: the path does not exist.
        UnreadableImageError: the file is not an image PIL can read, or is too large to decode safely.
        InputError: an array/tensor of the wrong shape, range (NaN included) or type; an image smaller than 8×8.
    """
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__)
    if isinstance(source, torch.Tensor):
        t = source.detach().float().cpu()
        if t.dim() == 2:
            t = t[None]
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise InputError(f"{label}: an image tensor must be [3,H,W], [1,H,W] or [H,W], got {tuple(source.shape)}.")
        _check_side(t.shape[-2], t.shape[-1], label)
        check_range(t, f"{label}: image tensor", hint="divide 0-255 images by 255.")
        return t.expand(3, -1, -1).clamp(0, 1).contiguous()
    if isinstance(source, np.ndarray):
        return load_image(torch.from_numpy(np.ascontiguousarray(_array_to_chw(source, label))), name=label)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such file; check the path.")
        if p.is_dir():
            raise UnreadableImageError(f"{p} is a folder, not an image file.")
    elif not isinstance(source, Image.Image) and not hasattr(source, "read"):
        raise InputError(f"{label}: a photo must be a file path, bytes, a PIL image, a NumPy array or a tensor "
                         f"[3,H,W] in [0,1]; got {type(source).__name__}.")
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            img = Image.open(source)
            img.load()
        except Image.DecompressionBombError as e:
            raise UnreadableImageError(f"{label}: the image is too large to decode safely ({e}). Resize it (a face "
                                       "needs a few hundred pixels) and try again.") from e
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise UnreadableImageError(f"{label}: not a readable image ({e}). Use a JPEG, PNG, PGM, BMP, TIFF or WebP "
                                       "file.") from e
    img = ImageOps.exif_transpose(img)
    if img.mode in _WIDE_MODES:
        return load_image(np.asarray(img), name=label)
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    _check_side(arr.shape[0], arr.shape[1], label)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def _check_side(h: int, w: int, label: str) -> None:
    if h < 8 or w < 8:
        raise InputError(f"{label}: image is {w}x{h} pixels, too small to hold a face (at least 8x8, in practice "
                         "40x40 or more).")


def _array_to_chw(arr: np.ndarray, label: str) -> np.ndarray:
    """A NumPy image (8/16-bit or any-range numbers) as float32 ``[H,W]`` or ``[3,H,W]`` in ``[0,1]``."""
    if arr.dtype == np.uint8:
        arr = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        arr = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.integer) or (arr.size and np.isfinite(arr).all() and arr.max() > 1 + 1e-3):
            # integer or out-of-[0,1] numbers (32-bit TIFF, PIL's "I"/"F" modes): the range tells the bit depth
            top = float(arr.max()) if arr.size else 1.0
            if arr.size and float(arr.min()) < 0:
                raise InputError(f"{label}: image values are negative (min {float(arr.min()):.3g}); give 0-1, 0-255 "
                                 "or 0-65535 values.")
            scale = next((s for s in (1.0, 255.0, 65535.0) if top <= s + 1e-3), None)
            if scale is None:
                raise InputError(f"{label}: image values reach {top:.4g}, beyond 16 bits; scale them to [0,1].")
            arr = arr.astype(np.float32) / scale
        else:
            arr = arr.astype(np.float32)
    else:
        raise InputError(f"{label}: NumPy images must be uint8 (0-255), uint16 or float (0-1), got {arr.dtype}.")
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[..., :3] * arr[..., 3:] + (1 - arr[..., 3:])
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr.transpose(2, 0, 1)
    elif arr.ndim != 2:
        raise InputError(f"{label}: NumPy images must be [H,W], [H,W,3] or [H,W,4], got {arr.shape}.")
    return arr


def side_by_side(*images: torch.Tensor, gap: int = 2, height: int | None = None) -> torch.Tensor:
    """Pictures ``[3,H_i,W_i]`` in ``[0,1]`` joined left to right with white gaps ``gap`` pixels wide: one
    ``[3,height,W]`` float32 image (``height`` defaults to the first picture's; the others are resized to it with
    antialiasing, keeping their aspect ratio)."""
    if not images:
        raise InputError("side_by_side needs at least one picture.")
    height = int(height or images[0].shape[-2])
    parts = []
    for k, im in enumerate(images):
        im = im.detach().float()
        if im.shape[-2] != height:
            width = max(1, round(im.shape[-1] * height / im.shape[-2]))
            im = torch.nn.functional.interpolate(im[None], size=(height, width), mode="bilinear",
                                                 align_corners=False, antialias=True)[0].clamp(0, 1)
        if k:
            parts.append(torch.ones(im.shape[0], height, gap, device=im.device))
        parts.append(im)
    return torch.cat(parts, -1)


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """``[3,H,W]`` float in ``[0,1]`` → ``[H,W,3]`` uint8 NumPy array (C-contiguous)."""
    return np.ascontiguousarray((image.detach().clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy())

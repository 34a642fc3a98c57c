"""Reading photos: any image a user has (file, bytes, PIL image, array, tensor) as one RGB float tensor."""
from __future__ import annotations

import errno
import io
import os
import re
import stat
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
            uint16 0-65535 or float 0-1), or a real-valued tensor ``[3,H,W]``/``[1,H,W]``/``[H,W]`` in ``[0,1]``.
            Grey, RGBA (alpha composited on white), palette, CMYK, 16-bit and floating-point images become RGB; EXIF
            orientation is applied. A named pipe is read when something writes to it (``<(curl ...)``).
        name: how to call the source in error messages (defaults to the path).

    Returns:
        ``torch.float32`` tensor ``[3, H, W]`` with values in ``[0, 1]``, at least 8×8.

    Raises:
        FileNotFoundError: the path does not exist.
        UnreadableImageError: the file is not an image PIL can read (HEIC without its plugin included), is too large
            to decode safely, cannot be read (permission, a name too long, a folder, a device, a pipe nothing writes
            to).
        InputError: an array/tensor of the wrong shape, range (NaN included) or type (bool and complex tensors
            included); an image smaller than 8×8; a URL.
    """
    label = name or (str(source) if isinstance(source, (str, os.PathLike)) else type(source).__name__)
    if isinstance(source, torch.Tensor):
        if source.dtype == torch.bool or source.is_complex():
            raise InputError(f"{label}: a {source.dtype} tensor is not an image; give real values, a float tensor "
                             "[3,H,W] in [0,1].")
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
        with _open_file(source, label) as f:
            return _decode(f, label, Path(source).suffix.lower())
    if not isinstance(source, Image.Image) and not hasattr(source, "read"):
        raise InputError(f"{label}: a photo must be a file path, bytes, a PIL image, a NumPy array or a tensor "
                         f"[3,H,W] in [0,1]; got {type(source).__name__}.")
    return _decode(source, label)


def _decode(source, label: str, suffix: str = "") -> torch.Tensor:
    """A PIL image or an open image file (``suffix``: its name's, for the hint) as ``[3,H,W]`` float32 in [0,1]."""
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            img = Image.open(source)
            img.load()
        except Image.DecompressionBombError as e:
            raise UnreadableImageError(f"{label}: the image is too large to decode safely ({e}). Resize it (a face "
                                       "needs a few hundred pixels) and try again.") from e
        except UnidentifiedImageError as e:
            raise UnreadableImageError(f"{label}: not a readable image (its format is not one PIL knows). "
                                       f"{_format_hint(suffix)}") from e
        except (OSError, SyntaxError, ValueError) as e:
            why = _OBJECT_REPR.sub("the file", str(e)) or type(e).__name__
            raise UnreadableImageError(f"{label}: not a readable image ({why}). {_format_hint(suffix)}") from e
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


#: An object's default repr (``<_io.BytesIO object at 0x7f...>``), which PIL puts in its messages.
_OBJECT_REPR = re.compile(r"<[\w.]+ object at 0x[0-9a-fA-F]+>")
#: Photo formats PIL reads only with a plugin, or not at all: what to do with them.
_PLUGIN_FORMATS = {".heic": "HEIC", ".heif": "HEIF", ".avif": "AVIF", ".jxl": "JPEG XL"}
_RAW_FORMATS = frozenset({".cr2", ".cr3", ".nef", ".arw", ".dng", ".orf", ".rw2", ".raf", ".srw", ".pef"})
#: The largest named-pipe stream read (bytes): a photo is far smaller.
PIPE_LIMIT = 256 << 20


def unsupported_photo(path: str | os.PathLike) -> str | None:
    """Why a file that looks like a photo (by its suffix: HEIC/HEIF/AVIF/JPEG XL without the plugin that reads it,
    camera raw) cannot be read here, with what to do; ``None`` for any other file."""
    suffix = Path(path).suffix.lower()
    if suffix in _PLUGIN_FORMATS and suffix not in Image.registered_extensions():
        kind = _PLUGIN_FORMATS[suffix]
        plugin = "pillow-heif" if suffix in (".heic", ".heif", ".avif") else "pillow-jxl-plugin"
        return f"{kind} photos need a plugin this installation lacks: convert it to JPEG or PNG, or pip install {plugin}."
    if suffix in _RAW_FORMATS:
        return "a camera raw file: export it as JPEG or PNG first."
    return None


def _format_hint(suffix: str) -> str:
    return unsupported_photo(f"x{suffix}") or "Use a JPEG, PNG, PGM, BMP, TIFF or WebP file."


def _open_file(source: str | os.PathLike, label: str) -> io.IOBase:
    """The photo file opened for reading (the caller closes it), checked first: every failure is an error naming
    it. A named pipe is read whole."""
    text = os.fspath(source)
    if isinstance(text, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        raise InputError(f"{label} is a URL; normface reads photos from files: download it first (e.g. curl -O "
                         f"'{text}') and give the file.")
    try:
        st = os.stat(source)
    except FileNotFoundError:
        raise FileNotFoundError(f"{label}: no such file; check the path.") from None
    except OSError as e:
        raise UnreadableImageError(f"{label}: cannot be read ({_os_reason(e)}).") from None
    if stat.S_ISDIR(st.st_mode):
        raise UnreadableImageError(f"{label} is a folder, not an image file.")
    if stat.S_ISFIFO(st.st_mode):
        return io.BytesIO(_read_pipe(source, label))
    if not stat.S_ISREG(st.st_mode):
        raise UnreadableImageError(f"{label} is not a regular file (a device or a socket); save the photo to a file "
                                   "and give that.")
    try:
        return open(source, "rb")
    except OSError as e:
        raise UnreadableImageError(f"{label}: cannot be read ({_os_reason(e)}).") from None


def _read_pipe(source, label: str) -> bytes:
    """All the bytes of a named pipe; refused at once when nothing writes to it (reading would wait forever)."""
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise UnreadableImageError(f"{label}: cannot be read ({_os_reason(e)}).") from None
    try:
        try:
            first = os.read(fd, 1 << 16)
        except BlockingIOError:  # a writer is there, with nothing written yet: wait for it
            first = None
        if first == b"":
            raise UnreadableImageError(f"{label} is a named pipe (FIFO) that nothing writes to; give a photo file "
                                       "(or write the photo into the pipe while normface reads it).")
        os.set_blocking(fd, True)
        parts, size = [first or b""], len(first or b"")
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
            size += len(chunk)
            if size > PIPE_LIMIT:
                raise UnreadableImageError(f"{label}: the pipe gave more than {PIPE_LIMIT >> 20} MiB, far more than "
                                           "a photo; give a photo file.")
        return b"".join(parts)
    finally:
        os.close(fd)


def _os_reason(e: OSError) -> str:
    """An ``OSError`` reading a photo, in words, with what to do."""
    return {errno.EACCES: "permission denied: a folder on its path cannot be entered or the file cannot be read; "
                          "check the permissions (ls -l) or copy the photo somewhere readable",
            errno.EPERM: "operation not permitted; check the permissions or copy the photo somewhere readable",
            errno.ENAMETOOLONG: "the name is longer than the file system allows; rename the file or a folder on its "
                                "path",
            errno.ELOOP: "a loop of symbolic links; fix the link",
            errno.ENOTDIR: "a file stands where the path needs a folder; check the path",
            errno.EIO: "an input/output error: the disk or network share failed; copy the photo elsewhere"
            }.get(e.errno, e.strerror or str(e))


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

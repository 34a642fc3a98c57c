"""Photo → face: loading, detection (MTCNN), 68 landmarks (dlib), similarity alignment to the canonical frame.

The canonical frame (see ``CONTRIBUTING.md``) is a square crop of side ``S`` in which the eye centres and the mouth
centre of the 68 landmarks sit, in the least-squares sense, at :data:`CANONICAL_ANCHORS` (fractions of ``S``).
Everything downstream (encoders, decoder, metrics) works on canonical crops.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from . import resources
from .errors import InputError, NoFaceError, UnreadableImageError

#: Where the left eye centre, right eye centre and mouth centre land in a canonical crop, as fractions of its side.
#: "Left" is the eye on the left of the picture (the person's right eye; dlib points 36-41).
CANONICAL_ANCHORS = torch.tensor([[0.36, 0.40], [0.64, 0.40], [0.50, 0.70]], dtype=torch.float32)

#: dlib 68-point index groups (iBUG 300-W order).
LEFT_EYE = list(range(36, 42))
RIGHT_EYE = list(range(42, 48))
MOUTH = list(range(48, 68))
JAW = list(range(0, 17))

#: Images smaller than this (shorter side, pixels) are upsampled before detection: MTCNN and dlib miss tiny faces.
MIN_DETECT_SIDE = 160
#: Images larger than this (longer side) are downsampled for detection only; landmarks are mapped back.
MAX_DETECT_SIDE = 1024


# --------------------------------------------------------------------------------------------------- loading
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


# --------------------------------------------------------------------------------------------------- detection
@lru_cache(maxsize=1)
def _mtcnn():
    from facenet_pytorch import MTCNN  # weights ship inside facenet-pytorch

    return MTCNN(keep_all=True, device="cpu", post_process=False)


@lru_cache(maxsize=1)
def _shape_predictor():
    import dlib

    return dlib.shape_predictor(str(resources.dlib_model_path("shape_predictor_68_face_landmarks.dat")))


def _detection_scale(h: int, w: int) -> float:
    if min(h, w) < MIN_DETECT_SIDE:
        return MIN_DETECT_SIDE / min(h, w)
    if max(h, w) > MAX_DETECT_SIDE:
        return MAX_DETECT_SIDE / max(h, w)
    return 1.0


def detect_faces(image: torch.Tensor, min_prob: float = 0.9) -> tuple[torch.Tensor, torch.Tensor]:
    """Find faces with MTCNN.

    Args:
        image: ``[3,H,W]`` float in ``[0,1]`` (see :func:`load_image`).
        min_prob: detections below this MTCNN probability are dropped.

    Returns:
        ``boxes`` ``[K,4]`` float32 ``(x0, y0, x1, y1)`` in pixels of ``image``, sorted by area (largest first), and
        their probabilities ``[K]``. ``K`` may be 0.
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise InputError("detect_faces expects one image [3,H,W] in [0,1]; load it with load_image().")
    h, w = image.shape[1:]
    s = _detection_scale(h, w)
    pil = Image.fromarray(to_uint8_hwc(image))
    if s != 1.0:
        pil = pil.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    boxes, probs = _mtcnn().detect(pil)
    if boxes is None:
        return torch.zeros(0, 4), torch.zeros(0)
    boxes = torch.as_tensor(np.asarray(boxes, dtype=float), dtype=torch.float32) / s
    probs = torch.as_tensor(np.asarray(probs, dtype=float), dtype=torch.float32)
    keep = probs >= min_prob
    boxes, probs = boxes[keep], probs[keep]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(area, descending=True)
    return boxes[order], probs[order]


def landmarks_in_box(image: torch.Tensor, box: Sequence[float]) -> torch.Tensor:
    """dlib's 68-point shape predictor inside a face box.

    Args:
        image: ``[3,H,W]`` float in ``[0,1]``.
        box: ``(x0, y0, x1, y1)`` in pixels of ``image``.

    Returns:
        ``[68,2]`` float32 landmark positions ``(x, y)`` in pixels of ``image`` (may fall outside the image).
    """
    import dlib

    h, w = image.shape[1:]
    s = _detection_scale(h, w)
    arr = to_uint8_hwc(image)
    if s != 1.0:
        arr = np.asarray(Image.fromarray(arr).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC))
    x0, y0, x1, y1 = (float(v) * s for v in box)
    rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
    shape = _shape_predictor()(arr, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float32)
    # map back from the (possibly resized) detection image; pixel centres stay pixel centres
    pts = (pts + 0.5) / s - 0.5
    return torch.from_numpy(pts)


def detect_landmarks(image: torch.Tensor, face: str | int = "largest", name: str = "image",
                     min_prob: float = 0.9) -> torch.Tensor:
    """Detect a face (MTCNN) and its 68 landmarks (dlib) in a photo.

    Args:
        image: ``[3,H,W]`` float in ``[0,1]``.
        face: ``"largest"`` (default) or the index of the face in the largest-first order of :func:`detect_faces`.
        name: how to call the photo in error messages (e.g. its file name).
        min_prob: MTCNN detection threshold.

    Returns:
        ``[68,2]`` float32 landmarks ``(x, y)`` in pixels of ``image``.

    Raises:
        NoFaceError: MTCNN found no face (the message names ``name``), or ``face`` is out of range.
    """
    boxes, _ = detect_faces(image, min_prob=min_prob)
    if len(boxes) == 0:
        raise NoFaceError(f"{name}: no face found. Use a photo where a face is clearly visible and at least about "
                          "40 pixels wide, or pass landmarks yourself.")
    idx = 0 if face == "largest" else int(face)
    if not 0 <= idx < len(boxes):
        raise NoFaceError(f"{name}: face index {idx} requested but only {len(boxes)} face(s) were found.")
    return landmarks_in_box(image, boxes[idx].tolist())


# --------------------------------------------------------------------------------------------------- alignment
def anchor_points(landmarks: torch.Tensor) -> torch.Tensor:
    """Eye centres and mouth centre of 68-point landmarks: ``[...,68,2]`` → ``[...,3,2]`` (same units)."""
    if landmarks.shape[-2:] != (68, 2):
        raise InputError(f"landmarks must be [...,68,2] in dlib order, got {tuple(landmarks.shape)}.")
    return torch.stack([landmarks[..., LEFT_EYE, :].mean(-2), landmarks[..., RIGHT_EYE, :].mean(-2),
                        landmarks[..., MOUTH, :].mean(-2)], dim=-2)


def fit_similarity(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) mapping ``src`` onto ``dst``.

    Args:
        src, dst: ``[B,K,2]`` float point sets (K ≥ 2).

    Returns:
        ``[B,2,3]`` matrices ``M`` with ``dst ≈ src @ M[:, :, :2].T + M[:, :, 2]``.
    """
    src_c = src - src.mean(-2, keepdim=True)
    dst_c = dst - dst.mean(-2, keepdim=True)
    # closed form for 2-D similarity: [a -b; b a]
    denom = (src_c ** 2).sum((-1, -2)).clamp_min(1e-12)
    a = (src_c * dst_c).sum((-1, -2)) / denom
    b = (src_c[..., 0] * dst_c[..., 1] - src_c[..., 1] * dst_c[..., 0]).sum(-1) / denom
    R = torch.stack([torch.stack([a, -b], -1), torch.stack([b, a], -1)], -2)  # [B,2,2]
    t = dst.mean(-2) - (R @ src.mean(-2)[..., None])[..., 0]
    return torch.cat([R, t[..., None]], -1)


def apply_affine(points: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Apply ``[B,2,3]`` affine matrices to points ``[B,L,2]``."""
    return points @ matrix[..., :2].transpose(-1, -2) + matrix[..., None, :, 2]


def invert_affine(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse of ``[B,2,3]`` affine matrices."""
    A_inv = torch.linalg.inv(matrix[..., :2])
    return torch.cat([A_inv, -(A_inv @ matrix[..., 2:])], -1)


def canonical_transform(landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """Similarity from photo pixels to canonical-crop pixels.

    Args:
        landmarks: ``[B,68,2]`` (or ``[68,2]``) float, pixels of the photo.
        size: side ``S`` of the canonical crop.

    Returns:
        ``[B,2,3]`` (or ``[2,3]``) float32 matrices mapping photo pixel coordinates to crop pixel coordinates.
    """
    single = landmarks.dim() == 2
    lm = landmarks[None] if single else landmarks
    anchors = CANONICAL_ANCHORS.to(lm) * size - 0.5  # fractions of the side → pixel-centre coordinates
    M = fit_similarity(anchor_points(lm.float()), anchors.expand(lm.shape[0], -1, -1))
    return M[0] if single else M


def warp_affine(images: torch.Tensor, matrix: torch.Tensor, size: int, padding_mode: str = "border") -> torch.Tensor:
    """Resample ``images`` ``[B,3,H,W]`` so that output pixel ``q`` shows input pixel ``M⁻¹ q`` (bilinear).

    ``matrix`` ``[B,2,3]`` maps input pixels to output pixels; the output is ``[B,3,size,size]``. Differentiable.
    """
    B, _, H, W = images.shape
    inv = invert_affine(matrix.to(images))
    ys, xs = torch.meshgrid(torch.arange(size, dtype=images.dtype, device=images.device),
                            torch.arange(size, dtype=images.dtype, device=images.device), indexing="ij")
    q = torch.stack([xs, ys], -1).reshape(1, -1, 2).expand(B, -1, -1)
    p = apply_affine(q, inv).reshape(B, size, size, 2)
    grid = torch.stack([(2 * p[..., 0] + 1) / W - 1, (2 * p[..., 1] + 1) / H - 1], -1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def align_faces(images, landmarks: torch.Tensor, size: int, padding_mode: str = "border"):
    """Similarity-align faces to the canonical frame.

    Args:
        images: ``[B,3,H,W]`` float in ``[0,1]``, or a list of ``B`` tensors ``[3,H_i,W_i]`` (sizes may differ).
        landmarks: ``[B,68,2]`` float, pixels of each photo.
        size: side ``S`` of the output crops.
        padding_mode: how to fill outside the photo (``"border"`` replicates edge pixels; ORL photos are tight crops).

    Returns:
        ``crops`` ``[B,3,S,S]`` float in ``[0,1]``, ``landmarks`` ``[B,68,2]`` in crop pixels, and ``matrices``
        ``[B,2,3]`` (photo pixels → crop pixels).
    """
    landmarks = torch.as_tensor(landmarks, dtype=torch.float32)
    if landmarks.dim() == 2:
        landmarks = landmarks[None]
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        images = images[None]
    if len(images) != landmarks.shape[0]:
        raise InputError(f"align_faces got {len(images)} images but {landmarks.shape[0]} landmark sets.")
    M = canonical_transform(landmarks, size)
    if isinstance(images, torch.Tensor):
        crops = warp_affine(images.float(), M, size, padding_mode)
    else:
        crops = torch.cat([warp_affine(im[None].float(), M[i:i + 1], size, padding_mode)
                           for i, im in enumerate(images)])
    return crops.clamp(0, 1), apply_affine(landmarks, M), M


@dataclass
class Face:
    """One detected face.

    Attributes:
        crop: ``[3,S,S]`` float in ``[0,1]``, canonical frame.
        landmarks: ``[68,2]`` float32, crop pixels.
        photo_landmarks: ``[68,2]`` float32, photo pixels.
        matrix: ``[2,3]`` similarity, photo pixels → crop pixels.
        source: where the photo came from (path or description).
    """

    crop: torch.Tensor
    landmarks: torch.Tensor
    photo_landmarks: torch.Tensor
    matrix: torch.Tensor
    source: str


def face_from_photo(photo, size: int, face: str | int = "largest", name: str | None = None) -> Face:
    """Load (if needed), detect and align one face: the whole preprocessing path for a user's photo.

    Args:
        photo: anything :func:`load_image` accepts.
        size: canonical crop side ``S``.
        face: ``"largest"`` or an index into the faces found (largest first).
    """
    label = name or (str(photo) if isinstance(photo, (str, os.PathLike)) else "image")
    image = load_image(photo, name=label)
    lm = detect_landmarks(image, face=face, name=label)
    crops, lms, M = align_faces(image[None], lm[None], size)
    return Face(crops[0], lms[0], lm, M[0], label)

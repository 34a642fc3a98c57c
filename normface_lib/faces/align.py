"""Alignment: the similarity that puts a face into the canonical frame, the crops it makes, and the whole path from a
photo to aligned faces (load → detect → align)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..core.checks import check_landmarks, check_size
from ..core.errors import InputError, NoFaceError, UnreadableImageError
from .detect import cached_landmarks, detect_all_landmarks, detect_faces_batch, detection_view, landmarks_in_boxes
from .images import load_image
from .landmarks import CANONICAL_ANCHORS, anchor_points, mirror_landmarks


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
    # pixel → grid_sample coordinates, written out rather than through warp.pixels_to_normalized: that function
    # computes x * (2/W) + (1/W - 1), which rounds differently in float32, and every aligned crop (and so every
    # published figure) depends on these bits; the two agree to within one float32 ulp.
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
    scale = M[:, :, :2].det().abs().sqrt()  # crop pixels per photo pixel
    if isinstance(images, torch.Tensor) and bool((scale >= 0.5).all()):
        crops = warp_affine(images.float(), M, size, padding_mode)
    else:  # photos of equal size are warped together; photos shrunk more than 2x are low-pass filtered first
        groups: dict = {}
        for i, im in enumerate(images):
            groups.setdefault(tuple(im.shape) if scale[i] >= 0.5 else ("antialias", i), []).append(i)
        crops = torch.empty(len(images), 3, size, size)
        for key, idx in groups.items():
            if key[0] == "antialias":
                crops[idx[0]] = _warp_antialiased(images[idx[0]].float(), M[idx[0]], float(scale[idx[0]]), size,
                                                  padding_mode)[0]
            else:
                crops[idx] = warp_affine(torch.stack([images[i] for i in idx]).float(), M[idx], size, padding_mode)
    return crops.clamp(0, 1), apply_affine(landmarks, M), M


def _warp_antialiased(image: torch.Tensor, matrix: torch.Tensor, scale: float, size: int,
                      padding_mode: str) -> torch.Tensor:
    """``warp_affine`` of one ``[3,H,W]`` photo; when the similarity shrinks it by more than 2x, the photo is first
    resized (with antialiasing) to twice the output resolution and ``matrix`` adjusted accordingly."""
    if scale >= 0.5:
        return warp_affine(image[None], matrix[None], size, padding_mode)
    H, W = image.shape[-2:]
    h, w = max(2, round(H * 2 * scale)), max(2, round(W * 2 * scale))
    small = F.interpolate(image[None], size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    sx, sy = w / W, h / H  # photo pixel x ↦ (x + 0.5) * sx - 0.5 in the resized photo
    to_small = torch.tensor([[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5]], dtype=matrix.dtype)
    from_small = invert_affine(to_small[None])[0]
    m = torch.cat([matrix[:, :2] @ from_small[:, :2], (matrix[:, :2] @ from_small[:, 2:]) + matrix[:, 2:]], 1)
    return warp_affine(small, m[None], size, padding_mode)


@dataclass
class Face:
    """One detected face.

    Attributes:
        crop: ``[3,S,S]`` float in ``[0,1]``, canonical frame.
        landmarks: ``[68,2]`` float32, crop pixels.
        photo_landmarks: ``[68,2]`` float32, photo pixels.
        matrix: ``[2,3]`` similarity, photo pixels → crop pixels.
        source: where the photo came from (path or description).
        box: ``[4]`` float32 MTCNN box ``(x0, y0, x1, y1)`` in photo pixels, when detection ran here (None when the
            landmarks came from the cache).
    """

    crop: torch.Tensor
    landmarks: torch.Tensor
    photo_landmarks: torch.Tensor
    matrix: torch.Tensor
    source: str
    box: torch.Tensor | None = None


def photo_label(photo, name: str | None = None) -> str:
    """How to call a photo in messages: ``name``, else its path, else ``"image"``."""
    return name or (str(photo) if isinstance(photo, (str, os.PathLike)) else "image")


def face_from_photo(photo, size: int, face: str | int = "largest", name: str | None = None,
                    cache: bool = True, min_prob: float = 0.9, device: str | torch.device = "cpu") -> Face:
    """Load (if needed) → detect → select → align one face: the whole preprocessing path for a user's photo.

    Args:
        photo: anything :func:`load_image` accepts (path, bytes, PIL image, array, tensor ``[3,H,W]`` in ``[0,1]``).
        size: canonical crop side ``S`` (pixels, ≥ 8).
        face: ``"largest"`` or an index into the faces found (largest first).
        name: how to call the photo in error messages (defaults to the path).
        cache: reuse/store the landmarks on disk (see :func:`~normface_lib.faces.detect.cached_landmarks`).
        min_prob: MTCNN detection threshold.
        device: where MTCNN runs.

    Returns:
        :class:`Face` with ``crop`` ``[3,S,S]`` float32 in ``[0,1]`` and landmarks in crop and photo pixels.

    Raises:
        FileNotFoundError, UnreadableImageError, InputError: see :func:`load_image`.
        NoFaceError: no face was found (the message names the file).
    """
    size = check_size(size)
    label = photo_label(photo, name)
    image = load_image(photo, name=label)
    lm = cached_landmarks(image, face=face, name=label, min_prob=min_prob, cache=cache, device=device)
    crops, lms, M = align_faces([image], lm[None], size)
    return Face(crops[0], lms[0], lm, M[0], label)


def faces_in_photo(photo, size: int, name: str | None = None, min_prob: float = 0.9,
                   device: str | torch.device = "cpu") -> list[Face]:
    """Every face of a photo, largest first, each aligned as in :func:`face_from_photo` (no landmark cache).

    Raises :class:`NoFaceError` when there is none; the loading errors of :func:`load_image`."""
    size = check_size(size)
    label = photo_label(photo, name)
    image = load_image(photo, name=label)
    boxes, lms = detect_all_landmarks(image, name=label, min_prob=min_prob, device=device)
    return _aligned(image, boxes, lms, size, label)


def _aligned(image: torch.Tensor, boxes: torch.Tensor, lms: torch.Tensor, size: int, label: str) -> list[Face]:
    crops, crop_lms, M = align_faces(image[None].expand(len(lms), -1, -1, -1), lms, size)
    return [Face(crops[i], crop_lms[i], lms[i], M[i], label, boxes[i]) for i in range(len(lms))]


#: What one photo of :func:`faces_in_photos` can fail with; other exceptions are bugs and propagate.
PHOTO_ERRORS = (NoFaceError, UnreadableImageError, InputError, FileNotFoundError, PermissionError, IsADirectoryError)


def faces_in_photos(photos: Sequence, size: int, names: Sequence[str] | None = None, min_prob: float = 0.9,
                    device: str | torch.device = "cpu") -> list[list[Face] | Exception]:
    """:func:`faces_in_photo` of many photos at once: MTCNN runs once per group of same-size photos (faster than one
    by one; boxes can differ from it in the last digits). Returns, per photo in input order, its faces (largest
    first) or the error that photo raised (:data:`PHOTO_ERRORS`: missing, unreadable, no face...)."""
    size = check_size(size)
    labels = [photo_label(p, names[k] if names else None) for k, p in enumerate(photos)]
    out: list = [None] * len(photos)
    images = {}
    for k, photo in enumerate(photos):
        try:
            images[k] = load_image(photo, name=labels[k])
        except PHOTO_ERRORS as e:
            out[k] = e
    ks = list(images)
    views = [detection_view(images[k]) for k in ks]
    for k, view, (boxes, _) in zip(ks, views, detect_faces_batch([images[k] for k in ks], min_prob, device, views)):
        try:
            out[k] = _aligned(images[k], boxes, landmarks_in_boxes(images[k], boxes, labels[k], view), size, labels[k])
        except PHOTO_ERRORS as e:
            out[k] = e
    return out


def faces_from_photos(photos: Sequence, size: int, face: str | int = "largest", cache: bool = True,
                      min_prob: float = 0.9) -> tuple[list[Face], list[tuple[str, str]]]:
    """:func:`face_from_photo` over many photos, collecting per-photo errors instead of stopping at the first.

    Args:
        photos: paths (or anything :func:`load_image` accepts).
        size, face, cache, min_prob: as in :func:`face_from_photo`.

    Returns:
        ``faces``: the :class:`Face` of every photo that worked (input order kept), and ``errors``: a list of
        ``(name, message)`` for every photo that did not (missing, unreadable, no face...).
    """
    faces, errors = [], []
    for k, photo in enumerate(photos):
        label = str(photo) if isinstance(photo, (str, os.PathLike)) else f"photo {k}"
        try:
            faces.append(face_from_photo(photo, size, face=face, name=label, cache=cache, min_prob=min_prob))
        except PHOTO_ERRORS as e:
            errors.append((label, f"{type(e).__name__}: {e}"))
    return faces, errors


def mirror_faces(images: torch.Tensor, landmarks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip images left-right together with their landmarks.

    Args:
        images: ``[B,C,H,W]`` float.
        landmarks: ``[B,68,2]`` float, pixels of ``images``.

    Returns:
        flipped images ``[B,C,H,W]`` and :func:`mirror_landmarks` of the landmarks ``[B,68,2]``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise InputError(f"images must be a tensor [B,C,H,W], got {getattr(images, 'shape', type(images))}.")
    check_landmarks(landmarks, "landmarks", batch=images.shape[0])
    return images.flip(-1), mirror_landmarks(landmarks, images.shape[-1])

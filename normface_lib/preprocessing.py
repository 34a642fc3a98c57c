"""Photo → face: loading, detection (MTCNN), 68 landmarks (dlib), similarity alignment to the canonical frame.

The canonical frame (see ``CONTRIBUTING.md``) is a square crop of side ``S`` in which the eye centres and the mouth
centre of the 68 landmarks sit, in the least-squares sense, at :data:`CANONICAL_ANCHORS` (fractions of ``S``).
Everything downstream (encoders, decoder, metrics) works on canonical crops.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
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
from .errors import InputError, NoFaceError, OverwriteError, UnreadableImageError

#: Where the left eye centre, right eye centre and mouth centre land in a canonical crop, as fractions of its side.
#: "Left" is the eye on the left of the picture (the person's right eye; dlib points 36-41).
CANONICAL_ANCHORS = torch.tensor([[0.36, 0.40], [0.64, 0.40], [0.50, 0.70]], dtype=torch.float32)

#: dlib 68-point index groups (iBUG 300-W order).
LEFT_EYE = list(range(36, 42))
RIGHT_EYE = list(range(42, 48))
MOUTH = list(range(48, 68))
JAW = list(range(0, 17))
NOSE_TIP = 30
INNER_LIP_PAIRS = [(61, 67), (62, 66), (63, 65)]  # upper/lower inner-lip points facing each other

#: Index permutation that maps the 68 dlib points of a face onto those of its mirror image (left ↔ right):
#: jaw i ↔ 16-i, brows 17-21 ↔ 26-22, nose bridge 27-30 fixed, nostrils 31 ↔ 35, 32 ↔ 34, eyes 36 ↔ 45, 37 ↔ 44,
#: 38 ↔ 43, 39 ↔ 42, 40 ↔ 47, 41 ↔ 46, outer lips 48 ↔ 54, 49 ↔ 53, 50 ↔ 52, 55 ↔ 59, 56 ↔ 58 (51, 57 fixed),
#: inner lips 60 ↔ 64, 61 ↔ 63, 65 ↔ 67 (62, 66 fixed).
MIRROR_PERMUTATION = ([16 - i for i in range(17)] + [26 - i for i in range(10)] + [27, 28, 29, 30]
                      + [35, 34, 33, 32, 31] + [45, 44, 43, 42, 47, 46] + [39, 38, 37, 36, 41, 40]
                      + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55] + [64, 63, 62, 61, 60, 67, 66, 65])

#: Bump when detection/landmark code changes in a way that changes results: invalidates the on-disk landmark caches.
LANDMARK_CODE_VERSION = 1

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
    """

    crop: torch.Tensor
    landmarks: torch.Tensor
    photo_landmarks: torch.Tensor
    matrix: torch.Tensor
    source: str


def _image_key(image: torch.Tensor, face: str | int, min_prob: float) -> str:
    """Content hash of a loaded photo plus everything that changes its landmarks (face choice, threshold, code)."""
    h = hashlib.sha256()
    h.update(f"v{LANDMARK_CODE_VERSION}|{MIN_DETECT_SIDE}|{MAX_DETECT_SIDE}|{face}|{min_prob:.6f}|"
             f"{tuple(image.shape)}|".encode())
    h.update(to_uint8_hwc(image).tobytes())
    return h.hexdigest()


def cached_landmarks(image: torch.Tensor, face: str | int = "largest", name: str = "image", min_prob: float = 0.9,
                     cache: bool = True) -> torch.Tensor:
    """:func:`detect_landmarks` with an on-disk cache.

    The cache entry (``resources.cache_dir("faces")/<hash>.json``, a few kB) holds only the 68 landmarks in photo
    pixels, keyed by a sha256 of the decoded pixels, the face choice, ``min_prob`` and
    :data:`LANDMARK_CODE_VERSION`; the crop size is not part of the key because crops are recomputed from the
    landmarks. Failures (no face) are not cached.

    Args:
        image: ``[3,H,W]`` float in ``[0,1]``.
        face, name, min_prob: as in :func:`detect_landmarks`.
        cache: ``False`` skips the cache (neither read nor written).

    Returns:
        ``[68,2]`` float32 landmarks in photo pixels.
    """
    if not cache:
        return detect_landmarks(image, face=face, name=name, min_prob=min_prob)
    if face != "largest" and not isinstance(face, int):
        raise InputError(f"face must be 'largest' or an integer index, got {face!r}.")
    key = _image_key(image, face, min_prob)
    path = resources.cache_dir("faces") / f"{key}.json"
    if path.exists():
        try:
            data = json.loads(path.read_text())
            lm = torch.tensor(data["landmarks"], dtype=torch.float32)
            if lm.shape == (68, 2):
                return lm
        except (ValueError, KeyError, OSError):
            pass  # a corrupt entry is recomputed below
    lm = detect_landmarks(image, face=face, name=name, min_prob=min_prob)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps({"landmarks": lm.tolist(), "version": LANDMARK_CODE_VERSION, "face": face,
                               "shape": list(image.shape)}))
    os.replace(tmp, path)
    return lm


def face_from_photo(photo, size: int, face: str | int = "largest", name: str | None = None,
                    cache: bool = True, min_prob: float = 0.9) -> Face:
    """Load (if needed), detect and align one face: the whole preprocessing path for a user's photo.

    Args:
        photo: anything :func:`load_image` accepts (path, bytes, PIL image, array, tensor ``[3,H,W]`` in ``[0,1]``).
        size: canonical crop side ``S`` (pixels, ≥ 8).
        face: ``"largest"`` or an index into the faces found (largest first).
        name: how to call the photo in error messages (defaults to the path).
        cache: reuse/store the landmarks on disk (see :func:`cached_landmarks`).
        min_prob: MTCNN detection threshold.

    Returns:
        :class:`Face` with ``crop`` ``[3,S,S]`` float32 in ``[0,1]`` and landmarks in crop and photo pixels.

    Raises:
        FileNotFoundError, UnreadableImageError, InputError: see :func:`load_image`.
        NoFaceError: no face was found (the message names the file).
    """
    if not isinstance(size, int) or size < 8:
        raise InputError(f"size must be an integer crop side of at least 8 pixels, got {size!r}.")
    label = name or (str(photo) if isinstance(photo, (str, os.PathLike)) else "image")
    image = load_image(photo, name=label)
    lm = cached_landmarks(image, face=face, name=label, min_prob=min_prob, cache=cache)
    crops, lms, M = align_faces([image], lm[None], size)
    return Face(crops[0], lms[0], lm, M[0], label)


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
        except (NoFaceError, UnreadableImageError, InputError, FileNotFoundError) as e:
            errors.append((label, f"{type(e).__name__}: {e}"))
    return faces, errors


# --------------------------------------------------------------------------------------------------- mirroring
def mirror_landmarks(landmarks: torch.Tensor, width: int | float) -> torch.Tensor:
    """Landmarks of the horizontally flipped image.

    Args:
        landmarks: ``[...,68,2]`` float, pixels of an image ``width`` pixels wide.
        width: image width ``W`` in pixels.

    Returns:
        ``[...,68,2]``: ``x ↦ W - 1 - x`` (pixel centres map to pixel centres), re-indexed with
        :data:`MIRROR_PERMUTATION` so that point ``i`` is again the ``i``-th dlib point (the flipped left eye becomes
        the right eye). Applying it twice gives the input back.
    """
    _check_landmarks(landmarks, "landmarks")
    out = landmarks[..., MIRROR_PERMUTATION, :].clone()
    out[..., 0] = (width - 1) - out[..., 0]
    return out


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
    _check_landmarks(landmarks, "landmarks", batch=images.shape[0])
    return images.flip(-1), mirror_landmarks(landmarks, images.shape[-1])


# --------------------------------------------------------------------------------------------------- pose / expression
def _check_landmarks(landmarks, name: str, batch: int | None = None) -> torch.Tensor:
    if not isinstance(landmarks, torch.Tensor):
        raise InputError(f"{name} must be a float tensor [...,68,2] (x, y pixels), got {type(landmarks).__name__}; "
                         "convert with torch.as_tensor(..., dtype=torch.float32).")
    if landmarks.dim() < 2 or tuple(landmarks.shape[-2:]) != (68, 2):
        raise InputError(f"{name} must have shape [B,68,2] or [68,2] (dlib order, x then y), got "
                         f"{tuple(landmarks.shape)}.")
    if not landmarks.is_floating_point():
        raise InputError(f"{name} must be floating point, got {landmarks.dtype}; use .float().")
    if batch is not None and landmarks.dim() == 3 and landmarks.shape[0] != batch:
        raise InputError(f"{name} has {landmarks.shape[0]} landmark sets for {batch} images.")
    return landmarks


def pose_measures(landmarks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Landmark-based head pose and expression measures (see :func:`frontal_neutral_score`).

    All distances are in units of the inter-ocular distance ``iod`` (between the eye centres, mean of points 36-41
    and 42-47), measured in an *eye frame*: origin at the midpoint of the eyes, x along the eye line.

    Args:
        landmarks: ``[B,68,2]`` or ``[68,2]`` float, any pixel frame (photo or crop).

    Returns:
        dict of float32 tensors ``[B]`` (or scalars for ``[68,2]`` input):
        ``roll`` (radians, angle of the eye line; 0 in canonical crops), ``yaw_nose`` (x of the nose tip, point 30,
        in the eye frame; 0 when frontal, ±0.2 or more for a clear turn), ``yaw_jaw`` (``(d0 - d16) / (d0 + d16)``,
        distances from the nose tip to the two ends of the jaw line, points 0 and 16; 0 when frontal), ``pitch``
        (y of the nose tip divided by y of the mouth centre in the eye frame; about 0.3-0.6 on ORL, larger when the head tilts down),
        ``mouth_open`` (mean gap between facing inner-lip points 61/67, 62/66, 63/65), ``smile`` (how far the
        mouth corners 48, 54 sit above the mean of the lip centre points 51, 57, 62, 66; > 0 when raised),
        ``mouth_width`` (distance 48-54), ``iod`` (pixels).
    """
    _check_landmarks(landmarks, "landmarks")
    lm = landmarks.float()
    a = anchor_points(lm)
    le, re = a[..., 0, :], a[..., 1, :]
    mid = (le + re) / 2
    d = re - le
    iod = d.norm(dim=-1).clamp_min(1e-6)
    ex = d / iod[..., None]
    ey = torch.stack([-ex[..., 1], ex[..., 0]], -1)  # perpendicular, pointing down the face in image coordinates

    def frame(idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:  # eye-frame coordinates [...,K], iod units
        q = lm[..., idx, :] - mid[..., None, :]
        return ((q * ex[..., None, :]).sum(-1) / iod[..., None], (q * ey[..., None, :]).sum(-1) / iod[..., None])

    nx, ny = (c[..., 0] for c in frame([NOSE_TIP]))
    _, mouth_y = frame(MOUTH)
    d0 = (lm[..., NOSE_TIP, :] - lm[..., 0, :]).norm(dim=-1)
    d16 = (lm[..., NOSE_TIP, :] - lm[..., 16, :]).norm(dim=-1)
    gaps = torch.stack([(lm[..., i, :] - lm[..., j, :]).norm(dim=-1) for i, j in INNER_LIP_PAIRS], -1).mean(-1)
    _, cy = frame([48, 54])
    _, my = frame([51, 57, 62, 66])
    return {
        "roll": torch.atan2(d[..., 1], d[..., 0]),
        "yaw_nose": nx,
        "yaw_jaw": (d0 - d16) / (d0 + d16).clamp_min(1e-6),
        "pitch": ny / mouth_y.mean(-1).clamp_min(1e-6),
        "mouth_open": gaps / iod,
        "smile": my.mean(-1) - cy.mean(-1),
        "mouth_width": (lm[..., 48, :] - lm[..., 54, :]).norm(dim=-1) / iod,
        "iod": iod,
    }


#: Weights of :func:`frontal_neutral_score` (per unit of each measure; see its docstring).
SCORE_WEIGHTS = {"yaw_nose": 2.0, "yaw_jaw": 2.0, "roll": 0.5, "pitch": 1.0, "mouth_open": 4.0, "smile": 4.0,
                 "mouth_width": 1.0}


def frontal_neutral_score(landmarks: torch.Tensor, reference: dict[str, float] | None = None) -> torch.Tensor:
    """How far a face is from frontal and neutral, from its 68 landmarks (lower is better; 0 is ideal).

    ``score = 2|yaw_nose| + 2|yaw_jaw| + 0.5|roll| + |pitch - pitch_ref| + 4 mouth_open
    + 4 max(smile - smile_ref, 0) + max(mouth_width - width_ref, 0)`` with the measures of :func:`pose_measures`
    (inter-ocular units, radians). Yaw counts twice (two independent cues, nose tip and jaw symmetry) because a
    turned head cannot be undone by a 2-D warp; roll gets a small weight because alignment removes it (it only
    costs border padding); an open mouth (inner-lip gap) and a smile (raised mouth corners, a mouth wider than
    usual) mark non-neutral expressions. The references (``pitch_ref``, ``smile_ref``, ``width_ref``) are the
    medians of the photos being compared, so the score ranks photos within a data set.

    Args:
        landmarks: ``[B,68,2]`` float, pixels (photo or crop).
        reference: optional ``{"pitch": .., "smile": .., "mouth_width": ..}``; default: medians over ``landmarks``.

    Returns:
        ``[B]`` float32 scores ≥ 0.
    """
    _check_landmarks(landmarks, "landmarks")
    if landmarks.dim() != 3:
        raise InputError(f"frontal_neutral_score expects a batch [B,68,2], got {tuple(landmarks.shape)}.")
    m = pose_measures(landmarks)
    ref = {k: float(m[k].median()) for k in ("pitch", "smile", "mouth_width")}
    ref.update(reference or {})
    w = SCORE_WEIGHTS
    return (w["yaw_nose"] * m["yaw_nose"].abs() + w["yaw_jaw"] * m["yaw_jaw"].abs() + w["roll"] * m["roll"].abs()
            + w["pitch"] * (m["pitch"] - ref["pitch"]).abs() + w["mouth_open"] * m["mouth_open"]
            + w["smile"] * (m["smile"] - ref["smile"]).clamp_min(0)
            + w["mouth_width"] * (m["mouth_width"] - ref["mouth_width"]).clamp_min(0))


# --------------------------------------------------------------------------------------------------- mean shape, registration
def mean_shape(landmarks: torch.Tensor, symmetric: bool = False, size: int | None = None) -> torch.Tensor:
    """Mean of canonical-frame landmarks (no Procrustes step: canonical crops are already similarity-aligned).

    Args:
        landmarks: ``[N,68,2]`` float, canonical-crop pixels (all from crops of the same side ``S``), N ≥ 1.
        symmetric: also average the left-right mirror images (needs ``size`` = ``S``), giving a shape that is its own
            mirror image; then registering a mirrored face equals flipping the registered face.
        size: crop side ``S`` (only used when ``symmetric``).

    Returns:
        ``[68,2]`` float32 mean landmarks, crop pixels.
    """
    _check_landmarks(landmarks, "landmarks")
    if landmarks.dim() != 3 or landmarks.shape[0] == 0:
        raise InputError(f"mean_shape expects a non-empty batch [N,68,2], got {tuple(landmarks.shape)}.")
    lm = landmarks.float()
    if symmetric:
        if size is None:
            raise InputError("mean_shape(symmetric=True) needs size=S, the side of the crops the landmarks belong to.")
        lm = torch.cat([lm, mirror_landmarks(lm, size)])
    return lm.mean(0)


def save_mean_shape(shape: torch.Tensor, size: int, path: str | os.PathLike | None = None, force: bool = False,
                    description: str = "") -> Path:
    """Write a mean shape to JSON as fractions of the crop side, ``u = (x + 0.5) / S`` (size-independent).

    Args:
        shape: ``[68,2]`` crop pixels of side ``size``.
        path: default ``normface_lib/assets/mean_shape_68.json`` of the checkout.
        force: overwrite an existing file.
    """
    _check_landmarks(shape, "shape")
    path = Path(path) if path is not None else resources.assets_dir() / "mean_shape_68.json"
    if path.exists() and not force:
        raise OverwriteError(f"{path} exists; pass force=True to overwrite it.")
    frac = ((shape.double() + 0.5) / size).tolist()
    header = json.dumps({"format": "normface mean shape v1: 68 dlib points (x, y) as fractions u of the canonical "
                                   "crop side S; pixels = u * S - 0.5",
                         "description": description,
                         "canonical_anchors": [[round(v, 6) for v in a] for a in CANONICAL_ANCHORS.tolist()]},
                        indent=1)[:-2]
    points = ",\n  ".join(f"[{x:.6f}, {y:.6f}]" for x, y in frac)
    path.write_text(header + f',\n "points": [\n  {points}\n ]\n}}\n')
    return path


def load_mean_shape(size: int, path: str | os.PathLike | None = None) -> torch.Tensor:
    """The committed mean shape (``normface_lib/assets/mean_shape_68.json``, or ``path``) in pixels of a canonical crop of side
    ``size``: ``[68,2]`` float32."""
    path = Path(path) if path is not None else resources.assets_dir() / "mean_shape_68.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: no mean shape file; build one with "
                                "normface_lib.data.write_mean_shape() or pass mean_shape= explicitly.")
    try:
        pts = torch.tensor(json.loads(path.read_text())["points"], dtype=torch.float32)
    except (ValueError, KeyError) as e:
        raise InputError(f"{path} is not a normface mean-shape file ({e}); regenerate it with "
                         "normface_lib.data.write_mean_shape(force=True).") from e
    if pts.shape != (68, 2):
        raise InputError(f"{path} holds {tuple(pts.shape)} points, expected 68x2.")
    return pts * size - 0.5


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
    from .utils import check_images
    from .warp import warp_image

    check_images(crops, "crops", square=True)
    _check_landmarks(landmarks, "landmarks", batch=crops.shape[0])
    _check_landmarks(mean_shape, "mean_shape")
    if landmarks.dim() != 3:
        raise InputError(f"landmarks must be a batch [B,68,2] matching crops, got {tuple(landmarks.shape)}.")
    B = crops.shape[0]
    dst = mean_shape.to(crops) if mean_shape.dim() == 3 else mean_shape.to(crops)[None].expand(B, -1, -1)
    return warp_image(crops, landmarks.to(crops), dst, mode=mode).clamp(0, 1)

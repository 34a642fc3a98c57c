"""Finding faces: MTCNN boxes (facenet-pytorch), dlib's 68 landmarks inside a box, and an on-disk landmark cache."""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..core import resources
from ..core.errors import InputError, NoFaceError
from .images import to_uint8_hwc

#: Bump when detection/landmark code changes in a way that changes results: invalidates the on-disk landmark caches.
LANDMARK_CODE_VERSION = 1

#: Images smaller than this (shorter side, pixels) are upsampled before detection: MTCNN and dlib miss tiny faces.
MIN_DETECT_SIDE = 160
#: Images larger than this (longer side) are downsampled for detection only; landmarks are mapped back.
MAX_DETECT_SIDE = 1024


@lru_cache(maxsize=4)
def _mtcnn(device: str = "cpu"):
    from facenet_pytorch import MTCNN  # weights ship inside facenet-pytorch

    return MTCNN(keep_all=True, device=device, post_process=False)


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


def detection_view(image: torch.Tensor) -> tuple[Image.Image, float]:
    """The picture the detectors see: ``image`` ``[3,H,W]`` in ``[0,1]`` as an 8-bit PIL image, resized (bicubic) by
    the returned scale so that tiny faces are found and huge photos stay fast (:data:`MIN_DETECT_SIDE`,
    :data:`MAX_DETECT_SIDE`)."""
    if not isinstance(image, torch.Tensor) or image.dim() != 3 or image.shape[0] != 3:
        raise InputError("face detection expects one image [3,H,W] in [0,1]; load it with load_image().")
    h, w = image.shape[1:]
    s = _detection_scale(h, w)
    pil = Image.fromarray(to_uint8_hwc(image))
    if s != 1.0:
        pil = pil.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BICUBIC)
    return pil, s


def _boxes(boxes, probs, s: float, min_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """MTCNN's boxes of one picture (detection-view pixels) → photo pixels, thresholded, largest first."""
    if boxes is None:
        return torch.zeros(0, 4), torch.zeros(0)
    boxes = torch.as_tensor(np.asarray(boxes, dtype=float), dtype=torch.float32) / s
    probs = torch.as_tensor(np.asarray(probs, dtype=float), dtype=torch.float32)
    keep = probs >= min_prob
    boxes, probs = boxes[keep], probs[keep]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = torch.argsort(area, descending=True)
    return boxes[order], probs[order]


def detect_faces(image: torch.Tensor, min_prob: float = 0.9, device: str | torch.device = "cpu",
                 view: tuple[Image.Image, float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Find faces with MTCNN.

    Args:
        image: ``[3,H,W]`` float in ``[0,1]`` (see :func:`load_image`).
        min_prob: detections below this MTCNN probability are dropped.
        device: where MTCNN runs.
        view: :func:`detection_view` of ``image`` when the caller has it already.

    Returns:
        ``boxes`` ``[K,4]`` float32 ``(x0, y0, x1, y1)`` in pixels of ``image``, sorted by area (largest first), and
        their probabilities ``[K]``. ``K`` may be 0.
    """
    pil, s = view or detection_view(image)
    boxes, probs = _mtcnn(str(device)).detect(pil)
    return _boxes(boxes, probs, s, min_prob)


def detect_faces_batch(images: list[torch.Tensor], min_prob: float = 0.9, device: str | torch.device = "cpu",
                       views: list | None = None) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """:func:`detect_faces` of many photos, with one MTCNN pass for each group of photos of the same size (faster;
    the boxes can differ from one-by-one detection in the last digits). Returns one ``(boxes, probs)`` per photo."""
    views = views or [detection_view(im) for im in images]
    out: list = [None] * len(images)
    groups: dict = {}
    for i, (pil, s) in enumerate(views):
        groups.setdefault((pil.size, s), []).append(i)
    for (_, s), idx in groups.items():
        boxes, probs = _mtcnn(str(device)).detect([views[i][0] for i in idx])
        for k, i in enumerate(idx):
            out[i] = _boxes(boxes[k], probs[k], s, min_prob)
    return out


def landmarks_in_box(image: torch.Tensor, box: Sequence[float],
                     view: tuple[Image.Image, float] | None = None) -> torch.Tensor:
    """dlib's 68-point shape predictor inside a face box.

    Args:
        image: ``[3,H,W]`` float in ``[0,1]``.
        box: ``(x0, y0, x1, y1)`` in pixels of ``image``.
        view: :func:`detection_view` of ``image`` when the caller has it already.

    Returns:
        ``[68,2]`` float32 landmark positions ``(x, y)`` in pixels of ``image`` (may fall outside the image).
    """
    import dlib

    pil, s = view or detection_view(image)
    arr = np.asarray(pil)
    x0, y0, x1, y1 = (float(v) * s for v in box)
    rect = dlib.rectangle(int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1)))
    shape = _shape_predictor()(arr, rect)
    pts = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], dtype=np.float32)
    # map back from the (possibly resized) detection image; pixel centres stay pixel centres
    pts = (pts + 0.5) / s - 0.5
    return torch.from_numpy(pts)


def landmarks_in_boxes(image: torch.Tensor, boxes: torch.Tensor, name: str = "image",
                       view: tuple[Image.Image, float] | None = None) -> torch.Tensor:
    """:func:`landmarks_in_box` of every box ``[K,4]`` (largest first): ``[K,68,2]`` float32 photo pixels. Raises
    :class:`NoFaceError` (naming ``name``) when ``K`` is 0."""
    face_index(0, len(boxes), name)
    view = view or detection_view(image)
    return torch.stack([landmarks_in_box(image, b.tolist(), view) for b in boxes])


def check_face(face) -> None:
    """Raise :class:`InputError` unless ``face`` is ``"largest"`` or a face index ``0, 1, ...`` (largest first)."""
    if face != "largest" and (isinstance(face, bool) or not isinstance(face, int) or face < 0):
        raise InputError(f"face must be 'largest' or a face index 0, 1, ... (largest face first), got {face!r}.")


def face_index(face, n_found: int, name: str = "image") -> int:
    """The index (largest-first order) that ``face`` selects among ``n_found`` faces.

    ``face`` is ``"largest"`` or a non-negative int. Raises :class:`InputError` for anything else and
    :class:`NoFaceError` when no face was found or the index is out of range.
    """
    check_face(face)
    if n_found == 0:
        raise NoFaceError(f"{name}: no face found. Use a photo where a face is clearly visible and at least about "
                          "40 pixels wide.")
    idx = 0 if face == "largest" else face
    if idx >= n_found:
        raise NoFaceError(f"{name}: face index {idx} requested but only {n_found} face(s) were found.")
    return idx


def detect_landmarks(image: torch.Tensor, face: str | int = "largest", name: str = "image",
                     min_prob: float = 0.9, device: str | torch.device = "cpu") -> torch.Tensor:
    """Detect → select → extract: MTCNN boxes, the chosen one, dlib's 68 landmarks in it.

    Args:
        image: ``[3,H,W]`` float in ``[0,1]``.
        face: ``"largest"`` (default) or the index of the face in the largest-first order of :func:`detect_faces`.
        name: how to call the photo in error messages (e.g. its file name).
        min_prob: MTCNN detection threshold.
        device: where MTCNN runs (dlib runs on the CPU).

    Returns:
        ``[68,2]`` float32 landmarks ``(x, y)`` in pixels of ``image``.

    Raises:
        NoFaceError: MTCNN found no face (the message names ``name``), or ``face`` is out of range.
    """
    view = detection_view(image)
    boxes, _ = detect_faces(image, min_prob, device, view)
    return landmarks_in_box(image, boxes[face_index(face, len(boxes), name)].tolist(), view)


def detect_all_landmarks(image: torch.Tensor, name: str = "image", min_prob: float = 0.9,
                         device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Every face MTCNN finds, largest first: its box ``[K,4]`` and 68 landmarks ``[K,68,2]`` (float32 photo pixels),
    ``K ≥ 1``. Raises :class:`NoFaceError` (naming ``name``) when there is none."""
    view = detection_view(image)
    boxes, _ = detect_faces(image, min_prob, device, view)
    return boxes, landmarks_in_boxes(image, boxes, name, view)


def _image_key(image: torch.Tensor, face: str | int, min_prob: float) -> str:
    """Content hash of a loaded photo plus everything that changes its landmarks (face choice, threshold, code)."""
    h = hashlib.sha256()
    h.update(f"v{LANDMARK_CODE_VERSION}|{MIN_DETECT_SIDE}|{MAX_DETECT_SIDE}|{face}|{min_prob:.6f}|"
             f"{tuple(image.shape)}|".encode())
    h.update(to_uint8_hwc(image).tobytes())
    return h.hexdigest()


def cached_landmarks(image: torch.Tensor, face: str | int = "largest", name: str = "image", min_prob: float = 0.9,
                     cache: bool = True, device: str | torch.device = "cpu") -> torch.Tensor:
    """:func:`detect_landmarks` with an on-disk cache.

    The cache entry (``resources.cache_dir("faces")/<hash>.json``, a few kB) holds only the 68 landmarks in photo
    pixels, keyed by a sha256 of the decoded pixels, the face choice, ``min_prob`` and
    :data:`LANDMARK_CODE_VERSION`; the crop size is not part of the key because crops are recomputed from the
    landmarks. Failures (no face) are not cached.

    Args:
        image: ``[3,H,W]`` float in ``[0,1]``.
        face, name, min_prob, device: as in :func:`detect_landmarks`.
        cache: ``False`` skips the cache (neither read nor written).

    Returns:
        ``[68,2]`` float32 landmarks in photo pixels.
    """
    if not cache:
        return detect_landmarks(image, face=face, name=name, min_prob=min_prob, device=device)
    check_face(face)
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
    lm = detect_landmarks(image, face=face, name=name, min_prob=min_prob, device=device)
    resources.write_json({"landmarks": lm.tolist(), "version": LANDMARK_CODE_VERSION, "face": face,
                          "shape": list(image.shape)}, path)
    return lm

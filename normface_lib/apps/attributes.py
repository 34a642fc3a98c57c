"""Attribute stability (the paper's third application): facial attributes measured on normalized faces should move
less between photos of one person than the same attributes measured on the raw (aligned) photos, because pose,
expression and light are gone.

* :func:`geometric_attributes`: scale-free shape measures from 68 landmarks (ratios of distances, so the crop size
  and the face's scale do not matter).
* :func:`appearance_attributes`: skin brightness and tone in a cheek + forehead mask.
* :func:`within_person_spread`: how much an attribute varies within a person relative to the whole set.
* :func:`spread_table`: rows comparing raw photos and normalized faces, attribute by attribute.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

from ..core.checks import as_landmarks, check_images, check_landmarks
from ..core.errors import InputError
from ..faces import LEFT_EYE, RIGHT_EYE, interocular

#: Names and meanings of :func:`geometric_attributes` (dlib point numbers in brackets).
GEOMETRIC_ATTRIBUTES = {
    "face_width_height": "jaw width [0-16] / face height (brow midpoint [19,24] to chin [8])",
    "interocular_face_width": "distance between eye centres [36-41],[42-47] / jaw width [0-16]",
    "nose_length_width": "nose length (bridge top [27] to base [33]) / nose width [31-35]",
    "mouth_width_interocular": "mouth width (corners [48-54]) / inter-ocular distance",
    "eye_aspect_ratio": "eye opening (mean of both eyes' two lid distances) / eye width, averaged over the eyes",
    "mouth_opening": "inner-lip opening [61-67],[62-66],[63-65] / inner mouth width [60-64]",
    "lower_face_ratio": "nose base [33] to chin [8] / face height",
    "brow_height": "mean brow-to-eye-centre distance / inter-ocular distance",
    "jaw_taper": "width at the mouth corners' jaw points [4-12] / jaw width [0-16]",
}

#: Names of :func:`appearance_attributes`.
APPEARANCE_ATTRIBUTES = {
    "skin_lightness": "mean CIELAB L* (0-100) in the cheek + forehead mask",
    "skin_a": "mean CIELAB a* (green- / red+) in the mask",
    "skin_b": "mean CIELAB b* (blue- / yellow+) in the mask",
    "skin_chroma": "sqrt(a*^2 + b*^2) of the mean a*, b*",
}


def _check_landmarks(landmarks) -> torch.Tensor:
    """``[B,68,2]`` or ``[68,2]`` finite landmarks (arrays accepted) as a float64 CPU batch."""
    lm = as_landmarks(landmarks, dtype=torch.float64)
    return lm[None] if lm.dim() == 2 else check_landmarks(lm, batched=True)


def _d(lm: torch.Tensor, i, j) -> torch.Tensor:
    a = lm[:, i].mean(1) if isinstance(i, (list, tuple)) else lm[:, i]
    b = lm[:, j].mean(1) if isinstance(j, (list, tuple)) else lm[:, j]
    return (a - b).norm(dim=-1)


def geometric_attributes(landmarks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Scale-free shape attributes of faces.

    Args:
        landmarks: ``[B,68,2]`` (or ``[68,2]``) float, dlib order, any pixel units.

    Returns:
        ``{name: [B] float64 tensor}`` for the names of :data:`GEOMETRIC_ATTRIBUTES` (dimensionless ratios,
        typically 0.1-3).

    Raises:
        InputError: wrong shape, non-finite values, or a degenerate face (zero eye distance or jaw width).
    """
    lm = _check_landmarks(landmarks)
    iod = interocular(lm)
    jaw = _d(lm, 0, 16)
    height = _d(lm, [19, 24], 8)
    if bool((iod < 1e-9).any() | (jaw < 1e-9).any() | (height < 1e-9).any()):
        raise InputError("degenerate landmarks: zero inter-ocular distance, jaw width or face height.")

    def ear(e):
        return (_d(lm, e[1], e[5]) + _d(lm, e[2], e[4])) / (2 * _d(lm, e[0], e[3]).clamp_min(1e-9))

    inner_w = _d(lm, 60, 64).clamp_min(1e-9)
    return {
        "face_width_height": jaw / height,
        "interocular_face_width": iod / jaw,
        "nose_length_width": _d(lm, 27, 33) / _d(lm, 31, 35).clamp_min(1e-9),
        "mouth_width_interocular": _d(lm, 48, 54) / iod,
        "eye_aspect_ratio": (ear(LEFT_EYE) + ear(RIGHT_EYE)) / 2,
        "mouth_opening": (_d(lm, 61, 67) + _d(lm, 62, 66) + _d(lm, 63, 65)) / (3 * inner_w),
        "lower_face_ratio": _d(lm, 33, 8) / height,
        "brow_height": (_d(lm, list(range(17, 22)), LEFT_EYE) + _d(lm, list(range(22, 27)), RIGHT_EYE)) / (2 * iod),
        "jaw_taper": _d(lm, 4, 12) / jaw,
    }


def skin_mask(landmarks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Boolean mask of both cheeks and the forehead, from 68 landmarks.

    Cheeks: the polygons jaw [1-4] → mouth corner [48|54] → nose side [31|35] → lower eyelid [40,41,36 | 47,46,45],
    shrunk towards their centres by 20%; forehead: a band above the brows, 0.35 inter-ocular distances high, between the
    outer brow ends.

    Args:
        landmarks: ``[68,2]`` float, pixels of the image.
        height, width: image size.

    Returns:
        ``[height, width]`` bool tensor.
    """
    from skimage.draw import polygon

    lm = _check_landmarks(landmarks)[0].numpy()
    iod = float(interocular(torch.from_numpy(lm)))
    mask = np.zeros((height, width), bool)

    def fill(poly: np.ndarray, shrink: float = 0.2) -> None:
        c = poly.mean(0)
        poly = c + (poly - c) * (1 - shrink)
        rr, cc = polygon(poly[:, 1], poly[:, 0], shape=(height, width))
        mask[rr, cc] = True

    fill(lm[[1, 2, 3, 4, 48, 31, 40, 41, 36]])  # cheek on the picture's left
    fill(lm[[15, 14, 13, 12, 54, 35, 47, 46, 45]])  # cheek on the picture's right
    # forehead band above the brows: brow points shifted up along the face's vertical axis
    up = lm[27] - lm[8]
    up = up / max(np.linalg.norm(up), 1e-9)
    brow = lm[17:27]
    fill(np.concatenate([brow + up * 0.1 * iod, (brow + up * 0.45 * iod)[::-1]]), shrink=0.1)
    return torch.from_numpy(mask)


def appearance_attributes(images: torch.Tensor, landmarks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Skin brightness and tone inside :func:`skin_mask`.

    Args:
        images: ``[B,3,S,S]`` (or ``[B,3,H,W]``) float RGB in ``[0,1]`` (sRGB).
        landmarks: ``[B,68,2]`` float, pixels of each image.

    Returns:
        ``{name: [B] float64}`` for :data:`APPEARANCE_ATTRIBUTES` (CIELAB, D65, via ``skimage.color.rgb2lab``).

    Raises:
        InputError: shape mismatch, values outside ``[0,1]``, or a mask with fewer than 10 pixels.
    """
    from skimage.color import rgb2lab

    check_images(images)
    lm = _check_landmarks(landmarks)
    if lm.shape[0] != images.shape[0]:
        raise InputError(f"{images.shape[0]} images but {lm.shape[0]} landmark sets; pass one set per image.")
    H, W = images.shape[-2:]
    out = {k: [] for k in APPEARANCE_ATTRIBUTES}
    for img, l in zip(images, lm):
        m = skin_mask(l, H, W)
        if int(m.sum()) < 10:
            raise InputError(f"the skin mask has only {int(m.sum())} pixels; are the landmarks in this image's "
                             "pixel coordinates?")
        pix = img.detach().double().cpu()[:, m].T.clamp(0, 1).numpy()
        lab = rgb2lab(pix[None])[0].mean(0)
        out["skin_lightness"].append(lab[0])
        out["skin_a"].append(lab[1])
        out["skin_b"].append(lab[2])
        out["skin_chroma"].append(float(np.hypot(lab[1], lab[2])))
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


def within_person_spread(values, person_ids) -> float:
    """Within-person spread of an attribute, relative to its spread over the whole set.

    ``spread = mean_p std_p / std_all``: ``std_p`` is the population standard deviation (ddof 0) of the values of
    person ``p`` (only people with at least two values count; the mean is unweighted over people), ``std_all`` the
    population standard deviation of all values given. 0 means the attribute never changes within a person;
    about 1 means it varies within a person as much as across the set. Dimensionless, so raw photos and normalized
    faces (or different attributes) can be compared.

    Args:
        values: ``[N]`` float (tensor, array or list).
        person_ids: ``[N]`` identities (ints or strings).

    Returns:
        float ``≥ 0``; ``nan`` when all values are equal (no spread to compare with).

    Raises:
        InputError: lengths differ, non-finite values, or no person has two values.
    """
    v = np.asarray(values.detach().cpu() if isinstance(values, torch.Tensor) else values, dtype=np.float64)
    ids = np.asarray(person_ids.cpu() if isinstance(person_ids, torch.Tensor) else person_ids)
    if v.ndim != 1 or ids.ndim != 1 or len(v) != len(ids):
        raise InputError(f"values {v.shape} and person_ids {ids.shape} must be 1-D and of the same length.")
    if not np.isfinite(v).all():
        raise InputError("values contain NaN or infinite numbers.")
    stds = [v[ids == p].std() for p in np.unique(ids) if (ids == p).sum() >= 2]
    if not stds:
        raise InputError("no person has two or more values; within-person spread needs repeated photos per person.")
    total = v.std()
    if total == 0:
        return float("nan")
    return float(np.mean(stds) / total)


def spread_table(raw_attrs: Mapping[str, Sequence[float]], norm_attrs: Mapping[str, Sequence[float]],
                 person_ids) -> list[dict]:
    """Compare attribute stability on raw photos and on normalized faces.

    Args:
        raw_attrs: ``{name: [N]}`` attributes measured on the aligned input photos (e.g. :func:`geometric_attributes`).
        norm_attrs: ``{name: [N]}`` the same attributes measured on the normalized faces of the same photos.
        person_ids: ``[N]`` identity of each photo.

    Returns:
        One dict per attribute present in both, in ``raw_attrs`` order: ``{"attribute", "raw_spread",
        "normalized_spread", "ratio"}`` where the spreads are :func:`within_person_spread` and ``ratio =
        normalized_spread / raw_spread`` (below 1: the normalized faces are more stable).

    Raises:
        InputError: no attribute name is shared, or lengths differ.
    """
    names = [k for k in raw_attrs if k in norm_attrs]
    if not names:
        raise InputError(f"raw_attrs {sorted(raw_attrs)} and norm_attrs {sorted(norm_attrs)} share no attribute.")
    rows = []
    for k in names:
        r = within_person_spread(raw_attrs[k], person_ids)
        n = within_person_spread(norm_attrs[k], person_ids)
        rows.append({"attribute": k, "raw_spread": r, "normalized_spread": n,
                     "ratio": n / r if r and np.isfinite(r) and np.isfinite(n) else float("nan")})
    return rows

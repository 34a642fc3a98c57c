"""The 68 dlib landmarks as geometry: index groups, eye and mouth anchors, the inter-ocular distance, mirror images,
pose and expression measures, and the mean shape (the decoder's texture frame)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..core import resources
from ..core.checks import check_landmarks
from ..core.errors import InputError, OverwriteError

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


def anchor_points(landmarks: torch.Tensor) -> torch.Tensor:
    """Eye centres and mouth centre of 68-point landmarks: ``[...,68,2]`` → ``[...,3,2]`` (same units)."""
    if landmarks.shape[-2:] != (68, 2):
        raise InputError(f"landmarks must be [...,68,2] in dlib order, got {tuple(landmarks.shape)}.")
    return torch.stack([landmarks[..., LEFT_EYE, :].mean(-2), landmarks[..., RIGHT_EYE, :].mean(-2),
                        landmarks[..., MOUTH, :].mean(-2)], dim=-2)


def interocular(landmarks: torch.Tensor) -> torch.Tensor:
    """Distance between the eye centres (means of points 36-41 and 42-47): ``[...,68,2]`` → ``[...]``, same units
    and dtype (the unit of every scale-free landmark measure in normface)."""
    check_landmarks(landmarks, "landmarks")
    return (landmarks[..., LEFT_EYE, :].mean(-2) - landmarks[..., RIGHT_EYE, :].mean(-2)).norm(dim=-1)


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
    check_landmarks(landmarks, "landmarks")
    out = landmarks[..., MIRROR_PERMUTATION, :].clone()
    out[..., 0] = (width - 1) - out[..., 0]
    return out


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
    check_landmarks(landmarks, "landmarks")
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
    check_landmarks(landmarks, "landmarks")
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


#: The stated limits a photo must meet to count as frontal and neutral (:func:`is_frontal_neutral`): measure of
#: :func:`pose_measures` → ``(low, high)`` in its units (``None``: no bound). Yaw from the nose tip within ±0.12 of
#: the inter-ocular distance and jaw asymmetry within ±0.18 (a clear turn is ±0.2 or more), the nose tip between a
#: third and two thirds of the way from the eyes to the mouth (no strong tilt), the inner lips closed (gap ≤ 0.10),
#: the mouth corners not raised (smile ≤ 0.12) nor the mouth stretched (width ≤ 1.0). Roll is not limited:
#: alignment removes it. On the 400 ORL photos 161 pass.
FRONTAL_NEUTRAL_LIMITS = {"yaw_nose": (-0.12, 0.12), "yaw_jaw": (-0.18, 0.18), "pitch": (0.33, 0.63),
                          "mouth_open": (None, 0.10), "smile": (None, 0.12), "mouth_width": (None, 1.0)}


def is_frontal_neutral(landmarks: torch.Tensor, limits: dict | None = None) -> torch.Tensor:
    """Whether each face is frontal and neutral: every measure of :func:`pose_measures` within
    :data:`FRONTAL_NEUTRAL_LIMITS` (or ``limits``, same form).

    Args:
        landmarks: ``[B,68,2]`` float, pixels (photo or crop; the measures are scale-free).
        limits: optional ``{measure: (low or None, high or None)}``.

    Returns:
        ``[B]`` bool.
    """
    check_landmarks(landmarks, "landmarks")
    if landmarks.dim() != 3:
        raise InputError(f"is_frontal_neutral expects a batch [B,68,2], got {tuple(landmarks.shape)}.")
    limits = FRONTAL_NEUTRAL_LIMITS if limits is None else limits
    m = pose_measures(landmarks)
    unknown = set(limits) - set(m)
    if unknown:
        raise InputError(f"unknown pose measures {sorted(unknown)} in limits; use {sorted(m)}.")
    ok = torch.ones(landmarks.shape[0], dtype=torch.bool)
    for k, (lo, hi) in limits.items():
        if lo is not None:
            ok &= m[k] >= lo
        if hi is not None:
            ok &= m[k] <= hi
    return ok


def frontal_neutral_failures(landmarks: torch.Tensor, limits: dict | None = None) -> list[list[str]]:
    """For each face, the measures of :func:`pose_measures` outside :data:`FRONTAL_NEUTRAL_LIMITS` (or ``limits``):
    ``[]`` for a face :func:`is_frontal_neutral` accepts. ``landmarks``: ``[B,68,2]`` float pixels. Returns ``B``
    lists of measure names (e.g. ``["mouth_open", "smile"]``)."""
    check_landmarks(landmarks, "landmarks")
    if landmarks.dim() != 3:
        raise InputError(f"frontal_neutral_failures expects a batch [B,68,2], got {tuple(landmarks.shape)}.")
    limits = FRONTAL_NEUTRAL_LIMITS if limits is None else limits
    m = pose_measures(landmarks)
    out: list[list[str]] = [[] for _ in range(landmarks.shape[0])]
    for k, (lo, hi) in limits.items():
        bad = torch.zeros(landmarks.shape[0], dtype=torch.bool)
        if lo is not None:
            bad |= m[k] < lo
        if hi is not None:
            bad |= m[k] > hi
        for i in torch.nonzero(bad).flatten().tolist():
            out[i].append(k)
    return out


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
    check_landmarks(landmarks, "landmarks")
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
    check_landmarks(shape, "shape")
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
    text = header + f',\n "points": [\n  {points}\n ]\n}}\n'
    resources.atomic_write(path, lambda tmp: Path(tmp).write_text(text))
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

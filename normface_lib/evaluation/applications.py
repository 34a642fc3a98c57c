"""Measurements of the paper's applications: exposure correction of real photos by a known amount (notebook 04's ORL
test) and the attributes whose stability notebook 04 and the seed study compare."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..apps.attributes import appearance_attributes, geometric_attributes
from ..apps.colour import colour_error, correct_photo, grey_world, perturb_exposure_white_balance
from ..core.errors import InputError
from ..faces import align_faces

EXPOSURE_METHODS = ("no correction", "grey world", "normface exposure")


def exposure_benchmark(model, photos: Sequence[torch.Tensor], photo_landmarks: torch.Tensor,
                       stops: Sequence[float] = (-1.0, -0.5, 0.0, 0.5, 1.0), kind: str = "auto") -> dict:
    """Correct known exposure changes of real photos and measure the result (notebook 04's ORL test).

    Each photo is changed by every exposure in ``stops`` (white balance untouched), aligned with its original
    landmarks (an exposure change does not move them), normalized by ``model``, and corrected three ways
    (:data:`EXPOSURE_METHODS`: none, :func:`grey_world`, :func:`correct_photo`).

    Args:
        model: a :class:`~normface_lib.pipeline.NormFace`.
        photos: P photos ``[3,H,W]`` float in [0,1]; photo_landmarks: ``[P,68,2]`` their landmarks (photo pixels).
        stops: exposure changes in stops; must include 0 (the reference for the consistency score).
        kind: passed to :func:`correct_photo`.

    Returns:
        ``{"cases": [(photo index, stops)], "images": {method: [P·len(stops)] corrected photos},
        "delta_e": {method: [P·len(stops)] float64 ΔE to the unperturbed photo}, "consistency": {method: ΔE to the
        method's own result on the unperturbed photo}}``, cases ordered photo by photo.
    """
    if 0.0 not in [float(s) for s in stops]:
        raise InputError(f"stops must include 0 (the unperturbed reference), got {list(stops)}.")
    cases = [(i, float(s)) for i in range(len(photos)) for s in stops]
    perturbed = [perturb_exposure_white_balance(photos[i], exposure_stops=s, wb_gains=[1, 1, 1])[0]
                 for i, s in cases]
    lms = photo_landmarks[[i for i, _ in cases]]
    crops, _, _ = align_faces(perturbed, lms, model.size)
    normalized = model.normalize_crops(crops)
    images = {m: [] for m in EXPOSURE_METHODS}
    for n, ((i, _), pert) in enumerate(zip(cases, perturbed)):
        fixed = correct_photo(pert, lms[n], normalized["image"][n], normalized["landmarks"][n], kind=kind)
        for m, img in zip(EXPOSURE_METHODS, (pert, grey_world(pert), fixed.corrected)):
            images[m].append(img)
    base = {i: k for k, (i, s) in enumerate(cases) if s == 0.0}
    delta_e = {m: np.array([colour_error(images[m][k], photos[i])["delta_e"] for k, (i, _) in enumerate(cases)])
               for m in EXPOSURE_METHODS}
    consistency = {m: np.array([colour_error(images[m][k], images[m][base[i]])["delta_e"]
                                for k, (i, _) in enumerate(cases)]) for m in EXPOSURE_METHODS}
    return {"cases": cases, "images": images, "delta_e": delta_e, "consistency": consistency}


def photo_and_normalized_attributes(model, table) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The attributes of notebook 04's stability test, on each aligned photo and on its normalized face.

    Args:
        model: a :class:`~normface_lib.pipeline.NormFace`.
        table: a :class:`~normface_lib.data.FaceTable` of aligned crops ``images`` ``[N,3,S,S]`` (float in [0,1])
            with detected ``landmarks`` ``[N,68,2]`` (crop pixels).

    Returns:
        ``(raw, normalized)``: each ``{name: [N] float}`` with the :data:`GEOMETRIC_ATTRIBUTES` (raw: detected
        landmarks; normalized: predicted landmarks) and ``"skin_lightness"`` (CIELAB L* of the skin pixels).
    """
    out = model.normalize_crops(table.images)
    raw = {**geometric_attributes(table.landmarks),
           "skin_lightness": appearance_attributes(table.images, table.landmarks)["skin_lightness"]}
    norm = {**geometric_attributes(out["landmarks"]),
            "skin_lightness": appearance_attributes(out["image"], out["landmarks"])["skin_lightness"]}
    return raw, norm

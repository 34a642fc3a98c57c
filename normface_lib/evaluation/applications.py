"""Measurements of the paper's applications: colour and exposure correction of held-out colour portraits against
ground truth (known casts undone, CIEDE2000 ΔE to the original photo), exposure correction of grey photos, and the
attributes whose stability notebook 04 and the seed study compare."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from ..apps.attributes import appearance_attributes, geometric_attributes
from ..apps.colour import colour_error, correct_photo, face_mask, grey_world, perturb_exposure_white_balance
from ..core.errors import InputError
from ..faces import align_faces, load_image

EXPOSURE_METHODS = ("no correction", "grey world", "normface exposure")
#: The methods of :func:`colour_correction_benchmark`.
COLOUR_METHODS = ("none", "grey_world", "normface")
#: Known casts applied to each photo: name → (exposure change in stops, per-channel white-balance gains R, G, B).
COLOUR_CASTS = {"darker": (-1.0, (1.0, 1.0, 1.0)), "brighter": (0.6, (1.0, 1.0, 1.0)),
                "warm": (0.0, (1.25, 1.0, 0.8)), "cool": (0.0, (0.8, 1.0, 1.25)), "green": (0.0, (0.92, 1.12, 0.97)),
                "warm, darker": (-0.6, (1.2, 1.0, 0.85))}
#: Longest side the benchmark's photos are resized to (the ground truth is the resized original).
BENCHMARK_SIDE = 256


def _resized(path, landmarks: torch.Tensor, side: int) -> tuple[torch.Tensor, torch.Tensor]:
    img = load_image(path)
    s = side / max(img.shape[1:])
    if s >= 1:
        return img, landmarks.float()
    h, w = round(img.shape[1] * s), round(img.shape[2] * s)
    out = torch.nn.functional.interpolate(img[None], size=(h, w), mode="bilinear", antialias=True,
                                          align_corners=False)[0].clamp(0, 1)
    # pixel centres: x' + 0.5 = (x + 0.5) · w' / w
    scale = torch.tensor([w / img.shape[2], h / img.shape[1]])
    return out, (landmarks.float() + 0.5) * scale - 0.5


def colour_correction_benchmark(model, photos: Sequence[tuple], casts: dict | None = None,
                                side: int = BENCHMARK_SIDE, keep_images: int = 0) -> dict:
    """Colour and exposure correction against ground truth (the paper's application, measured).

    Every photo gets every known cast of ``casts`` (:data:`COLOUR_CASTS`: an exposure change and white-balance gains,
    applied in linear light by :func:`~normface_lib.apps.colour.perturb_exposure_white_balance`), and is then
    corrected three ways (:data:`COLOUR_METHODS`): ``"none"``, ``"grey_world"`` (whole-photo grey world) and
    ``"normface"`` (:func:`~normface_lib.apps.colour.correct_photo`: the cast photo is normalized by ``model`` and its
    face pixels are matched to the normalized face). Each result is compared with the original photo by CIEDE2000 ΔE
    (:func:`~normface_lib.apps.colour.colour_error`), over the face (:func:`~normface_lib.apps.colour.face_mask`)
    and over the whole photo.

    Args:
        model: a :class:`~normface_lib.pipeline.NormFace` (a grey model corrects exposure only: ``kind="auto"``).
        photos: ``[(photo id, path, photo landmarks [68,2] float32)]``, e.g.
            :func:`normface_lib.data.colour_held_out_photos`.
        casts: name → (stops, gains); default :data:`COLOUR_CASTS`.
        side: photos are resized so that their longer side is at most this (the original is resized the same way).
        keep_images: keep the photos, cast and corrected, of the first this many photos (for figures).

    Returns:
        ``{"photos": [ids], "casts": [names], "cases": [(photo index, cast name)], "delta_e": {"face"|"photo":
        {method: [n] float64}}, "images": [{"original", "cast", method: ...}] (the kept ones)}``, cases photo by photo.
    """
    casts = COLOUR_CASTS if casts is None else casts
    if not photos:
        raise InputError("colour_correction_benchmark needs at least one photo.")
    cases, images = [], []
    de = {r: {m: [] for m in COLOUR_METHODS} for r in ("face", "photo")}
    for i, (pid, path, lms) in enumerate(photos):
        original, plm = _resized(path, torch.as_tensor(lms), side)
        mask = face_mask(plm, original.shape[1], original.shape[2])
        perturbed = [perturb_exposure_white_balance(original, exposure_stops=st, wb_gains=list(g))[0]
                     for st, g in casts.values()]
        crops, _, _ = align_faces(perturbed, plm[None].expand(len(perturbed), -1, -1), model.size)
        norm = model.normalize_crops(crops)
        for k, (name, pert) in enumerate(zip(casts, perturbed)):
            fixed = correct_photo(pert, plm, norm["image"][k], norm["landmarks"][k], kind="auto").corrected
            results = {"none": pert, "grey_world": grey_world(pert), "normface": fixed}
            for m, img in results.items():
                de["face"][m].append(colour_error(img, original, mask)["delta_e"])
                de["photo"][m].append(colour_error(img, original)["delta_e"])
            cases.append((i, name))
            if i < keep_images:
                images.append({"photo": pid, "cast": name, "original": original, **results})
    return {"photos": [p[0] for p in photos], "casts": list(casts), "cases": cases,
            "delta_e": {r: {m: np.array(v) for m, v in d.items()} for r, d in de.items()}, "images": images}


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

"""Sixteen expressions of ten synthetic people, with each person's neutral studio portrait: the paper's claim
(expression in → that person's neutral face out) as one held-out set.

The ``openpeople`` 0.1.2 package (MIT) holds ten generated people ``P001``–``P010``; for each, a 2048² frontal,
neutral ``studio_portrait.jpg`` and a 4×4 ``emotions_sheet.jpg`` drawn from the package's template
(``data/templates/emotions_sheet_template.jpeg``), whose cells are labelled, row by row, :data:`EXPRESSIONS`.
:func:`expression_faces` finds the 16 faces of a sheet (MTCNN + dlib, as every photo) and assigns each to its cell by
position (rows by height, then columns left to right), so that the labels follow the template; a sheet where the
faces do not form a 4×4 grid is refused with its name. Detection runs once; the crops and landmarks are cached,
keyed by the files' bytes and the crop side.
"""
from __future__ import annotations

import hashlib

import numpy as np
import torch

from .. import faces
from ..core import resources
from ..core.checks import check_size
from ..core.errors import InputError
from .tables import FaceTable, table_from_crops

#: The template's labels, row by row (checked against ``emotions_sheet_template.jpeg``: the first cell is neutral).
EXPRESSIONS = ("neutral", "happy", "sad", "angry", "surprised", "disgusted", "scared", "confused", "smug", "flirty",
               "thoughtful", "pensive", "exhausted", "shocked", "playful", "determined")
#: Bumped when what the cache holds changes.
_CACHE_VERSION = 1


def expression_people() -> list[tuple[str, object, object]]:
    """``[(person, studio portrait path, emotions sheet path)]`` of the ``openpeople`` package, sorted by person."""
    sheets = resources.face_package_files("openpeople", "data/curated", "P*/assets/emotions_sheet.jpg", 10)
    return [(s.parent.parent.name, s.parent / "studio_portrait.jpg", s) for s in sheets]


def grid_order(boxes: torch.Tensor, rows: int = 4, cols: int = 4, name: str = "sheet") -> list[int]:
    """The indices of ``boxes`` (``[rows·cols, 4]`` float, ``(x0, y0, x1, y1)``) in reading order of a
    ``rows × cols`` grid: sorted by the centre's height into rows, each row left to right. Raises
    :class:`InputError` when there are not ``rows·cols`` boxes or a row's faces overlap the next row's."""
    if boxes.shape[0] != rows * cols:
        raise InputError(f"{name}: found {boxes.shape[0]} faces, expected a {rows}×{cols} grid of {rows * cols}; "
                         "check the sheet (reinstall openpeople==0.1.2 if it is damaged).")
    cy, cx = (boxes[:, 1] + boxes[:, 3]) / 2, (boxes[:, 0] + boxes[:, 2]) / 2
    gap = 0.5 * float((boxes[:, 3] - boxes[:, 1]).median())  # rows lie at least half a face height apart
    by_y = torch.argsort(cy).tolist()
    order = []
    for r in range(rows):
        row = by_y[r * cols:(r + 1) * cols]
        if r + 1 < rows and float(cy[by_y[(r + 1) * cols]]) - float(cy[row[-1]]) < gap:
            raise InputError(f"{name}: the faces do not form {rows} rows; the labels cannot be assigned.")
        order += sorted(row, key=lambda i: float(cx[i]))
    return order


def _faces(size: int) -> dict:
    """Crops ``[10·17,3,S,S]`` uint8-exact float and landmarks of the 16 expressions and the portrait of every
    person, cached on disk."""
    people = expression_people()
    h = hashlib.sha256(f"v{_CACHE_VERSION}|lm{faces.LANDMARK_CODE_VERSION}|{size}".encode())
    for _, portrait, sheet in people:
        for f in (portrait, sheet):
            h.update(f.read_bytes())
    path = resources.cache_dir("expressions") / f"openpeople-s{size}-{h.hexdigest()[:16]}.safetensors"

    def make() -> dict:
        crops, lms = [], []
        for person, portrait, sheet in people:
            found = faces.faces_in_photo(sheet, size, name=f"openpeople/{person}/emotions_sheet.jpg")
            order = grid_order(torch.stack([f.box for f in found]), name=f"openpeople/{person}/emotions_sheet.jpg")
            p = faces.face_from_photo(portrait, size, name=f"openpeople/{person}/studio_portrait.jpg", cache=False)
            for f in [found[i] for i in order] + [p]:
                crops.append(torch.from_numpy(faces.to_uint8_hwc(f.crop)).permute(2, 0, 1))
                lms.append(f.landmarks)
        return {"crops": torch.stack(crops), "landmarks": torch.stack(lms)}

    return resources.cached_tensors(path, make)


def expression_table(size: int, mean_shape: torch.Tensor) -> FaceTable:
    """The expression set as a held-out :class:`FaceTable`: for each of the 10 people, 16 input rows (one per
    expression, in :data:`EXPRESSIONS` order; ids ``"openpeople/P001/happy"``) and the neutral studio portrait as its
    target, appended as a non-input row (``input_mask`` False; id ``"openpeople/P001/portrait"``).

    Args:
        size: crop side ``S``.
        mean_shape: ``[68,2]`` crop pixels, the training mean shape the targets are registered onto.

    Returns:
        :class:`FaceTable` of 170 rows (160 inputs), ``people`` ``["openpeople/P001", ...]``.
    """
    size = check_size(size)
    if tuple(mean_shape.shape) != (68, 2):
        raise InputError(f"mean_shape must be [68,2] crop pixels, got {tuple(mean_shape.shape)}.")
    data = _faces(size)
    people = [p for p, _, _ in expression_people()]
    n = len(EXPRESSIONS) + 1
    ids = [f"openpeople/{p}/{e}" for p in people for e in EXPRESSIONS + ("portrait",)]
    person = np.repeat(np.arange(len(people)), n)
    mask = torch.tensor([k % n < len(EXPRESSIONS) for k in range(len(ids))])
    target_row = [k * n + len(EXPRESSIONS) for k in range(len(people))]
    return table_from_crops(data["crops"].float() / 255.0, data["landmarks"], torch.from_numpy(person), ids,
                            [f"openpeople/{p}" for p in people], target_row, mean_shape, input_mask=mask,
                            source=f"openpeople 0.1.2: {len(people)} synthetic people × {len(EXPRESSIONS)} "
                                   "expressions, target = the studio portrait")


def expression_of(photo_id: str) -> str:
    """The expression label of an expression-set photo id (``"openpeople/P001/happy"`` → ``"happy"``)."""
    label = str(photo_id).rsplit("/", 1)[-1]
    if label not in EXPRESSIONS and label != "portrait":
        raise InputError(f"{photo_id!r} is not a photo id of the expression set.")
    return label

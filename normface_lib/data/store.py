"""Data sets too large for memory: photos preprocessed once into an on-disk store and read row by row while training.

Three stages, each written atomically and resumed where it stopped:

1. **Photos** (:class:`FaceStore`): every photo of a source (:func:`folder_photos`, CelebA, ...) goes through
   detect (MTCNN, batched, on the chosen device) → the largest face's 68 landmarks (dlib) → a canonical crop of side
   ``S``. Photos are processed in shards of ``shard_size``, by ``workers`` processes in parallel, with a progress
   bar; shard ``k`` is ``crops-k.u8`` (uint8 ``[b,S,S,3]``: 8-bit like the photos they come from) and ``meta-k.npz``
   (landmarks, which photos had a face, the errors), the meta file written last so that a shard is complete or absent.
2. **Split** (:func:`stream_tables`): each person's frontal, neutral target, the seeded split
   (:func:`~normface_lib.data.tables.split_people`), the training mean shape, and the targets registered onto it
   (``tables-<key>/textures-<split>.u8``).
3. **Rows** (:class:`StreamTable`): a :class:`~normface_lib.data.tables.FaceTable` whose ``images`` and
   ``target_textures`` are :class:`DiskImages`, read from disk on demand (no memory map, so the resident memory stays
   flat whatever the data set's size); mirror images are flipped on reading, never stored.

Memory kept per photo: its landmarks and names (under a kilobyte); everything the size of an image stays on disk.
The store's folder is ``cache_dir("stores")/<name>-s<S>-<key>`` (or ``store_dir``), keyed by the photos' paths,
sizes and modification times, ``S`` and the landmark code's version.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from .. import faces
from ..core import resources
from ..core.checks import check_size
from ..core.errors import InputError, NoFaceError
from ..nets.texture import register_textures
from .tables import FaceTable, check_training_inputs, frontal_neutral_inputs, split_people, split_rows, training_mean_shape

#: Bumped whenever what a shard holds changes (old stores are then rebuilt under a new key).
STORE_VERSION = 1


@dataclass(frozen=True)
class Photo:
    """One photo of a source: ``id`` (e.g. ``"folder/alice/1.jpg"``), ``person`` (a name) and ``path``."""

    id: str
    person: str
    path: str


def folder_photos(root, prefix: str = "folder") -> list[Photo]:
    """The photos of a folder with one sub-folder per person (``root/<person>/<photo>``), in sorted order.

    Files PIL does not know and hidden files are left out; photos lying directly in ``root`` are refused (whose
    would they be?). Raises :class:`FileNotFoundError` / :class:`InputError` with what to fix."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder; --data-root must be a folder with one sub-folder of photos "
                                "per person.")
    exts = {e.lower() for e in Image.registered_extensions()}
    loose = [p.name for p in root.iterdir() if p.is_file() and p.suffix.lower() in exts]
    if loose:
        raise InputError(f"{root} holds photos directly ({loose[:3]}...); a person-folder data set needs one "
                         "sub-folder per person (root/<person>/<photo>).")
    out = []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in exts and not any(x.startswith(".") for x in f.relative_to(d).parts):
                out.append(Photo(f"{prefix}/{d.name}/{f.relative_to(d).as_posix()}", f"{prefix}/{d.name}", str(f)))
    if not out:
        raise InputError(f"{root} has no photos in sub-folders; expected root/<person>/<photo>.")
    return out


def _shard_work(folder: str, k: int, paths: list[str], ids: list[str], size: int, device: str,
                threads: int) -> int:
    """Detect, landmark and align one shard's photos; write ``crops-k.u8`` then ``meta-k.npz``. Returns ``k``."""
    if threads:
        torch.set_num_threads(threads)
    folder_p = Path(folder)
    found = faces.faces_in_photos(paths, size, names=ids, device=device)
    b = len(paths)
    crops = np.zeros((b, size, size, 3), np.uint8)
    photo_lms, crop_lms = np.zeros((b, 68, 2), np.float32), np.zeros((b, 68, 2), np.float32)
    ok, errors = np.zeros(b, bool), []
    for i, r in enumerate(found):
        if isinstance(r, Exception):
            errors.append([ids[i], f"{type(r).__name__}: {r}"])
            continue
        f = r[0]  # the largest face
        crops[i] = faces.to_uint8_hwc(f.crop)
        photo_lms[i], crop_lms[i], ok[i] = f.photo_landmarks.numpy(), f.landmarks.numpy(), True
    resources.atomic_write(folder_p / f"crops-{k:05d}.u8", lambda tmp: crops.tofile(tmp))

    def write_meta(tmp: str) -> None:
        with open(tmp, "wb") as fh:
            np.savez(fh, photo_landmarks=photo_lms, crop_landmarks=crop_lms, ok=ok,
                     errors=np.array(json.dumps(errors)))

    resources.atomic_write(folder_p / f"meta-{k:05d}.npz", write_meta)
    return k


class DiskImages:
    """Rows of uint8 ``[S,S,3]`` images in raw files, read on demand as float32 ``[3,S,S]`` in ``[0,1]``.

    ``files[f]`` holds rows ``f·per_file ... (f+1)·per_file - 1`` of the stored array; this view shows stored rows
    ``rows`` (``[N]`` long), each flipped left-right where ``flip`` (``[N]`` bool) is set. Indexing with an int gives
    ``[3,S,S]``; with a slice, a list or a long tensor, ``[k,3,S,S]``. Files are read with ``os.pread`` (no memory
    map), opened once per process, so a view can go to DataLoader workers."""

    def __init__(self, files: Sequence[str], per_file: int, size: int, rows: torch.Tensor,
                 flip: torch.Tensor | None = None):
        self.files, self.per_file, self.S = [str(f) for f in files], int(per_file), int(size)
        self.rows = torch.as_tensor(rows, dtype=torch.long)
        self.flip = torch.zeros(len(self.rows), dtype=torch.bool) if flip is None else torch.as_tensor(flip).bool()
        self._fds: dict = {}

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.rows), 3, self.S, self.S)

    def __len__(self) -> int:
        return len(self.rows)

    def __getstate__(self):
        return {**self.__dict__, "_fds": {}}

    def _fd(self, f: int) -> int:
        key = (os.getpid(), f)
        if key not in self._fds:
            self._fds[key] = os.open(self.files[f], os.O_RDONLY)
        return self._fds[key]

    def view(self, idx) -> "DiskImages":
        """The rows ``idx`` of this view as a view of their own (nothing read)."""
        idx = self._index(idx)
        return DiskImages(self.files, self.per_file, self.S, self.rows[idx], self.flip[idx])

    def _index(self, idx) -> torch.Tensor:
        if isinstance(idx, slice):
            return torch.arange(len(self.rows))[idx]
        idx = torch.as_tensor(idx, dtype=torch.long).cpu()
        if idx.numel() and (int(idx.min()) < -len(self.rows) or int(idx.max()) >= len(self.rows)):
            raise IndexError(f"row index out of range for {len(self.rows)} rows.")
        return idx

    def __getitem__(self, idx) -> torch.Tensor:
        single = isinstance(idx, (int, np.integer)) or (isinstance(idx, torch.Tensor) and idx.dim() == 0)
        sel = self._index(idx).reshape(-1)
        nbytes = self.S * self.S * 3
        out = np.empty((len(sel), self.S, self.S, 3), np.uint8)
        for j, r in enumerate(self.rows[sel].tolist()):
            f, k = divmod(r, self.per_file)
            buf = os.pread(self._fd(f), nbytes, k * nbytes)
            if len(buf) != nbytes:
                raise InputError(f"{self.files[f]} is truncated (row {k}); delete the store folder "
                                 f"{Path(self.files[f]).parent} and run again to rebuild it.")
            out[j] = np.frombuffer(buf, np.uint8).reshape(self.S, self.S, 3)
        t = torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)
        flip = self.flip[sel]
        if bool(flip.any()):
            t[flip] = t[flip].flip(-1)
        return t[0] if single else t

    def __del__(self):
        for (pid, _), fd in list(getattr(self, "_fds", {}).items()):
            if pid == os.getpid():
                try:
                    os.close(fd)
                except OSError:
                    pass


def _source_key(photos: Sequence[Photo], size: int) -> str:
    h = hashlib.sha256(f"v{STORE_VERSION}|lm{faces.LANDMARK_CODE_VERSION}|{faces.MIN_DETECT_SIDE}|"
                       f"{faces.MAX_DETECT_SIDE}|{size}".encode())
    for p in photos:
        st = os.stat(p.path)
        h.update(f"{p.id}|{p.person}|{os.path.abspath(p.path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class FaceStore:
    """The preprocessed photos of one source at crop side ``S`` (stage 1 of the module docstring).

    Args:
        photos: the source's :class:`Photo` list (order kept: photo ``g`` is ``photos[g]``).
        size: crop side ``S`` (≥ 16).
        name: a short name for the folder (``"folder"``, ``"celeba"``).
        store_dir: where the store lives (default ``cache_dir("stores")/<name>-s<S>-<key>``).
        shard_size: photos per shard (the unit of resuming and of parallel work).
        workers: processes detecting in parallel (0 or 1: this process; CUDA detection uses this process).
        device: where MTCNN runs (``"cpu"``, ``"cuda"``...).
        progress: a progress bar (``None``: on a terminal).

    Attributes (after :meth:`build`): ``photo_landmarks`` ``[N,68,2]`` (photo pixels), ``crop_landmarks``
    ``[N,68,2]`` (crop pixels), ``ok`` ``[N]`` bool (a face was found), ``errors`` ``[(photo id, message)]``.
    """

    def __init__(self, photos: Sequence[Photo], size: int, name: str = "folder", store_dir=None,
                 shard_size: int = 256, workers: int = 2, device: str | torch.device = "cpu",
                 progress: bool | None = None):
        if not photos:
            raise InputError("no photos to preprocess.")
        self.photos, self.size = list(photos), check_size(size)
        if shard_size < 1:
            raise InputError(f"shard_size must be ≥ 1, got {shard_size}.")
        self.shard_size, self.workers, self.device, self.progress = int(shard_size), int(workers), str(device), progress
        key = _source_key(self.photos, self.size)
        self.folder = Path(store_dir) if store_dir else resources.cache_dir("stores") / f"{name}-s{self.size}-{key}"
        self.n_shards = -(-len(self.photos) // self.shard_size)
        self.built = False

    def _meta(self, k: int) -> Path:
        return self.folder / f"meta-{k:05d}.npz"

    def crop_files(self) -> list[str]:
        return [str(self.folder / f"crops-{k:05d}.u8") for k in range(self.n_shards)]

    def _shard_done(self, k: int) -> bool:
        n = min(self.shard_size, len(self.photos) - k * self.shard_size)
        crops = self.folder / f"crops-{k:05d}.u8"
        return self._meta(k).exists() and crops.exists() and crops.stat().st_size == n * self.size * self.size * 3

    def build(self) -> "FaceStore":
        """Preprocess every shard not on disk yet (resumes an interrupted build), then load the landmarks."""
        self.folder.mkdir(parents=True, exist_ok=True)
        index = self.folder / "index.json"
        if not index.exists():
            resources.write_json({"version": STORE_VERSION, "size": self.size, "shard_size": self.shard_size,
                                  "photos": [[p.id, p.person, p.path] for p in self.photos]}, index)
        todo = [k for k in range(self.n_shards) if not self._shard_done(k)]
        if todo:
            t0 = time.perf_counter()
            jobs = []
            for k in todo:
                part = self.photos[k * self.shard_size:(k + 1) * self.shard_size]
                jobs.append((str(self.folder), k, [p.path for p in part], [p.id for p in part], self.size,
                             self.device, 1 if self.workers > 1 else 0))
            total = sum(len(j[2]) for j in jobs)
            bar = tqdm(total=total, unit="photo", desc=f"preparing {self.folder.name}",
                       disable=None if self.progress is None else not self.progress)
            try:
                if self.workers > 1 and self.device == "cpu":
                    with ProcessPoolExecutor(self.workers) as pool:  # the platform default, as DataLoader
                        futures = {pool.submit(_shard_work, *j): len(j[2]) for j in jobs}
                        for fut in as_completed(futures):
                            fut.result()
                            bar.update(futures[fut])
                else:
                    for j in jobs:
                        _shard_work(*j)
                        bar.update(len(j[2]))
            finally:
                bar.close()
            self.build_seconds = time.perf_counter() - t0
        self._load_meta()
        self.built = True
        return self

    def _load_meta(self) -> None:
        pl, cl, ok, errors = [], [], [], []
        for k in range(self.n_shards):
            with np.load(self._meta(k)) as m:
                pl.append(m["photo_landmarks"])
                cl.append(m["crop_landmarks"])
                ok.append(m["ok"])
                errors += [tuple(e) for e in json.loads(str(m["errors"]))]
        self.photo_landmarks = torch.from_numpy(np.concatenate(pl))
        self.crop_landmarks = torch.from_numpy(np.concatenate(cl))
        self.ok = torch.from_numpy(np.concatenate(ok))
        self.errors = errors
        if not bool(self.ok.any()):
            raise NoFaceError(f"no face was found in any of the {len(self.photos)} photos (first errors: "
                              f"{errors[:3]}); check the photos.")

    def images(self, rows: torch.Tensor, flip: torch.Tensor | None = None) -> DiskImages:
        """The canonical crops of photos ``rows`` (``[N]`` long), flipped where ``flip``, as :class:`DiskImages`."""
        return DiskImages(self.crop_files(), self.shard_size, self.size, rows, flip)


@dataclass
class StreamTable(FaceTable):
    """A :class:`FaceTable` read from a :class:`FaceStore`: ``images`` and ``target_textures`` are
    :class:`DiskImages` (read on demand); everything else (landmarks, people, rows) is in memory. Indexing a row
    (``table[i]``, what a DataLoader does) reads one crop, its target's texture and its target's crop."""

    streamed = True

    def materialize(self, rows) -> FaceTable:
        """An in-memory :class:`FaceTable` of the input rows ``rows`` (``[k]`` long, e.g. a seeded sample for
        evaluation): their crops, their targets (appended as non-input rows when not among ``rows``); a table whose
        rows are their own targets stays so."""
        rows = torch.as_tensor(rows, dtype=torch.long).reshape(-1)
        ents = sorted(set(self.target_index[rows].tolist()))
        targets = [int(self.target_row[e]) for e in ents]
        present = set(rows.tolist())
        extra = [t for t in targets if t not in present]
        all_rows = torch.cat([rows, torch.tensor(extra, dtype=torch.long)])
        people = sorted(set(self.person[all_rows].tolist()))
        remap = {p: k for k, p in enumerate(people)}
        ent_of = {e: k for k, e in enumerate(ents)}
        pos = {r: k for k, r in enumerate(all_rows.tolist())}
        mask = torch.cat([self.input_mask[rows], torch.zeros(len(extra), dtype=torch.bool)])
        target_of = None if self.target_of is None else torch.tensor(
            [ent_of[int(e)] for e in self.target_of[all_rows]], dtype=torch.long)
        return FaceTable(self.images[all_rows], self.landmarks[all_rows],
                         torch.tensor([remap[int(p)] for p in self.person[all_rows]], dtype=torch.long),
                         [self.photo_ids[r] for r in all_rows.tolist()],
                         torch.tensor([pos[t] for t in targets], dtype=torch.long),
                         self.target_landmarks[ents], self.target_textures[torch.tensor(ents)], self.mean_shape,
                         [self.people[p] for p in people], mask, list(self.errors), self.source + " (materialized)",
                         target_of)

    def sample_rows(self, n: int, seed: int = 0) -> torch.Tensor:
        """``[min(n, inputs)]`` long: a seeded sample of the input rows, sorted."""
        rows = self.input_rows
        g = torch.Generator().manual_seed(int(seed) + 4242)
        return rows[torch.randperm(len(rows), generator=g)[:n]].sort().values


def stream_tables(store: FaceStore, splits: Sequence[str] = ("unseen_people", "unseen_photos"), mirror: bool = True,
                  seed: int = 0, n_unseen_people: int | float = 0.1, n_unseen_photos: int = 2, min_photos: int = 2,
                  max_people: int | None = None, candidate: torch.Tensor | None = None,
                  register_batch: int = 32, inputs: str = "frontal_neutral") -> dict[str, StreamTable]:
    """Stage 2: targets, split, mean shape, registered targets; the training and held-out :class:`StreamTable`s.

    Args:
        store: a :class:`FaceStore` (built here if it was not).
        splits: held-out splits (subset of ``("unseen_people", "unseen_photos")``).
        mirror: add mirror images to the training table (flipped on reading).
        seed, n_unseen_people, n_unseen_photos: the split (:func:`~normface_lib.data.tables.split_people`).
        min_photos: people with fewer usable photos are left out (a person needs a target and an input).
        max_people: keep a seeded subset of this many eligible people.
        candidate: ``[N]`` bool, the photos allowed as targets and, under ``"frontal_neutral"``, as training inputs
            (e.g. CelebA attributes); default all.
        inputs: ``"frontal_neutral"`` (the paper: training inputs are each training person's frontal, neutral
            photos, each its own target, so the training table registers one texture per input; every other photo
            is an unseen photo) or ``"paired"`` (see :func:`~normface_lib.data.tables.split_people`).

    Returns:
        ``{"train": StreamTable, <split>: StreamTable, ...}``; held-out tables use the training mean shape.
    """
    if not store.built:
        store.build()
    S = store.size
    ok = store.ok.clone()
    by_person: dict[str, list[int]] = {}
    for g, p in enumerate(store.photos):
        if bool(ok[g]):
            by_person.setdefault(p.person, []).append(g)
    cand = torch.ones(len(store.photos), dtype=torch.bool) if candidate is None else torch.as_tensor(candidate).bool()
    eligible = [p for p, gs in by_person.items() if len(gs) >= min_photos and bool(cand[gs].any())]
    if max_people is not None and max_people < len(eligible):
        gen = torch.Generator().manual_seed(int(seed) + 7919)
        keep = set(torch.randperm(len(eligible), generator=gen)[:max_people].tolist())
        eligible = [p for k, p in enumerate(eligible) if k in keep]
    if len(eligible) < 2:
        raise InputError(f"only {len(eligible)} person(s) with ≥ {min_photos} photos with a face and a target "
                         "candidate; a data set needs at least 2 (one sub-folder per person).")
    check_training_inputs(inputs)
    rows = [g for p in eligible for g in by_person[p]]
    fn = frontal_neutral_inputs(store.photo_landmarks[rows], [store.photos[g].person for g in rows],
                                candidate=cand[rows])
    photos = {p: by_person[p] for p in eligible}
    targets = {p: rows[fn["targets"][p]] for p in eligible}
    frontal = {p: [rows[r] for r in fn["frontal"][p]] for p in eligible}
    sp = split_people(photos, targets, seed, n_unseen_people, n_unseen_photos, inputs=inputs, frontal=frontal)
    if not sp["train_people"]:
        raise InputError("no training people left; lower n_unseen_people.")
    mean_shape = training_mean_shape(store.photo_landmarks[[targets[p] for p in sp["train_people"]]], S).float()
    key = resources.digest(f"{seed}|{n_unseen_people}|{n_unseen_photos}|{min_photos}|{max_people}|{inputs}", cand,
                           mean_shape)
    tdir = store.folder / f"tables-{key}"
    out = {}
    for split in ("train",) + tuple(splits):
        keys, person, mask, target_row, chosen, target_of = split_rows(sp, split, photos)
        if not chosen:
            raise InputError(f"split {split!r} is empty with these settings (n_unseen_people={n_unseen_people}).")
        tex_file = tdir / f"textures-{split}.u8"
        t_photos = [keys[r] for r in target_row]
        if not tex_file.exists():
            tex = np.zeros((len(t_photos), S, S, 3), np.uint8)
            crops = store.images(torch.tensor(t_photos))
            for i in range(0, len(t_photos), register_batch):
                j = slice(i, i + register_batch)
                reg = register_textures(crops[j], store.crop_landmarks[t_photos[j]], mean_shape)
                tex[j] = (reg.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            resources.atomic_write(tex_file, lambda tmp: tex.tofile(tmp))
        keys_t = torch.tensor(keys, dtype=torch.long)
        person_t, mask_t, trow_t = (torch.tensor(person, dtype=torch.long), torch.tensor(mask, dtype=torch.bool),
                                    torch.tensor(target_row, dtype=torch.long))
        lms = store.crop_landmarks[keys_t]
        ids = [store.photos[g].id for g in keys]
        people, P, N, T = list(chosen), len(chosen), len(keys), len(target_row)
        tof = None if target_of is None else torch.tensor(target_of, dtype=torch.long)
        flip = torch.zeros(N, dtype=torch.bool)
        tex_rows, tex_flip = torch.arange(T), torch.zeros(T, dtype=torch.bool)
        if mirror and split == "train":
            keys_t, flip = torch.cat([keys_t, keys_t]), torch.cat([flip, torch.ones(N, dtype=torch.bool)])
            lms = torch.cat([lms, faces.mirror_landmarks(lms, S)])
            person_t, mask_t = torch.cat([person_t, person_t + P]), torch.cat([mask_t, mask_t])
            trow_t = torch.cat([trow_t, trow_t + N])
            tof = None if tof is None else torch.cat([tof, tof + T])
            ids, people = ids + [f"{i}+m" for i in ids], people + [f"{p}+m" for p in people]
            tex_rows, tex_flip = torch.cat([tex_rows, tex_rows]), torch.cat([tex_flip, ~tex_flip])
        out[split] = StreamTable(
            store.images(keys_t, flip), lms, person_t, ids, trow_t, lms[trow_t],
            DiskImages([str(tex_file)], len(t_photos), S, tex_rows, tex_flip), mean_shape, people, mask_t,
            list(store.errors), f"{store.folder.name} split={split} inputs={inputs} seed={seed} "
                                f"mirror={mirror and split == 'train'}", tof)
    return out


def folder_tables(root, size: int, splits: Sequence[str] = ("unseen_people", "unseen_photos"), mirror: bool = True,
                  seed: int = 0, n_unseen_people: int | float = 0.1, n_unseen_photos: int = 2, min_photos: int = 2,
                  max_people: int | None = None, store_dir=None, workers: int = 2, device: str = "cpu",
                  shard_size: int = 256, progress: bool | None = None, inputs: str = "frontal_neutral"
                  ) -> dict[str, StreamTable]:
    """Any folder of photos with one sub-folder per person (:func:`folder_photos`) as :class:`StreamTable`s: your own
    frontal photos, or ORL's folder (``resources.orl_dir()``). Targets: each person's most frontal, neutral photo;
    training inputs as ``inputs`` says (:func:`stream_tables`).
    Arguments as in :class:`FaceStore` and :func:`stream_tables`."""
    store = FaceStore(folder_photos(root), size, "folder", store_dir, shard_size, workers, device, progress)
    return stream_tables(store, splits, mirror, seed, n_unseen_people, n_unseen_photos, min_photos, max_people,
                         inputs=inputs)

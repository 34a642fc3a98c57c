"""Faces without training targets: the LFW faces (offline: scikit-image's 100; online: scikit-learn's
``fetch_lfw_people``), two public-domain colour portraits, and any folder of a user's photos."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import faces
from ..core import resources
from ..core.checks import check_size
from ..core.errors import InputError, MissingWeightsError, NoFaceError, UnreadableImageError
from .tables import FaceSet


def _faceset(images: list, photo_lms: list, ids: list, detected: list, size: int, errors: list,
             person=None, people=None) -> FaceSet:
    if not images:
        S = size
        return FaceSet(torch.zeros(0, 3, S, S), torch.zeros(0, 68, 2), [], torch.zeros(0, dtype=torch.bool),
                       None if person is None else torch.zeros(0, dtype=torch.long), people, errors)
    crops, lms, _ = faces.align_faces(images, torch.stack(photo_lms), size)
    return FaceSet(crops, lms, ids, torch.tensor(detected, dtype=torch.bool),
                   None if person is None else torch.as_tensor(person, dtype=torch.long), people, errors)


def _detect_with_fallback(images: list, ids: list, size: int, fallback: bool, cache: bool, person=None,
                          people=None) -> FaceSet:
    """Detect landmarks; failures either get the mean relative landmark layout of the successes (``fallback``)
    or are reported in ``errors``."""
    found, errors = {}, []
    for k, im in enumerate(images):
        try:
            found[k] = faces.cached_landmarks(im, name=ids[k], cache=cache)
        except NoFaceError as e:
            errors.append((ids[k], f"NoFaceError: {e}"))
    detected_rows = set(found)
    keep = list(range(len(images))) if fallback else sorted(found)
    if fallback and len(found) < len(images):
        if found:  # average layout of the detected faces, in fractions of the photo's width/height
            rel = torch.stack([(found[k] + 0.5) / torch.tensor([images[k].shape[2], images[k].shape[1]])
                               for k in found]).mean(0)
        else:
            rel = faces.load_mean_shape(1) + 0.5  # the canonical layout over the whole photo
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
    size = check_size(size)
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
        images = [faces.load_image(np.clip(a, 0, 1), name=f"lfw[{i}]") for i, a in enumerate(arr)]
        people = [str(n) for n in bunch.target_names]
        ids = [f"lfw/{people[t]}/{i}" for i, t in enumerate(bunch.target)]
        return _detect_with_fallback(images, ids, size, fallback, cache, person=list(bunch.target), people=people)
    from skimage import data as skdata

    subset = skdata.lfw_subset()[:100]
    images = [faces.load_image(f.astype(np.float32), name=f"lfw_subset[{i}]") for i, f in enumerate(subset)]
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
    size = check_size(size)
    found, errors = [], []
    for name, src in portrait_paths().items():
        try:
            found.append(faces.face_from_photo(src, size, name=name, cache=cache))
        except (NoFaceError, UnreadableImageError, FileNotFoundError) as e:
            errors.append((name, f"{type(e).__name__}: {e}"))
    return _stack_faces(found, size, errors)


def _stack_faces(found: list, size: int, errors: list, person=None, people=None) -> FaceSet:
    if not found:
        return _faceset([], [], [], [], size, errors, person, people)
    return FaceSet(torch.stack([f.crop for f in found]), torch.stack([f.landmarks for f in found]),
                   [f.source for f in found], torch.ones(len(found), dtype=torch.bool),
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
    size = check_size(size)
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
    found, errs = faces.faces_from_photos(images, size, face=face, cache=cache)
    errors += errs
    person = people = None
    if any(Path(f.source).parent != root for f in found):
        groups = [str(Path(f.source).parent.relative_to(root)) for f in found]
        people = sorted(set(groups))
        person = [people.index(g) for g in groups]
    return _stack_faces(found, size, errors, person, people)

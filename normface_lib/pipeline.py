"""``NormFace``: the whole of the paper's Figure 3 for a user's photo: detect → align → encode → decode → warp.

Each step is a public call of its own room (:func:`normface_lib.faces.face_from_photo`,
:meth:`FaceEncoder.features <normface_lib.encoders.FaceEncoder.features>`, :class:`~normface_lib.nets.Decoder`, whose
forward ends in :func:`normface_lib.warp.warp_image`); :class:`NormFace` chains them around a trained decoder and its
frozen encoder, for one photo (:meth:`NormFace.normalize`), every face of one (:meth:`NormFace.normalize_all`) or many
photos in batches (:meth:`NormFace.normalize_many`).

    >>> model = NormFace.from_profile("quick")                                # doctest: +SKIP
    >>> result = model.normalize("photo.jpg")                                 # doctest: +SKIP
    >>> result.image.shape, result.identity_distance                          # doctest: +SKIP

A model is a folder (``config.json`` + ``model.safetensors``, see :mod:`normface_lib.nets.checkpoint`):
:meth:`NormFace.save_pretrained` writes one, :meth:`NormFace.from_pretrained` reads a local folder, a training run
folder or a Hugging Face hub id (``"org/name"``, through ``huggingface_hub``; offline it reads the local hub cache).
"""
from __future__ import annotations

import itertools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np
import PIL.Image
import torch

from . import faces
from .core import resources
from .core.checks import check_images
from .core.errors import InputError, MissingWeightsError
from .core.runtime import default_device
from .data import DATASETS, encoder_options
from .encoders import FaceEncoder, load_encoder
from .nets import Decoder, load_checkpoint, save_checkpoint
from .nets.checkpoint import find_checkpoint, steps_left
from .training import CHECKPOINT_NAME, profile_config, train
from .training.config import RUNTIME_FIELDS as _RUNTIME_FIELDS


@dataclass
class NormalizedFace:
    """The result of normalizing one face.

    Attributes:
        image: ``[3,S,S]`` float32 in ``[0,1]``: the normalized face (canonical frame).
        landmarks: ``[68,2]`` float32: its predicted landmarks (pixels of ``image``).
        texture: ``[3,S,S]`` float32 in ``[0,1]``: the predicted texture in the mean-shape frame (None for a no-warp
            decoder).
        input_crop: ``[3,S',S']`` float32 in ``[0,1]``: the aligned input face the encoder saw.
        input_landmarks: ``[68,2]`` float32: detected landmarks of the input, photo pixels (None for a crop input).
        identity_distance: L2 distance between the encoder's normalised embeddings of input crop and output.
        same_person: ``identity_distance < threshold``.
        threshold: the same-person threshold (calibrated at training time, see :attr:`NormFace.threshold`).
        source: the photo's name.
        box: ``[4]`` the face's detection box ``(x0, y0, x1, y1)`` in photo pixels, when detection ran.
    """

    image: torch.Tensor
    landmarks: torch.Tensor
    texture: torch.Tensor | None
    input_crop: torch.Tensor
    input_landmarks: torch.Tensor | None
    identity_distance: float
    same_person: bool
    threshold: float
    source: str
    box: torch.Tensor | None = None


#: Training sets whose photos are grey (the data-set registry says so: :attr:`normface_lib.data.DataSet.channels`).
GREY_DATASETS = frozenset(n for n, d in DATASETS.items() if d.channels == 1)
#: Files a model folder holds (what :meth:`NormFace.from_pretrained` fetches from a hub repository).
MODEL_FILES = ("config.json", "model.safetensors")


def default_checkpoint(profile: str = "quick") -> Path:
    """Where notebook 02 and ``normface train`` put the checkpoint of ``profile`` by default."""
    return resources.cache_dir("checkpoints") / profile


#: Config fields that say where and how fast a run goes, not what it computes: they do not change its run folder
#: (defined with the config: :data:`normface_lib.training.config.RUNTIME_FIELDS`).
RUNTIME_FIELDS = _RUNTIME_FIELDS


def run_folder(profile: str = "quick", **overrides) -> Path:
    """The training run folder of ``profile`` with ``overrides`` (e.g. ``dataset="folder", data_root=...,
    steps=2``): :func:`default_checkpoint` when the overrides change nothing the run computes, else
    ``cache_dir("runs")/<profile>-<key>``, keyed by the whole resulting config (runtime fields left out). Notebooks
    02–05 and ``normface reproduce`` all find a run here, so a run with other data or settings never lands on the
    profile's default checkpoint."""
    config = profile_config(profile, **overrides).to_dict()
    plain = profile_config(profile).to_dict()
    if all(config[k] == plain[k] for k in config if k not in RUNTIME_FIELDS):
        return default_checkpoint(profile)
    return resources.cache_dir("runs") / run_key(profile, **overrides)


def run_key(profile: str = "quick", **overrides) -> str:
    """``<profile>-<16 hex digits>``: a name for the run of ``profile`` with ``overrides``, from the whole resulting
    config (:data:`RUNTIME_FIELDS` left out): the same settings always get the same name, other settings another."""
    config = profile_config(profile, **overrides).to_dict()
    return f"{profile}-" + resources.digest(json.dumps({k: v for k, v in config.items() if k not in RUNTIME_FIELDS},
                                                       sort_keys=True, default=str))


def _hub_folder(repo_id: str) -> Path:
    """A Hugging Face hub model repository as a local folder (downloaded, or the local cache when offline)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover - a dependency of normface
        raise MissingWeightsError(f"{repo_id!r} looks like a Hugging Face hub id but huggingface_hub is not "
                                  "installed: pip install huggingface_hub") from e
    try:
        return Path(snapshot_download(repo_id, allow_patterns=list(MODEL_FILES)))
    except Exception as e:  # huggingface_hub raises many kinds: offline, not found, gated...
        raise MissingWeightsError(f"{repo_id!r} is neither a local folder nor a Hugging Face hub model that could be "
                                  f"fetched ({type(e).__name__}: {e}). Offline, the hub cache must already hold it "
                                  "(HF_HUB_OFFLINE=1 reads only the cache).") from e


#: Data sets training reads without a data folder (shipped in packages).
OFFLINE_DATASETS = frozenset(n for n, d in DATASETS.items() if d.tables is not None and not d.needs_root)


def _photo_iterable(photos) -> Iterator:
    """The photos of :meth:`NormFace.normalize_many` as an iterator, refusing one photo passed alone."""
    single = (str, bytes, bytearray, os.PathLike, PIL.Image.Image)
    if isinstance(photos, single) or (isinstance(photos, torch.Tensor) and photos.dim() != 4) or \
            (isinstance(photos, np.ndarray) and photos.ndim != 4):
        raise InputError(f"photos must be a list of photos (paths, images, tensors), got one "
                         f"{type(photos).__name__}; pass [photo] or use normalize() for one photo.")
    try:
        return iter(photos)
    except TypeError:
        raise InputError(f"photos must be a list (or another iterable) of photos, got {type(photos).__name__}.") \
            from None


def _names_list(names) -> list:
    if isinstance(names, (str, bytes, os.PathLike)):
        raise InputError(f"names must be a list with one name per photo, got one {type(names).__name__}.")
    try:
        names = list(names)
    except TypeError:
        raise InputError(f"names must be a list with one name per photo, got {type(names).__name__}.") from None
    bad = [n for n in names if n is not None and not isinstance(n, str)]
    if bad:
        raise InputError(f"names must be strings (or None), got a {type(bad[0]).__name__}.")
    return names


class NormFace(torch.nn.Module):
    """A decoder (:class:`normface_lib.nets.Decoder`) and the frozen encoder it was trained on.

    Args:
        decoder: the trained decoder (its ``out_size`` fixes the crop side ``S``).
        encoder: the frozen encoder (:func:`normface_lib.encoders.load_encoder`).
        config: the training configuration (dict) stored with the checkpoint, kept for reference.
        threshold: the same-person threshold on the encoder's embedding distance, with how it was calibrated
            (``{"value", "far", ...}`` as training stores it); None: the encoder's documented threshold.

    Attributes:
        threshold: the same-person threshold every result is judged by: the one calibrated on the training people
            when the model was trained (the number the book reports), else the encoder's documented one.
        threshold_source: where it comes from.
    """

    def __init__(self, decoder: Decoder, encoder: FaceEncoder, config: dict | None = None,
                 threshold: dict | None = None):
        super().__init__()
        self.decoder = decoder.eval()
        self.encoder = encoder
        self.config = dict(config or {})
        self.size = int(decoder.out_size)
        self.calibration = dict(threshold) if threshold else None
        if self.calibration and self.calibration.get("encoder", encoder.name) == encoder.name:
            self.threshold = float(self.calibration["value"])
            self.threshold_source = (f"calibrated at training time at a {self.calibration['far']:.0%} false-accept "
                                     f"rate on {self.calibration.get('photos', '?')} photos of "
                                     f"{self.calibration.get('people', '?')} training people")
        else:
            self.threshold = float(encoder.threshold)
            self.threshold_source = encoder.threshold_source

    # ------------------------------------------------------------------------------------------ loading, saving
    @classmethod
    def from_profile(cls, profile: str = "quick", checkpoint: str | os.PathLike | None = None,
                     device: str | torch.device | None = None, train_if_missing: bool = True,
                     progress: bool = False, **overrides) -> "NormFace":
        """The model of a named profile: its checkpoint (``checkpoint``, default :func:`run_folder` of the profile and
        ``overrides``: :func:`default_checkpoint` without overrides), trained there first with the profile's settings
        and ``overrides`` of them (e.g. ``steps=100``, ``dataset="folder", data_root="/data/people"``) when it is
        missing (or finished when its training was interrupted) and ``train_if_missing``.

        This is the one call every notebook after 02 starts from. A checkpoint whose training config differs from
        the profile's (another seed, fewer steps...) is used as it is, with a printed note naming the differences.
        Raises ``FileNotFoundError`` when there is no checkpoint and ``train_if_missing`` is False.
        """
        path = Path(checkpoint) if checkpoint is not None else run_folder(profile, **overrides)
        config = profile_config(profile, **{"device": None if device is None else str(device), **overrides})
        found = find_checkpoint(path / CHECKPOINT_NAME) or find_checkpoint(path)
        if found is None or steps_left(found):
            if not train_if_missing:
                raise FileNotFoundError(f"No finished normface checkpoint in {path}; train one with `normface train "
                                        f"--profile {profile} --out {path}` or pass train_if_missing=True.")
            if config.dataset not in OFFLINE_DATASETS and config.data_root is None:
                raise FileNotFoundError(
                    f"No finished {profile} checkpoint in {path}, and training one needs the {config.dataset!r} data "
                    f"set: pass data_root=DIR (the command: normface train --profile {profile} --data-root DIR --out "
                    f"{path}), or load a trained model with NormFace.from_pretrained(DIR).")
            made = resources.missing_folders(path)
            try:
                if found is None:
                    print(f"no {profile} checkpoint in {path}: training one with the {profile!r} profile "
                          f"({config.steps} steps; a few minutes on a CPU for 'quick')", flush=True)
                    train(config, path, progress=progress, force=True)
                else:
                    print(f"the {profile} checkpoint in {path} is unfinished: resuming its training", flush=True)
                    train(config, path, progress=progress, resume=True)
            except BaseException:
                resources.remove_empty(made)  # a failed start leaves no empty run folder behind
                raise
        model = cls.from_pretrained(path, device=device)
        want = config.to_dict()
        differs = sorted(k for k in want if k != "device" and model.config.get(k) != want[k])
        if differs:
            print(f"note: this checkpoint differs from the {profile!r} profile in {differs}")
        return model

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        profile: str = "quick", allow_partial: bool = False) -> "NormFace":
        """Load a model together with the encoder named in its config.

        Args:
            path: a model folder (:meth:`save_pretrained`), a checkpoint folder or a training run folder holding
                ``checkpoint/`` (:func:`normface_lib.training.train`), or a Hugging Face hub id ``"org/name"``.
                ``None``: :func:`default_checkpoint` of ``profile``.
            device: where the model runs (default CUDA when available, else CPU).
            allow_partial: accept a checkpoint whose training stopped early (otherwise refused, saying how to finish
                it).

        Raises:
            FileNotFoundError: no checkpoint there (the message says how to make one). InputError / ChecksumError:
            a damaged, tampered or unfinished checkpoint. MissingWeightsError: a hub id that cannot be fetched.
        """
        if path is not None and not Path(path).exists() and str(path).count("/") == 1 and \
                not str(path).startswith((".", "/", "~")):
            path = _hub_folder(str(path))
        path = Path(path) if path is not None else default_checkpoint(profile)
        run = path
        if find_checkpoint(path / CHECKPOINT_NAME) is not None:  # a training run folder: its final checkpoint
            path = path / CHECKPOINT_NAME
        found = find_checkpoint(path)
        if found is None:
            raise FileNotFoundError(
                f"No normface checkpoint in {path}. Train one with `normface train --profile quick --out {run}` "
                "(a few minutes on a CPU), run notebooks/02_training.ipynb, or use NormFace.from_profile('quick'), "
                "which trains it on first use.")
        left = steps_left(found)
        if left and not allow_partial:
            raise InputError(f"the checkpoint in {path} is unfinished: its training stopped {left} steps before the "
                             f"end. Finish it with `normface train --resume --out {run}` (with the same options), "
                             "or pass allow_partial=True to use it as it is.")
        dev = default_device(device)
        ckpt = load_checkpoint(path, map_location=dev)
        config = ckpt.config or {}
        encoder = load_encoder(config.get("encoder", "facenet-casia"), layer=config.get("encoder_layer"), device=dev,
                               **encoder_options(config.get("dataset", ""), config.get("data_root")))
        return cls(ckpt.model.to(dev), encoder, config, ckpt.meta.get("identity_threshold"))

    def save_pretrained(self, folder: str | os.PathLike, force: bool = False) -> Path:
        """Write the model as a folder :meth:`from_pretrained` reads (``config.json`` + ``model.safetensors``, the
        layout of a Hugging Face hub model repository; no optimizer state). Returns the folder.

        Never deletes a file it did not write: a new or empty folder is written; an existing model is replaced only
        with ``force``; a folder holding anything else (a working folder, a hub repository clone) is refused unless
        ``force``, which then writes only the model's files beside the others
        (:func:`~normface_lib.nets.save_checkpoint`). Raises :class:`~normface_lib.core.errors.OverwriteError`."""
        return save_checkpoint(folder, self.decoder, self.config, force=force,
                               meta={"identity_threshold": self.calibration})

    @property
    def renders_colour(self) -> bool:
        """Whether the decoder was trained on colour faces. ORL (the quick profile) is grey, so a model trained on it
        renders grey faces: it knows a canonical brightness but no colour (colour correction can then fit exposure
        only)."""
        return self.config.get("dataset") not in GREY_DATASETS

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    # ------------------------------------------------------------------------------------------ normalizing
    @torch.no_grad()
    def normalize_crops(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalize aligned canonical crops (one batch).

        Args:
            crops: ``[B,3,S',S']`` float in ``[0,1]``, canonical crops of any side ``S'`` (the encoder resizes).

        Returns:
            the decoder's dict (``image`` ``[B,3,S,S]``, ``texture``, ``landmarks`` ``[B,68,2]``) plus
            ``identity_distance`` ``[B]``: embedding distance between each crop and its output.

        Raises:
            InputError: bad crops; RuntimeError-like :class:`~normface_lib.core.errors.NormFaceError` when the
            model's output is not finite (damaged weights).
        """
        check_images(crops, "crops", square=True)
        features, embedding = self.encoder.features_and_embed(crops.to(self.device))  # one encoder pass
        out = self.decoder(features)
        if not bool(torch.isfinite(out["image"]).all()) or not bool(torch.isfinite(out["landmarks"]).all()):
            raise InputError("the model produced NaN or inf values: its weights are damaged or training diverged; "
                             "train it again.")
        out["identity_distance"] = (embedding - self.encoder.embed(out["image"])).norm(dim=1)
        return out

    def _result(self, out: dict, i: int, crop: torch.Tensor, photo_landmarks, source: str,
                box: torch.Tensor | None = None) -> NormalizedFace:
        d = float(out["identity_distance"][i])
        tex = out.get("texture")
        return NormalizedFace(image=out["image"][i].cpu(), landmarks=out["landmarks"][i].cpu(),
                              texture=None if tex is None else tex[i].cpu(), input_crop=crop.cpu(),
                              input_landmarks=photo_landmarks, identity_distance=d, same_person=d < self.threshold,
                              threshold=self.threshold, source=source, box=box)

    def normalize_all(self, photo, name: str | None = None) -> list[NormalizedFace]:
        """Normalize every face in a photo (largest first).

        Args:
            photo: a path, bytes, PIL image, array or ``[3,H,W]`` tensor in ``[0,1]`` (see
                :func:`normface_lib.faces.load_image`).
            name: how to call the photo in messages.

        Raises:
            NoFaceError: no face found; UnreadableImageError / FileNotFoundError / InputError for a bad input.
        """
        found = faces.faces_in_photo(photo, self.size, name=name, device=self.device)
        out = self.normalize_crops(torch.stack([f.crop for f in found]))
        return [self._result(out, i, f.crop, f.photo_landmarks, f.source, f.box) for i, f in enumerate(found)]

    def normalize(self, photo, face: str | int = "largest", name: str | None = None) -> NormalizedFace:
        """Normalize one face of a photo: detect (MTCNN) → 68 landmarks (dlib) → align → encode → decode → warp.

        Args:
            photo: a path, bytes, PIL image, array or ``[3,H,W]`` tensor in ``[0,1]``; a ``[3,S,S]`` tensor is
                treated as a photo too (it is detected and aligned).
            face: ``"largest"`` or the index of the face (largest first).

        Returns:
            :class:`NormalizedFace`.
        """
        f = faces.face_from_photo(photo, self.size, face=face, name=name, cache=False, device=self.device)
        out = self.normalize_crops(f.crop[None])
        return self._result(out, 0, f.crop, f.photo_landmarks, f.source)

    def normalize_many(self, photos: Iterable, batch: int = 16, names: Sequence[str] | None = None,
                       aligned: bool = False) -> list[list[NormalizedFace] | Exception]:
        """Normalize many photos in batches: faster than one by one (detection is grouped by photo size, the
        networks run on up to ``batch`` faces at once).

        Args:
            photos: a list (or any iterable, a generator included: it is read ``batch`` photos at a time) of paths,
                bytes, PIL images, arrays or tensors (as :meth:`normalize`); a ``[B,3,H,W]`` tensor is ``B`` photos.
                One photo (a path, a string, one image) is refused: pass ``[photo]`` or use :meth:`normalize`.
            batch: photos per batch (a positive integer).
            names: how to call each photo in messages (default its path): one per photo.
            aligned: the photos are canonical crops already (square, eyes and mouth where :mod:`normface_lib.faces`
                puts them): no detection, each photo is one face.

        Returns:
            per photo, in input order, its normalized faces (largest first) or the error it raised (missing,
            unreadable, no face, not square...: :data:`normface_lib.faces.PHOTO_ERRORS`); one bad photo never stops
            the others.

        Raises:
            InputError: ``photos`` is one photo or not iterable, ``batch`` is not a positive integer, ``names`` has
            another length than ``photos``.
        """
        return list(self.iter_normalize(photos, batch=batch, names=names, aligned=aligned))

    def iter_normalize(self, photos: Iterable, batch: int = 16, names: Sequence[str] | None = None,
                       aligned: bool = False) -> Iterator[list[NormalizedFace] | Exception]:
        """:meth:`normalize_many` one result at a time, as each batch is done (arguments and results the same): only
        one batch of photos and results is held at once, so memory stays flat however many photos there are.
        ``photos`` and ``batch`` are checked when it is called, ``names`` as the photos are read."""
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise InputError(f"batch must be a positive integer, got {batch!r}.")
        items = _photo_iterable(photos)
        names = None if names is None else _names_list(names)
        if names is not None and hasattr(photos, "__len__") and len(names) != len(photos):
            raise InputError(f"names has {len(names)} entries for {len(photos)} photos; give one name per photo.")
        return self._iter_batches(items, batch, names, aligned)

    def _iter_batches(self, items: Iterator, batch: int, names: list | None, aligned: bool) -> Iterator:
        start = 0
        while chunk := list(itertools.islice(items, batch)):
            if names is not None and len(names) < start + len(chunk):
                raise InputError(f"names has {len(names)} entries but photos has more; give one name per photo.")
            labels = [(names[start + k] if names else None) or faces.photo_label(p) for k, p in enumerate(chunk)]
            found = self._aligned_crops(chunk, labels) if aligned else \
                faces.faces_in_photos(chunk, self.size, labels, device=self.device)
            todo = [f for fs in found if not isinstance(fs, Exception) for f in fs]
            if todo:
                out = self.normalize_crops(torch.stack([f.crop for f in todo]))
            k = 0
            for fs in found:
                if isinstance(fs, Exception):
                    yield fs
                    continue
                yield [self._result(out, k + i, f.crop, f.photo_landmarks, f.source, f.box) for i, f in enumerate(fs)]
                k += len(fs)
            start += len(chunk)
        if names is not None and len(names) != start:
            raise InputError(f"names has {len(names)} entries for {start} photos; give one name per photo.")

    def _aligned_crops(self, photos: list, labels: list[str]) -> list:
        """Photos that are canonical crops already, as one :class:`~normface_lib.faces.Face` each (or the error)."""
        out = []
        for photo, label in zip(photos, labels):
            try:
                crop = faces.load_image(photo, name=label)
                if crop.shape[-1] != crop.shape[-2]:
                    raise InputError(f"{label}: an aligned crop must be square, got {crop.shape[-1]}x{crop.shape[-2]} "
                                     "pixels; leave out --aligned to detect and align the face.")
                if crop.shape[-1] != self.size:
                    crop = torch.nn.functional.interpolate(crop[None], size=(self.size, self.size), mode="bilinear",
                                                           antialias=True, align_corners=False)[0].clamp(0, 1)
                out.append([faces.Face(crop, None, None, torch.eye(2, 3), label)])
            except faces.PHOTO_ERRORS as e:
                out.append(e)
        return out

    def forward(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Differentiable path for aligned crops ``[B,3,S,S]`` in ``[0,1]`` → decoder outputs (no identity metric)."""
        if not isinstance(crops, torch.Tensor):
            raise InputError("NormFace.forward takes aligned crops [B,3,S,S]; use normalize() for photos.")
        return self.decoder(self.encoder.features(check_images(crops, "crops", square=True)))

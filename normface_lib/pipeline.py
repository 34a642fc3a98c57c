"""``NormFace``: the whole of the paper's Figure 3 for a user's photo: detect → align → encode → decode → warp.

Each step is a public call of its own room (:func:`normface_lib.faces.face_from_photo`,
:meth:`FaceEncoder.features <normface_lib.encoders.FaceEncoder.features>`, :class:`~normface_lib.nets.Decoder`, whose
forward ends in :func:`normface_lib.warp.warp_image`); :class:`NormFace` chains them around a trained decoder and its
frozen encoder.

    >>> model = NormFace.from_profile("quick")                                # doctest: +SKIP
    >>> result = model.normalize("photo.jpg")                                 # doctest: +SKIP
    >>> result.image.shape, result.identity_distance                          # doctest: +SKIP
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from . import faces
from .core import resources
from .core.checks import check_images
from .core.errors import InputError
from .core.runtime import default_device
from .encoders import FaceEncoder, load_encoder
from .nets import Decoder, load_checkpoint
from .training import profile_config, train


@dataclass
class NormalizedFace:
    """The result of normalizing one face.

    Attributes:
        image: ``[3,S,S]`` float32 in ``[0,1]``: the normalized face (canonical frame).
        landmarks: ``[68,2]`` float32: its predicted landmarks (pixels of ``image``).
        texture: ``[3,S,S]`` float32 in ``[0,1]``: the predicted texture in the mean-shape frame (None for a no-warp
            decoder).
        input_crop: ``[3,S,S]`` float32 in ``[0,1]``: the aligned input face the encoder saw.
        input_landmarks: ``[68,2]`` float32: detected landmarks of the input, photo pixels (None for a crop input).
        identity_distance: L2 distance between the encoder's normalised embeddings of input crop and output.
        same_person: ``identity_distance < threshold`` (the encoder's documented same-person threshold).
        threshold: that threshold.
        source: the photo's name.
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


#: Training sets whose photos are grey.
GREY_DATASETS = frozenset({"orl"})


def default_checkpoint(profile: str = "quick") -> Path:
    """Where notebook 02 and ``normface train`` put the checkpoint of ``profile`` by default."""
    return resources.cache_dir("checkpoints") / profile


class NormFace(torch.nn.Module):
    """A decoder (:class:`normface_lib.nets.Decoder`) and the frozen encoder it was trained on.

    Args:
        decoder: the trained decoder (its ``out_size`` fixes the crop side ``S``).
        encoder: the frozen encoder (:func:`normface_lib.encoders.load_encoder`).
        config: the training configuration (dict) stored with the checkpoint, kept for reference.
    """

    def __init__(self, decoder: Decoder, encoder: FaceEncoder, config: dict | None = None):
        super().__init__()
        self.decoder = decoder.eval()
        self.encoder = encoder
        self.config = dict(config or {})
        self.size = int(decoder.out_size)

    @classmethod
    def from_profile(cls, profile: str = "quick", checkpoint: str | os.PathLike | None = None,
                     device: str | torch.device | None = None, train_if_missing: bool = True,
                     progress: bool = False) -> "NormFace":
        """The model of a named profile: its checkpoint (``checkpoint``, default :func:`default_checkpoint`),
        trained there first with the profile's settings when it is missing and ``train_if_missing``.

        This is the one call every notebook after 02 starts from. A checkpoint whose training config differs from
        the profile's (another seed, fewer steps...) is used as it is, with a printed note naming the differences.
        Raises ``FileNotFoundError`` when there is no checkpoint and ``train_if_missing`` is False.
        """
        path = Path(checkpoint) if checkpoint is not None else default_checkpoint(profile)
        config = profile_config(profile, device=None if device is None else str(device))
        if not ((path / "checkpoint" / "config.json").exists() or (path / "config.json").exists()):
            if not train_if_missing:
                raise FileNotFoundError(f"No normface checkpoint in {path}; train one with `normface train --profile "
                                        f"{profile} --out {path}` or pass train_if_missing=True.")
            print(f"no {profile} checkpoint in {path}: training one with the {profile!r} profile "
                  f"({config.steps} steps)")
            train(config, path, progress=progress)
        model = cls.from_pretrained(path, device=device)
        want = config.to_dict()
        differs = sorted(k for k in want if k != "device" and model.config.get(k) != want[k])
        if differs:
            print(f"note: this checkpoint differs from the {profile!r} profile in {differs}")
        return model

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike | None = None, device: str | torch.device | None = None,
                        profile: str = "quick") -> "NormFace":
        """Load a checkpoint written by :func:`normface_lib.training.train` (a run folder holding ``checkpoint/``, or
        the checkpoint folder itself) together with the encoder named in its config.

        ``path=None`` uses :func:`default_checkpoint` of ``profile``. Raises ``FileNotFoundError`` saying how to
        make one when the folder holds no checkpoint.
        """
        path = Path(path) if path is not None else default_checkpoint(profile)
        if (path / "checkpoint" / "config.json").exists():  # a training run folder: its final checkpoint
            path = path / "checkpoint"
        if not (path / "config.json").exists():
            raise FileNotFoundError(
                f"No normface checkpoint in {path}. Train one with `normface train --profile quick --out {path}` "
                "(a few minutes on a CPU) or run notebooks/02_training.ipynb, then pass that folder.")
        dev = default_device(device)
        ckpt = load_checkpoint(path, map_location=dev)
        config = ckpt.config or {}
        encoder = load_encoder(config.get("encoder", "facenet-casia"), layer=config.get("encoder_layer"), device=dev)
        return cls(ckpt.model.to(dev), encoder, config)

    @property
    def renders_colour(self) -> bool:
        """Whether the decoder was trained on colour faces. ORL (the quick profile) is grey, so a model trained on it
        renders grey faces: it knows a canonical brightness but no colour (colour correction can then fit exposure
        only)."""
        return self.config.get("dataset") not in GREY_DATASETS

    @property
    def device(self) -> torch.device:
        return next(self.decoder.parameters()).device

    @torch.no_grad()
    def normalize_crops(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalize aligned canonical crops.

        Args:
            crops: ``[B,3,S',S']`` float in ``[0,1]``, canonical crops of any side ``S'`` (the encoder resizes).

        Returns:
            the decoder's dict (``image`` ``[B,3,S,S]``, ``texture``, ``landmarks`` ``[B,68,2]``) plus
            ``identity_distance`` ``[B]``: embedding distance between each crop and its output.
        """
        check_images(crops, "crops", square=True)
        features, embedding = self.encoder.features_and_embed(crops.to(self.device))  # one encoder pass
        out = self.decoder(features)
        out["identity_distance"] = (embedding - self.encoder.embed(out["image"])).norm(dim=1)
        return out

    def _result(self, out: dict, i: int, crop: torch.Tensor, photo_landmarks, source: str) -> NormalizedFace:
        d = float(out["identity_distance"][i])
        tex = out.get("texture")
        return NormalizedFace(image=out["image"][i].cpu(), landmarks=out["landmarks"][i].cpu(),
                              texture=None if tex is None else tex[i].cpu(), input_crop=crop.cpu(),
                              input_landmarks=photo_landmarks, identity_distance=d,
                              same_person=d < float(self.encoder.threshold), threshold=float(self.encoder.threshold),
                              source=source)

    def normalize_all(self, photo, name: str | None = None) -> list[NormalizedFace]:
        """Normalize every face in a photo (largest first).

        Args:
            photo: a path, bytes, PIL image, array or ``[3,H,W]`` tensor in ``[0,1]`` (see
                :func:`normface_lib.faces.load_image`).
            name: how to call the photo in messages.

        Raises:
            NoFaceError: no face found; UnreadableImageError / FileNotFoundError for a bad file.
        """
        found = faces.faces_in_photo(photo, self.size, name=name)
        out = self.normalize_crops(torch.stack([f.crop for f in found]))
        return [self._result(out, i, f.crop, f.photo_landmarks, f.source) for i, f in enumerate(found)]

    def normalize(self, photo, face: str | int = "largest", name: str | None = None) -> NormalizedFace:
        """Normalize one face of a photo: detect (MTCNN) → 68 landmarks (dlib) → align → encode → decode → warp.

        Args:
            photo: a path, bytes, PIL image, array or ``[3,H,W]`` tensor in ``[0,1]``; a ``[3,S,S]`` tensor is
                treated as a photo too (it is detected and aligned).
            face: ``"largest"`` or the index of the face (largest first).

        Returns:
            :class:`NormalizedFace`.
        """
        f = faces.face_from_photo(photo, self.size, face=face, name=name, cache=False)
        out = self.normalize_crops(f.crop[None])
        return self._result(out, 0, f.crop, f.photo_landmarks, f.source)

    def forward(self, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        """Differentiable path for aligned crops ``[B,3,S,S]`` in ``[0,1]`` → decoder outputs (no identity metric)."""
        if not isinstance(crops, torch.Tensor):
            raise InputError("NormFace.forward takes aligned crops [B,3,S,S]; use normalize() for photos.")
        return self.decoder(self.encoder.features(check_images(crops, "crops", square=True)))

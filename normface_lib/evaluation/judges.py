"""Judges: frozen encoders that measure identity, each with its same-person threshold calibrated on the training
people's real photos; the *independent* judge is the one that took no part in training."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ..encoders import encode
from ..encoders.thresholds import DEFAULT_FAR, calibrate_on_table

#: FaceNet paper's same-identity threshold (a different 128-D network), shown for reference only.
FACENET_PAPER_THRESHOLD = 1.242


def independent_judge(trained_encoder: str) -> str:
    """The offline encoder that did not take part in training a decoder trained against ``trained_encoder``."""
    return "facenet-casia" if trained_encoder == "dlib-resnet" else "dlib-resnet"


@dataclasses.dataclass
class Judge:
    """A frozen encoder used to measure identity, with its calibrated same-person threshold."""
    name: str
    encoder: Any
    threshold: float
    far: float
    tar_train: float

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """``[N,E]`` unit embeddings of canonical crops ``[N,3,S,S]`` in [0,1]."""
        return encode(self.encoder, images, batch=64)["embeddings"]


def make_judge(encoder, train_table, far: float = DEFAULT_FAR) -> Judge:
    """Calibrate ``encoder``'s threshold at false-accept rate ``far`` on the training people's real photos (mirror
    images left out; :func:`normface_lib.encoders.thresholds.calibrate_on_table`, the calibration training stores
    with every checkpoint). Embeddings of the training table are cached."""
    cal = calibrate_on_table(encoder, train_table, far)
    return Judge(encoder.name, encoder, cal["value"], far, cal["tar"])

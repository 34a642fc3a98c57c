"""The paper's training losses: landmark error (squared), texture error (L1) and the FaceNet / identity loss.

Conventions:

- **Landmark loss**: mean squared error of landmark coordinates *in units of the crop side* (pixels / ``size``), so
  its value does not change with the resolution: a 1-pixel error at 224 px contributes (1/224)².
- **Texture loss**: mean absolute error over every pixel and channel of the texture in the mean-shape frame. For the
  ``warp=False`` ablation (no texture), the same L1 on the output image against the target canonical crop.
- **Identity loss**: ``‖e(output) − e(input)‖²`` between the encoder's L2-normalised embeddings (``encoder.embed``),
  averaged over the batch. On unit vectors this equals ``2 (1 − cos)``: 0 for the same direction, 2 for orthogonal.
  ``kind="cosine"`` gives ``1 − cos`` (half of it). The encoder is frozen; gradients flow through it into the
  output image only.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..core.errors import InputError


def _same_shape(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise InputError(f"{what}: prediction and target must be torch tensors.")
    if a.shape != b.shape:
        raise InputError(f"{what}: prediction {tuple(a.shape)} and target {tuple(b.shape)} must have the same shape; "
                         "decode at the size the targets were built for.")


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, size: int) -> torch.Tensor:
    """Mean squared landmark error in units of the crop side.

    Args:
        pred, target: ``[B, L, 2]`` float landmarks in pixels of a ``size``-pixel crop.
        size: crop side ``S`` in pixels.

    Returns:
        0-d float tensor ``mean(((pred - target) / size)²)`` ≥ 0.
    """
    _same_shape(pred, target, "landmark_loss")
    if pred.dim() != 3 or pred.shape[-1] != 2:
        raise InputError(f"landmark_loss: landmarks must be [B,L,2], got {tuple(pred.shape)}.")
    if size <= 0:
        raise InputError(f"landmark_loss: size must be the crop side in pixels (> 0), got {size}.")
    return F.mse_loss(pred.float() / size, target.float() / size)


def texture_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error between two image batches ``[B, 3, S, S]`` in [0, 1]; a 0-d tensor in [0, 1]."""
    _same_shape(pred, target, "texture_loss")
    if pred.dim() != 4:
        raise InputError(f"texture_loss: images must be [B,3,S,S], got {tuple(pred.shape)}.")
    return F.l1_loss(pred.float(), target.float())


def embedding_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "sq_l2") -> torch.Tensor:
    """Per-row distance between L2-normalised embeddings ``[B, E]``: ``"sq_l2"`` = ``‖a−b‖²`` in [0, 4],
    ``"cosine"`` = ``1 − cos`` in [0, 2]. Returns ``[B]`` float."""
    _same_shape(a, b, "embedding_distance")
    if kind == "sq_l2":
        return (a.float() - b.float()).pow(2).sum(dim=-1)
    if kind == "cosine":
        return 1 - F.cosine_similarity(a.float(), b.float(), dim=-1)
    raise InputError(f"identity loss kind must be 'sq_l2' or 'cosine', got {kind!r}.")


def identity_loss(output_images: torch.Tensor, encoder: nn.Module, input_embeddings: torch.Tensor | None = None,
                  input_images: torch.Tensor | None = None, kind: str = "sq_l2") -> torch.Tensor:
    """The paper's FaceNet loss: distance between ``encoder.embed`` of the decoder's output and of its input photo.

    Args:
        output_images: ``[B, 3, S, S]`` float in [0, 1], the rendered normalized faces (gradients flow to them).
        encoder: a frozen :class:`normface_lib.encoders.FaceEncoder` (anything with ``embed(images) -> [B, E]``,
            L2-normalised).
        input_embeddings: ``[B, E]`` embeddings of the input photos (precomputed; preferred, saves an encoder pass),
        input_images: or the input photos ``[B, 3, S', S']`` in [0, 1] to embed here (without gradients).
        kind: ``"sq_l2"`` (default, the paper's squared distance) or ``"cosine"``; see :func:`embedding_distance`.

    Returns:
        0-d float tensor, the batch mean distance.
    """
    if (input_embeddings is None) == (input_images is None):
        raise InputError("identity_loss needs exactly one of input_embeddings ([B,E]) or input_images ([B,3,S,S]).")
    if input_embeddings is None:
        with torch.no_grad():
            input_embeddings = encoder.embed(input_images)
    out = encoder.embed(output_images)
    return embedding_distance(out, input_embeddings.to(out.device), kind).mean()


class NormFaceLoss(nn.Module):
    """Weighted sum of the three losses.

    ``total = landmark_weight · landmark_loss + texture_weight · texture_loss + identity_weight · identity_loss``

    Args:
        encoder: frozen encoder for the identity loss (None: no identity loss).
        landmark_weight, texture_weight, identity_weight: the weights (≥ 0).
        identity_kind: ``"sq_l2"`` or ``"cosine"``.
        identity_batch: embed at most this many outputs per call (the first ones; None = all) to bound its cost.

    Call ``loss(outputs, batch, use_identity=True) -> (total, parts)`` with ``outputs`` the decoder's dict and
    ``batch`` a mapping holding ``target_landmarks [B,L,2]``, ``target_texture [B,3,S,S]`` (or ``target_image``
    for a decoder with ``warp=False``) and, for the identity loss, ``embedding [B,E]`` (precomputed input
    embeddings) or ``image [B,3,S,S]``. ``parts`` maps ``"landmark"``, ``"texture"``, ``"identity"`` (only when
    computed) and ``"total"`` to Python floats.
    """

    def __init__(self, encoder: nn.Module | None = None, landmark_weight: float = 1.0, texture_weight: float = 1.0,
                 identity_weight: float = 0.0, identity_kind: str = "sq_l2", identity_batch: int | None = None):
        super().__init__()
        for n, w in (("landmark_weight", landmark_weight), ("texture_weight", texture_weight),
                     ("identity_weight", identity_weight)):
            if w < 0:
                raise InputError(f"{n} must be ≥ 0, got {w}.")
        if identity_weight > 0 and encoder is None:
            raise InputError("identity_weight > 0 needs an encoder; pass encoder=load_encoder(name).")
        if identity_kind not in ("sq_l2", "cosine"):
            raise InputError(f"identity_kind must be 'sq_l2' or 'cosine', got {identity_kind!r}.")
        # Stored outside the module tree so that .to()/state_dict()/DDP never touch the frozen encoder.
        self.__dict__["encoder"] = encoder
        self.landmark_weight = float(landmark_weight)
        self.texture_weight = float(texture_weight)
        self.identity_weight = float(identity_weight)
        self.identity_kind = identity_kind
        self.identity_batch = identity_batch

    def forward(self, outputs: Mapping[str, Any], batch: Mapping[str, Any],
                use_identity: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
        lm = outputs["landmarks"]
        size = outputs["image"].shape[-1]
        parts: dict[str, torch.Tensor] = {}
        parts["landmark"] = landmark_loss(lm, batch["target_landmarks"].to(lm.device), size)
        if outputs.get("texture") is not None:
            parts["texture"] = texture_loss(outputs["texture"], batch["target_texture"].to(lm.device))
        else:
            parts["texture"] = texture_loss(outputs["image"], batch["target_image"].to(lm.device))
        total = self.landmark_weight * parts["landmark"] + self.texture_weight * parts["texture"]
        if use_identity and self.identity_weight > 0:
            n = outputs["image"].shape[0] if self.identity_batch is None else min(self.identity_batch,
                                                                                  outputs["image"].shape[0])
            if "embedding" in batch and batch["embedding"] is not None:
                parts["identity"] = identity_loss(outputs["image"][:n], self.encoder,
                                                  input_embeddings=batch["embedding"][:n], kind=self.identity_kind)
            else:
                parts["identity"] = identity_loss(outputs["image"][:n], self.encoder,
                                                  input_images=batch["image"][:n], kind=self.identity_kind)
            total = total + self.identity_weight * parts["identity"]
        logs = {k: float(v.detach()) for k, v in parts.items()}
        logs["total"] = float(total.detach())
        return total, logs

"""What a training step is made of, beside the decoder: the rows of a step (:class:`StepRows`, the batch sampler of
:meth:`~normface_lib.training.trainer.Trainer.loader`), morphs as training rows (:func:`morph_rows`,
:class:`MorphSource`), and the decoder's errors on a set (:func:`evaluate_losses`) that a run's summary reports."""
from __future__ import annotations

import dataclasses
import math

import torch

from ..encoders import encode
from ..nets import Decoder, landmark_loss, random_morphs, texture_loss

#: Batch size of the feature cache's encoder passes (kept: the cached numbers depend on it on some back-ends).
ENCODE_BATCH = 32
#: Streamed data (:class:`~normface_lib.data.StreamTable`): input rows sampled (seeded) for the decoder's feature
#: statistics and the identity threshold, and per table for the final evaluation. Fixed, so memory does not grow
#: with the data set.
STATS_ROWS = 512
EVAL_ROWS = 256


def morph_rows(table, n: int, generator: torch.Generator, encoder,
               batch: int = ENCODE_BATCH) -> dict[str, torch.Tensor]:
    """``n`` random morphs of a table's targets (:func:`normface_lib.nets.random_morphs`) as training rows: features
    ``[n,D]`` and embeddings ``[n,E]`` of the rendered morphs (float32, CPU), their landmark ``[n,68,2]``, texture and
    image ``[n,3,S,S]`` targets (float32, rendered on the device of ``table``'s targets).

    ``table`` is a :class:`~normface_lib.data.FaceTable` or :class:`MorphSource` (the targets already on the
    training device, so that a GPU renders the morphs)."""
    m = random_morphs(table, n, generator)
    enc = encode(encoder, m.images, batch=batch)
    return {"features": enc["features"], "embedding": enc["embeddings"], "target_landmarks": m.landmarks.float(),
            "target_texture": m.textures.float(), "target_image": m.images.float()}


@dataclasses.dataclass
class MorphSource:
    """What morphs are made of: a table's ``target_textures [P,3,S,S]``, ``target_landmarks [P,68,2]`` and
    ``mean_shape [68,2]`` (float32), moved once to the device that renders them (:meth:`of`)."""

    target_textures: torch.Tensor
    target_landmarks: torch.Tensor
    mean_shape: torch.Tensor

    @classmethod
    def of(cls, table, device: torch.device) -> "MorphSource":
        textures = table.target_textures  # streamed textures stay on disk: the drawn ones are read and moved
        return cls(textures.to(device) if isinstance(textures, torch.Tensor) else textures,
                   table.target_landmarks.to(device), table.mean_shape.to(device))


@torch.no_grad()
def evaluate_losses(decoder: Decoder, features: torch.Tensor, target_landmarks: torch.Tensor,
                    target_textures: torch.Tensor | None, target_images: torch.Tensor,
                    batch: int = 64) -> dict[str, float]:
    """Decoder errors on a set (eval mode, no regularisation noise).

    Args:
        decoder: the decoder. features ``[N,D]``; target_landmarks ``[N,L,2]`` (pixels); target_textures
            ``[N,3,S,S]`` (mean-shape frame; may be None for ``warp=False``); target_images ``[N,3,S,S]``.

    Returns:
        ``{"texture_l1", "image_l1", "landmark_mse", "landmark_rmse_px", "n"}``: texture L1 (NaN without textures
        or texture output), L1 of the rendered image against the target photo, landmark MSE in crop units and RMS
        landmark error in pixels.
    """
    was_training = decoder.training
    decoder.eval()
    dev = next(decoder.parameters()).device
    sums = dict(texture_l1=0.0, image_l1=0.0, landmark_mse=0.0)
    n = features.shape[0]
    for i in range(0, n, batch):
        out = decoder(features[i:i + batch].to(dev))
        k = out["image"].shape[0]
        sums["image_l1"] += float(texture_loss(out["image"], target_images[i:i + batch].to(dev))) * k
        sums["landmark_mse"] += float(landmark_loss(out["landmarks"], target_landmarks[i:i + batch].to(dev),
                                                    decoder.out_size)) * k
        if out["texture"] is not None and target_textures is not None:
            sums["texture_l1"] += float(texture_loss(out["texture"], target_textures[i:i + batch].to(dev))) * k
        else:
            sums["texture_l1"] = float("nan")
    decoder.train(was_training)
    res = {k: v / max(n, 1) for k, v in sums.items()}
    res["landmark_rmse_px"] = math.sqrt(2 * res["landmark_mse"]) * decoder.out_size
    res["n"] = n
    return res


def table_eval_set(table, feats: torch.Tensor) -> tuple:
    """Inputs of a table (its input rows) and their targets, as :func:`evaluate_losses` arguments."""
    m = table.input_mask
    p = table.target_index[m]
    return (feats[m], table.target_landmarks[p], table.target_textures[p], table.images[table.target_row[p]])


class StepRows:
    """The batch sampler of :meth:`~normface_lib.training.trainer.Trainer.loader`: step ``s``'s rows
    (``trainer.step_rows(s)``, a :class:`~normface_lib.training.trainer.Trainer`), for each step."""

    def __init__(self, trainer, start: int, until: int):
        self.trainer, self.start, self.until = trainer, start, until

    def __iter__(self):
        return (self.trainer.step_rows(s).tolist() for s in range(self.start, self.until))

    def __len__(self) -> int:
        return self.until - self.start

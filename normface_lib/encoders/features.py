"""Running a frozen encoder over many faces: one batched helper, and an on-disk cache (the encoder never changes, so
the features of a set of faces are computed once and reused by training, evaluation and the seed study)."""
from __future__ import annotations

import torch
from tqdm import tqdm

from ..core import resources
from .base import FaceEncoder


def encoder_key(encoder: FaceEncoder) -> str:
    """Name and layer of an encoder as a file-name-safe key, e.g. ``"facenet-casia-avgpool"``; an encoder built from
    exported weights (:mod:`.export`) adds their tag (``"...-int8-<digest>"``), so its features never mix with the
    original's."""
    tag = getattr(encoder, "weights_tag", None)
    return (f"{encoder.name}-{encoder.layer or 'default'}" + (f"-{tag}" if tag else "")).replace("/", "_")


@torch.no_grad()
def encode(encoder: FaceEncoder, images: torch.Tensor, batch: int | None = 64,
           progress: bool | None = False) -> dict[str, torch.Tensor]:
    """Features and embeddings of canonical crops, one forward pass per batch.

    Args:
        encoder: a frozen :class:`FaceEncoder` (on any device).
        images: ``[N,3,S,S]`` float in ``[0,1]`` (any device; moved to the encoder's).
        batch: crops per forward pass (``None``: all at once). Results can differ in the last bits between batch
            sizes on some back-ends, so callers that must reproduce earlier numbers keep theirs.
        progress: a progress bar over the batches (``None``: only on a terminal).

    Returns:
        ``{"features": [N,D], "embeddings": [N,E]}``, float32 on the CPU (embeddings of unit L2 norm).
    """
    n = images.shape[0]
    if n == 0:
        return {"features": torch.zeros(0, encoder.feature_dim), "embeddings": torch.zeros(0, encoder.embed_dim)}
    dev = next(encoder.parameters()).device
    step = batch or n
    feats, embs = [], []
    for i in tqdm(range(0, n, step), desc=f"{encoder.name} features", unit="batch", disable=not progress
                  if progress is not None else None):
        f, e = encoder.features_and_embed(images[i:i + step].to(dev))
        feats.append(f.float().cpu())
        embs.append(e.float().cpu())
    return {"features": torch.cat(feats), "embeddings": torch.cat(embs)}


def cached_encode(encoder: FaceEncoder, images: torch.Tensor, batch: int = 32, main: bool = True,
                  barrier=None, progress: bool | None = None) -> dict[str, torch.Tensor]:
    """:func:`encode` with an on-disk cache, keyed by the encoder and the crops' content.

    The file is ``cache_dir("features")/<encoder>-s<S>-<digest of the crops>.safetensors``. Under several processes
    (DDP) only the ``main`` one computes it while the others wait at ``barrier``. ``progress``: as in :func:`encode`
    (by default a bar on a terminal while the cache is built).

    Returns:
        ``{"features": [N,D], "embeddings": [N,E]}`` float32 CPU tensors.
    """
    path = resources.cache_dir("features") / (f"{encoder_key(encoder)}-s{images.shape[-1]}-b{batch}-"
                                              f"{resources.digest(images)}.safetensors")
    return resources.cached_tensors(path, lambda: encode(encoder, images, batch, progress), main=main,
                                    barrier=barrier)

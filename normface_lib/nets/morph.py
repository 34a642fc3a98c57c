"""Face morphing in the mean-shape frame: the paper's augmentation for scarce frontal, neutral training faces.

A face is a pair (landmarks ``[68,2]`` in canonical-crop pixels, registered texture ``[3,S,S]`` in the mean-shape
frame; see :func:`normface_lib.nets.texture.register_textures`). A morph of faces ``a`` and ``b`` with weight ``α``
blends both linearly, ``(1-α)·a + α·b``, and renders the blended texture onto the blended landmarks with the
differentiable warp. ``α = 0`` gives exactly ``render(texture_a, landmarks_a)`` and ``α = 1`` exactly
``render(texture_b, landmarks_b)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..core.errors import InputError
from .texture import check_faces, check_mean_shape, check_out_size, render_unchecked


def blend(texture_a: torch.Tensor, landmarks_a: torch.Tensor, texture_b: torch.Tensor, landmarks_b: torch.Tensor,
          alpha) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear blend ``(1-α)·a + α·b`` of registered textures ``[B,3,S,S]`` and landmarks ``[B,68,2]``.

    ``alpha`` is a float or a ``[B]`` tensor (values normally in ``[0,1]``). The endpoints are exact: ``α = 0``
    returns ``a`` and ``α = 1`` returns ``b`` bit for bit. Returns ``(texture [B,3,S,S], landmarks [B,68,2])``.
    """
    check_faces(texture_a, landmarks_a, "texture_a", "landmarks_a")
    check_faces(texture_b, landmarks_b, "texture_b", "landmarks_b")
    if texture_a.shape != texture_b.shape:
        raise InputError(f"texture_a {tuple(texture_a.shape)} and texture_b {tuple(texture_b.shape)} must have the "
                         "same shape; register both at the same crop size.")
    if landmarks_a.shape != landmarks_b.shape:
        raise InputError(f"landmarks_a {tuple(landmarks_a.shape)} and landmarks_b {tuple(landmarks_b.shape)} differ.")
    B = texture_a.shape[0]
    a = torch.as_tensor(alpha, dtype=texture_a.dtype, device=texture_a.device)
    if a.dim() == 0:
        a = a.expand(B)
    if a.dim() != 1 or a.shape[0] != B:
        raise InputError(f"alpha must be a float or a tensor [B] with B={B}, got shape {tuple(a.shape)}.")
    if not bool(torch.isfinite(a).all()):
        raise InputError("alpha must be finite.")
    return _blend(texture_a, landmarks_a, texture_b, landmarks_b, a)


def _blend(texture_a, landmarks_a, texture_b, landmarks_b, a):
    at, al = a[:, None, None, None], a[:, None, None]
    texture = (1 - at) * texture_a + at * texture_b
    landmarks = (1 - al) * landmarks_a.to(texture_a) + al * landmarks_b.to(texture_a)
    return texture, landmarks


def morph(texture_a: torch.Tensor, landmarks_a: torch.Tensor, texture_b: torch.Tensor, landmarks_b: torch.Tensor,
          alpha, mean_shape: torch.Tensor, out_size: int | None = None,
          mode: str = "fast") -> tuple[torch.Tensor, torch.Tensor]:
    """Morph two batches of faces.

    Args:
        texture_a, texture_b: ``[B,3,S,S]`` float in ``[0,1]``: registered textures (mean-shape frame), e.g.
            ``FaceTable.target_textures`` or :func:`normface_lib.nets.register_textures` of crops.
        landmarks_a, landmarks_b: ``[B,68,2]`` float, canonical-crop pixels (side ``S``).
        alpha: float or ``[B]`` tensor, weight of ``b`` (0 → ``a``, 1 → ``b``).
        mean_shape: ``[68,2]`` float, crop pixels (side ``S``), the frame the textures are registered to.
        out_size: side of the rendered image (default ``S``); the returned landmarks are then scaled to it.
        mode: warp mode, ``"fast"`` or ``"exact"``.

    Returns:
        ``image`` ``[B,3,S',S']`` float32 in ``[0,1]`` (the blended texture rendered onto the blended landmarks) and
        ``landmarks`` ``[B,68,2]`` float32 (the blended landmarks, pixels of the output). Differentiable.
    """
    check_mean_shape(mean_shape)
    out_size = check_out_size(out_size)
    texture, landmarks = blend(texture_a, landmarks_a, texture_b, landmarks_b, alpha)
    landmarks = _scale_landmarks(landmarks, texture.shape[-1], out_size)
    return render_unchecked(texture, landmarks, mean_shape, out_size, mode), landmarks


def _scale_landmarks(landmarks: torch.Tensor, size: int, out_size: int | None) -> torch.Tensor:
    """Crop pixels of side ``size`` → pixels of side ``out_size`` (pixel centres stay pixel centres)."""
    if out_size is None or out_size == size:
        return landmarks
    return (landmarks + 0.5) * (out_size / size) - 0.5


@dataclass
class MorphBatch:
    """Random morphs for training.

    Attributes:
        images: ``[n,3,S',S']`` float in ``[0,1]``, rendered morphs (the encoder's inputs).
        landmarks: ``[n,68,2]`` float, blended landmarks (pixels of ``images``; the decoder's landmark target).
        textures: ``[n,3,S,S]`` float in ``[0,1]``, blended registered textures (the decoder's texture target).
        alpha: ``[n]`` float in ``[0,1)``, weight of the second face.
        pairs: ``[n,2]`` long, indices of the two faces blended (always different).
    """

    images: torch.Tensor
    landmarks: torch.Tensor
    textures: torch.Tensor
    alpha: torch.Tensor
    pairs: torch.Tensor


def random_morphs(source, n: int, generator: torch.Generator | int | None = None, landmarks: torch.Tensor | None = None,
                  mean_shape: torch.Tensor | None = None, out_size: int | None = None,
                  mode: str = "fast") -> MorphBatch:
    """Draw ``n`` random morphs of pairs of faces, ``α ~ U(0,1)``, reproducibly.

    Args:
        source: a :class:`normface_lib.data.FaceTable` (its ``target_textures``, ``target_landmarks`` and
            ``mean_shape`` are used: the frontal, neutral faces; a streamed table's textures stay on disk and only the
            drawn ones are read, then moved to the landmarks' device), or registered textures ``[P,3,S,S]`` in ``[0,1]``
            together with ``landmarks`` ``[P,68,2]`` and ``mean_shape`` ``[68,2]`` (crop pixels). ``P ≥ 2``.
        n: number of morphs (≥ 1).
        generator: a CPU ``torch.Generator`` or an integer seed (``None``: seed 0, so results are reproducible).
        out_size, mode: as in :func:`morph`.

    Returns:
        :class:`MorphBatch` on the faces' device (pairs and ``alpha`` on the CPU, where they are drawn). Pairs are
        drawn uniformly among ordered pairs of different faces.
    """
    if hasattr(source, "target_textures"):
        textures, lms, ms = source.target_textures, source.target_landmarks, source.mean_shape
    else:
        textures, lms, ms = source, landmarks, mean_shape
        if lms is None or ms is None:
            raise InputError("random_morphs(textures, ...) also needs landmarks=[P,68,2] and mean_shape=[68,2]; "
                             "or pass a FaceTable.")
    on_disk = not isinstance(textures, torch.Tensor)  # streamed data (DiskImages): only the drawn faces are read
    if on_disk:
        check_faces(textures[0][None], lms[:1])
    else:
        check_faces(textures, lms)
    check_mean_shape(ms)
    out_size = check_out_size(out_size)
    P = textures.shape[0]
    if P < 2:
        raise InputError(f"random_morphs needs at least 2 faces to blend, got {P}.")
    if not isinstance(n, int) or n < 1:
        raise InputError(f"n must be a positive integer, got {n!r}.")
    if generator is None or isinstance(generator, int):
        generator = torch.Generator().manual_seed(0 if generator is None else generator)
    i = torch.randint(0, P, (n,), generator=generator)  # drawn on the CPU generator whatever the faces' device,
    j = (i + torch.randint(1, P, (n,), generator=generator)) % P  # so the draws do not depend on it
    alpha = torch.rand(n, generator=generator)
    di, dj = i.to(lms.device), j.to(lms.device)
    ta, tb = (textures[i].to(lms.device), textures[j].to(lms.device)) if on_disk else (textures[di], textures[dj])
    texture, blended = _blend(ta, lms[di], tb, lms[dj], alpha.to(ta))
    out_lms = _scale_landmarks(blended, textures.shape[-1], out_size)
    images = render_unchecked(texture, out_lms, ms, out_size, mode)
    return MorphBatch(images, out_lms, texture, alpha, torch.stack([i, j], 1))

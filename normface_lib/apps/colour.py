"""Exposure and colour correction from a normalized face (the paper's first application).

The decoder renders every face with the training set's canonical exposure and white balance. A photo's face pixels
and the normalized face, brought into the photo's geometry, are two pictures of the same skin under different
exposure/colour; a colour transform fitted between them (least squares over the face pixels, with outliers trimmed)
and applied to the whole photo corrects the photo.

Colour transforms act on RGB values. By default they are fitted and applied in **linear light** (sRGB decoding first,
re-encoding after), where exposure and white balance are exactly per-channel gains; ``space="srgb"`` works on the
encoded values instead.

Kinds of transform (``kind``):

* ``"exposure"``: one gain for all channels (1 parameter). The only thing a model trained on grey faces (ORL) knows;
  :func:`correct_photo` chooses it automatically when the normalized face is grey.
* ``"gain"``: one gain per channel (3 parameters): exposure + white balance, the physically expected change.
* ``"gain_offset"``: per-channel gain and offset (6 parameters).
* ``"affine"``: full 3×3 matrix + offset (12 parameters).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..core.checks import as_landmarks, check_image, check_images
from ..core.errors import InputError
from ..faces import interocular
from ..warp import warp_image

KINDS = ("exposure", "gain", "gain_offset", "affine")
SPACES = ("linear", "srgb")


# --------------------------------------------------------------------------------------------------- sRGB
def srgb_to_linear(x: torch.Tensor) -> torch.Tensor:
    """IEC 61966-2-1 sRGB decoding, elementwise: values in ``[0,1]`` → linear light in ``[0,1]`` (same shape)."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`srgb_to_linear`; input clipped to ``[0,1]`` first."""
    x = x.clamp(0, 1)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def _to_space(x: torch.Tensor, space: str) -> torch.Tensor:
    return srgb_to_linear(x) if space == "linear" else x


def _from_space(x: torch.Tensor, space: str) -> torch.Tensor:
    return linear_to_srgb(x) if space == "linear" else x.clamp(0, 1)


def _check_space(space: str) -> None:
    if space not in SPACES:
        raise InputError(f"space must be one of {SPACES}, got {space!r}.")


# --------------------------------------------------------------------------------------------------- transform
@dataclass
class ColourTransform:
    """An affine colour map ``y = matrix[:, :3] @ x + matrix[:, 3]`` on RGB vectors.

    Attributes:
        matrix: ``[3,4]`` float64 tensor.
        kind: one of :data:`KINDS` (which parameters were free when fitting).
        space: ``"linear"`` or ``"srgb"``: the RGB encoding the matrix acts on.
        inliers: fraction of fitting pixels kept by the robust fit (1.0 when not robust).
    """

    matrix: torch.Tensor
    kind: str
    space: str = "linear"
    inliers: float = 1.0

    def __call__(self, rgb: torch.Tensor) -> torch.Tensor:
        """Apply to RGB rows ``[N,3]`` (in this transform's space; no clipping)."""
        m = self.matrix.to(rgb)
        return rgb @ m[:, :3].T + m[:, 3]

    @staticmethod
    def identity(space: str = "linear") -> "ColourTransform":
        """The transform that changes nothing."""
        return ColourTransform(torch.cat([torch.eye(3), torch.zeros(3, 1)], 1).double(), "affine", space)


def _check_pixels(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() != 2 or x.shape[1] != 3:
        raise InputError(f"{name} must be RGB rows [N,3], got shape {tuple(x.shape)}; select pixels with "
                         "image[:, mask].T for an image [3,H,W] and a boolean mask [H,W].")
    if not x.is_floating_point():
        raise InputError(f"{name} must be floating point in [0,1], got {x.dtype}; divide uint8 values by 255.")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or infinite values; remove them before fitting.")
    return x.double()


def _solve(src: torch.Tensor, dst: torch.Tensor, kind: str, w: torch.Tensor) -> torch.Tensor:
    """Weighted least squares for one kind; returns ``[3,4]`` float64."""
    M = torch.zeros(3, 4, dtype=torch.float64)
    if kind == "exposure":
        g = (w[:, None] * src * dst).sum() / (w[:, None] * src * src).sum().clamp_min(1e-12)
        M[:, :3] = torch.eye(3, dtype=torch.float64) * g
    elif kind == "gain":
        g = (w[:, None] * src * dst).sum(0) / (w[:, None] * src * src).sum(0).clamp_min(1e-12)
        M[:, :3] = torch.diag(g)
    elif kind == "gain_offset":
        for c in range(3):
            A = torch.stack([src[:, c], torch.ones_like(src[:, c])], 1) * w.sqrt()[:, None]
            sol = torch.linalg.lstsq(A, (dst[:, c] * w.sqrt())[:, None]).solution[:, 0]
            M[c, c], M[c, 3] = sol[0], sol[1]
    else:  # affine
        A = torch.cat([src, torch.ones(len(src), 1, dtype=torch.float64)], 1) * w.sqrt()[:, None]
        M = torch.linalg.lstsq(A, dst * w.sqrt()[:, None]).solution.T.contiguous()
    return M


def fit_colour_transform(source_pixels: torch.Tensor, target_pixels: torch.Tensor, kind: str = "gain",
                         robust: bool = True, trim: float = 0.2, iterations: int = 4,
                         space: str = "linear", clip_margin: float = 0.01) -> ColourTransform:
    """Least-squares colour transform mapping ``source_pixels`` onto ``target_pixels``.

    Args:
        source_pixels: ``[N,3]`` float RGB in ``[0,1]`` (sRGB-encoded, like every image in normface), e.g. a photo's
            face pixels.
        target_pixels: ``[N,3]`` float RGB in ``[0,1]``, the same pixels in the reference (normalized face).
        kind: ``"exposure"`` | ``"gain"`` | ``"gain_offset"`` | ``"affine"`` (see the module docstring).
        robust: trimmed least squares: refit ``iterations`` times, each time keeping the ``1 - trim`` fraction of
            pixels with the smallest residuals (pixels where the two images disagree for reasons other than colour:
            misalignment, specular highlights, hair, glasses).
        trim: fraction of pixels dropped by the robust fit, in ``[0, 0.9]``.
        iterations: refits of the robust fit.
        space: ``"linear"`` (fit in linear light, default) or ``"srgb"``.
        clip_margin: pixels with a channel within this margin of 0 or 1 in either image are left out of the fit
            (clipped values carry no information about the gain); ignored if that would leave too few pixels.

    Returns:
        :class:`ColourTransform` (``matrix`` ``[3,4]`` float64) acting on pixels of ``space``.

    Raises:
        InputError: shapes differ, are not ``[N,3]``, fewer pixels than parameters, unknown ``kind``/``space``.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}.")
    _check_space(space)
    if not 0 <= trim <= 0.9:
        raise InputError(f"trim must lie in [0, 0.9], got {trim}.")
    src = _check_pixels(source_pixels, "source_pixels")
    dst = _check_pixels(target_pixels, "target_pixels")
    if src.shape != dst.shape:
        raise InputError(f"source_pixels {tuple(src.shape)} and target_pixels {tuple(dst.shape)} must have the same "
                         "shape: the same pixels seen in two images.")
    need = {"exposure": 1, "gain": 3, "gain_offset": 6, "affine": 12}[kind]
    if len(src) < max(need, 4):
        raise InputError(f"{len(src)} pixels are too few to fit a {kind!r} transform; use a larger face mask.")
    if clip_margin > 0:
        ok = ((src > clip_margin) & (src < 1 - clip_margin) & (dst > clip_margin) & (dst < 1 - clip_margin)).all(1)
        if int(ok.sum()) >= max(need, 4):
            src, dst = src[ok], dst[ok]
    src, dst = _to_space(src, space), _to_space(dst, space)
    w = torch.ones(len(src), dtype=torch.float64)
    M = _solve(src, dst, kind, w)
    if robust and trim > 0:
        keep = int(np.ceil((1 - trim) * len(src)))
        for _ in range(iterations):
            res = ((src @ M[:, :3].T + M[:, 3]) - dst).abs().sum(1)
            thr = torch.kthvalue(res, keep).values
            w = (res <= thr).double()
            M = _solve(src, dst, kind, w)
    return ColourTransform(M, kind, space, float(w.mean()))


def apply_colour_transform(image: torch.Tensor, transform: ColourTransform) -> torch.Tensor:
    """Apply a colour transform to every pixel.

    Args:
        image: ``[3,H,W]`` or ``[B,3,H,W]`` float RGB in ``[0,1]``.
        transform: from :func:`fit_colour_transform` (its ``space`` says whether it acts in linear light).

    Returns:
        Same shape and dtype as ``image``, clipped to ``[0,1]``.
    """
    if not isinstance(transform, ColourTransform):
        raise InputError(f"transform must be a ColourTransform from fit_colour_transform, got {type(transform).__name__}.")
    x = _check_image(image, "image")
    flat = _to_space(x, transform.space).movedim(-3, -1).reshape(-1, 3)
    out = transform(flat.double()).to(x.dtype).reshape(*x.shape[:-3], *x.shape[-2:], 3).movedim(-1, -3)
    return _from_space(out, transform.space).clamp(0, 1)


def _check_image(image, name: str, single: bool = False) -> torch.Tensor:
    """``[3,H,W]`` (or, unless ``single``, ``[B,3,H,W]``) float RGB in ``[0,1]``."""
    if isinstance(image, torch.Tensor) and image.dim() == 4 and not single:
        return check_images(image, name)
    return check_image(image, name)


# --------------------------------------------------------------------------------------------------- masks & warps
def face_mask(landmarks: torch.Tensor, height: int, width: int, erode: float = 0.15,
              exclude_features: bool = True) -> torch.Tensor:
    """Boolean mask of the inner face: the convex hull of the 68 landmarks, eroded, without eyes and mouth.

    Args:
        landmarks: ``[68,2]`` float pixel coordinates in the image the mask is for.
        height, width: image size.
        erode: erosion radius as a fraction of the inter-ocular distance (keeps hair and background out).
        exclude_features: also remove the eyes and the mouth (dilated by the same radius): they change with
            expression and gaze, which a colour transform must not try to explain.

    Returns:
        ``[height, width]`` bool tensor.
    """
    from scipy import ndimage
    from scipy.spatial import ConvexHull
    from skimage.draw import polygon

    lm = as_landmarks(landmarks, "landmarks", batched=False).numpy().astype(np.float64)
    iod = float(interocular(torch.from_numpy(lm)))
    r = max(1, int(round(erode * iod)))
    disk = np.hypot(*np.mgrid[-r:r + 1, -r:r + 1]) <= r

    def hull_mask(pts: np.ndarray) -> np.ndarray:
        m = np.zeros((height, width), bool)
        hull = pts[ConvexHull(pts).vertices]
        rr, cc = polygon(hull[:, 1], hull[:, 0], shape=(height, width))
        m[rr, cc] = True
        return m

    mask = ndimage.binary_erosion(hull_mask(lm), structure=disk)
    if exclude_features:
        feats = hull_mask(lm[36:42]) | hull_mask(lm[42:48]) | hull_mask(lm[48:60])
        mask &= ~ndimage.binary_dilation(feats, structure=disk)
    return torch.from_numpy(mask)


def _warp_to_photo(face: torch.Tensor, face_lm: torch.Tensor, photo_lm: torch.Tensor, height: int,
                   width: int) -> torch.Tensor:
    """Bring ``face`` ``[3,S,S]`` into the photo's geometry with the spline warp: the output ``[3,H,W]`` shows at
    ``photo_lm[i]`` what the face shows at ``face_lm[i]``."""
    out = warp_image(face[None], face_lm[None], photo_lm[None], out_size=(height, width))
    return out[0].clamp(0, 1)


def _is_grey(image: torch.Tensor, tol: float = 2e-3) -> bool:
    return bool((image - image.mean(0, keepdim=True)).abs().max() <= tol)


@dataclass
class Correction:
    """Everything :func:`correct_photo` computed.

    Attributes:
        corrected: ``[3,H,W]`` float in ``[0,1]``, the corrected photo.
        transform: the fitted :class:`ColourTransform`.
        mask: ``[H,W]`` bool, the face pixels used for fitting.
        warped_face: ``[3,H,W]`` the normalized face in the photo's geometry (meaningful inside ``mask``).
    """

    corrected: torch.Tensor
    transform: ColourTransform
    mask: torch.Tensor
    warped_face: torch.Tensor


def correct_photo(photo: torch.Tensor, photo_landmarks: torch.Tensor, normalized_face: torch.Tensor,
                  normalized_landmarks: torch.Tensor, kind: str = "auto", robust: bool = True, trim: float = 0.2,
                  erode: float = 0.15, space: str = "linear") -> Correction:
    """Correct a photo's exposure and colour to match its normalized face.

    Args:
        photo: ``[3,H,W]`` float RGB in ``[0,1]``.
        photo_landmarks: ``[68,2]`` float, the face's landmarks in photo pixels.
        normalized_face: ``[3,S,S]`` float in ``[0,1]``: the model's normalized face (canonical crop).
        normalized_landmarks: ``[68,2]`` float, its landmarks in crop pixels (the model's predicted frontal ones).
        kind: a kind of :func:`fit_colour_transform`, or ``"auto"``: ``"exposure"`` when the normalized face is grey
            (a grey-trained model knows nothing about colour, so only a luminance gain is fitted), else ``"gain"``.
        robust, trim, space: see :func:`fit_colour_transform`.
        erode: face-mask erosion, fraction of the inter-ocular distance (see :func:`face_mask`).

    Returns:
        :class:`Correction` with the corrected ``[3,H,W]`` photo in ``[0,1]``, the transform, mask and warped face.

    Raises:
        InputError: wrong shapes/ranges, or the face mask is (nearly) empty inside the photo.
    """
    photo = _check_image(photo, "photo", single=True)
    face = _check_image(normalized_face, "normalized_face", single=True)
    plm = as_landmarks(photo_landmarks, "photo_landmarks", batched=False)
    nlm = as_landmarks(normalized_landmarks, "normalized_landmarks", batched=False)
    H, W = photo.shape[-2:]
    grey_face = _is_grey(face)
    if kind == "auto":
        kind = "exposure" if grey_face else "gain"
    warped = _warp_to_photo(face.float(), nlm, plm, H, W)
    mask = face_mask(plm, H, W, erode=erode)
    if int(mask.sum()) < 50:
        raise InputError(f"only {int(mask.sum())} face pixels lie inside the photo; the landmarks may not belong to "
                         "this photo, or the face is too small (under ~20 px between the eyes).")
    src, dst = photo[:, mask].T, warped[:, mask].T
    if grey_face and not _is_grey(photo):
        if kind != "exposure":
            raise InputError(f"the normalized face is grey, so it says nothing about colour: a {kind!r} transform "
                             "cannot be fitted; use kind='exposure' (or 'auto').")
        # grey reference: match the photo's luminance to the normalized face's grey level
        lum = torch.tensor([0.2126, 0.7152, 0.0722], dtype=src.dtype)
        src_l = (_to_space(src, space) @ lum)[:, None].expand(-1, 3)
        dst_l = _to_space(dst, space)[:, :1].expand(-1, 3)
        t = fit_colour_transform(_from_space(src_l, space).contiguous(), _from_space(dst_l, space).contiguous(),
                                 "exposure", robust, trim, space=space)
    else:
        t = fit_colour_transform(src, dst, kind, robust, trim, space=space)
    return Correction(apply_colour_transform(photo, t), t, mask, warped)


# --------------------------------------------------------------------------------------------------- baselines
def grey_world(photo: torch.Tensor, mask: torch.Tensor | None = None, space: str = "linear") -> torch.Tensor:
    """Grey-world white balance (baseline): scale each channel so that its mean equals the mean of all channels.

    Args:
        photo: ``[3,H,W]`` float in ``[0,1]``.
        mask: optional ``[H,W]`` bool; the means are taken inside it.
        space: ``"linear"`` (default) or ``"srgb"``.

    Returns:
        ``[3,H,W]`` float in ``[0,1]``. Exposure (overall brightness) is unchanged up to clipping.
    """
    photo = _check_image(photo, "photo", single=True)
    _check_space(space)
    x = _to_space(photo, space)
    pix = x[:, mask] if mask is not None else x.reshape(3, -1)
    means = pix.mean(1).clamp_min(1e-6)
    gains = means.mean() / means
    return _from_space(x * gains[:, None, None], space)


def perturb_exposure_white_balance(photo: torch.Tensor, exposure_stops: float | None = None,
                                   wb_gains: Sequence[float] | None = None, seed: int = 0,
                                   max_stops: float = 1.0, wb_sigma: float = 0.15) -> tuple[torch.Tensor, dict]:
    """Apply a known exposure and white-balance change (in linear light), for testing corrections.

    Args:
        photo: ``[3,H,W]`` or ``[B,3,H,W]`` float in ``[0,1]``.
        exposure_stops: exposure change in stops (×2**stops in linear light); ``None`` draws it uniformly from
            ``[-max_stops, max_stops]`` with ``seed``.
        wb_gains: three per-channel gains; ``None`` draws them log-normally (sigma ``wb_sigma``, normalised to a
            geometric mean of 1) with ``seed``.
        seed: seed of the draws (a private ``numpy.random.Generator``; global state is untouched).

    Returns:
        The perturbed image (same shape, clipped to ``[0,1]``) and ``{"exposure_stops": float, "wb_gains": [3]}``.
    """
    photo = _check_image(photo, "photo")
    rng = np.random.default_rng(seed)
    if exposure_stops is None:
        exposure_stops = float(rng.uniform(-max_stops, max_stops))
    if wb_gains is None:
        g = np.exp(rng.normal(0.0, wb_sigma, 3))
        wb_gains = (g / np.exp(np.log(g).mean())).tolist()
    wb = torch.as_tensor(np.asarray(wb_gains, dtype=np.float64))
    if wb.shape != (3,) or not torch.all(wb > 0):
        raise InputError(f"wb_gains must be three positive numbers, got {wb_gains!r}.")
    gain = (2.0 ** float(exposure_stops)) * wb.to(photo.dtype)
    out = linear_to_srgb(srgb_to_linear(photo) * gain.view(3, 1, 1))
    return out, {"exposure_stops": float(exposure_stops), "wb_gains": [float(v) for v in wb]}


def colour_error(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, float]:
    """How far two images' colours are apart.

    Args:
        a, b: ``[3,H,W]`` float RGB in ``[0,1]`` of the same size.
        mask: optional ``[H,W]`` bool; only those pixels count.

    Returns:
        ``{"mae": mean absolute RGB difference (0-1 scale), "delta_e": mean CIEDE2000 ΔE (D65; about 1 is a
        just-noticeable difference), "delta_e76": mean CIE76 ΔE (Euclidean in CIELAB; ~2.3 just noticeable)}``.
    """
    from skimage.color import deltaE_cie76, deltaE_ciede2000, rgb2lab

    a = _check_image(a, "a", single=True)
    b = _check_image(b, "b", single=True)
    if a.shape != b.shape:
        raise InputError(f"a {tuple(a.shape)} and b {tuple(b.shape)} must have the same shape.")
    if mask is not None:
        mask = torch.as_tensor(mask, dtype=torch.bool)
        if mask.shape != a.shape[-2:]:
            raise InputError(f"mask must be [H,W] = {tuple(a.shape[-2:])}, got {tuple(mask.shape)}.")
        if not mask.any():
            raise InputError("mask selects no pixels.")
        pa, pb = a[:, mask].T, b[:, mask].T
    else:
        pa, pb = a.reshape(3, -1).T, b.reshape(3, -1).T
    mae = float((pa - pb).abs().mean())
    la = rgb2lab(pa.detach().double().clamp(0, 1).numpy()[None])
    lb = rgb2lab(pb.detach().double().clamp(0, 1).numpy()[None])
    return {"mae": mae, "delta_e": float(deltaE_ciede2000(la, lb).mean()), "delta_e76": float(deltaE_cie76(la, lb).mean())}

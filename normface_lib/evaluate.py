"""Evaluation of normalized faces: identity preservation, baselines, invariance, landmark error, robustness and
ablations (the numbers of notebook 03 and ``results/<profile>/metrics.json``).

Everything here computes; notebooks only narrate and plot.

Protocol (what :func:`evaluate_model` measures):

* **Judges.** Every identity metric is computed with two frozen encoders: the one the decoder was trained against
  (its identity loss saw it) and an *independent* one that never took part in training (:func:`independent_judge`:
  ``dlib-resnet`` for FaceNet-trained decoders, ``facenet-casia`` for a dlib-trained one). The headline numbers use
  the independent judge.
* **Thresholds.** Each judge's same-person threshold is calibrated at a 5 % false-accept rate on the *training
  people's real photos* (:func:`calibrate_threshold`); held-out people are never used to choose anything.
* **Identity preservation.** For every held-out input photo: the judge distance between the input and its output,
  whether it is below the threshold, and rank-1 identification of the person from the *output alone* against a gallery
  of real photos (:func:`rank1`): for unseen people, the same people's other photos (chance = 1 / #people); for unseen
  photos of training people, the training photos of the training people.
* **Conditions.** ``clean``: the photos as they are. ``hard``: the same photos with an occluder, a strong left-right
  light gradient and a heavy blur (:func:`perturb` ``kind="hard"``); distances are measured to the *clean* input,
  and the rank-1 gallery stays clean.
* **Baselines** (same metrics): ``mean_face`` (the mean training texture on the mean shape, the same output for
  everyone), ``nearest_identity`` (the target face of the nearest training person in encoder-feature space),
  ``linear`` (ridge regression from encoder features to target pixels, ridge chosen by cross-validation over
  training people), ``align_only`` (the input itself registered onto the mean shape: the warping-based frontalization
  family of Hassner et al.; it gets the clean photo's landmarks even under ``hard``, an advantage a real frontalizer
  would not have).
* **Uncertainty.** 95 % bootstrap intervals over people (:func:`bootstrap_ci`, seeded).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError, MissingWeightsError

#: Methods compared in ``clean`` / ``hard`` (in table order).
METHODS = ("normface", "mean_face", "nearest_identity", "linear", "align_only")
#: Identity metrics reported per method.
IDENTITY_METRICS = ("rank1", "frac_below_threshold", "mean_distance")
#: Perturbation kinds understood by :func:`perturb`.
PERTURBATIONS = ("occluder", "light", "blur", "grey", "rotation", "hard")
#: Default strength per kind (see :func:`perturb` for the units).
DEFAULT_STRENGTH = {"occluder": 0.15, "light": 0.8, "blur": 0.04, "grey": 1.0, "rotation": 30.0, "hard": 1.0}
#: The three parts of ``hard`` at strength 1: occluder area fraction, light-gradient amplitude, blur sigma / side.
HARD_PARTS = {"occluder": 0.15, "light": 0.8, "blur": 0.04}
#: FaceNet paper's same-identity threshold (a different 128-D network), shown for reference only.
FACENET_PAPER_THRESHOLD = 1.242
#: Other encoders named in the paper's feature ablation; used only if their weights are present.
OPTIONAL_ENCODERS = ("vggface", "facenet-vggface2")


# ============================================================================================== checks
def _check_2d(x, name: str, rows: int | None = None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or not x.is_floating_point():
        raise InputError(f"{name} must be a float tensor [N,E], got "
                         f"{type(x).__name__ if not isinstance(x, torch.Tensor) else (tuple(x.shape), x.dtype)}.")
    if rows is not None and x.shape[0] != rows:
        raise InputError(f"{name} has {x.shape[0]} rows, expected {rows} (one per photo).")
    if not torch.isfinite(x).all():
        raise InputError(f"{name} contains NaN or inf values.")
    return x


def _check_labels(labels, name: str, n: int) -> torch.Tensor:
    labels = torch.as_tensor(labels)
    if labels.dim() != 1 or labels.shape[0] != n or labels.is_floating_point():
        raise InputError(f"{name} must be an integer tensor [{n}] (one label per row), got "
                         f"{tuple(labels.shape)} {labels.dtype}.")
    return labels.long()


def _check_images(images, name: str = "images") -> torch.Tensor:
    from .utils import check_images
    return check_images(images, name)


# ============================================================================================== distances
def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``a`` ``[N,E]`` and ``b`` ``[M,E]`` (float): ``[N,M]`` float64 ≥ 0."""
    a = _check_2d(a, "a").double()
    b = _check_2d(b, "b").double()
    if a.shape[1] != b.shape[1]:
        raise InputError(f"a and b must have the same width, got {a.shape[1]} and {b.shape[1]}.")
    return torch.cdist(a, b).clamp_min(0)


def calibrate_threshold(embeddings: torch.Tensor, person, far: float = 0.05) -> float:
    """Same-person threshold at a given false-accept rate.

    Among all pairs ``i < j`` of *different* people, the distances are sorted ``d_(0) ≤ d_(1) ≤ … ≤ d_(n-1)``; the
    threshold is ``d_(k)`` with ``k = floor(far · n)``, so that at most a fraction ``far`` of different-person pairs
    lies strictly below it (exactly ``far`` when ``far · n`` is an integer and distances are distinct).

    Args:
        embeddings: ``[N,E]`` float, the judge's L2-normalised embeddings of real photos (use training people only).
        person: ``[N]`` integer identity labels.
        far: false-accept rate in ``(0, 1)``.

    Returns:
        The threshold (a Python float ≥ 0; in ``[0, 2]`` for unit embeddings).

    Raises:
        InputError: bad shapes, ``far`` outside ``(0, 1)``, or fewer than 2 people.
    """
    emb = _check_2d(embeddings, "embeddings")
    person = _check_labels(person, "person", emb.shape[0])
    if not 0 < far < 1:
        raise InputError(f"far must be a false-accept rate in (0, 1), got {far}.")
    if person.unique().numel() < 2:
        raise InputError("calibrate_threshold needs photos of at least 2 different people.")
    d = pairwise_distances(emb, emb)
    i, j = torch.triu_indices(emb.shape[0], emb.shape[0], offset=1)
    diff = person[i] != person[j]
    neg = d[i[diff], j[diff]].sort().values
    k = min(int(math.floor(far * neg.numel())), neg.numel() - 1)
    return float(neg[k])


def verification_rates(embeddings: torch.Tensor, person, threshold: float) -> dict[str, float]:
    """Fractions of same-person pairs (true accepts) and different-person pairs (false accepts) whose distance is
    below ``threshold``. ``embeddings`` ``[N,E]`` float, ``person`` ``[N]`` int. Returns ``{"tar", "far"}`` in [0,1]."""
    emb = _check_2d(embeddings, "embeddings")
    person = _check_labels(person, "person", emb.shape[0])
    d = pairwise_distances(emb, emb)
    i, j = torch.triu_indices(emb.shape[0], emb.shape[0], offset=1)
    same = person[i] == person[j]
    below = d[i, j] < threshold
    tar = float(below[same].double().mean()) if same.any() else float("nan")
    far = float(below[~same].double().mean()) if (~same).any() else float("nan")
    return {"tar": tar, "far": far}


def rank1(query: torch.Tensor, query_person, gallery: torch.Tensor, gallery_person,
          exclude=None) -> torch.Tensor:
    """Rank-1 identification: is the nearest gallery photo of the query's person?

    Args:
        query: ``[N,E]`` float embeddings (e.g. of normalized outputs).
        query_person: ``[N]`` int labels of the queries' true people.
        gallery: ``[G,E]`` float embeddings of real photos; gallery_person ``[G]`` int labels.
        exclude: optional ``[N]`` long: for query ``i``, the gallery row ``exclude[i]`` is left out (the photo the
            query was made from); ``-1`` leaves nothing out.

    Returns:
        ``[N]`` bool, True where the nearest remaining gallery photo shows the query's person (ties: the lower index).
    """
    q = _check_2d(query, "query")
    g = _check_2d(gallery, "gallery")
    qp = _check_labels(query_person, "query_person", q.shape[0])
    gp = _check_labels(gallery_person, "gallery_person", g.shape[0])
    d = pairwise_distances(q, g)
    if exclude is not None:
        ex = _check_labels(exclude, "exclude", q.shape[0])
        if (ex >= g.shape[0]).any() or (ex < -1).any():
            raise InputError(f"exclude values must be gallery rows in [0, {g.shape[0] - 1}] or -1.")
        rows = torch.nonzero(ex >= 0).flatten()
        d[rows, ex[rows]] = float("inf")
    return gp[d.argmin(dim=1)] == qp


# ============================================================================================== bootstrap
def bootstrap_ci(values, groups, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values``, resampling *groups* (people) with replacement.

    Each replicate draws as many groups as there are, with replacement, and takes the mean over all rows of the drawn
    groups (a group drawn twice counts twice). Same arguments → same interval.

    Args:
        values: ``[N]`` float (or bool) per-row values.
        groups: ``[N]`` int group (person) labels.
        n_boot: number of replicates (≥ 1).
        level: coverage in (0, 1).
        seed: seed of the resampling.

    Returns:
        ``(lo, hi)`` floats.
    """
    v = torch.as_tensor(values).double().flatten()
    if v.numel() == 0:
        raise InputError("bootstrap_ci needs at least one value.")
    if not torch.isfinite(v).all():
        raise InputError("bootstrap_ci values contain NaN or inf.")
    g = _check_labels(groups, "groups", v.numel())
    if n_boot < 1 or not 0 < level < 1:
        raise InputError(f"n_boot must be ≥ 1 and level in (0,1), got {n_boot}, {level}.")
    _, gi = g.unique(return_inverse=True)
    P = int(gi.max()) + 1
    sums = torch.zeros(P, dtype=torch.float64).index_add_(0, gi, v)
    counts = torch.zeros(P, dtype=torch.float64).index_add_(0, gi, torch.ones_like(v))
    gen = torch.Generator().manual_seed(int(seed))
    idx = torch.randint(0, P, (n_boot, P), generator=gen)
    boot = (sums[idx].sum(1) / counts[idx].sum(1)).numpy()
    a = (1 - level) / 2
    return float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))


def summarize(values, groups, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """``{"mean": float, "ci": [lo, hi]}`` of per-row ``values`` ``[N]`` with a people bootstrap (see
    :func:`bootstrap_ci`)."""
    v = torch.as_tensor(values).double().flatten()
    lo, hi = bootstrap_ci(v, groups, n_boot=n_boot, level=level, seed=seed)
    return {"mean": float(v.mean()), "ci": [lo, hi]}


# ============================================================================================== perturbations
def _gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return images
    r = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=images.dtype, device=images.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    C = images.shape[1]
    r_h = min(r, images.shape[-1] - 1)
    r_v = min(r, images.shape[-2] - 1)
    out = F.pad(images, (r_h, r_h, 0, 0), mode="reflect") if r_h == r else F.pad(images, (r, r, 0, 0), mode="replicate")
    out = F.conv2d(out, k.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = F.pad(out, (0, 0, r_v, r_v), mode="reflect") if r_v == r else F.pad(out, (0, 0, r, r), mode="replicate")
    return F.conv2d(out, k.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def perturb(images: torch.Tensor, kind: str, strength: float | None = None, seed: int = 0) -> torch.Tensor:
    """Degrade face crops the way the paper's robustness figures do.

    Args:
        images: ``[B,3,H,W]`` float in ``[0,1]`` (canonical crops).
        kind: one of :data:`PERTURBATIONS`:

            * ``"occluder"``: a flat rectangle, grey (0.5) or black at random, covering a fraction ``strength`` of the
              image area (aspect ratio in [0.5, 2]; centre uniform in the central 40 % of the crop);
            * ``"light"``: a strong left-right light gradient: pixel values are multiplied by
              ``1 ± strength · (2x/W − 1)`` (direction at random), then clipped; ``strength`` ∈ [0, 1];
            * ``"blur"``: Gaussian blur with sigma = ``strength`` × image width;
            * ``"grey"``: blend with the luminance (0.299 R + 0.587 G + 0.114 B); ``strength`` 1 = fully grey;
            * ``"rotation"``: in-plane rotation about the centre by ``strength`` degrees, sign at random (border
              pixels repeated);
            * ``"hard"``: occluder (area 0.15·s), then light gradient (0.8·s, at most 1), then blur (0.04·s),
              with ``s = strength``.
        strength: see above; ``None`` = :data:`DEFAULT_STRENGTH` of the kind.
        seed: seeds every random choice (per image: position, size, colour, direction, sign).

    Returns:
        ``[B,3,H,W]`` float32 in ``[0,1]``; the input is not modified. Same arguments → same output.
    """
    images = _check_images(images)
    if kind not in PERTURBATIONS:
        raise InputError(f"unknown perturbation {kind!r}; choose one of {', '.join(PERTURBATIONS)}.")
    s = float(DEFAULT_STRENGTH[kind] if strength is None else strength)
    if not math.isfinite(s) or s < 0:
        raise InputError(f"strength must be a finite number ≥ 0, got {strength!r}.")
    x = images.detach().float().clone()
    B, _, H, W = x.shape
    gen = torch.Generator().manual_seed(int(seed))
    if kind == "hard":
        x = perturb(x, "occluder", HARD_PARTS["occluder"] * s, seed)
        x = perturb(x, "light", min(1.0, HARD_PARTS["light"] * s), seed + 1)
        return perturb(x, "blur", HARD_PARTS["blur"] * s, seed + 2)
    if kind == "occluder":
        if s > 0.8:
            raise InputError(f"occluder strength is the covered fraction of the image, at most 0.8; got {s}.")
        for b in range(B):
            aspect = float(torch.empty(1).uniform_(math.log(0.5), math.log(2.0), generator=gen).exp())
            w = min(W, max(1, int(round(math.sqrt(s * aspect) * W))))
            h = min(H, max(1, int(round(math.sqrt(s / aspect) * H))))
            cx = float(torch.empty(1).uniform_(0.3, 0.7, generator=gen)) * W
            cy = float(torch.empty(1).uniform_(0.3, 0.7, generator=gen)) * H
            colour = 0.5 if bool(torch.rand(1, generator=gen) < 0.5) else 0.0
            x0 = int(min(max(round(cx - w / 2), 0), W - w))
            y0 = int(min(max(round(cy - h / 2), 0), H - h))
            if s > 0:
                x[b, :, y0:y0 + h, x0:x0 + w] = colour
        return x
    if kind == "light":
        if s > 1:
            raise InputError(f"light strength is the gradient amplitude in [0, 1], got {s}.")
        direction = torch.where(torch.rand(B, generator=gen) < 0.5, -1.0, 1.0).view(B, 1, 1, 1)
        ramp = (2 * (torch.arange(W, dtype=torch.float32) + 0.5) / W - 1).view(1, 1, 1, W)
        return (x * (1 + s * direction * ramp)).clamp(0, 1)
    if kind == "blur":
        return _gaussian_blur(x, s * W).clamp(0, 1)
    if kind == "grey":
        if s > 1:
            raise InputError(f"grey strength is the blend weight in [0, 1], got {s}.")
        y = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand(-1, 3, -1, -1)
        return ((1 - s) * x + s * y).clamp(0, 1)
    # rotation
    sign = torch.where(torch.rand(B, generator=gen) < 0.5, -1.0, 1.0)
    a = sign * math.radians(s)
    cos, sin = torch.cos(a), torch.sin(a)
    theta = torch.stack([torch.stack([cos, -sin * H / W, torch.zeros(B)], 1),
                         torch.stack([sin * W / H, cos, torch.zeros(B)], 1)], 1)
    grid = F.affine_grid(theta, [B, 3, H, W], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).clamp(0, 1)


# ============================================================================================== baselines
def real_rows(table) -> torch.Tensor:
    """``[N]`` bool: rows of a :class:`~normface_lib.data.FaceTable` that are real input photos (not mirrored, and in
    ``input_mask``)."""
    mirrored = torch.tensor([str(i).endswith("+m") for i in table.photo_ids], dtype=torch.bool)
    return table.input_mask.bool() & ~mirrored


def base_person(table) -> torch.Tensor:
    """``[N]`` long: each row's person with mirror images merged (``"orl/s3+m"`` counts as ``"orl/s3"``)."""
    names = [p[:-2] if p.endswith("+m") else p for p in table.people]
    uniq = sorted(set(names), key=names.index)
    idx = torch.tensor([uniq.index(n) for n in names], dtype=torch.long)
    return idx[table.person]


def mean_face(table) -> torch.Tensor:
    """The mean-face baseline: the mean of the training targets' textures, rendered on the mean shape.

    Textures live in the mean-shape frame, so rendering on the mean shape is the identity warp: the result is the
    mean texture. ``table``: the training :class:`~normface_lib.data.FaceTable`. Returns ``[3,S,S]`` float32 in [0,1].
    """
    return table.target_textures.float().mean(0).clamp(0, 1)


def _standardize(features: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (features.double() - mean) / std


class NearestIdentity:
    """Nearest-training-identity baseline: the target face of the training person whose mean (standardised) encoder
    feature is closest (L2) to the query's.

    Args:
        features: ``[N,D]`` float encoder features of the training inputs.
        person: ``[N]`` int person index of each row (mirrored people are people of their own, with mirrored targets).
        target_images: ``[P,3,S,S]`` float in [0,1], each person's target photo (canonical crop).
        target_landmarks: optional ``[P,68,2]`` float, each person's target landmarks (crop pixels).
    """

    def __init__(self, features: torch.Tensor, person, target_images: torch.Tensor,
                 target_landmarks: torch.Tensor | None = None):
        f = _check_2d(features, "features")
        p = _check_labels(person, "person", f.shape[0])
        P = target_images.shape[0]
        if int(p.max()) >= P:
            raise InputError(f"person labels go up to {int(p.max())} but there are {P} target images.")
        self.mean = f.double().mean(0)
        self.std = f.double().std(0, unbiased=False).clamp_min(1e-6)
        z = _standardize(f, self.mean, self.std)
        counts = torch.zeros(P, dtype=torch.float64).index_add_(0, p, torch.ones(f.shape[0], dtype=torch.float64))
        if (counts == 0).any():
            raise InputError("every person needs at least one training row.")
        self.centroids = torch.zeros(P, f.shape[1], dtype=torch.float64).index_add_(0, p, z) / counts[:, None]
        self.target_images = target_images.float()
        self.target_landmarks = None if target_landmarks is None else target_landmarks.float()

    def nearest(self, features: torch.Tensor) -> torch.Tensor:
        """``[B]`` long: index of the nearest training person for each query feature row ``[B,D]``."""
        z = _standardize(_check_2d(features, "features"), self.mean, self.std)
        return torch.cdist(z, self.centroids).argmin(1)

    def __call__(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"image": [B,3,S,S] float32 in [0,1], "landmarks": [B,68,2] or None, "person": [B] long}``."""
        k = self.nearest(features)
        lm = None if self.target_landmarks is None else self.target_landmarks[k]
        return {"image": self.target_images[k], "landmarks": lm, "person": k}


class LinearMap:
    """Linear baseline: ridge regression from standardised encoder features to the target face's pixels (and
    landmarks), closed form in the dual (``N × N``) in float64.

    The ridge ``λ`` is chosen among ``lambdas`` (multiples of the feature dimension ``D``) by grouped K-fold
    cross-validation over *training people* (mirror images grouped with their originals), on the L1 error of the
    predicted pixels; held-out people are never seen.

    Args:
        features: ``[N,D]`` float training features.
        targets: ``[N,3,S,S]`` float in [0,1], each row's target face (canonical crop).
        groups: ``[N]`` int, the person of each row for the cross-validation folds.
        target_landmarks: optional ``[N,68,2]`` target landmarks, predicted with the same ridge.
        lambdas: candidate ridges as multiples of ``D``.
        folds: number of cross-validation folds over people.
        seed: seeds the assignment of people to folds.
    """

    def __init__(self, features: torch.Tensor, targets: torch.Tensor, groups, target_landmarks=None,
                 lambdas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0), folds: int = 4, seed: int = 0):
        f = _check_2d(features, "features")
        N, D = f.shape
        if targets.shape[0] != N:
            raise InputError(f"targets has {targets.shape[0]} rows but features has {N}.")
        g = _check_labels(groups, "groups", N)
        self.shape = tuple(targets.shape[1:])
        self.mean = f.double().mean(0)
        self.std = f.double().std(0, unbiased=False).clamp_min(1e-6)
        X = _standardize(f, self.mean, self.std)
        Y = targets.reshape(N, -1).double()
        self.n_pix = Y.shape[1]
        if target_landmarks is not None:
            Y = torch.cat([Y, target_landmarks.reshape(N, -1).double()], 1)
        self.has_landmarks = target_landmarks is not None
        uniq = g.unique()
        order = uniq[torch.randperm(uniq.numel(), generator=torch.Generator().manual_seed(int(seed)))]
        fold_of = {int(p): k % folds for k, p in enumerate(order.tolist())}
        fold = torch.tensor([fold_of[int(p)] for p in g])
        self.cv_error = {}
        for lam in lambdas:
            err = 0.0
            for k in range(folds):
                tr, te = fold != k, fold == k
                if not te.any() or not tr.any():
                    continue
                w = self._fit(X[tr], Y[tr], lam * D)
                pred = self._apply(X[te], *w)[:, :self.n_pix].clamp(0, 1)
                err += float((pred - Y[te, :self.n_pix]).abs().sum())
            self.cv_error[float(lam)] = err / (N * self.n_pix)
        self.lam = min(self.cv_error, key=self.cv_error.get)
        self.weights = self._fit(X, Y, self.lam * D)

    @staticmethod
    def _fit(X, Y, lam):
        xm, ym = X.mean(0), Y.mean(0)
        Xc, Yc = X - xm, Y - ym
        K = Xc @ Xc.T
        alpha = torch.linalg.solve(K + lam * torch.eye(K.shape[0], dtype=K.dtype), Yc)
        return Xc.T @ alpha, xm, ym

    @staticmethod
    def _apply(X, W, xm, ym):
        return (X - xm) @ W + ym

    def __call__(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"image": [B,3,S,S] float32 in [0,1], "landmarks": [B,68,2] or None}`` for features ``[B,D]``."""
        z = _standardize(_check_2d(features, "features"), self.mean, self.std)
        out = self._apply(z, *self.weights)
        img = out[:, :self.n_pix].clamp(0, 1).float().reshape(-1, *self.shape)
        lm = out[:, self.n_pix:].float().reshape(-1, 68, 2) if self.has_landmarks else None
        return {"image": img, "landmarks": lm}


def align_only(images: torch.Tensor, landmarks: torch.Tensor, mean_shape: torch.Tensor) -> torch.Tensor:
    """Align-only baseline (the warping-based frontalization family): each input crop registered onto the mean shape.

    Args:
        images: ``[B,3,S,S]`` float in [0,1]; landmarks ``[B,68,2]`` crop pixels; mean_shape ``[68,2]`` crop pixels.

    Returns:
        ``[B,3,S,S]`` float32 in [0,1].
    """
    from .preprocessing import register_textures
    return register_textures(_check_images(images).float(), landmarks.float(), mean_shape.float())


# ============================================================================================== invariance, landmarks
def embedding_spread(embeddings: torch.Tensor, person) -> torch.Tensor:
    """Per person, the mean distance of its photos' embeddings ``[N,E]`` to the person's mean embedding.

    Returns ``[P]`` float64 (people in sorted label order) ≥ 0; lower = more invariant."""
    e = _check_2d(embeddings, "embeddings").double()
    p = _check_labels(person, "person", e.shape[0])
    out = []
    for q in p.unique().tolist():
        x = e[p == q]
        out.append((x - x.mean(0)).norm(dim=1).mean())
    return torch.stack(out)


def pixel_spread(images: torch.Tensor, person) -> torch.Tensor:
    """Per person, the per-pixel standard deviation over its photos ``[N,3,S,S]`` (aligned crops), averaged over
    pixels and channels. Returns ``[P]`` float64 ≥ 0 (people in sorted label order)."""
    x = _check_images(images).double()
    p = _check_labels(person, "person", x.shape[0])
    return torch.stack([x[p == q].std(0, unbiased=False).mean() for q in p.unique().tolist()])


def interocular(landmarks: torch.Tensor) -> torch.Tensor:
    """Distance between the eye centres (means of points 36–41 and 42–47) of ``[N,68,2]`` landmarks: ``[N]``."""
    if not isinstance(landmarks, torch.Tensor) or landmarks.dim() != 3 or tuple(landmarks.shape[1:]) != (68, 2):
        raise InputError(f"landmarks must be [N,68,2], got {tuple(getattr(landmarks, 'shape', ()))}.")
    return (landmarks[:, 36:42].mean(1) - landmarks[:, 42:48].mean(1)).norm(dim=1)


def landmark_error(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean point-to-point error of ``pred`` vs ``target`` (both ``[N,68,2]`` float, same pixels), normalised by the
    target's inter-ocular distance (eye centres). Returns ``[N]`` float64 ≥ 0 (0.1 = 10 % of the eye distance)."""
    if not isinstance(pred, torch.Tensor) or pred.shape != getattr(target, "shape", None):
        raise InputError(f"pred and target must be tensors of the same shape [N,68,2], got "
                         f"{tuple(getattr(pred, 'shape', ()))} and {tuple(getattr(target, 'shape', ()))}.")
    iod = interocular(target.double())
    if (iod <= 0).any():
        raise InputError("target landmarks with coincident eyes: inter-ocular distance is 0.")
    return (pred.double() - target.double()).norm(dim=2).mean(1) / iod


# ============================================================================================== encoders and judges
def independent_judge(trained_encoder: str) -> str:
    """The offline encoder that did not take part in training a decoder trained against ``trained_encoder``."""
    return "facenet-casia" if trained_encoder == "dlib-resnet" else "dlib-resnet"


def _encoder_key(encoder) -> str:
    return f"{encoder.name}-{encoder.layer or 'default'}".replace("/", "_")


@torch.no_grad()
def embed(encoder, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """L2-normalised embeddings ``[N,E]`` float32 (CPU) of canonical crops ``[N,3,S,S]`` in [0,1], in batches."""
    if images.shape[0] == 0:
        return torch.zeros(0, encoder.embed_dim)
    dev = next(encoder.parameters()).device
    return torch.cat([encoder.embed(images[i:i + batch].to(dev)).float().cpu() for i in range(0, len(images), batch)])


@torch.no_grad()
def features(encoder, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Encoder features ``[N,D]`` float32 (CPU) of canonical crops ``[N,3,S,S]`` in [0,1], in batches."""
    dev = next(encoder.parameters()).device
    return torch.cat([encoder.features(images[i:i + batch].to(dev)).float().cpu() for i in range(0, len(images), batch)])


@torch.no_grad()
def decode(decoder, feats: torch.Tensor, batch: int = 64) -> dict[str, torch.Tensor]:
    """Run a decoder in eval mode on features ``[N,D]``: ``{"image": [N,3,S,S], "landmarks": [N,68,2]}`` (CPU)."""
    was = decoder.training
    decoder.eval()
    dev = next(decoder.parameters()).device
    imgs, lms = [], []
    for i in range(0, feats.shape[0], batch):
        out = decoder(feats[i:i + batch].to(dev))
        imgs.append(out["image"].float().cpu())
        lms.append(out["landmarks"].float().cpu())
    decoder.train(was)
    return {"image": torch.cat(imgs), "landmarks": torch.cat(lms)}


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
        return embed(self.encoder, images)


def make_judge(encoder, train_table, far: float = 0.05) -> Judge:
    """Calibrate ``encoder``'s threshold at false-accept rate ``far`` on the training people's real photos (mirror
    images left out). Embeddings of the training table are cached (:func:`normface_lib.train.cached_features`)."""
    from .train import cached_features
    emb = cached_features(encoder, _encoder_key(encoder), train_table)["embeddings"]
    rows = real_rows(train_table)
    p = base_person(train_table)[rows]
    thr = calibrate_threshold(emb[rows], p, far)
    return Judge(encoder.name, encoder, thr, far, verification_rates(emb[rows], p, thr)["tar"])


# ============================================================================================== one evaluation
class Baselines:
    """The four baselines fitted on a training table with the decoder's encoder features.

    Args:
        train_table: the training :class:`~normface_lib.data.FaceTable` (mirrored rows are used for fitting).
        train_features: ``[N,D]`` float encoder features of its rows.
        seed: seeds the linear map's cross-validation folds.
    """

    def __init__(self, train_table, train_features: torch.Tensor, seed: int = 0):
        t = train_table
        self.mean_shape = t.mean_shape.float()
        self.mean_image = mean_face(t)
        targets = t.images[t.target_row]
        self.nearest = NearestIdentity(train_features, t.person, targets, t.target_landmarks)
        self.linear = LinearMap(train_features, targets[t.person], base_person(t), t.target_landmarks[t.person],
                                seed=seed)

    def outputs(self, feats: torch.Tensor, images: torch.Tensor, landmarks: torch.Tensor) -> dict[str, dict]:
        """Baseline outputs for inputs (features ``[B,D]``, crops ``[B,3,S,S]``, their landmarks ``[B,68,2]``, used
        by align-only): method → ``{"image": [B,3,S,S], "landmarks": [B,68,2] or None}``."""
        B = feats.shape[0]
        return {
            "mean_face": {"image": self.mean_image[None].expand(B, -1, -1, -1),
                          "landmarks": self.mean_shape[None].expand(B, -1, -1)},
            "nearest_identity": self.nearest(feats),
            "linear": self.linear(feats),
            "align_only": {"image": align_only(images, landmarks, self.mean_shape), "landmarks": None},
        }


def _identity_block(judge: Judge, ref_emb: torch.Tensor, out_emb: torch.Tensor, person: torch.Tensor,
                    gallery_emb: torch.Tensor, gallery_person: torch.Tensor, exclude: torch.Tensor | None,
                    n_boot: int, seed: int) -> tuple[dict, dict, dict]:
    """(point metrics, CIs, per-row values) for one method under one judge."""
    dist = (out_emb.double() - ref_emb.double()).norm(dim=1)
    below = (dist < judge.threshold).double()
    correct = rank1(out_emb, person, gallery_emb, gallery_person, exclude).double()
    rows = {"rank1": correct, "frac_below_threshold": below, "mean_distance": dist}
    point = {k: float(v.mean()) for k, v in rows.items()}
    ci = {k: list(bootstrap_ci(v, person, n_boot=n_boot, seed=seed)) for k, v in rows.items()}
    return point, ci, rows


def _unique_embed(judge: Judge, images: torch.Tensor) -> torch.Tensor:
    """Embed a batch that may be one image repeated (mean face) without recomputing it B times."""
    if images.shape[0] > 1 and images.stride(0) == 0:
        return judge.embed(images[:1].contiguous()).expand(images.shape[0], -1)
    return judge.embed(images)


def evaluate_split(model, baselines: Baselines, images: torch.Tensor, landmarks: torch.Tensor, person: torch.Tensor,
                   judges: Mapping[str, Judge], gallery: Mapping[str, torch.Tensor], gallery_person: torch.Tensor,
                   exclude: torch.Tensor | None, conditions: Sequence[str] = ("clean", "hard"), seed: int = 0,
                   n_boot: int = 1000, target_landmarks: torch.Tensor | None = None,
                   methods: Sequence[str] = METHODS, details: bool = False) -> dict:
    """Identity metrics of every method on a set of held-out photos, for each condition and judge.

    Args:
        model: a :class:`~normface_lib.model.NormFace` (``.decoder``, ``.encoder``).
        baselines: fitted :class:`Baselines` (None: only ``methods=("normface",)``).
        images: ``[N,3,S,S]`` float in [0,1] clean input crops; landmarks ``[N,68,2]``; person ``[N]`` long.
        judges: name → :class:`Judge`.
        gallery: judge name → ``[G,E]`` embeddings of the clean gallery photos (None: the clean inputs themselves);
            gallery_person ``[G]`` long.
        exclude: ``[N]`` long gallery row of each input photo itself (left out of its rank-1 search), or None.
        conditions: subset of ``("clean", "hard")``.
        target_landmarks: ``[N,68,2]`` the frontal targets' landmarks, for the landmark error (clean only).
        methods: subset of :data:`METHODS`.
        details: keep per-row values and output images in the result (under ``"_details"``): per condition
            ``inputs``, ``outputs`` (method → images), per judge and method the ``[N]`` rows of each metric, per
            judge ``spread`` (``input``/``normface`` ``[P]``), ``pixel_spread`` (``[P]``); ``landmarks`` (method →
            ``[N]`` errors, clean).

    Returns:
        ``{condition: {judge: {"metrics": {method: {metric: float}}, "ci": {method: {metric: [lo, hi]}}}}``, plus
        ``"invariance"`` per condition and judge, ``"landmarks"`` (clean), and ``"_details"`` when asked.
    """
    res: dict = {}
    det: dict = {}
    ref = {j: judge.embed(images) for j, judge in judges.items()}
    if gallery is None:  # the inputs are their own gallery (each left out of its own search via ``exclude``)
        gallery = ref
    for cond in conditions:
        x = images if cond == "clean" else perturb(images, "hard", seed=seed + 1000)
        feats = features(model.encoder, x)
        outs = {"normface": decode(model.decoder, feats)}
        if baselines is not None:
            outs.update(baselines.outputs(feats, x, landmarks))
        elif set(methods) - {"normface"}:
            raise InputError("baselines=None only allows methods=('normface',).")
        res[cond] = {}
        det[cond] = {"inputs": x, "outputs": {m: outs[m]["image"] for m in methods}}
        for j, judge in judges.items():
            block = {"metrics": {}, "ci": {}}
            det[cond][j] = {}
            emb_out = {}
            for m in methods:
                emb_out[m] = _unique_embed(judge, outs[m]["image"])
                point, ci, rows = _identity_block(judge, ref[j], emb_out[m], person, gallery[j], gallery_person,
                                                  exclude, n_boot, seed)
                block["metrics"][m], block["ci"][m] = point, ci
                det[cond][j][m] = rows
            emb_in = ref[j] if cond == "clean" else judge.embed(x)
            s_in, s_out = embedding_spread(emb_in, person), embedding_spread(emb_out["normface"], person)
            det[cond][j]["spread"] = {"input": s_in, "normface": s_out}
            block["invariance"] = {"spread_in": float(s_in.mean()), "spread_out": float(s_out.mean()),
                                   "spread_in_ci": list(bootstrap_ci(s_in, torch.arange(len(s_in)), n_boot, seed=seed)),
                                   "spread_out_ci": list(bootstrap_ci(s_out, torch.arange(len(s_out)), n_boot,
                                                                      seed=seed))}
            res[cond][j] = block
        pin, pout = pixel_spread(x, person), pixel_spread(outs["normface"]["image"], person)
        res[cond]["pixel_spread"] = {"input": float(pin.mean()), "normface": float(pout.mean())}
        det[cond]["pixel_spread"] = {"input": pin, "normface": pout}
        if cond == "clean" and target_landmarks is not None:
            lm = {}
            for m in ("normface", "mean_face", "nearest_identity", "linear"):
                if m in outs and outs[m].get("landmarks") is not None:
                    e = landmark_error(outs[m]["landmarks"], target_landmarks)
                    lm[m] = summarize(e, person, n_boot, seed)
                    det.setdefault("landmarks", {})[m] = e
            res["landmarks"] = lm
    if details:
        det["person"] = person
        res["_details"] = det
    return res


def _round(obj, nd: int = 4):
    if isinstance(obj, float):
        return round(obj, nd)
    if isinstance(obj, dict):
        return {k: _round(v, nd) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_round(v, nd) for v in obj]
    return obj


def load_eval_tables(size: int, seed: int = 0) -> dict:
    """``{"train", "unseen_people", "unseen_photos"}`` ORL tables at crop side ``size`` (training mirrored, held-out
    tables with the training mean shape), as :func:`normface_lib.train.train` builds them."""
    from . import data
    train_t = data.load_orl_table("train", size=size, mirror=True, seed=seed)
    return {"train": train_t,
            "unseen_people": data.load_orl_table("unseen_people", size=size, mirror=False,
                                                 mean_shape=train_t.mean_shape, seed=seed),
            "unseen_photos": data.load_orl_table("unseen_photos", size=size, mirror=False,
                                                 mean_shape=train_t.mean_shape, seed=seed)}


def evaluate_model(model, tables: Mapping[str, Any], profile: str = "quick", seed: int = 0, n_boot: int = 1000,
                   far: float = 0.05, lfw=None, judges: Mapping[str, Judge] | None = None,
                   details: bool = False) -> dict:
    """The full evaluation of a trained model (the ``metrics.json`` of notebook 03, minus the ablations).

    Args:
        model: :class:`~normface_lib.model.NormFace` (decoder + the encoder it was trained against).
        tables: ``{"train", "unseen_people"[, "unseen_photos"]}`` FaceTables (:func:`load_eval_tables`).
        profile: profile name recorded in the result.
        seed: seeds the perturbations, the bootstrap and the linear baseline's folds.
        n_boot: bootstrap replicates.
        far: false-accept rate of the calibrated thresholds.
        lfw: optional :class:`~normface_lib.data.FaceSet` of wild faces (identity unknown): distances only.
        judges: prebuilt judges (name → :class:`Judge`); default: the trained encoder and :func:`independent_judge`.
        details: also return per-row values and images under ``"_details"`` (not JSON; drop before saving).

    Returns:
        ``{"profile", "judge" (independent), "trained_encoder", "clean": {method: {rank1, frac_below_threshold,
        mean_distance}}, "hard": {...}, "invariance": {"spread_in", "spread_out"}, "ci": {...},
        "trained_judge": {"clean", "hard"}, "thresholds", "landmarks", "pixel_spread", "info",
        "unseen_photos" (if given), "lfw" (if given)}``; all numbers are Python floats.
    """
    from .encoders import load_encoder
    from .train import cached_features

    t0 = time.perf_counter()
    train_t, up = tables["train"], tables["unseen_people"]
    enc = model.encoder
    trained = enc.name
    indep = independent_judge(trained)
    if judges is None:
        judges = {trained: make_judge(enc, train_t, far),
                  indep: make_judge(load_encoder(indep, device=next(model.decoder.parameters()).device), train_t, far)}
    train_feats = cached_features(enc, _encoder_key(enc), train_t)["features"]
    baselines = Baselines(train_t, train_feats, seed=seed)

    # ---- unseen people: gallery = the same people's other photos
    rows = real_rows(up)
    x, lm, person = up.images[rows], up.landmarks[rows], up.person[rows]
    exclude = torch.arange(x.shape[0])
    ev = evaluate_split(model, baselines, x, lm, person, judges, None, person, exclude, seed=seed, n_boot=n_boot,
                        target_landmarks=up.target_landmarks[person], details=details)
    out: dict[str, Any] = {"profile": profile, "judge": indep, "trained_encoder": trained}
    for cond in ("clean", "hard"):
        out[cond] = ev[cond][indep]["metrics"]
    out["invariance"] = {k: ev["clean"][indep]["invariance"][k] for k in ("spread_in", "spread_out")}
    out["invariance_detail"] = {cond: {j: ev[cond][j]["invariance"] for j in judges} for cond in ("clean", "hard")}
    out["ci"] = {cond: ev[cond][indep]["ci"] for cond in ("clean", "hard")}
    out["trained_judge"] = {cond: {"metrics": ev[cond][trained]["metrics"], "ci": ev[cond][trained]["ci"]}
                            for cond in ("clean", "hard")}
    out["pixel_spread"] = {cond: ev[cond]["pixel_spread"] for cond in ("clean", "hard")}
    out["landmarks"] = ev["landmarks"]
    out["thresholds"] = {j: {"value": judge.threshold, "far": judge.far, "tar_train": judge.tar_train}
                         for j, judge in judges.items()}
    out["thresholds"]["facenet_paper_reference"] = {"value": FACENET_PAPER_THRESHOLD}
    n_people = int(person.unique().numel())
    out["info"] = {"n_people": n_people, "n_photos": int(x.shape[0]), "chance_rank1": 1.0 / n_people,
                   "n_boot": n_boot, "seed": seed, "size": int(x.shape[-1]),
                   "linear_ridge_over_D": baselines.linear.lam, "hard": dict(HARD_PARTS)}
    details_all = {"unseen_people": ev.get("_details")}

    # ---- unseen photos of training people: gallery = the training photos (real, not mirrored) of those people
    if tables.get("unseen_photos") is not None:
        uph = tables["unseen_photos"]
        r = real_rows(uph)
        tr = real_rows(train_t)
        name_of = [uph.people[int(p)] for p in uph.person[r]]
        train_names = [train_t.people[int(p)] for p in train_t.person[tr]]
        if not set(name_of) <= set(train_names):
            raise InputError("unseen_photos people must be training people (same split seed).")
        uniq = sorted(set(train_names), key=train_names.index)
        gp = torch.tensor([uniq.index(n) for n in train_names])
        qp = torch.tensor([uniq.index(n) for n in name_of])
        gal2 = {j: cached_features(judge.encoder, _encoder_key(judge.encoder), train_t)["embeddings"][tr]
                for j, judge in judges.items()}
        ev2 = evaluate_split(model, baselines, uph.images[r], uph.landmarks[r], qp, judges, gal2, gp, None,
                             seed=seed, n_boot=n_boot, target_landmarks=uph.target_landmarks[uph.person[r]],
                             details=details)
        out["unseen_photos"] = {cond: ev2[cond][indep]["metrics"] for cond in ("clean", "hard")}
        out["unseen_photos"]["ci"] = {cond: ev2[cond][indep]["ci"] for cond in ("clean", "hard")}
        out["unseen_photos"]["trained_judge"] = {cond: ev2[cond][trained]["metrics"] for cond in ("clean", "hard")}
        out["unseen_photos"]["landmarks"] = ev2["landmarks"]
        out["unseen_photos"]["info"] = {"n_people": len(uniq), "n_photos": int(r.sum()),
                                        "chance_rank1": 1.0 / len(uniq)}
        details_all["unseen_photos"] = ev2.get("_details")

    if lfw is not None and len(lfw) > 0:
        out["lfw"], details_all["lfw"] = evaluate_wild(model, baselines, lfw.images, lfw.landmarks, judges,
                                                       n_boot=n_boot, seed=seed)
        out["lfw"]["info"] = {"n": len(lfw), "n_detected": int(lfw.detected.sum())}
    out["info"]["seconds"] = time.perf_counter() - t0
    if details:
        out["_details"] = details_all
        out["_baselines"] = baselines
        out["_judges"] = judges
    return out


def evaluate_wild(model, baselines: Baselines, images: torch.Tensor, landmarks: torch.Tensor,
                  judges: Mapping[str, Judge], n_boot: int = 1000, seed: int = 0,
                  methods: Sequence[str] = ("normface", "mean_face", "align_only")) -> tuple[dict, dict]:
    """Identity preservation on photos of unknown identity (e.g. LFW): per judge and method, the fraction of
    input–output distances below the judge's threshold and the mean distance, with bootstrap CIs over photos.

    Returns ``(metrics, per_row)``: ``metrics[judge][method] = {"frac_below_threshold", "mean_distance", "ci"}``,
    ``per_row[judge][method]`` = ``[N]`` distances (float64), plus ``per_row["outputs"]`` (normface images)."""
    feats = features(model.encoder, images)
    outs = {"normface": decode(model.decoder, feats)}
    outs.update(baselines.outputs(feats, images, landmarks))
    res, rows = {}, {"outputs": outs["normface"]["image"]}
    ids = torch.arange(images.shape[0])
    for j, judge in judges.items():
        ref = judge.embed(images)
        res[j], rows[j] = {}, {}
        for m in methods:
            d = (_unique_embed(judge, outs[m]["image"]).double() - ref.double()).norm(dim=1)
            below = (d < judge.threshold).double()
            res[j][m] = {"frac_below_threshold": float(below.mean()), "mean_distance": float(d.mean()),
                         "ci": {"frac_below_threshold": list(bootstrap_ci(below, ids, n_boot, seed=seed)),
                                "mean_distance": list(bootstrap_ci(d, ids, n_boot, seed=seed))}}
            rows[j][m] = d
    return res, rows


# ============================================================================================== robustness sweep
def robustness(model, images: torch.Tensor, person: torch.Tensor, judge: Judge, gallery: torch.Tensor,
               gallery_person: torch.Tensor, exclude: torch.Tensor | None,
               kinds: Sequence[str] = ("occluder", "light", "blur", "grey", "rotation"),
               strengths: Mapping[str, Sequence[float]] | None = None, seed: int = 0,
               n_boot: int = 1000, details: bool = False) -> dict:
    """Identity preservation of normface vs align-only as each perturbation grows.

    Args:
        model: NormFace. images ``[N,3,S,S]`` clean crops in [0,1] (their landmarks are not needed: align-only is not
            part of this sweep); person ``[N]``; judge; gallery ``[G,E]`` clean gallery embeddings and its labels;
            exclude as in :func:`rank1`.
        kinds: perturbation kinds; strengths: kind → list of strengths (default: 0, ½ and 1× the default).

    Returns:
        ``{kind: [{"strength", "mean_distance", "mean_distance_ci", "rank1", "rank1_ci", "input_rank1"}, ...]}``,
        where distances are between the output and the *clean* input and ``input_rank1`` identifies the perturbed
        input itself (how much the perturbation hurts the judge before any normalization). With ``details``, each
        row also holds ``"_rows"``: ``{"distance", "rank1", "input_rank1"}`` ``[N]`` float64 per-photo values (keys
        starting with ``_`` are left out of ``metrics.json``).
    """
    strengths = strengths or {k: [0.0, DEFAULT_STRENGTH[k] / 2, DEFAULT_STRENGTH[k]] for k in kinds}
    ref = judge.embed(images)
    res = {}
    for kind in kinds:
        rows = []
        for s in strengths[kind]:
            x = perturb(images, kind, s, seed=seed)
            out = decode(model.decoder, features(model.encoder, x))["image"]
            e_out, e_in = judge.embed(out), judge.embed(x)
            d = (e_out.double() - ref.double()).norm(dim=1)
            c = rank1(e_out, person, gallery, gallery_person, exclude).double()
            ci_in = rank1(e_in, person, gallery, gallery_person, exclude).double()
            row = {"strength": float(s), "mean_distance": float(d.mean()),
                   "mean_distance_ci": list(bootstrap_ci(d, person, n_boot, seed=seed)),
                   "rank1": float(c.mean()), "rank1_ci": list(bootstrap_ci(c, person, n_boot, seed=seed)),
                   "input_rank1": float(ci_in.mean())}
            if details:
                row["_rows"] = {"distance": d, "rank1": c, "input_rank1": ci_in}
            rows.append(row)
        res[kind] = rows
    return res


# ============================================================================================== one run, as notebook 03
#: The robustness sweep of a run: each perturbation at half and at its full default strength.
ROBUSTNESS_KINDS = ("occluder", "light", "blur", "rotation")
ROBUSTNESS_STRENGTHS = {k: (DEFAULT_STRENGTH[k] / 2, DEFAULT_STRENGTH[k]) for k in ROBUSTNESS_KINDS}


def training_block(run_dir: str | Path) -> dict:
    """The figures of a training run's ``summary.json`` that a reader compares: steps done, the mean of the last
    logged losses, and the final losses on the training inputs and each held-out split (``eval``)."""
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    return {"steps_done": summary["steps_done"], "last_losses": summary["last_losses"],
            "eval": {split: {k: v for k, v in e.items() if isinstance(v, float)}
                     for split, e in summary.get("eval", {}).items()}}


def evaluate_run(model, run_dir: str | Path, tables: Mapping[str, Any], profile: str = "quick", seed: int = 0,
                 n_boot: int = 1000, lfw=None, judges: Mapping[str, Judge] | None = None,
                 details: bool = False) -> dict:
    """Everything notebook 03 reports about one trained run (``results/<profile>/metrics.json``): the
    :func:`evaluate_model` figures, the robustness sweep (:data:`ROBUSTNESS_STRENGTHS`, unseen people, independent
    judge) under ``"robustness"``, and :func:`training_block` under ``"training"``.

    The seed study (:mod:`normface_lib.results`) calls the same function for every training seed, so that the
    bands a rerun is checked against are measured on exactly these figures.

    Args:
        model: :class:`~normface_lib.model.NormFace`. run_dir: its training run folder (holds ``summary.json``).
        tables, profile, seed, n_boot, lfw, judges, details: as in :func:`evaluate_model` (``details`` also keeps
            the sweep's per-photo rows).
    """
    out = evaluate_model(model, tables, profile=profile, seed=seed, n_boot=n_boot, lfw=lfw, judges=judges,
                         details=True)
    judges = out["_judges"]
    j = judges[out["judge"]]
    up = tables["unseen_people"]
    rows = real_rows(up)
    x, p = up.images[rows], up.person[rows]
    out["robustness"] = {"judge": j.name, "curves": robustness(
        model, x, p, j, j.embed(x), p, torch.arange(len(x)), kinds=ROBUSTNESS_KINDS,
        strengths=ROBUSTNESS_STRENGTHS, seed=seed, n_boot=n_boot, details=details)}
    out["training"] = training_block(run_dir)
    if not details:
        for k in ("_details", "_baselines", "_judges"):
            out.pop(k)
    return out


# ============================================================================================== ablations
def ablation_configs(profile: str = "quick", steps: int = 150, seed: int = 0) -> dict[str, Any]:
    """The ablation runs at one small, equal training budget (``steps``), all from ``profile``'s settings.

    Rows: ``"reference"`` (the profile: FaceNet-CASIA features, identity loss, warp), ``"dlib-resnet"`` (dlib
    features; its identity loss uses dlib), ``"no-identity-loss"``, ``"no-warp"`` (the CNN paints the image), and
    the optional encoders ``"vggface"`` / ``"facenet-vggface2"`` (used only when their weights are present).

    Returns:
        name → :class:`~normface_lib.train.TrainConfig` (or, for an unavailable encoder, the string saying why).
    """
    from .encoders import load_encoder
    from .train import PROFILES, profile_config

    if steps < 1:
        raise InputError(f"steps must be ≥ 1, got {steps}.")
    p = PROFILES[profile] if profile in PROFILES else None
    if p is None:
        raise InputError(f"unknown profile {profile!r}.")
    warm = max(1, int(round(p.get("warmup_steps", 50) * steps / p.get("steps", steps))))
    base = dict(steps=steps, warmup_steps=min(warm, steps - 1) if steps > 1 else 0, seed=seed,
                checkpoint_every=steps, eval_splits=())
    cfgs: dict[str, Any] = {
        "reference": profile_config(profile, **base),
        "dlib-resnet": profile_config(profile, **base, encoder="dlib-resnet"),
        "no-identity-loss": profile_config(profile, **base, identity_weight=0.0, identity_every=0),
        "no-warp": profile_config(profile, **base, warp=False),
    }
    for name in OPTIONAL_ENCODERS:
        try:
            load_encoder(name)
            cfgs[name] = profile_config(profile, **base, encoder=name)
        except (MissingWeightsError, FileNotFoundError, InputError, KeyError, ValueError) as e:
            cfgs[name] = f"not available offline ({type(e).__name__})"
    return cfgs


def _same_config(run_dir: Path, config) -> bool:
    try:
        saved = json.loads((run_dir / "checkpoint" / "config.json").read_text())["config"]
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return saved == json.loads(json.dumps(config.to_dict())) and summary.get("steps_done") == config.steps


def train_or_reuse(config, run_dir: str | Path, tables: Mapping[str, Any] | None = None) -> tuple[Path, float]:
    """Train ``config`` into ``run_dir`` unless it already holds a finished run of exactly this config.

    Returns ``(run_dir, seconds spent training here)`` (0 when reused). Training is deterministic, so a reused run
    gives the same numbers as a fresh one on the same machine."""
    from .train import train

    run_dir = Path(run_dir)
    if _same_config(run_dir, config):
        return run_dir, 0.0
    t0 = time.perf_counter()
    train(config, run_dir, progress=False, force=True, tables=dict(tables) if tables else None)
    return run_dir, time.perf_counter() - t0


def evaluate_ablations(configs: Mapping[str, Any], out_root: str | Path, tables: Mapping[str, Any],
                       judges: Mapping[str, Judge], seed: int = 0, n_boot: int = 1000, reuse: bool = True) -> dict:
    """Train (or reuse) every ablation run and measure it on the unseen people, clean and hard, with both offline
    judges (so rows trained on different encoders are compared by the same judges).

    Args:
        configs: from :func:`ablation_configs`. out_root: folder for the runs (one sub-folder per name).
        tables: ``{"train", "unseen_people"}``. judges: ``{"facenet-casia": Judge, "dlib-resnet": Judge}``.
        reuse: reuse a finished run of the same config in ``out_root/<name>`` (else retrain).

    Returns:
        ``{name: {"status", "encoder", "identity_loss", "warp", "steps", "train_seconds",
        "independent_judge", <judge>: {"clean": {metric}, "hard": {metric}, "ci": {...}}}}``.
    """
    from .model import NormFace

    train_t, up = tables["train"], tables["unseen_people"]
    rows = real_rows(up)
    x, lm, person = up.images[rows], up.landmarks[rows], up.person[rows]
    exclude = torch.arange(x.shape[0])
    res: dict[str, Any] = {}
    for name, cfg in configs.items():
        if isinstance(cfg, str):
            res[name] = {"status": cfg}
            continue
        run = Path(out_root) / name
        if reuse:
            run, secs = train_or_reuse(cfg, run, {"train": train_t})
        else:
            from .train import train
            t0 = time.perf_counter()
            train(cfg, run, progress=False, force=True, tables={"train": train_t})
            secs = time.perf_counter() - t0
        model = NormFace.from_pretrained(run, device="cpu")
        ev = evaluate_split(model, None, x, lm, person, judges, None, person, exclude, seed=seed, n_boot=n_boot,
                            methods=("normface",))
        row = {"status": "trained" if secs > 0 else "reused", "encoder": cfg.encoder,
               "identity_loss": cfg.identity_weight > 0 and cfg.identity_every > 0, "warp": cfg.warp,
               "steps": cfg.steps, "train_seconds": secs, "independent_judge": independent_judge(cfg.encoder)}
        for j in judges:
            row[j] = {cond: ev[cond][j]["metrics"]["normface"] for cond in ("clean", "hard")}
            row[j]["ci"] = {cond: ev[cond][j]["ci"]["normface"] for cond in ("clean", "hard")}
        res[name] = row
    return res


def cached_features_of(encoder, table) -> torch.Tensor:
    """``[N,D]`` features of a table's images by ``encoder`` (cached on disk, see
    :func:`normface_lib.train.cached_features`)."""
    from .train import cached_features
    return cached_features(encoder, _encoder_key(encoder), table)["features"]


def to_json(metrics: Mapping[str, Any], path: str | Path, nd: int = 4) -> Path:
    """Write ``metrics`` (keys starting with ``_`` dropped, floats rounded to ``nd`` digits) as indented JSON.
    Raises :class:`InputError` if any number is not finite."""
    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items() if not str(k).startswith("_")}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating, np.integer)):
            o = o.item()
        if isinstance(o, float) and not math.isfinite(o):
            raise InputError("metrics contain a NaN or inf value; fix the evaluation before writing metrics.json.")
        return o
    data = _round(clean(metrics), nd)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # atomic: a reader never sees half a file
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)
    return path

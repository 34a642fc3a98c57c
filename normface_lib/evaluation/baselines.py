"""What normface is compared with (same metrics, same inputs): the mean face, the nearest training identity, a linear
map from features to pixels, and align-only (the warping-based frontalization family of Hassner et al.)."""
from __future__ import annotations

from typing import Sequence

import torch

from ..core.checks import check_images, check_labels, check_rows
from ..core.errors import InputError
from ..nets.texture import register_textures


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
        f = check_rows(features, "features")
        p = check_labels(person, "person", f.shape[0])
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
        z = _standardize(check_rows(features, "features"), self.mean, self.std)
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
        f = check_rows(features, "features")
        N, D = f.shape
        if targets.shape[0] != N:
            raise InputError(f"targets has {targets.shape[0]} rows but features has {N}.")
        g = check_labels(groups, "groups", N)
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
        errors = {float(lam): 0.0 for lam in lambdas}
        for k in range(folds):  # one eigendecomposition per fold serves every ridge
            tr, te = fold != k, fold == k
            if not te.any() or not tr.any():
                continue
            xm, ym = X[tr].mean(0), Y[tr, :self.n_pix].mean(0)
            Xc = X[tr] - xm
            evals, V = torch.linalg.eigh(Xc @ Xc.T)
            proj = V.T @ (Y[tr, :self.n_pix] - ym)          # [n_tr, pixels]
            kv = ((X[te] - xm) @ Xc.T) @ V                   # [n_te, n_tr]
            for lam in lambdas:
                pred = (kv / (evals.clamp_min(0) + lam * D)) @ proj + ym  # = K_te,tr (K + λI)⁻¹ Y_c + ȳ
                errors[float(lam)] += float((pred.clamp(0, 1) - Y[te, :self.n_pix]).abs().sum())
        self.cv_error = {lam: e / (N * self.n_pix) for lam, e in errors.items()}
        self.lam = min(self.cv_error, key=self.cv_error.get)
        self.weights = self._fit(X, Y, self.lam * D)

    @staticmethod
    def _fit(X, Y, lam):
        """Ridge regression in the dual: ``W = X_cᵀ (X_c X_cᵀ + λI)⁻¹ Y_c`` (centred), returned with the means."""
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
        z = _standardize(check_rows(features, "features"), self.mean, self.std)
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
    return register_textures(check_images(images).float(), landmarks.float(), mean_shape.float())


class Baselines:
    """The four baselines fitted on a training table with the decoder's encoder features.

    The nearest-identity baseline searches the table's targets (:attr:`~normface_lib.data.FaceTable.target_index`):
    each training person's target when training is paired; under the paper's training, where every frontal, neutral
    training photo is its own target, the nearest training photo (its features, not a person's mean).

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
        k = t.target_index  # each row's target: its person's, or itself under the paper's frontal, neutral training
        self.nearest = NearestIdentity(train_features, k, targets, t.target_landmarks)
        self.linear = LinearMap(train_features, targets[k], t.base_person, t.target_landmarks[k], seed=seed)

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

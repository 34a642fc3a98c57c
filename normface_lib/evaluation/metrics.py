"""Identity and invariance metrics: rank-1 identification, bootstrap intervals over people, spread of a person's
photos, landmark error; embedding distances and same-person thresholds come from
:mod:`normface_lib.encoders.thresholds`. Pure functions of tensors: no model, no data set."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ..core.checks import check_images, check_labels, check_rows
from ..core.errors import InputError
from ..encoders.thresholds import calibrate_threshold, pairwise_distances, verification_rates
from ..faces import interocular


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
    q = check_rows(query, "query")
    g = check_rows(gallery, "gallery")
    qp = check_labels(query_person, "query_person", q.shape[0])
    gp = check_labels(gallery_person, "gallery_person", g.shape[0])
    d = pairwise_distances(q, g)
    if exclude is not None:
        ex = check_labels(exclude, "exclude", q.shape[0])
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
    g = check_labels(groups, "groups", v.numel())
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


def embedding_spread(embeddings: torch.Tensor, person) -> torch.Tensor:
    """Per person, the mean distance of its photos' embeddings ``[N,E]`` to the person's mean embedding.

    Returns ``[P]`` float64 (people in sorted label order) ≥ 0; lower = more invariant."""
    e = check_rows(embeddings, "embeddings").double()
    p = check_labels(person, "person", e.shape[0])
    out = []
    for q in p.unique().tolist():
        x = e[p == q]
        out.append((x - x.mean(0)).norm(dim=1).mean())
    return torch.stack(out)


def pixel_spread(images: torch.Tensor, person) -> torch.Tensor:
    """Per person, the per-pixel standard deviation over its photos ``[N,3,S,S]`` (aligned crops), averaged over
    pixels and channels. Returns ``[P]`` float64 ≥ 0 (people in sorted label order)."""
    x = check_images(images).double()
    p = check_labels(person, "person", x.shape[0])
    return torch.stack([x[p == q].std(0, unbiased=False).mean() for q in p.unique().tolist()])


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


__all__ = ["calibrate_threshold", "pairwise_distances", "verification_rates", "rank1", "bootstrap_ci", "summarize",
           "embedding_spread", "pixel_spread", "landmark_error"]

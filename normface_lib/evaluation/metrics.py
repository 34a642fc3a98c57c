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
from ..faces import CANONICAL_ANCHORS, interocular


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


#: Floor on the within-person pixel variance in :func:`pixel_identity_contrast` (intensity² in ``[0,1]`` units: a
#: standard deviation of 0.001, a quarter of an 8-bit grey level), so that outputs identical for all of a person's
#: photos give a large, finite ratio rather than a division by zero.
CONTRAST_FLOOR = 1e-6


def _person_moments(x: torch.Tensor, p: torch.Tensor, people: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Each person's mean image ``[P,D]`` and mean per-pixel variance around it ``[P]`` (float64)."""
    mu = torch.stack([x[p == q].mean(0) for q in people])
    within = torch.stack([((x[p == q] - mu[k]) ** 2).mean() for k, q in enumerate(people)])
    return mu, within


def _strata_columns(p: torch.Tensor, people: list, strata) -> list[torch.Tensor]:
    """For each stratum (in sorted label order), the columns (indices into ``people``) of its people."""
    if strata is None:
        return [torch.arange(len(people))]
    s = check_labels(strata, "strata", p.shape[0])
    of = {}
    for q in people:
        labels = s[p == q].unique()
        if labels.numel() != 1:
            raise InputError(f"person {q} appears in {labels.numel()} strata; each person must be in exactly one.")
        of[q] = int(labels)
    cols = [torch.tensor([k for k, q in enumerate(people) if of[q] == t]) for t in sorted(set(of.values()))]
    if any(len(c) < 2 for c in cols):
        raise InputError("every stratum needs at least 2 people for a between-person variance.")
    return cols


def pixel_identity_ratio(images: torch.Tensor, person, counts: torch.Tensor | None = None, strata=None
                         ) -> torch.Tensor:
    """Between-person over within-person pixel variance of a set of aligned images.

    Within: the mean over people of the per-pixel variance of each person's images around that person's mean image.
    Between: the variance of the people's mean images around their mean. Both per pixel and channel, averaged. With
    ``strata`` (e.g. the fold of a k-fold evaluation, whose models differ), both are computed within each stratum and
    averaged over the strata, so that differences between strata do not count as differences between people.

    Args:
        images: ``[N,3,S,S]`` float in ``[0,1]``; person: ``[N]`` int labels (at least 2 people per stratum).
        counts: optional ``[B,P]`` float, how often each person (in sorted label order) is drawn in each of ``B``
            bootstrap replicates; default: every person once.
        strata: optional ``[N]`` int labels; each person in exactly one stratum.

    Returns:
        ``[B]`` float64 ratios (``[1]`` without ``counts``): 0 when the images do not vary at all.
    """
    x = check_images(images).double().flatten(1)
    p = check_labels(person, "person", x.shape[0])
    people = p.unique().tolist()
    if len(people) < 2:
        raise InputError(f"pixel identity contrast needs at least 2 people, got {len(people)}.")
    mu, within = _person_moments(x, p, people)
    D = mu.shape[1]
    c_all = torch.ones(1, len(people), dtype=torch.float64) if counts is None else counts.double()
    between, w = 0.0, 0.0
    cols = _strata_columns(p, people, strata)
    for k in cols:
        c, m = c_all[:, k], mu[k]
        gram = m @ m.T
        n = c.sum(1)
        between = between + (c @ gram.diagonal()) / (n * D) - ((c @ gram) * c).sum(1) / (n * n * D)
        w = w + (c @ within[k]) / n
    return (between / len(cols)).clamp_min(0) / (w / len(cols)).clamp_min(CONTRAST_FLOOR)


def pixel_identity_contrast(outputs: torch.Tensor, inputs: torch.Tensor, person, n_boot: int = 1000,
                            seed: int = 0, level: float = 0.95, strata=None) -> dict[str, Any]:
    """How much of the inputs' pixel identity contrast the outputs keep.

    ``contrast = ratio(outputs) / ratio(inputs)`` with :func:`pixel_identity_ratio` (between-person over
    within-person pixel variance): returning the aligned input unchanged scores 1; outputs that differ less between
    people, relative to how much they vary within a person, than the photos do score below 1 (a collapse to the
    mean face scores 0); outputs that are consistent within a person and distinct between people score above 1.
    Pixels, not identity: a method that maps everyone to the wrong but a consistent face also scores high.

    Args:
        outputs: ``[N,3,S,S]`` float in ``[0,1]``, one output per input photo; inputs: ``[N,3,S,S]`` the aligned
            inputs; person: ``[N]`` int labels (at least 2 people).
        n_boot, level, seed: the percentile bootstrap over people (both ratios from the same draws; within each
            stratum when ``strata`` is given).
        strata: optional ``[N]`` int labels, e.g. the fold whose model made each output (see
            :func:`pixel_identity_ratio`).

    Returns:
        ``{"value": float, "ci": [lo, hi], "outputs_ratio": float, "inputs_ratio": float, "n_people": int}``.
    """
    if tuple(outputs.shape) != tuple(inputs.shape):
        raise InputError(f"outputs {tuple(outputs.shape)} and inputs {tuple(inputs.shape)} must have the same shape "
                         "(one output per input photo).")
    p = check_labels(person, "person", outputs.shape[0])
    people = p.unique().tolist()
    P = len(people)
    r_out, r_in = pixel_identity_ratio(outputs, p, strata=strata), pixel_identity_ratio(inputs, p, strata=strata)
    gen = torch.Generator().manual_seed(int(seed))
    counts = torch.zeros(n_boot, P, dtype=torch.float64)
    for k in _strata_columns(p, people, strata):  # people drawn with replacement within each stratum
        idx = k[torch.randint(0, len(k), (n_boot, len(k)), generator=gen)]
        counts.scatter_add_(1, idx, torch.ones(n_boot, len(k), dtype=torch.float64))
    boot = (pixel_identity_ratio(outputs, p, counts, strata) /
            pixel_identity_ratio(inputs, p, counts, strata).clamp_min(1e-12)).numpy()
    a = (1 - level) / 2
    return {"value": float(r_out[0] / r_in[0]), "ci": [float(np.quantile(boot, a)), float(np.quantile(boot, 1 - a))],
            "outputs_ratio": float(r_out[0]), "inputs_ratio": float(r_in[0]), "n_people": P}


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


def face_colour_difference(outputs: torch.Tensor, inputs: torch.Tensor) -> np.ndarray:
    """How far each output's skin colour is from its input's: the mean absolute difference, in 8-bit levels
    (0–255, averaged over R, G, B), between the mean colour of the inner face of the output and of the input.

    The inner face is the same region of every canonical crop: between the eye centres across, from the eye line to
    the mouth line down (:data:`~normface_lib.faces.CANONICAL_ANCHORS`). Args: ``outputs`` and ``inputs``
    ``[N,3,S,S]`` float in ``[0,1]``, canonical crops. Returns ``[N]`` float64 ≥ 0."""
    a, b = check_images(outputs).double(), check_images(inputs).double()
    if a.shape != b.shape:
        raise InputError(f"outputs {tuple(a.shape)} and inputs {tuple(b.shape)} must have the same shape.")
    S = a.shape[-1]
    (x0, y0), (x1, _), (_, y1) = (CANONICAL_ANCHORS * S).round().long().tolist()
    ma, mb = a[..., y0:y1 + 1, x0:x1 + 1].mean((2, 3)), b[..., y0:y1 + 1, x0:x1 + 1].mean((2, 3))
    return ((ma - mb).abs().mean(1) * 255.0).numpy()


__all__ = ["calibrate_threshold", "pairwise_distances", "verification_rates", "rank1", "bootstrap_ci", "summarize",
           "embedding_spread", "pixel_spread", "pixel_identity_ratio", "pixel_identity_contrast", "CONTRAST_FLOOR",
           "landmark_error", "face_colour_difference"]

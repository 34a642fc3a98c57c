"""Same-person thresholds of an encoder: embedding distances, the threshold at a false-accept rate calibrated on
labelled photos, and the accept rates it gives. Training stores the calibrated threshold with every checkpoint, so
the ``normface`` command and the book judge "same person" by one number."""
from __future__ import annotations

import math

import torch

from ..core.checks import check_labels, check_rows
from ..core.errors import InputError
from .features import cached_encode

#: False-accept rate at which thresholds are calibrated, here and in the book.
DEFAULT_FAR = 0.05


def pairwise_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between the rows of ``a`` ``[N,E]`` and ``b`` ``[M,E]`` (float): ``[N,M]`` float64 ≥ 0."""
    a = check_rows(a, "a").double()
    b = check_rows(b, "b").double()
    if a.shape[1] != b.shape[1]:
        raise InputError(f"a and b must have the same width, got {a.shape[1]} and {b.shape[1]}.")
    return torch.cdist(a, b).clamp_min(0)


def calibrate_threshold(embeddings: torch.Tensor, person, far: float = DEFAULT_FAR) -> float:
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
    emb = check_rows(embeddings, "embeddings")
    person = check_labels(person, "person", emb.shape[0])
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
    emb = check_rows(embeddings, "embeddings")
    person = check_labels(person, "person", emb.shape[0])
    d = pairwise_distances(emb, emb)
    i, j = torch.triu_indices(emb.shape[0], emb.shape[0], offset=1)
    same = person[i] == person[j]
    below = d[i, j] < threshold
    tar = float(below[same].double().mean()) if same.any() else float("nan")
    far = float(below[~same].double().mean()) if (~same).any() else float("nan")
    return {"tar": tar, "far": far}


def calibrate_on_table(encoder, table, far: float = DEFAULT_FAR, embeddings: torch.Tensor | None = None) -> dict:
    """``encoder``'s same-person threshold at false-accept rate ``far``, calibrated on the real photos of a training
    table (``table.photo_mask``: mirror images left out; people with their mirror images merged).

    Args:
        encoder: a frozen :class:`~normface_lib.encoders.FaceEncoder`.
        table: a :class:`~normface_lib.data.FaceTable` (its ``images`` are embedded, through the on-disk cache,
            unless ``embeddings`` ``[N,E]`` of its rows are given).

    Returns:
        ``{"value", "far", "tar", "encoder", "photos", "people"}``: the threshold on the L2 distance of unit
        embeddings, the false-accept rate it was set at, the same-person accept rate it gives on those photos (None
        when every person has one photo: no same-person pair), and what it was calibrated on. Raises :class:`InputError` with fewer than 2 people.
    """
    emb = cached_encode(encoder, table.images)["embeddings"] if embeddings is None else embeddings
    rows = table.photo_mask
    person = table.base_person[rows]
    value = calibrate_threshold(emb[rows], person, far)
    tar = verification_rates(emb[rows], person, value)["tar"]
    return {"value": value, "far": far, "tar": None if math.isnan(tar) else tar,
            "encoder": encoder.name, "photos": int(rows.sum()), "people": int(person.unique().numel())}

"""Comparisons that survive noise: paired differences over training seeds and people, and the verdict they support.

A sentence such as "normface keeps identity better than the mean face" is a *finding* only when it holds whatever
the training seed and whichever people happened to be held out. Every comparison the book states goes through
:func:`paired_difference` (a mean over rows) or :func:`bootstrap_statistic` (any statistic of a set of rows), and the
words the reader sees come from :func:`verdict`:

- ``"better"``: the 95 % interval of the difference lies on the better side of 0 **and** every seed alone agrees;
- ``"worse"``: the same on the other side;
- ``"no difference detectable with this data"``: anything else.

Convention: ``a`` is the method under test, ``b`` the one it is compared with; values are ``[S, N]`` (S training
seeds, N rows: photos), rows in the same order for every seed so that each seed's difference is paired photo by
photo. A method that does not depend on the training seed (a baseline) may be given as ``[N]``. The bootstrap draws
S seeds and P people with replacement in each replicate (two-level: seed-to-seed and person-to-person variation
both widen the interval), with a fixed seed: the same inputs give the same interval.

    >>> import torch
    >>> a = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]])  # 3 seeds x 4 photos
    >>> c = paired_difference(a, torch.zeros(4), person=torch.tensor([0, 0, 1, 1]))
    >>> c["verdict"], round(c["difference"], 3), c["n_seeds"]
    ('better', 0.833, 3)
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..core.errors import InputError

VERDICTS = ("better", "worse", "no difference detectable with this data")
LEVEL = 0.95


def _as_seeds_rows(x, name: str, n_seeds: int | None = None) -> np.ndarray:
    v = np.asarray(x.detach().cpu().double() if isinstance(x, torch.Tensor) else x, dtype=np.float64)
    if v.ndim == 1:
        v = v[None]
    if v.ndim != 2 or v.shape[1] == 0:
        raise InputError(f"{name} must be [S, N] per-seed, per-row values (or [N]), got shape {v.shape}.")
    if not np.isfinite(v).all():
        raise InputError(f"{name} contains NaN or inf; fix the evaluation that produced it.")
    if n_seeds is not None and v.shape[0] == 1:
        v = np.repeat(v, n_seeds, axis=0)
    return v


def _groups(person, n: int) -> tuple[np.ndarray, int]:
    p = np.asarray(person.cpu() if isinstance(person, torch.Tensor) else person)
    if p.shape != (n,):
        raise InputError(f"person must be [N] = [{n}] labels, one per row, got shape {p.shape}.")
    _, gi = np.unique(p, return_inverse=True)
    return gi, int(gi.max()) + 1


def verdict(ci: Sequence[float], per_seed: Sequence[float], higher_is_better: bool = True) -> str:
    """The words a difference supports (see the module docstring): one of :data:`VERDICTS`.

    Args:
        ci: ``[lo, hi]`` interval of the difference ``a − b``.
        per_seed: the difference seed by seed (each must agree in sign for a finding).
        higher_is_better: whether a positive difference means ``a`` is better.
    """
    lo, hi = float(ci[0]), float(ci[1])
    s = np.asarray(per_seed, dtype=np.float64)
    if not higher_is_better:
        lo, hi, s = -hi, -lo, -s
    if lo > 0 and (s > 0).all():
        return VERDICTS[0]
    if hi < 0 and (s < 0).all():
        return VERDICTS[1]
    return VERDICTS[2]


def paired_difference(a, b, person, higher_is_better: bool = True, n_boot: int = 2000, level: float = LEVEL,
                      seed: int = 0) -> dict[str, Any]:
    """Mean difference ``a − b`` over seeds and rows, its two-level bootstrap interval, and the verdict.

    Args:
        a: ``[S, N]`` (or ``[N]``) per-seed, per-row values of the method under test (e.g. 0/1 rank-1 hits,
            distances).
        b: the same for the method compared with; ``[N]`` when it does not depend on the training seed.
        person: ``[N]`` person of each row (the unit resampled by the bootstrap).
        higher_is_better: True for rates (rank-1, fraction below threshold), False for distances and errors.
        n_boot, level, seed: bootstrap replicates, coverage, and its seed.

    Returns:
        ``{"difference": float, "ci": [lo, hi], "per_seed": [S floats], "n_seeds": S, "n_people": P,
        "higher_is_better": bool, "verdict": str}``.
    """
    A = _as_seeds_rows(a, "a")
    B = _as_seeds_rows(b, "b", n_seeds=A.shape[0])
    if A.shape != B.shape:
        raise InputError(f"a {A.shape} and b {B.shape} must have the same seeds and rows (paired by seed and photo).")
    if n_boot < 1 or not 0 < level < 1:
        raise InputError(f"n_boot must be ≥ 1 and level in (0, 1), got {n_boot}, {level}.")
    D = A - B                                              # [S, N]
    gi, P = _groups(person, D.shape[1])
    S = D.shape[0]
    sums = np.zeros((S, P))
    for s in range(S):
        sums[s] = np.bincount(gi, weights=D[s], minlength=P)
    counts = np.bincount(gi, minlength=P).astype(np.float64)
    rng = np.random.default_rng(seed)
    si = rng.integers(0, S, (n_boot, S))                   # seeds drawn per replicate
    pi = rng.integers(0, P, (n_boot, P))                   # people drawn per replicate
    num = sums[si[:, :, None], pi[:, None, :]].sum(2)      # [n_boot, S]
    boot = (num / counts[pi].sum(1)[:, None]).mean(1)      # [n_boot]
    q = (1 - level) / 2
    ci = [float(np.quantile(boot, q)), float(np.quantile(boot, 1 - q))]
    per_seed = [float(d) for d in D.mean(1)]
    return {"difference": float(D.mean()), "ci": ci, "per_seed": per_seed, "n_seeds": S, "n_people": P,
            "higher_is_better": bool(higher_is_better), "verdict": verdict(ci, per_seed, higher_is_better)}


def bootstrap_statistic(statistic: Callable[[int, np.ndarray], float], n_seeds: int, person,
                        reference: float = 0.0, higher_is_better: bool = True, n_boot: int = 1000,
                        level: float = LEVEL, seed: int = 0) -> dict[str, Any]:
    """Like :func:`paired_difference` for a statistic that is not a mean of rows (e.g. a ratio of spreads).

    Args:
        statistic: ``statistic(s, rows)`` → float for training seed ``s`` computed on the rows ``rows`` (``[M]``
            int indices; a person drawn twice contributes its rows twice, under a new label, see ``relabel``).
            It is called with all rows for the point value and once per drawn seed and replicate.
        n_seeds: S. person: ``[N]`` labels of the rows.
        reference: the value of "no effect" (0 for a difference, 1 for a ratio); the verdict compares with it.
        higher_is_better, n_boot, level, seed: as in :func:`paired_difference`.

    Returns:
        ``{"value", "ci", "per_seed", "n_seeds", "n_people", "reference", "higher_is_better", "verdict"}``.
    """
    p = np.asarray(person.cpu() if isinstance(person, torch.Tensor) else person)
    gi, P = _groups(p, len(p))
    rows_of = [np.nonzero(gi == g)[0] for g in range(P)]
    every = np.arange(len(p))
    per_seed = [float(statistic(s, every)) for s in range(n_seeds)]
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for r in range(n_boot):
        seeds = rng.integers(0, n_seeds, n_seeds)
        people = rng.integers(0, P, P)
        rows = np.concatenate([rows_of[g] for g in people])
        boot[r] = np.mean([statistic(int(s), rows) for s in seeds])
    q = (1 - level) / 2
    ci = [float(np.quantile(boot, q)), float(np.quantile(boot, 1 - q))]
    shifted = [v - reference for v in per_seed]
    return {"value": float(np.mean(per_seed)), "ci": ci, "per_seed": per_seed, "n_seeds": n_seeds, "n_people": P,
            "reference": reference, "higher_is_better": bool(higher_is_better),
            "verdict": verdict([ci[0] - reference, ci[1] - reference], shifted, higher_is_better)}


def relabel(rows: np.ndarray, person: np.ndarray) -> np.ndarray:
    """Labels for resampled ``rows`` that keep a person drawn twice as two people (a new label per draw).

    ``rows`` is a concatenation of whole people's rows (as :func:`bootstrap_statistic` passes them); returns ``[M]``
    int labels, a fresh one each time the person changes along ``rows``."""
    p = np.asarray(person)[rows]
    return np.concatenate([[0], np.cumsum((p[1:] != p[:-1]) | (np.diff(rows) <= 0))])


def describe(comparison: dict[str, Any], subject: str, other: str, measure: str, nd: int = 3, verb: str = "is",
             unit: str = "people") -> str:
    """The sentence a reader sees for a comparison, chosen by its verdict.

    ``describe(c, "normface", "the mean face", "fraction below threshold")`` →
    ``"normface is better than the mean face (fraction below threshold, difference +0.338 [+0.213, +0.463],
    3 seeds × 8 people)"``; for no detectable difference: ``"no difference detectable with this data between
    normface and the mean face (…)"``. ``verb`` agrees with a plural subject (``"are"``); ``unit`` names what the
    bootstrap resampled (people, or photos where identities are unknown).
    """
    if "difference" in comparison:
        v, ref = comparison["difference"], 0.0
        what = "difference"
    else:
        v, ref = comparison["value"], comparison.get("reference", 0.0)
        what = "value"
    lo, hi = comparison["ci"]
    sign = "+" if ref == 0.0 else ""
    nums = (f"{measure}, {what} {v:{sign}.{nd}f} [{lo:{sign}.{nd}f}, {hi:{sign}.{nd}f}], "
            f"{comparison['n_seeds']} seeds × {comparison['n_people']} {unit}")
    if comparison["verdict"] == VERDICTS[2]:
        return f"no difference detectable with this data between {subject} and {other} ({nums})"
    return f"{subject} {verb} {comparison['verdict']} than {other} ({nums})"
